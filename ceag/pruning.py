"""Gradual magnitude pruning with fixed masks.

Masks are kept here (not with ``torch.nn.utils.prune``): after every optimizer step the
weights are multiplied by their masks, so pruned weights are exactly zero in every forward
pass and in every saved state. Pruning is cumulative: a weight once pruned stays pruned,
because its magnitude is zero at the next pruning event.
"""

from __future__ import annotations

import torch
from torch import nn


def cubic_sparsity(epoch: int, target: float, prune_epochs: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's schedule s(e) = s_f + (s_i - s_f)(1 - e/E)^3 for e in 0..E, s_f after."""
    if prune_epochs <= 0 or epoch >= prune_epochs:
        return target
    return target + (initial - target) * (1.0 - epoch / prune_epochs) ** 3


def prunable_layers(model: nn.Module, *, dense_first_conv: bool = True,
                    dense_last_layer: bool = True) -> dict[str, nn.Module]:
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
    """Owns one boolean mask per prunable layer. ``kind``: unstructured | global | structured."""

    def __init__(self, model: nn.Module, kind: str = "unstructured", *,
                 dense_first_conv: bool = True, dense_last_layer: bool = True):
        self.kind = kind
        self.layers = prunable_layers(model, dense_first_conv=dense_first_conv,
                                      dense_last_layer=dense_last_layer)
        if not self.layers:
            raise ValueError("the model has no prunable layer left with these dense-layer settings")
        self.masks = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.layers.items()}

    @torch.no_grad()
    def prune_to_(self, sparsity: float) -> None:
        """Set masks so that ``sparsity`` (a fraction in [0, 1)) of the prunable weights is zero."""
        if self.kind == "global":
            self._prune_global(sparsity)
        else:
            for name, module in self.layers.items():
                score = module.weight.detach().abs() * self.masks[name]
                if self.kind == "structured":
                    self.masks[name] = _channel_mask(score, sparsity)
                else:
                    self.masks[name] = _smallest_out(score.flatten(), sparsity).view_as(score)
        self.apply_()

    def _prune_global(self, sparsity: float) -> None:
        scores = [(m.weight.detach().abs() * self.masks[n]).flatten() for n, m in self.layers.items()]
        keep = _smallest_out(torch.cat(scores), sparsity)
        offset = 0
        for name, score in zip(self.layers, scores, strict=True):
            self.masks[name] = keep[offset:offset + score.numel()].view_as(self.masks[name])
            offset += score.numel()

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero the pruned weights (call after every optimizer step)."""
        for name, module in self.layers.items():
            module.weight.mul_(self.masks[name])

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
        for n, m in state.items():
            self.masks[n] = m.to(self.masks[n].device, torch.bool)


def model_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all conv and linear weights (dense layers included)."""
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            total += m.weight.numel()
            zeros += int((m.weight == 0).sum())
    return zeros / total


def _smallest_out(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean keep-mask over a flat score vector that drops the round(sparsity * n) smallest.

    The cumulative target is given as a count, so repeated calls never compound.
    """
    n_prune = int(round(sparsity * score.numel()))
    keep = torch.ones_like(score, dtype=torch.bool)
    if n_prune > 0:
        # A stable sort keeps ties (e.g. already-pruned zeros) in a deterministic order.
        order = torch.sort(score, stable=True).indices
        keep[order[:n_prune]] = False
    return keep


def _channel_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing the output channels (rows) with the smallest L2 norm; one always stays."""
    norms = score.flatten(1).norm(dim=1)
    n_prune = min(int(round(sparsity * norms.numel())), norms.numel() - 1)
    keep_rows = torch.ones_like(norms, dtype=torch.bool)
    if n_prune > 0:
        keep_rows[torch.sort(norms, stable=True).indices[:n_prune]] = False
    return keep_rows.view(-1, *([1] * (score.dim() - 1))).expand_as(score).clone()
