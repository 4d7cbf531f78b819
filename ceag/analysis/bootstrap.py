"""Paired bootstrap confidence intervals for per-group accuracy, Δ_g, ψ_g, max_g ψ_g and Ψ_PW.

Semantics follow Fairlearn's ``MetricFrame(n_boot=..., ci_quantiles=...)``: each resample draws
N samples of the split with replacement (not stratified by group, so a group's size varies
between resamples, as it would in a new draw of the data), every metric is recomputed on that
resample, and an interval is the pair of percentiles (linear interpolation, ``numpy.quantile``)
of the resampled values. It is *paired*: the sparse and the dense model are scored on the same
resampled samples, so Δ_g = A_g(dense) − A_g(sparse) keeps their correlation. A group absent from
a resample contributes nothing to that resample (its values are NaN there and the percentiles
ignore them).

Everything is vectorized over resamples and groups: a resample is a row of sample indices, and
one ``bincount`` over (resample, group, sparse correct, dense correct) cells gives every count
(1,000 resamples of a 10,000-sample split with 100 groups: see bench/bootstrap.py).

Percentile intervals of a maximum (max_g ψ_g) are biased upward when several groups are close
to the maximum; read them as the spread of the statistic, not as a guaranteed coverage.

A group with fewer than ``MIN_INTERVAL_SAMPLES`` samples in a split gets no interval there: its
resampled accuracy moves in steps of more than 10 points, and with one sample every resample
repeats it, so a percentile interval would claim a certainty the data does not have (a 1-sample
group's accuracy interval would be 100 to 100 %). Such rows carry ``too_small`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
SPLIT_KEYS = {"train": 0, "val": 1, "test": 2}
# Resamples per chunk: bounds memory to about 8 bytes x CHUNK_ELEMENTS.
CHUNK_ELEMENTS = 4_000_000

GROUP_METRICS = ("accuracy", "dense_accuracy", "acc_gap", "excess_gap")
MIN_INTERVAL_SAMPLES = 10  # fewer samples of a group in a split: no interval (see the module docstring)
RUN_METRICS = ("accuracy", "dense_accuracy", "acc_gap", "max_excess_gap", "psi_pw")


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are drawn: ``n_boot`` resamples, two-sided ``confidence`` in (0, 1), ``seed``."""

    n_boot: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_boot, int) or isinstance(self.n_boot, bool) or not 1 <= self.n_boot <= 100_000:
            raise ValueError(f"invalid n_boot={self.n_boot!r}: the number of resamples must be an integer "
                             "from 1 to 100000 (default 1000)")
        if not isinstance(self.confidence, (int, float)) or not 0 < self.confidence < 1:
            raise ValueError(f"invalid confidence={self.confidence!r}: must be a fraction strictly between 0 and 1 "
                             "(e.g. 0.95 for 95 % intervals)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"invalid seed={self.seed!r}: must be a non-negative integer")

    @property
    def quantiles(self) -> tuple[float, float]:
        low = (1 - self.confidence) / 2
        return low, 1 - low


@dataclass
class SplitIntervals:
    """Point estimates and intervals for one split.

    ``groups``: one row per group id 0..G-1 with ``group_id``, ``n``, ``too_small`` (bool: fewer than
    ``MIN_INTERVAL_SAMPLES`` samples, so no interval) and for each of GROUP_METRICS the value and
    ``<metric>_low`` / ``<metric>_high`` (fractions; the value is NaN for a group without samples, the
    interval NaN for one that is too small). ``overall``: RUN_METRICS with their ``_low`` / ``_high``.
    """

    groups: pd.DataFrame
    overall: dict[str, float]


def resample_indices(n: int, settings: BootstrapSettings, split: str = "test"):
    """The resamples, in chunks: arrays (b, n) of sample indices drawn with replacement, b summing to n_boot."""
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, SPLIT_KEYS.get(split, 3)]))
    chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, settings.n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, settings.n_boot - start), n))


def _cell_counts(cell: np.ndarray, n_cells: int, settings: BootstrapSettings, split: str) -> np.ndarray:
    """(n_boot, n_cells) counts of each cell value in every resample of ``cell`` (N,)."""
    out = np.empty((settings.n_boot, n_cells), dtype=np.int64)
    start = 0
    for idx in resample_indices(len(cell), settings, split):
        b = len(idx)
        codes = cell[idx]
        codes += (np.arange(b, dtype=cell.dtype) * n_cells)[:, None]
        out[start:start + b] = np.bincount(codes.ravel(), minlength=b * n_cells).reshape(b, n_cells)
        start += b
    return out


def _metrics(counts: np.ndarray, num_groups: int) -> dict[str, np.ndarray]:
    """Metrics from cell counts (..., G * 4): cells are group * 4 + 2 * sparse_correct + dense_correct."""
    c = counts.reshape(*counts.shape[:-1], num_groups, 4).astype(np.float64)
    n_g = c.sum(-1)
    sparse_g = c[..., 2] + c[..., 3]
    dense_g = c[..., 1] + c[..., 3]
    total = n_g.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_g > 0, sparse_g / n_g, np.nan)
        dense = np.where(n_g > 0, dense_g / n_g, np.nan)
        overall = sparse_g.sum(-1) / total
        overall_dense = dense_g.sum(-1) / total
    gap = dense - acc
    overall_gap = overall_dense - overall
    excess = gap - overall_gap[..., None]
    present = n_g > 0
    any_present = present.any(-1)
    max_excess = np.where(any_present, np.max(np.where(present, excess, -np.inf), axis=-1), np.nan)
    psi_pw = np.where(any_present, np.max(np.where(present, gap, -np.inf), axis=-1)
                      - np.min(np.where(present, gap, np.inf), axis=-1), np.nan)
    return {"n": n_g, "accuracy": acc, "dense_accuracy": dense, "acc_gap": gap, "excess_gap": excess,
            "overall_accuracy": overall, "overall_dense_accuracy": overall_dense, "overall_gap": overall_gap,
            "max_excess_gap": max_excess, "psi_pw": psi_pw}


def _percentiles(values: np.ndarray, quantiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles along axis 0, ignoring NaN (a group absent from a resample); NaN if all are."""
    lo, hi = np.full(values.shape[1:], np.nan), np.full(values.shape[1:], np.nan)
    ok = ~np.isnan(values)
    full = ok.all(axis=0)
    if full.any():  # the common case, without nanquantile's per-column loop
        q = np.quantile(values[:, full], quantiles, axis=0)
        lo[full], hi[full] = q[0], q[1]
    partial = ok.any(axis=0) & ~full
    if partial.any():
        q = np.nanquantile(values[:, partial], quantiles, axis=0)
        lo[partial], hi[partial] = q[0], q[1]
    return lo, hi


def intervals(y_true, group_id, y_pred, dense_pred, num_groups: int,
              settings: BootstrapSettings | None = None, *, split: str = "test") -> SplitIntervals:
    """Paired percentile bootstrap for one split.

    ``y_true``, ``group_id``, ``y_pred`` (sparse model), ``dense_pred``: (N,) integer arrays;
    group ids in 0..num_groups-1. ``split`` only picks the random stream, so each split's
    intervals are reproducible on their own (and two runs on the same split share resamples).
    Raises ValueError for mismatched lengths, missing dense predictions or out-of-range groups.
    """
    settings = settings or BootstrapSettings()
    y_true, group_id = np.asarray(y_true), np.asarray(group_id)
    y_pred, dense_pred = np.asarray(y_pred), np.asarray(dense_pred)
    if not len(y_true) == len(group_id) == len(y_pred) == len(dense_pred):
        raise ValueError("y_true, group_id, y_pred and dense_pred must have the same length, got "
                         f"{len(y_true)}, {len(group_id)}, {len(y_pred)}, {len(dense_pred)}")
    if pd.isna(dense_pred).any():
        raise ValueError("dense predictions are missing (the run's dense model is not in this results folder), "
                         "so Δ_g and ψ_g cannot be resampled")
    group_id = group_id.astype(np.int64)
    if len(group_id) and (group_id.min() < 0 or group_id.max() >= num_groups):
        raise ValueError(f"group ids must be in 0..{num_groups - 1}, got {group_id.min()}..{group_id.max()}")
    sparse_ok = (y_pred.astype(np.int64) == y_true).astype(np.int64)
    dense_ok = (dense_pred.astype(np.int64) == y_true).astype(np.int64)
    cell = group_id * 4 + 2 * sparse_ok + dense_ok
    n_cells = num_groups * 4
    point = _metrics(np.bincount(cell, minlength=n_cells), num_groups)
    if len(cell) == 0:
        boot = _metrics(np.zeros((settings.n_boot, n_cells), dtype=np.int64), num_groups)
    else:
        boot = _metrics(_cell_counts(cell, n_cells, settings, split), num_groups)
    q = settings.quantiles
    n = point["n"].astype(np.int64)
    too_small = (n > 0) & (n < MIN_INTERVAL_SAMPLES)
    groups = {"group_id": np.arange(num_groups), "n": n, "too_small": too_small}
    for name in GROUP_METRICS:
        lo, hi = _percentiles(boot[name], q)
        lo[too_small], hi[too_small] = np.nan, np.nan
        groups[name], groups[f"{name}_low"], groups[f"{name}_high"] = point[name], lo, hi
    overall = {}
    for name, key in zip(RUN_METRICS, ("overall_accuracy", "overall_dense_accuracy", "overall_gap",
                                       "max_excess_gap", "psi_pw"), strict=True):
        lo, hi = _percentiles(boot[key][:, None], q)
        overall[name], overall[f"{name}_low"], overall[f"{name}_high"] = float(point[key]), float(lo[0]), float(hi[0])
    return SplitIntervals(pd.DataFrame(groups), overall)


def run_intervals(predictions: pd.DataFrame, num_groups: int,
                  settings: BootstrapSettings | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intervals for every split of one run's predictions (``ceag.config.vocabulary.PREDICTION_COLUMNS``).

    Returns (groups, overall): per (split, group) rows as ``SplitIntervals.groups`` with a
    ``split`` column first, and one row per split of the run-level metrics.
    """
    group_frames, overall_rows = [], []
    for split in [s for s in SPLIT_KEYS if s in set(predictions["split"])]:
        part = predictions[predictions["split"] == split]
        res = intervals(part["y_true"].to_numpy(), part["group_id"].to_numpy(), part["y_pred"].to_numpy(),
                        part["dense_pred"].to_numpy(), num_groups, settings, split=split)
        group_frames.append(res.groups.assign(split=split))
        overall_rows.append({"split": split, **res.overall})
    groups = pd.concat(group_frames, ignore_index=True) if group_frames else pd.DataFrame()
    if not groups.empty:
        groups = groups[["split", *[c for c in groups.columns if c != "split"]]]
    return groups, pd.DataFrame(overall_rows)


def indistinguishable_from(low, high, tolerance: float | None):
    """Whether the interval [low, high] contains ``tolerance`` (element-wise; False without one).

    Used for CEAG's ψ_g: a group whose interval contains ε cannot be told apart from the tolerance.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if tolerance is None or (isinstance(tolerance, float) and math.isnan(tolerance)):
        return np.zeros(np.broadcast(low, high).shape, dtype=bool)
    return (low <= tolerance) & (tolerance <= high)
