"""Pruning criteria: per-weight importance scores, and the keep-masks a target sparsity leaves.

Scores come as ``{layer_name: float tensor shaped like the weight}`` for the layers named by a
``MagnitudePruner``'s masks (``{layer_name: bool tensor}``, True = kept; the names are the model's
``named_modules`` names). A pruned weight scores ``-inf``: ranked below every kept weight, it is
dropped first, so a weight once pruned stays pruned (a kept weight may score exactly 0, e.g. SNIP
behind a dead ReLU, and must not swap places with a pruned one).

Criteria:

- ``magnitude``: |w|.
- ``snip`` (Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
  ICLR 2019): connection sensitivity |g ⊙ w|, g the gradient of the training loss, accumulated over
  batches as in the SNIP of Tanaka et al.'s Synaptic-Flow code (``Pruners/pruners.py``: mask gradients
  summed over the prune loader, then the absolute value, then divided by the sum over all layers).
- ``synflow`` (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by iteratively
  conserving synaptic flow", NeurIPS 2020): data-free, iterative; see ``synflow_masks``.

``keep_masks`` turns scores into masks with ``MagnitudePruner``'s counting: ``count_to_prune`` is its
rounding rule (``round`` or ``ceil`` of sparsity x n, ``ceag.training.pruning.count_to_prune``), the
weights are ranked by a stable sort (ties: lower flat index dropped first), and the target is the
cumulative count, so repeated calls never compound.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ceag.training.pruning import batch_norm_after, count_to_prune, set_alive_channels

KINDS = ("unstructured", "global", "structured")
CRITERIA = ("magnitude", "snip", "synflow")
ROW_AGGREGATES = ("l2", "sum")

Masks = Mapping[str, torch.Tensor]
Scores = dict[str, torch.Tensor]


# -- shared checks and helpers ---------------------------------------------------------------
def check_sparsity(sparsity: float) -> None:
    """Raise ValueError unless ``sparsity`` is a fraction in [0, 1)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1), not {sparsity!r}")


def layers_of(model: nn.Module, masks: Masks) -> dict[str, nn.Conv2d | nn.Linear]:
    """The model's modules named by ``masks``, in the masks' order.

    Raises ValueError when a name is not a conv or linear layer of ``model`` or its mask's shape is not
    its weight's.
    """
    modules = dict(model.named_modules())
    out = {}
    for name, mask in masks.items():
        module = modules.get(name)
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise ValueError(f"mask {name!r} names no conv or linear layer of the model")
        if tuple(mask.shape) != tuple(module.weight.shape):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, its weight {tuple(module.weight.shape)}")
        out[name] = module
    return out


def pruned_to_minus_inf(scores: Mapping[str, torch.Tensor], masks: Masks) -> Scores:
    """``scores`` with every pruned weight (mask False) set to ``-inf``."""
    return {n: torch.where(masks[n].to(s.device), s, torch.full_like(s, -math.inf)) for n, s in scores.items()}


@contextlib.contextmanager
def preserved_state(model: nn.Module, train_mode: bool) -> Iterator[None]:
    """Run the body with ``model`` in train (``train_mode``) or eval mode, then put back every module's
    mode and every buffer (batch-norm running statistics and counters): the body may forward in train
    mode without changing the model."""
    modes = {m: m.training for m in model.modules()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train(train_mode)
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, mode in modes.items():
            m.training = mode


# -- scores -> masks ---------------------------------------------------------------------------
def keep_masks(scores: Mapping[str, torch.Tensor], masks: Masks, sparsity: float, *, kind: str = "unstructured",
               rounding: str = "round", row_aggregate: str = "l2") -> dict[str, torch.Tensor]:
    """Keep-masks (bool, shaped like each weight) that drop the lowest-scored weights.

    ``scores``: per-weight scores (any float dtype; higher = more important) for the layers of ``masks``.
    ``sparsity``: the cumulative target, a fraction in [0, 1) of the prunable weights.
    ``kind``: "unstructured" (each layer loses ``count_to_prune(sparsity, n)`` of its n weights),
    "global" (one ranking over all layers, in the masks' order) or "structured" (each layer loses that
    count of its output channels, rows of ``weight.flatten(1)``, ranked by the L2 norm (``row_aggregate``
    "l2", what ``MagnitudePruner`` does with |w|) or the sum ("sum") of their kept weights' scores;
    one row always stays).
    Pruned weights (mask False) are ranked first whatever their score and are never revived: a
    sparsity below the masks' current one leaves them as they are. Raises ValueError for an unknown
    ``kind``, ``rounding`` or ``row_aggregate``, a sparsity outside [0, 1), a missing layer or a NaN score
    of a kept weight.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if row_aggregate not in ROW_AGGREGATES:
        raise ValueError(f"row_aggregate must be one of {', '.join(ROW_AGGREGATES)}, not {row_aggregate!r}")
    check_sparsity(sparsity)
    count_to_prune(sparsity, 1, rounding)  # validates rounding
    missing = [n for n in masks if n not in scores]
    if missing:
        raise ValueError(f"no scores for layer(s) {', '.join(missing)}")
    for name, mask in masks.items():
        if tuple(scores[name].shape) != tuple(mask.shape):
            raise ValueError(f"scores of {name!r} have shape {tuple(scores[name].shape)}, its mask {tuple(mask.shape)}")
        if torch.isnan(scores[name][mask.to(scores[name].device)]).any():
            raise ValueError(f"scores of layer {name!r} contain NaN")
    ranked = pruned_to_minus_inf({n: scores[n] for n in masks}, masks)
    if kind == "global":
        flat = torch.cat([ranked[n].flatten().double() for n in masks])
        keep = _drop_lowest(flat, count_to_prune(sparsity, flat.numel(), rounding))
        out, offset = {}, 0
        for name, mask in masks.items():
            out[name] = keep[offset:offset + mask.numel()].view(mask.shape).to(mask.device) & mask
            offset += mask.numel()
        return out
    out = {}
    for name, mask in masks.items():
        score = ranked[name]
        if kind == "structured":
            rows = torch.where(mask.to(score.device), score, torch.zeros_like(score)).flatten(1)
            agg = rows.norm(dim=1) if row_aggregate == "l2" else rows.sum(dim=1)
            agg = torch.where(mask.flatten(1).any(1).to(agg.device), agg, torch.full_like(agg, -math.inf))
            n_prune = min(count_to_prune(sparsity, agg.numel(), rounding), agg.numel() - 1)
            keep_rows = _drop_lowest(agg, n_prune)
            keep = keep_rows.view(-1, *([1] * (mask.dim() - 1))).expand(mask.shape)
        else:
            keep = _drop_lowest(score.flatten(), count_to_prune(sparsity, mask.numel(), rounding)).view(mask.shape)
        out[name] = keep.to(mask.device) & mask
    return out


def _drop_lowest(score: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Bool keep-vector over a flat score vector without its ``n_prune`` lowest (stable sort: ties in index order)."""
    keep = torch.ones(score.shape, dtype=torch.bool, device=score.device)
    if n_prune > 0:
        keep[torch.sort(score, stable=True).indices[:n_prune]] = False
    return keep


# -- magnitude and SNIP ------------------------------------------------------------------------
@torch.no_grad()
def magnitude_scores(model: nn.Module, masks: Masks) -> Scores:
    """|w| per weight (the weight's dtype), -inf where pruned."""
    layers = layers_of(model, masks)
    return pruned_to_minus_inf({n: m.weight.detach().abs() for n, m in layers.items()}, masks)


def snip_scores(model: nn.Module, masks: Masks, batches: Iterable[Any], *, num_batches: int = 1,
                normalize: bool = True, train_mode: bool = False) -> Scores:
    """SNIP connection sensitivity |Σ_b ∂L_b/∂w ⊙ w| (float64), -inf where pruned.

    ``batches``: training batches with ``.x`` (inputs, prepared) and ``.y`` (B,) int64 targets, e.g.
    ``ceag.datasets.base.batches``; the first ``num_batches`` are used. L_b is batch b's mean
    cross-entropy; the gradients are summed over the batches before the absolute value, as Synaptic-Flow's
    SNIP accumulates mask gradients (∂L/∂c at mask c = 1 is g ⊙ w). ``normalize``: divide by the sum over
    all kept weights of all layers (Lee et al.'s normalized sensitivity; the ranking is the same).
    ``train_mode``: batch norm in train mode (batch statistics); the default is eval mode, as their
    ``prune_loop`` without ``--prune-train-mode``. The model is left as it was: its mode, buffers and
    ``.grad`` fields. Raises ValueError when there is no batch or ``num_batches`` < 1.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, not {num_batches!r}")
    layers = layers_of(model, masks)
    weights = [m.weight for m in layers.values()]
    total = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    seen = 0
    with preserved_state(model, train_mode):
        for batch in batches:
            if seen == num_batches:
                break
            loss = F.cross_entropy(model(batch.x), batch.y)
            for acc, grad in zip(total, torch.autograd.grad(loss, weights), strict=True):
                acc += grad.double()
            seen += 1
    if seen == 0:
        raise ValueError("SNIP needs at least one training batch; none was given")
    scores = {n: (acc * w.detach().double()).abs() * masks[n].to(acc.device)
              for n, w, acc in zip(layers, weights, total, strict=True)}
    if normalize:
        norm = float(sum(float(s.sum()) for s in scores.values()))
        if norm > 0:
            scores = {n: s / norm for n, s in scores.items()}
    return pruned_to_minus_inf(scores, masks)


# -- SynFlow -------------------------------------------------------------------------------------
def synflow_scores(model: nn.Module, masks: Masks, input_shape: tuple[int, ...], *, double: bool = True) -> Scores:
    """One SynFlow scoring: R = sum of the outputs of the linearized model on an all-ones input
    (1, *input_shape); score |∂R/∂θ ⊙ θ| per weight (float64 with ``double``), -inf where pruned.

    Linearized as in Synaptic-Flow's ``SynFlow.score``: every entry of the state dict (parameters and
    batch-norm buffers) replaced by its absolute value, the model in eval mode (their ``prune_loop``
    default). It works on a deep copy: the model, its signs and its buffers are untouched.
    """
    layers_of(model, masks)
    net, names = _linearized_copy(model, masks, double)
    return _synflow_pass(net, names, {n: m.clone() for n, m in masks.items()}, input_shape)


def synflow_masks(model: nn.Module, masks: Masks, input_shape: tuple[int, ...], sparsity: float, *,
                  iterations: int = 100, kind: str = "global", rounding: str = "round",
                  double: bool = True) -> dict[str, torch.Tensor]:
    """Masks at ``sparsity`` by iterative SynFlow: ``iterations`` rounds of score -> ``keep_masks``.

    The kept fraction follows the paper's exponential schedule from the masks' current density d0 (kept /
    prunable weights) to d = 1 - sparsity: round k keeps d0 (d / d0)^(k / iterations) (their
    ``prune_loop``: ``sparsity**((epoch + 1) / epochs)`` from d0 = 1, 100 rounds in the paper); the last
    round uses ``sparsity`` itself. Each round scores the copy with the masks of the round before
    (pruned weights contribute nothing to R); masked batch norms of the copy follow the round's masks.
    ``kind``, ``rounding``: as ``keep_masks`` (structured ranks rows by their summed scores; their default
    scope is global). ``double``: compute in float64 (their published code runs in the model's float32,
    with ``model.double()`` left commented out; products over many layers of |w| leave float32's range).
    The model is untouched (a deep copy is linearized; no sign needs restoring). Raises ValueError for
    ``iterations`` < 1 and as ``keep_masks``.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations!r}")
    check_sparsity(sparsity)
    layers_of(model, masks)
    total = sum(m.numel() for m in masks.values())
    d0 = sum(int(m.sum()) for m in masks.values()) / total
    target = 1.0 - sparsity
    current = {n: m.clone() for n, m in masks.items()}
    if d0 <= target:  # nothing to prune: weights are never revived
        return current
    net, names = _linearized_copy(model, masks, double)
    aggregate = "sum" if kind == "structured" else "l2"
    for k in range(1, iterations + 1):
        step_sparsity = sparsity if k == iterations else 1.0 - d0 * (target / d0) ** (k / iterations)
        scores = _synflow_pass(net, names, current, input_shape)
        current = keep_masks(scores, current, step_sparsity, kind=kind, rounding=rounding, row_aggregate=aggregate)
    return current


def _linearized_copy(model: nn.Module, masks: Masks, double: bool) -> tuple[nn.Module, dict[str, tuple]]:
    """A deep copy in eval mode (float64 with ``double``) with |.| of every state-dict entry; per masked
    layer, (module, |w| before masking, the masked batch norm after it or None)."""
    net = copy.deepcopy(model)
    if double:
        net.double()
    net.eval()
    with torch.no_grad():
        for value in net.state_dict().values():
            value.abs_()
    modules = dict(net.named_modules())
    norms = batch_norm_after(net, set(masks))
    names = {n: (modules[n], modules[n].weight.detach().clone(),
                 norms[n] if n in norms and hasattr(norms[n], "alive_channels") else None) for n in masks}
    return net, names


def _synflow_pass(net: nn.Module, names: dict[str, tuple], masks: Masks, input_shape: tuple[int, ...]) -> Scores:
    weights = []
    with torch.no_grad():
        for name, (module, absolute, bn) in names.items():
            mask = masks[name].to(absolute.device)
            module.weight.copy_(absolute * mask)
            if bn is not None:
                set_alive_channels(bn, mask.flatten(1).any(1))
            weights.append(module.weight)
    ref = next(iter(names.values()))[1]
    x = torch.ones((1, *input_shape), dtype=ref.dtype, device=ref.device)
    grads = torch.autograd.grad(net(x).sum(), weights)
    scores = {n: (g * w).detach().abs() for n, g, w in zip(names, grads, weights, strict=True)}
    return pruned_to_minus_inf(scores, masks)


# -- one entry point ---------------------------------------------------------------------------
def criterion_masks(criterion: str, model: nn.Module, masks: Masks, sparsity: float, *,
                    kind: str = "unstructured", rounding: str = "round", batches: Iterable[Any] | None = None,
                    num_batches: int = 1, input_shape: tuple[int, ...] | None = None,
                    iterations: int = 100, double: bool = True) -> dict[str, torch.Tensor]:
    """New keep-masks at ``sparsity`` by ``criterion`` (one of ``CRITERIA``), for a ``MagnitudePruner``'s
    ``kind`` and ``rounding``.

    "magnitude" and "snip" score once and keep the best (structured: rows by L2 norm of |w| for
    magnitude, as ``MagnitudePruner``; by summed sensitivity for SNIP); "snip" needs ``batches`` and
    uses ``num_batches`` of them; "synflow" needs ``input_shape`` (C, H, W) or (features,) and iterates
    ``iterations`` times (``synflow_masks``). Raises ValueError for an unknown criterion or missing data.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    if criterion == "synflow":
        if input_shape is None:
            raise ValueError("synflow needs the model's input_shape")
        return synflow_masks(model, masks, tuple(input_shape), sparsity, iterations=iterations, kind=kind,
                             rounding=rounding, double=double)
    if criterion == "snip":
        if batches is None:
            raise ValueError("snip needs training batches")
        scores = snip_scores(model, masks, batches, num_batches=num_batches)
        return keep_masks(scores, masks, sparsity, kind=kind, rounding=rounding, row_aggregate="sum")
    return keep_masks(magnitude_scores(model, masks), masks, sparsity, kind=kind, rounding=rounding)
