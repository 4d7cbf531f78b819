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

Two more columns serve the verdicts (``ceag.analysis.verdicts``):

- ``excess_gap_corrected_low`` / ``_high``: the ψ_g interval widened for the number m of groups
  with an interval in the split, so that all m hold together at the chosen confidence. With
  ``correction="bonferroni"`` each is at 1 − (1 − confidence) / m (Bonferroni, 1936; Dunn, 1961);
  with ``"none"`` at the chosen confidence. Each is the wider of the percentile interval and
  ψ_g ± z · se, with se the formula below: a group with only a few samples on which the two models
  disagree has resamples that barely vary (none at all when it has no such sample), and its
  percentile interval alone covers the truth far less often than stated (measured in
  bench/verdicts.py); the formula borrows the split's rate of changed answers instead.
- ``min_detectable_gap``: the smallest |ψ_g| the split's size lets one tell from zero at the
  chosen confidence (uncorrected), from a stated formula rather than the resamples:
  z · sqrt((1 − n_g / N) · d / n_g), with z the normal quantile at (1 + confidence) / 2, n_g the
  group's samples, N the split's and d the split's share of samples on which exactly one of the
  two models is right. It is the standard error of ψ_g = (1 − n_g/N)(Δ_g − Δ_rest) when every
  group has the split's rate d of changed answers and no true gap (the paired, McNemar-type
  variance of a difference of accuracies on the same samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from ceag.config.vocabulary import CORRECTIONS

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
    """How intervals are drawn: ``n_boot`` resamples, two-sided ``confidence`` in (0, 1), ``seed``, and the
    ``correction`` (one of CORRECTIONS) applied to the ψ_g intervals that verdicts against ε read."""

    n_boot: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0
    correction: str = "bonferroni"

    def __post_init__(self) -> None:
        if not isinstance(self.n_boot, int) or isinstance(self.n_boot, bool) or not 1 <= self.n_boot <= 100_000:
            raise ValueError(f"invalid n_boot={self.n_boot!r}: the number of resamples must be an integer "
                             "from 1 to 100000 (default 1000)")
        if not isinstance(self.confidence, (int, float)) or not 0 < self.confidence < 1:
            raise ValueError(f"invalid confidence={self.confidence!r}: must be a fraction strictly between 0 and 1 "
                             "(e.g. 0.95 for 95 % intervals)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"invalid seed={self.seed!r}: must be a non-negative integer")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"invalid correction={self.correction!r}: must be one of {', '.join(CORRECTIONS)}")

    @property
    def quantiles(self) -> tuple[float, float]:
        low = (1 - self.confidence) / 2
        return low, 1 - low

    def corrected_confidence(self, m: int) -> float:
        """The confidence of each of ``m`` intervals that hold together at ``confidence`` (Bonferroni), or
        ``confidence`` itself without a correction or with one interval."""
        if self.correction == "none" or m <= 1:
            return self.confidence
        return 1 - (1 - self.confidence) / m

    def z(self) -> float:
        """The two-sided normal quantile at ``confidence`` (1.96 at 95 %)."""
        return NormalDist().inv_cdf((1 + self.confidence) / 2)


@dataclass
class SplitIntervals:
    """Point estimates and intervals for one split.

    ``groups``: one row per group id 0..G-1 with ``group_id``, ``n``, ``too_small`` (bool: fewer than
    ``MIN_INTERVAL_SAMPLES`` samples, so no interval) and for each of GROUP_METRICS the value and
    ``<metric>_low`` / ``<metric>_high`` (fractions; the value is NaN for a group without samples, the
    interval NaN for one that is too small), then ``excess_gap_corrected_low`` / ``_high`` and
    ``min_detectable_gap`` (see the module docstring). ``overall``: RUN_METRICS with their ``_low`` /
    ``_high``, ``intervals`` (m, the groups with an interval), ``corrected_confidence`` and
    ``discordance`` (d).
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


def cell_metrics(counts: np.ndarray, num_groups: int) -> dict[str, np.ndarray]:
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


def percentiles(values: np.ndarray, quantiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
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
    point = cell_metrics(np.bincount(cell, minlength=n_cells), num_groups)
    if len(cell) == 0:
        boot = cell_metrics(np.zeros((settings.n_boot, n_cells), dtype=np.int64), num_groups)
    else:
        boot = cell_metrics(_cell_counts(cell, n_cells, settings, split), num_groups)
    q = settings.quantiles
    n = point["n"].astype(np.int64)
    too_small = (n > 0) & (n < MIN_INTERVAL_SAMPLES)
    groups = {"group_id": np.arange(num_groups), "n": n, "too_small": too_small}
    for name in GROUP_METRICS:
        lo, hi = percentiles(boot[name], q)
        lo[too_small], hi[too_small] = np.nan, np.nan
        groups[name], groups[f"{name}_low"], groups[f"{name}_high"] = point[name], lo, hi
    overall = {}
    m = int(((n > 0) & ~too_small).sum())
    corrected = settings.corrected_confidence(m)
    low = (1 - corrected) / 2
    lo, hi = percentiles(boot["excess_gap"], (low, 1 - low))
    discordance = float((sparse_ok != dense_ok).mean()) if len(cell) else float("nan")
    # The wider of the resampled interval and the one from the split's rate of changed answers: a small group
    # with few changed answers has resamples that barely vary, and its percentile interval alone would miss
    # the truth far more often than stated (bench/verdicts.py).
    z_corrected = NormalDist().inv_cdf(1 - low)
    half = min_detectable_gap(n, len(cell), discordance, z_corrected)
    with np.errstate(invalid="ignore"):
        lo = np.fmin(lo, point["excess_gap"] - half)
        hi = np.fmax(hi, point["excess_gap"] + half)
    lo[too_small | (n == 0)], hi[too_small | (n == 0)] = np.nan, np.nan
    groups["excess_gap_corrected_low"], groups["excess_gap_corrected_high"] = lo, hi
    groups["min_detectable_gap"] = min_detectable_gap(n, len(cell), discordance, settings.z())
    for name, key in zip(RUN_METRICS, ("overall_accuracy", "overall_dense_accuracy", "overall_gap",
                                       "max_excess_gap", "psi_pw"), strict=True):
        lo, hi = percentiles(boot[key][:, None], q)
        overall[name], overall[f"{name}_low"], overall[f"{name}_high"] = float(point[key]), float(lo[0]), float(hi[0])
    overall.update(intervals=m, corrected_confidence=corrected, discordance=discordance)
    return SplitIntervals(pd.DataFrame(groups), overall)


def min_detectable_gap(n_group, n_split: int, discordance: float, z: float) -> np.ndarray:
    """z · sqrt((1 − n_g/N) · d / n_g) per group (fractions; NaN for a group without samples or a split of one
    group only). ``n_group``: (G,) sample counts; ``n_split``: N; ``discordance``: d, the split's share of
    samples on which exactly one of the sparse and the dense model is right; ``z``: the normal quantile
    (``BootstrapSettings.z``). See the module docstring for where the formula comes from."""
    n_g = np.asarray(n_group, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (1 - n_g / max(n_split, 1)) * discordance / n_g
    out = z * np.sqrt(var)
    out[(n_g <= 0) | (n_g >= n_split)] = np.nan
    return out


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
