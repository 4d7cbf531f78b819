"""Model builders. Every model maps inputs of ``input_shape`` to ``num_classes`` logits."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ceag.config.errors import ConfigError

SMALL_INPUT = 64  # images at most this wide keep their resolution in the stem


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> nn.Module:
    channels = _image_channels(input_shape, "cnn")
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def cnn_small(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``cnn`` at half width (16, 32 and 32 channels): about a quarter of its arithmetic, for
    quick runs on real-size datasets on a CPU."""
    return cnn(input_shape, num_classes, width=16)


def cnn_fc(input_shape: tuple[int, ...], num_classes: int, width: int = 32, hidden: int = 512) -> nn.Module:
    """Two convolutions (``width``, ``2 * width`` channels, each followed by 2x2 max-pooling) and a wide fully
    connected layer (``hidden`` units) on the flattened features: the capacity to fit a real training set
    on a CPU (2.1 M parameters at 32 x 32 px, most of them in that layer), the regime in which pruning costs
    the groups whose training samples the dense model had memorised."""
    channels = _image_channels(input_shape, "cnn_fc")
    height, width_px = (d // 4 for d in input_shape[-2:])  # after two 2x2 poolings
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * height * width_px, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    return _adapt_resnet(tv_resnet18(weights=None, num_classes=num_classes), input_shape, "resnet18")


def resnet34(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision.models import resnet34 as tv_resnet34

    return _adapt_resnet(tv_resnet34(weights=None, num_classes=num_classes), input_shape, "resnet34")


def _adapt_resnet(model: nn.Module, input_shape: tuple[int, ...], name: str) -> nn.Module:
    channels = _image_channels(input_shape, name)
    if channels != 3 or input_shape[-1] <= SMALL_INPUT:
        # Small images: a 3x3 stride-1 stem without max-pooling keeps the spatial resolution.
        small = input_shape[-1] <= SMALL_INPUT
        model.conv1 = nn.Conv2d(channels, 64, 3 if small else 7, 1 if small else 2,
                                1 if small else 3, bias=False)
        if small:
            model.maxpool = nn.Identity()
    return model


def mobilenet_v2(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    channels = _image_channels(input_shape, "mobilenet_v2")
    model = tv_mobilenet_v2(weights=None, num_classes=num_classes)
    stem = model.features[0][0]
    if channels != 3 or input_shape[-1] <= SMALL_INPUT:
        stride = 1 if input_shape[-1] <= SMALL_INPUT else 2
        model.features[0][0] = nn.Conv2d(channels, stem.out_channels, 3, stride, 1, bias=False)
    return model


class CifarBasicBlock(nn.Module):
    """CIFAR ResNet block of He et al. 2016 as published by chenyaofo/pytorch-cifar-models.

    Where the shape changes, the shortcut is a 1x1 convolution + batch norm (``downsample.0`` /
    ``downsample.1``), pruned like the other convolutions, as in the paper's code.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with chenyaofo's layout and parameter names (``conv1``, ``bn1``,
    ``layer1..3.N.conv1/bn1/conv2/bn2``, ``layerK.0.downsample.0/1``, ``fc``), so its published
    ``cifar100_resnet56`` weights load unchanged. Widths 16, 32, 64; initialization as chenyaofo's.
    """

    layer1: nn.Sequential  # set in __init__ by name
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(self, depth: int, channels: int, num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError("model", f"resnet{depth}", "CIFAR ResNet depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for k, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = [CifarBasicBlock(inplanes if i == 0 else planes, planes, stride if i == 0 else 1)
                      for i in range(n)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.avgpool(out), 1))


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(20, _image_channels(input_shape, "resnet20"), num_classes)


def resnet56(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(56, _image_channels(input_shape, "resnet56"), num_classes)


def _image_channels(input_shape: tuple[int, ...], name: str) -> int:
    if len(input_shape) != 3:
        raise ConfigError("model", name, f"needs image inputs (C, H, W); this dataset gives shape "
                          f"{tuple(input_shape)}: use model 'mlp'")
    return int(input_shape[0])


BUILDERS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "mlp": mlp, "cnn": cnn, "cnn_small": cnn_small, "cnn_fc": cnn_fc, "resnet18": resnet18, "resnet34": resnet34,
    "mobilenet_v2": mobilenet_v2, "resnet20": resnet20, "resnet56": resnet56,
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """A freshly initialized model; the initialization depends only on ``seed``."""
    if name not in BUILDERS:
        raise ConfigError("model", name, f"must be one of {', '.join(BUILDERS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BUILDERS[name](tuple(input_shape), num_classes)
