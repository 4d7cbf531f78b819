"""FairGRAPE: fairness-aware gradient pruning (Lin, Kim, Joo, "FairGRAPE: Fairness-aware GRAdient Pruning
mEthod for Face Attribute Classification", ECCV 2022), after the authors' code (GitHub Bernardo1998/FairGRAPE,
``prune.py``: ``fairness_grad``, ``importance_by_class0``).

It selects masks; it does not change the training objective (the run fine-tunes with plain
cross-entropy, as NFT). Per layer, every protected group k has a per-weight importance
I_k(w) = Σ_batches (w · ∂L_k/∂w)², L_k the mean cross-entropy of group k's samples in the batch
(their ``(weights.abs() * grads.abs())**2``). A group's share of the layer's importance,
t_k = Σ_w I_k(w) / Σ_j Σ_w I_j(w), is the target the kept weights should preserve: a greedy selection
repeatedly takes the group whose share among the weights kept so far falls furthest below its target and
keeps that group's most important weight not yet kept, until the layer keeps its count.

Where this differs from their code (each on purpose; ``/tmp/fairgrape_notes.md`` lists them with
line references):

- one forward per batch and one backward per group present (theirs: a forward per group, which
  also moves batch-norm statistics once per group); the model is left unchanged (theirs takes an Adam
  step after every group's backward and never zeroes gradients, so each group's "gradient" holds every
  earlier group's too);
- importances are summed over batches for every group alike (theirs divides the last group's only);
- a group without samples, or with zero importance in a layer, takes no part in that layer's selection
  (theirs fails on an absent group); shares with a zero denominator stay at their previous value
  (theirs turns them into NaN);
- ranking ties are broken by flat index (a stable sort; theirs ``torch.topk``, unspecified);
- the count follows ``MagnitudePruner`` (``count_to_prune``) over the pruner's layers (theirs keeps
  ``int(n * (1 - ratio))`` in every conv and linear layer, the first and last included);
- ``order`` "share" and "importance_share" (their ``delta_p`` 1 and 2) change only the ranking, not the
  importance vectors added to the kept totals (theirs divides those in place too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ceag.training.criteria import Masks, check_sparsity, count_to_prune, layers_of, preserved_state

ORDERS = ("importance", "share", "importance_share")  # their delta_p 0, 1, 2


def group_importance(model: nn.Module, masks: Masks, batches: Iterable[Any], num_groups: int, *,
                     num_batches: int | None = None, train_mode: bool = True) -> dict[str, torch.Tensor]:
    """Per-group, per-weight importance: {layer: (num_groups, *weight.shape) float64}.

    I[k] = Σ_b (|w| · |∂L_{b,k}/∂w| · mask)², L_{b,k} the mean cross-entropy over the samples of group k
    in batch b (a group absent from a batch adds nothing; a pruned weight's importance is 0).
    ``batches``: batches with ``.x`` (prepared inputs), ``.y`` (B,) targets and ``.g`` (B,) group ids in
    [0, num_groups), e.g. ``ceag.datasets.base.batches`` of the training split; the first ``num_batches``
    (None: all) are read. ``train_mode``: batch norm uses batch statistics, as in their
    ``importance_by_class0``; the model's modes, buffers and ``.grad`` fields are left as they were.
    Cost: one forward and, per group present in a batch, one backward (min(num_groups, B) per batch).
    Raises ValueError for a group id out of range, no batch, or ``num_batches`` < 1.
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be at least 1, not {num_groups!r}")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be at least 1 or None, not {num_batches!r}")
    layers = layers_of(model, masks)
    weights = [m.weight for m in layers.values()]
    importance = {n: torch.zeros((num_groups, *w.shape), dtype=torch.float64, device=w.device)
                  for n, w in zip(layers, weights, strict=True)}
    kept = [masks[n].to(w.device) for n, w in zip(layers, weights, strict=True)]
    seen = 0
    with preserved_state(model, train_mode):
        for batch in batches:
            if num_batches is not None and seen == num_batches:
                break
            g = batch.g
            if g.numel() and (int(g.min()) < 0 or int(g.max()) >= num_groups):
                raise ValueError(f"group ids must lie in [0, {num_groups}); this batch has "
                                 f"{int(g.min())}..{int(g.max())}")
            losses = F.cross_entropy(model(batch.x), batch.y, reduction="none")
            present = torch.unique(g).tolist()
            magnitudes = [w.detach().abs() for w in weights]
            for i, k in enumerate(present):
                grads = torch.autograd.grad(losses[g == k].mean(), weights, retain_graph=i < len(present) - 1)
                for name, w_abs, grad, mask in zip(layers, magnitudes, grads, kept, strict=True):
                    importance[name][k] += ((w_abs * grad.abs() * mask).double()) ** 2
            seen += 1
    if seen == 0:
        raise ValueError("FairGRAPE needs at least one batch of training data; none was given")
    return importance


def greedy_keep(importance: np.ndarray, keep: int, *, para_batch: int = 1, order: str = "importance") -> np.ndarray:
    """Which candidates FairGRAPE's greedy selection keeps in one layer: (n,) bool.

    ``importance``: (num_groups, n) float, I_k of each candidate weight (the layer's kept weights, in flat
    order). Targets t_k = row sums / total; kept shares start at 1 / num_groups (their line 550) and are
    p_k = Σ_{kept} I_k / Σ_{kept} Σ_j I_j after each addition. Every ``para_batch + 1`` draws the group
    with the lowest p_k - t_k among groups with importance in the layer is chosen (their
    ``last_race_updated`` counter, lines 557-559); a draw takes that group's next weight in its ranking
    (descending key: I_k for "importance", I_k / Σ_j I_j for "share", I_k² / Σ_j I_j for "importance_share";
    ties by index) and keeps it if not yet kept. Stops at ``keep`` kept (all when ``keep`` >= n). When no
    group has importance, the first ``keep`` candidates are kept.
    Raises ValueError for an unknown ``order``, ``para_batch`` < 0 or a negative or NaN importance.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    if para_batch < 0:
        raise ValueError(f"para_batch must be at least 0, not {para_batch!r}")
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim != 2:
        raise ValueError(f"importance must be (num_groups, n), not shape {imp.shape}")
    if np.isnan(imp).any() or (imp < 0).any():
        raise ValueError("importance must be non-negative and not NaN")
    groups, n = imp.shape
    chosen = np.zeros(n, dtype=bool)
    if keep >= n:
        chosen[:] = True
        return chosen
    totals = imp.sum(axis=1)
    active = totals > 0
    if keep <= 0:
        return chosen
    if not active.any():
        chosen[:keep] = True
        return chosen
    target = totals / totals.sum()
    per_weight = imp.sum(axis=0)
    columns = np.ascontiguousarray(imp.T)  # (n, groups): one row per candidate
    rankings: dict[int, np.ndarray] = {}

    def ranking(k: int) -> np.ndarray:
        if k not in rankings:
            key = imp[k]
            if order != "importance":
                share = np.divide(key, per_weight, out=np.zeros(n), where=per_weight > 0)
                key = share if order == "share" else key * share
            rankings[k] = np.argsort(-key, kind="stable")
        return rankings[k]

    kept_sum = np.zeros(groups)
    share = np.full(groups, 1.0 / groups)
    pointer = np.zeros(groups, dtype=np.int64)
    inactive = np.where(active, 0.0, np.inf)
    count, streak, group = 0, 0, 0
    while count < keep:
        if streak == 0:
            group = int(np.argmin(share - target + inactive))
        streak = streak + 1 if streak < para_batch else 0
        j = ranking(group)[pointer[group]]
        pointer[group] += 1
        if not chosen[j]:
            chosen[j] = True
            count += 1
            kept_sum += columns[j]
            total = kept_sum.sum()
            if total > 0:
                share = kept_sum / total
    return chosen


def fairgrape_masks(model: nn.Module, masks: Masks, batches: Iterable[Any], num_groups: int, sparsity: float, *,
                    rounding: str = "round", num_batches: int | None = None, para_batch: int = 1,
                    order: str = "importance", train_mode: bool = True) -> dict[str, torch.Tensor]:
    """New keep-masks (bool, like ``masks``) at ``sparsity`` chosen by FairGRAPE, layer by layer.

    ``masks``: a ``MagnitudePruner``'s masks (its layers are the ones pruned). Each layer of n weights
    keeps n - ``count_to_prune(sparsity, n, rounding)`` of them (unstructured, layerwise: FairGRAPE's
    targets are per layer), chosen among its kept weights by ``greedy_keep`` on ``group_importance``
    (``batches``, ``num_batches``, ``train_mode``: as there). Pruned weights stay pruned; a sparsity below
    the current one changes nothing. The model is not changed (apply the masks with the pruner).
    Raises ValueError as ``group_importance`` and ``greedy_keep``, and for a sparsity outside [0, 1).
    """
    check_sparsity(sparsity)
    count_to_prune(sparsity, 1, rounding)  # validates rounding
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    importance = group_importance(model, masks, batches, num_groups, num_batches=num_batches, train_mode=train_mode)
    out = {}
    for name, mask in masks.items():
        flat = mask.flatten().cpu()
        alive = torch.nonzero(flat).flatten()
        keep = min(mask.numel() - count_to_prune(sparsity, mask.numel(), rounding), alive.numel())
        candidates = importance[name].reshape(num_groups, -1)[:, alive.to(importance[name].device)]
        chosen = greedy_keep(candidates.cpu().numpy(), keep, para_batch=para_batch, order=order)
        new = torch.zeros_like(flat)
        new[alive[torch.from_numpy(chosen)]] = True
        out[name] = new.view(mask.shape).to(mask.device)
    return out
