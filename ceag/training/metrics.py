"""Per-group accuracy, loss and the disparity metrics of the paper.

Group reductions are vectorized (``index_add_`` / ``bincount``), never a Python loop over
groups. A group without samples has count 0 and NaN metrics, never a silent zero.

Definitions (fractions in [0, 1]); d = dense model, s = sparse model:
    acc_gap     Delta_g = A_g(d) - A_g(s)            (positive: the group got worse)
    overall gap Delta   = A(d) - A(s)
    excess_gap  psi_g   = Delta_g - Delta
    max_excess_gap      = max_g psi_g
    psi_pw              = max_g Delta_g - min_g Delta_g
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def group_sum(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(num_groups,) sum of ``values`` (N,) within each group id of ``groups`` (N,)."""
    out = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, groups, values)


def group_count(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(num_groups,) number of samples per group, as int64."""
    return torch.bincount(groups, minlength=num_groups)


def group_mean(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(num_groups,) mean of ``values`` per group; NaN for groups with no samples."""
    counts = group_count(groups, num_groups).to(values.dtype)
    sums = group_sum(values, groups, num_groups)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))


@dataclass
class GroupStats:
    """Per-group and overall accuracy and loss of one model on one split (numpy, float64)."""

    n: np.ndarray         # (G,) int
    accuracy: np.ndarray  # (G,) fraction, NaN where n == 0
    loss: np.ndarray      # (G,) mean cross-entropy, NaN where n == 0
    overall_accuracy: float
    overall_loss: float


def group_stats(correct: torch.Tensor, loss: torch.Tensor, groups: torch.Tensor,
                num_groups: int) -> GroupStats:
    """Stats from per-sample correctness (N,) and loss (N,)."""
    correct = correct.double()
    loss = loss.double()
    n = group_count(groups, num_groups).cpu().numpy()
    total = max(int(groups.numel()), 1)
    return GroupStats(
        n=n,
        accuracy=group_mean(correct, groups, num_groups).cpu().numpy(),
        loss=group_mean(loss, groups, num_groups).cpu().numpy(),
        overall_accuracy=float(correct.sum()) / total if groups.numel() else float("nan"),
        overall_loss=float(loss.sum()) / total if groups.numel() else float("nan"),
    )


@dataclass
class Disparity:
    acc_gap: np.ndarray     # (G,) Delta_g
    excess_gap: np.ndarray  # (G,) psi_g
    overall_gap: float      # Delta
    max_excess_gap: float   # max_g psi_g (NaN if no group has samples)
    psi_pw: float           # max_g Delta_g - min_g Delta_g


def disparity(sparse: GroupStats, dense: GroupStats) -> Disparity:
    """Gaps of a sparse model relative to its dense reference on the same split."""
    acc_gap = dense.accuracy - sparse.accuracy
    overall = dense.overall_accuracy - sparse.overall_accuracy
    excess = acc_gap - overall
    valid = ~np.isnan(acc_gap)
    if valid.any():
        max_excess = float(np.max(excess[valid]))
        psi_pw = float(np.max(acc_gap[valid]) - np.min(acc_gap[valid]))
    else:
        max_excess = psi_pw = float("nan")
    return Disparity(acc_gap, excess, overall, max_excess, psi_pw)
