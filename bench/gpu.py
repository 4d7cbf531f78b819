"""GPU throughput: images per second of a paper-preset CEAG run against a bare PyTorch loop.

Same model (MobileNet-V2, UTKFace preset), batch (128) and image size (200x200), random uint8
images held on the GPU. Reported as not measured where no CUDA GPU can be reached.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import Result
from ceag.config.presets import preset
from ceag.datasets.base import GroupedDataset, Split
from ceag.datasets.faces import IMAGENET_MEAN, IMAGENET_STD
from ceag.training.engine import train
from ceag.training.models import build_model


def _dataset(n: int, size: int, groups: int, device) -> GroupedDataset:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 255, (n, 3, size, size), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 5, n)).long()
    g = torch.from_numpy(rng.integers(0, groups, n)).long()
    split = Split(x, y, g, IMAGENET_MEAN, IMAGENET_STD)
    small = Split(x[:256], y[:256], g[:256], IMAGENET_MEAN, IMAGENET_STD)
    return GroupedDataset("bench", 5, [f"g{i}" for i in range(groups)], {"train": split, "test": small},
                          flip=True).to(device)


def bare_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, split: Split, batch_size: int) -> None:
    """One epoch of a plain PyTorch loop over ``split`` (shuffled, no flips, no evaluation): the reference."""
    order = torch.randperm(len(split), device=split.y.device)
    for i in range(0, len(split), batch_size):
        idx = order[i:i + batch_size]
        loss = F.cross_entropy(model(split.prepare(split.inputs(idx))), split.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def run(quick: bool = False) -> list[Result]:
    if not torch.cuda.is_available():
        return [Result("GPU images/s, CEAG run / bare loop", None, "x", ">= 0.9", None, "no CUDA GPU here")]
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    n, size, epochs = (2048 if quick else 8192), 200, 2
    cfg = preset("utkface").configs()[-1].replace(method="ceag", tolerance=0.01, prune_epochs=0,
                                                 finetune_epochs=epochs, eval_every=1000, device="cuda",
                                                 val_fraction=0.0)
    data = _dataset(n, size, 5, device)
    dense = build_model("mobilenet_v2", (3, size, size), 5, seed=0).to(device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    train(cfg, data, dense, device)
    torch.cuda.synchronize()
    ours = epochs * n / (time.perf_counter() - start)

    model = build_model("mobilenet_v2", (3, size, size), 5, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    split = data.splits["train"]
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        bare_epoch(model, opt, split, cfg.batch_size)
    torch.cuda.synchronize()
    bare = epochs * n / (time.perf_counter() - start)
    name = torch.cuda.get_device_name()
    return [Result(f"GPU images/s, CEAG run (MobileNet-V2, 200px, batch 128), {name}", ours, "img/s"),
            Result(f"GPU images/s, bare PyTorch loop, same model and batch, {name}", bare, "img/s"),
            Result("GPU images/s, CEAG run / bare loop", ours / bare, "x", ">= 0.9", ours / bare >= 0.9,
                   "the CEAG run includes its per-epoch evaluation")]
