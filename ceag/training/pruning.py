"""Gradual magnitude pruning with fixed masks.

Masks are kept here (not with ``torch.nn.utils.prune``): after every optimizer step the
weights are multiplied by their masks, so pruned weights are exactly zero in every forward
pass and in every saved state. Pruning is cumulative: a weight once pruned stays pruned,
because its magnitude is zero at the next pruning event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

ROUNDING = ("round", "ceil")
KINDS = ("unstructured", "global", "structured", "channels", "channels_global")
CHANNEL_KINDS = ("channels", "channels_global")

# Chooses channel-group masks: (current masks, sparsity) -> new masks (``ceag.training.structured.channel_masks``).
ChannelChooser = Callable[[Mapping[str, torch.Tensor], float], Mapping[str, torch.Tensor]]


def cubic_sparsity(epoch: int, target: float, prune_epochs: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's schedule s(e) = s_f + (s_i - s_f)(1 - e/E)^3 for e in 0..E, s_f after."""
    if prune_epochs <= 0 or epoch >= prune_epochs:
        return target
    return target + (initial - target) * (1.0 - epoch / prune_epochs) ** 3


def prunable_layers(model: nn.Module, *, dense_first_conv: bool = True,
                    dense_last_layer: bool = True) -> dict[str, nn.Conv2d | nn.Linear]:
    """Conv and linear layers whose weights are pruned, in module order (biases stay dense)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
    skip = set()
    if dense_first_conv and convs:
        skip.add(convs[0])
    if dense_last_layer and layers:
        skip.add(layers[-1][0])
    return {n: m for n, m in layers if n not in skip}


class MagnitudePruner:
    """Owns one boolean mask per prunable layer. ``kind`` (``KINDS``): unstructured | global | structured |
    channels | channels_global.

    "structured" ranks each layer's output channels alone, by the L2 norm of its rows: layers coupled through a
    residual addition or a depthwise convolution lose different channels, and a pruned channel's batch norm
    (unless masked) or bias still outputs a constant, so such masks mostly cannot be taken out of the model.
    "channels" and "channels_global" prune whole channel groups (``ceag.training.structured``): the masks come
    from ``choose`` (``channel_masks`` of the model's groups, layerwise or global, set by the caller, who knows
    the input shape the groups are traced at), and the bias of a pruned channel of a layer without a batch norm
    after it is zeroed with its weights after every step, so every pruned channel outputs zero and removing it
    changes nothing (with ``masked_bn`` for the layers with one).
    ``rounding``: how many weights a layer loses at sparsity s: ``round(s * n)`` or, as in the
    paper's code (``math.ceil`` in src/models/pruning.py), ``ceil(s * n)``.
    ``masked_bn``: the batch norm after a pruned convolution outputs zero for every channel whose
    filter is entirely pruned (the paper's ``MaskedBatchNorm2d``) instead of its bias.
    """

    def __init__(self, model: nn.Module, kind: str = "unstructured", *,
                 dense_first_conv: bool = True, dense_last_layer: bool = True,
                 rounding: str = "round", masked_bn: bool = False):
        if rounding not in ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, not {rounding!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.rounding = rounding
        self.layers = prunable_layers(model, dense_first_conv=dense_first_conv,
                                      dense_last_layer=dense_last_layer)
        if not self.layers:
            raise ValueError("the model has no prunable layer left with these dense-layer settings")
        self.masks = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.layers.items()}
        self._fused: list[torch.Tensor] | None = None  # float copies of the masks for apply_ on a GPU
        self.batch_norms = attach_masked_bn(model, self.layers) if masked_bn else {}
        self.choose: ChannelChooser | None = None
        # channel kinds: the biases zeroed with their rows (layers without a batch norm after them)
        after = batch_norm_after(model, set(self.layers)) if kind in CHANNEL_KINDS else {}
        self._biased = [n for n, m in self.layers.items()
                        if kind in CHANNEL_KINDS and m.bias is not None and n not in after]
        self._bias_masks = {n: self.masks[n].flatten(1).any(1) for n in self._biased}

    @torch.no_grad()
    def prune_to_(self, sparsity: float) -> None:
        """Set masks so that ``sparsity`` (a fraction in [0, 1)) of the prunable weights is zero (channel kinds:
        of each group's channels, or of all groups' channels, as ``choose`` counts them)."""
        self._fused = None
        if self.kind in CHANNEL_KINDS:
            if self.choose is None:
                raise ValueError(f"pruning {self.kind} chooses its masks by channel groups: set the pruner's "
                                 "choose (ceag.training.structured.channel_masks of the model's groups) first")
            chosen = self.choose(self.masks, sparsity)
            for name in self.masks:
                self.masks[name] = chosen[name].to(device=self.masks[name].device, dtype=torch.bool)
        elif self.kind == "global":
            self._prune_global(sparsity)
        else:
            for name, module in self.layers.items():
                score = module.weight.detach().abs() * self.masks[name]
                if self.kind == "structured":
                    self.masks[name] = _channel_mask(score, sparsity, self.rounding)
                else:
                    self.masks[name] = _smallest_out(score.flatten(), sparsity, self.rounding).view_as(score)
        self._sync_batch_norms()
        self.apply_()

    @torch.no_grad()
    def set_masks_(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Install masks chosen elsewhere (a pruning criterion, FairGRAPE): one per prunable layer, shaped
        like its weight, True = kept. The pruned weights are zeroed and masked batch norms follow, as after
        ``prune_to_``. Raises ValueError when the layers or a shape differ from this pruner's.
        """
        if set(masks) != set(self.masks):
            missing, extra = sorted(set(self.masks) - set(masks)), sorted(set(masks) - set(self.masks))
            raise ValueError(f"masks must name this pruner's layers: missing {missing}, unknown {extra}")
        for name, mask in masks.items():
            if tuple(mask.shape) != tuple(self.masks[name].shape):
                raise ValueError(f"mask of {name!r} has shape {tuple(mask.shape)}, the layer's weight "
                                 f"{tuple(self.masks[name].shape)}")
        self._fused = None
        for name in self.masks:  # the layers' order stays the pruner's
            self.masks[name] = masks[name].to(device=self.masks[name].device, dtype=torch.bool, copy=True)
        self._sync_batch_norms()
        self.apply_()

    def _prune_global(self, sparsity: float) -> None:
        scores = [(m.weight.detach().abs() * self.masks[n]).flatten() for n, m in self.layers.items()]
        keep = _smallest_out(torch.cat(scores), sparsity, self.rounding)
        offset = 0
        for name, score in zip(self.layers, scores, strict=True):
            self.masks[name] = keep[offset:offset + score.numel()].view_as(self.masks[name])
            offset += score.numel()

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero the pruned weights (call after every optimizer step).

        On a GPU in one fused launch for all layers (``torch._foreach_mul_``, what PyTorch's own optimizers
        use) instead of one kernel per layer; on a CPU, where the fused form only loops, layer by layer.
        """
        weights = [module.weight for module in self.layers.values()]
        masks = [self.masks[name] for name in self.layers]
        for name in self._biased:  # channel kinds: a pruned unit's bias too
            weights.append(self.layers[name].bias)  # type: ignore[arg-type]  # _biased holds layers with a bias
            masks.append(self._bias_masks[name])
        if weights[0].device.type == "cuda":
            if self._fused is None:  # the masks in the weights' dtype: the fused kernel's fast path needs it
                self._fused = [m.to(w.dtype) for m, w in zip(masks, weights, strict=True)]
            torch._foreach_mul_(weights, self._fused)
        else:
            for weight, mask in zip(weights, masks, strict=True):
                weight.mul_(mask)

    def achieved_sparsity(self) -> float:
        """Fraction of prunable weights that are masked, measured from the masks."""
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return 1.0 - kept / total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.cpu().clone() for n, m in self.masks.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.masks):
            raise ValueError("pruning masks do not match this model's prunable layers")
        self._fused = None
        for n, m in state.items():
            self.masks[n] = m.to(self.masks[n].device, torch.bool)
        self._sync_batch_norms()

    def _sync_batch_norms(self) -> None:
        for name, bn in self.batch_norms.items():
            set_alive_channels(bn, self.masks[name].flatten(1).any(1))
        self._bias_masks = {name: self.masks[name].flatten(1).any(1) for name in self._biased}


def model_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all conv and linear weights (dense layers included)."""
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            total += m.weight.numel()
            zeros += int((m.weight == 0).sum())
    return zeros / total


def count_to_prune(sparsity: float, n: int, rounding: str = "round") -> int:
    """How many of ``n`` weights (or channels) are pruned at ``sparsity``: ``round(sparsity * n)``, or with
    ``rounding`` "ceil" ``min(n, ceil(sparsity * n))``, the same float expression as the paper's code (so
    ceil agrees with theirs). Raises ValueError for another ``rounding``."""
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, not {rounding!r}")
    exact = sparsity * n
    return min(n, math.ceil(exact)) if rounding == "ceil" else int(round(exact))


def _smallest_out(score: torch.Tensor, sparsity: float, rounding: str = "round") -> torch.Tensor:
    """Boolean keep-mask over a flat score vector that drops the ``count_to_prune`` smallest.

    The cumulative target is given as a count, so repeated calls never compound.
    """
    n_prune = count_to_prune(sparsity, score.numel(), rounding)
    keep = torch.ones_like(score, dtype=torch.bool)
    if n_prune > 0:
        # A stable sort keeps ties (e.g. already-pruned zeros) in a deterministic order.
        order = torch.sort(score, stable=True).indices
        keep[order[:n_prune]] = False
    return keep


def _channel_mask(score: torch.Tensor, sparsity: float, rounding: str = "round") -> torch.Tensor:
    """Keep-mask removing the output channels (rows) with the smallest L2 norm; one always stays."""
    norms = score.flatten(1).norm(dim=1)
    n_prune = min(count_to_prune(sparsity, norms.numel(), rounding), norms.numel() - 1)
    keep_rows = torch.ones_like(norms, dtype=torch.bool)
    if n_prune > 0:
        keep_rows[torch.sort(norms, stable=True).indices[:n_prune]] = False
    return keep_rows.view(-1, *([1] * (score.dim() - 1))).expand_as(score).clone()


# -- masked batch norm ----------------------------------------------------------------------
def batch_norm_after(model: nn.Module, conv_names) -> dict[str, nn.BatchNorm2d]:
    """For each named convolution, the BatchNorm2d that directly follows it in module order.

    Holds for every model here (torchvision ResNets and MobileNet-V2, the CIFAR ResNets, the
    demo CNN): a convolution's own batch norm is the next leaf module, with as many channels.
    Convolutions not followed by one are left out.
    """
    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    out = {}
    for (name, module), (_, after) in zip(leaves, leaves[1:], strict=False):
        if (name in conv_names and isinstance(module, nn.Conv2d) and isinstance(after, nn.BatchNorm2d)
                and after.num_features == module.out_channels):
            out[name] = after
    return out


def attach_masked_bn(model: nn.Module, layers) -> dict[str, nn.BatchNorm2d]:
    """Make the batch norms after the convolutions ``layers`` masked; returns them by conv name.

    A masked batch norm multiplies its output by a per-channel 0/1 buffer ``alive_channels``
    (not part of the state dict): a channel whose filter is entirely pruned outputs zero, in
    training and evaluation, and its scale and shift get no gradient. This is what the paper's
    ``MaskedBatchNorm2d`` (src/sparse/masked_bn.py) computes; it also leaves such a channel's
    running statistics untouched, which changes nothing here since the channel's output is zero.
    """
    found = batch_norm_after(model, set(layers))
    for bn in found.values():
        if not hasattr(bn, "alive_channels"):
            ref = bn.weight if bn.affine else bn.running_mean
            device = None if ref is None else ref.device
            bn.register_buffer("alive_channels", torch.ones(bn.num_features, device=device), persistent=False)
            bn.all_alive = True  # type: ignore[assignment]  # torch's Module.__setattr__ takes Tensor | Module
            if type(bn) is nn.BatchNorm2d and bn.affine:
                bn.__class__ = MaskedBatchNorm2d
            else:
                bn.register_forward_hook(zero_dead_channels)
    return found


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """A batch norm whose dead channels (``alive_channels`` 0) output zero: ``attach_masked_bn`` turns
    a model's ``nn.BatchNorm2d`` into one in place (same parameters, buffers and state-dict keys).

    The mask multiplies the (C,) scale and shift, not the (N, C, H, W) output: a dead channel's
    x̂ · 0 + 0 is the same zero, its scale, shift and input get zero gradient, as when the output
    is masked, without one more pass over the activations forward and backward. The rest is
    ``torch.nn.modules.batchnorm._BatchNorm.forward``.
    """

    alive_channels: torch.Tensor  # a buffer, registered by attach_masked_bn
    all_alive: bool

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.all_alive:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        alive = self.alive_channels.to(self.weight.dtype)
        return torch.nn.functional.batch_norm(
            input, self.running_mean if track else None, self.running_var if track else None,
            self.weight * alive, self.bias * alive, use_batch, factor, self.eps)


def set_alive_channels(bn: nn.BatchNorm2d, alive: torch.Tensor) -> None:
    """Set which channels of a masked batch norm are alive ((C,) bool)."""
    channels: torch.Tensor = bn.alive_channels  # type: ignore[assignment]  # torch's Module.__getattr__
    with torch.no_grad():
        channels.copy_(alive.to(channels))
    # checked on the host in forward: no device sync per step
    bn.all_alive = bool(alive.all())  # type: ignore[assignment]  # torch's Module.__setattr__ takes Tensor | Module


def restore_masked_bn(model: nn.Module, *, dense_first_conv: bool = True, dense_last_layer: bool = True) -> None:
    """Masked batch norm for a pruned model loaded from a state dict (masks read off the zero weights)."""
    layers = prunable_layers(model, dense_first_conv=dense_first_conv, dense_last_layer=dense_last_layer)
    for name, bn in attach_masked_bn(model, layers).items():
        set_alive_channels(bn, (layers[name].weight != 0).flatten(1).any(1))


def zero_dead_channels(module: nn.Module, inputs, output: torch.Tensor):
    """Forward hook of a masked batch norm that is not a plain ``nn.BatchNorm2d``: dead channels output zero."""
    if module.all_alive:
        return None
    shape = (1, -1) + (1,) * (output.dim() - 2)
    alive: torch.Tensor = module.alive_channels  # type: ignore[assignment]  # torch's Module.__getattr__
    return output * alive.to(output.dtype).view(shape)
