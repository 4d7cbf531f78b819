"""A mitigation against plain fine-tuning (NFT) across seeds: is its improvement real?

For a cell (dataset, model, sparsity, method, tolerance, pruning criterion, pruning kind) and every seed with both
a run of the mitigation and an NFT run from the same dense model pruned by the same criterion and kind
(``pair_runs``), the
difference mitigation − NFT of each metric (max_g ψ_g, Ψ_PW, accuracy, and each group's ψ_g), averaged over
the seeds, with an interval that counts both sources of chance:

1. **seeds**: which training runs we happened to get. Each replicate draws the seeds with
   replacement (the outer level of a hierarchical bootstrap: Davison and Hinkley, 1997, §3.8,
   resampling the top level of a two-stage design; Saravanan et al., 2020, for experiments over seeds).
2. **samples**: which samples the split happened to hold. Each replicate draws the split's
   samples with replacement once and scores every run of every seed on that same draw: the splits
   are fixed by the data seed, not the run's (``ceag.datasets.splitting.DATA_SEED``), so all the
   runs are evaluated on the same samples and their sampling errors are shared, not independent.
   This keeps the pairing of NFT and the mitigation (same seed, same samples) and of seeds (same
   samples).

With several seeds the replicates are read as two variances, with the seeds drawn again and without,
and the interval is the mean difference ± Student's t times the square root of their sum, the seeds'
share scaled by S/(S − 1) and the degrees of freedom Satterthwaite's (``_seed_interval``): a
percentile interval of the replicates alone is too narrow with a handful of seeds (bench/verdicts.py).
With one seed, the seed level has nothing to draw from: the interval is the percentile interval of the
samples' resamples, seed-to-seed variation is unknown, and the verdicts say so.

Resampling the samples is done on *patterns*: a sample's group together with, for every run, whether
the sparse and the dense model got it right. Drawing N samples with replacement is drawing a
multinomial over the distinct patterns with their frequencies, exactly; there are few patterns (most
samples are right under every model), so 1,000 replicates of a 20,000-sample split cost milliseconds.

The difference of maxima (max_g ψ_g) is a difference of two upward-biased statistics (a maximum over
noisy groups); the bias largely cancels between two runs on the same samples, but its interval's
coverage is checked by simulation in bench/verdicts.py rather than assumed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from ceag.analysis.bootstrap import MIN_INTERVAL_SAMPLES, SPLIT_KEYS, BootstrapSettings, cell_metrics, percentiles

BASELINE = "nft"
RUN_METRICS = ("max_excess_gap", "psi_pw", "accuracy")
GROUP_METRIC = "excess_gap"
COLUMNS = ["split", "metric", "group_id", "baseline", "baseline_low", "baseline_high", "mitigation", "mitigation_low",
           "mitigation_high", "diff", "diff_low", "diff_high", "seeds"]
# what each metric can be (fractions): a mean's interval is cut to it, a difference's to its span
RANGES = {"max_excess_gap": (-1.0, 1.0), "psi_pw": (0.0, 1.0), "accuracy": (0.0, 1.0), GROUP_METRIC: (-1.0, 1.0)}
CACHE_VERSION = 5  # the method: a change of it must never be served from an older cache (5: pruning kinds apart)
DEFAULT_CRITERION = "magnitude"  # what a run's config leaves unsaid
DEFAULT_PRUNING = "unstructured"  # the pruning kind of a run whose config (or row) names none


@dataclass(frozen=True)
class Comparison:
    """One mitigation cell against NFT: its setting and, per seed, (seed, NFT run id, mitigation run id).
    ``criterion`` and ``pruning``: the pruning criterion and kind of the cell, and of the NFT runs it is paired
    with."""

    dataset: str
    model: str
    sparsity: float
    method: str
    tolerance: float | None
    pairs: tuple[tuple[int, str, str], ...]
    stamps: tuple[str, ...] = ()  # when each run finished: a re-run under the same id changes the key
    criterion: str = DEFAULT_CRITERION
    pruning: str = DEFAULT_PRUNING

    @property
    def seeds(self) -> int:
        return len(self.pairs)

    @property
    def run_ids(self) -> list[str]:
        return [r for _, base, mit in self.pairs for r in (base, mit)]

    @property
    def mitigation_ids(self) -> list[str]:
        return [mit for _, _, mit in self.pairs]

    def key(self, split: str, settings: BootstrapSettings) -> str:
        text = json.dumps([CACHE_VERSION, self.pairs, self.stamps, self.criterion, self.pruning, split, settings.n_boot,
                           settings.confidence, settings.seed, settings.correction])
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def pair_runs(runs: pd.DataFrame) -> list[Comparison]:
    """The comparisons a store holds: for every cell of a mitigation (any method but NFT), its runs paired by
    seed with an NFT run of the same dataset, model, sparsity, seed, dense model, pruning criterion and pruning
    kind (the newest where several).

    ``runs``: rows with run_id, status, dataset, model, method, criterion, pruning, sparsity, tolerance, seed,
    dense_key and finished_at (``queries.comparison_runs``; without a criterion column every run counts as pruned
    by magnitude, without a pruning column as unstructured); only finished runs count. A cell without any pair
    is left out.

    The criterion and the kind pair like with like: CEAG pruned by SNIP is measured against NFT pruned by SNIP,
    CEAG pruning channels against NFT pruning channels, so the difference is the fine-tuning's, not the
    pruning's. A method that chooses its own masks (FairGRAPE) is
    recorded with the default criterion, magnitude, and so meets NFT pruned by magnitude: the plain pipeline
    it replaces (same dense model, schedule and fine-tuning; only the masks differ), so its difference is
    what its group-aware masks change against the usual ones.
    """
    done = runs[runs["status"] == "finished"].sort_values("finished_at", ascending=False, na_position="last")
    criterion = done["criterion"].fillna(DEFAULT_CRITERION) if "criterion" in done else DEFAULT_CRITERION
    pruning = done["pruning"].fillna(DEFAULT_PRUNING) if "pruning" in done else DEFAULT_PRUNING
    done = done.assign(sparsity_key=done["sparsity"].astype(float).round(9),
                       tol=done["tolerance"].astype(float).fillna(-1.0).round(9), finished_at=done["finished_at"]
                       .astype(str), criterion=criterion, pruning=pruning)
    keys = ["dataset", "model", "sparsity_key", "seed", "dense_key", "criterion", "pruning"]
    base = done[done["method"] == BASELINE].drop_duplicates(keys)[[*keys, "run_id", "finished_at"]]
    cell = ["dataset", "model", "sparsity_key", "method", "tol", "criterion", "pruning"]
    others = done[done["method"] != BASELINE].drop_duplicates([*cell, "seed"])
    pairs = others.merge(base, on=keys, suffixes=("", "_base")).sort_values([*cell, "seed"], kind="stable")
    out = []
    for (dataset, model, sparsity, method, tol, crit, kind), part in pairs.groupby(cell, sort=True):
        seeds = part["seed"].astype(int).tolist()
        out.append(Comparison(dataset, model, float(sparsity), method, None if tol < 0 else float(tol),
                              tuple(zip(seeds, part["run_id_base"], part["run_id"], strict=True)),
                              tuple(x for pair in zip(part["finished_at_base"], part["finished_at"], strict=True)
                                    for x in pair), str(crit), str(kind)))
    return out


def _codes(base: pd.DataFrame, mit: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample ids, group ids, 4-bit codes 8·nft_sparse + 4·nft_dense + 2·mit_sparse + mit_dense) of one seed."""
    base, mit = base.sort_values("sample_id", kind="stable"), mit.sort_values("sample_id", kind="stable")
    ids = base["sample_id"].to_numpy()
    if not np.array_equal(ids, mit["sample_id"].to_numpy()) or not np.array_equal(
            base["y_true"].to_numpy(), mit["y_true"].to_numpy()):
        raise ValueError("the NFT and the mitigation runs were not evaluated on the same samples")
    if base["dense_pred"].isna().any() or mit["dense_pred"].isna().any():
        raise ValueError("a run's dense predictions are missing, so its gaps cannot be resampled")
    y = base["y_true"].to_numpy(np.int64)
    bits = [(frame[col].to_numpy(np.int64) == y).astype(np.int64)
            for frame in (base, mit) for col in ("y_pred", "dense_pred")]
    return ids, base["group_id"].to_numpy(np.int64), 8 * bits[0] + 4 * bits[1] + 2 * bits[2] + bits[3]


def _seed_metrics(cells: np.ndarray, num_groups: int) -> tuple[dict, dict]:
    """NFT's and the mitigation's metrics from cell counts (..., G·16)."""
    c = cells.reshape(*cells.shape[:-1], num_groups, 2, 2, 2, 2)
    base = c.sum(axis=(-1, -2)).reshape(*cells.shape[:-1], num_groups * 4)
    mit = c.sum(axis=(-3, -4)).reshape(*cells.shape[:-1], num_groups * 4)
    return cell_metrics(base, num_groups), cell_metrics(mit, num_groups)


def _values(metrics: dict) -> dict[str, np.ndarray]:
    return {"max_excess_gap": metrics["max_excess_gap"], "psi_pw": metrics["psi_pw"],
            "accuracy": metrics["overall_accuracy"], GROUP_METRIC: metrics["excess_gap"]}


def compare_split(frames: list[tuple[pd.DataFrame, pd.DataFrame]], num_groups: int, split: str,
                  settings: BootstrapSettings | None = None) -> pd.DataFrame:
    """The across-seed comparison on one split.

    ``frames``: per seed, (NFT predictions, mitigation predictions) of that split, each with
    sample_id, y_true, group_id, y_pred and dense_pred (``PREDICTION_COLUMNS``). Returns COLUMNS rows:
    one per run metric (group_id −1) and one per group for ψ_g; ``baseline`` and ``mitigation`` are
    the means over seeds, ``diff`` = mitigation − baseline with its interval (fractions). The intervals
    of ``baseline`` and ``mitigation`` themselves (the same replicates) are at ``confidence`` for the
    run metrics and, for the groups' ψ_g, widened for the number of groups with samples as
    ``settings.correction`` says: they back verdicts about the worst group, which is chosen among all.
    Raises ValueError when the runs of a seed were not scored on the same samples.
    """
    settings = settings or BootstrapSettings()
    if not frames:
        raise ValueError("no seed with both an NFT and a mitigation run")
    seeds = len(frames)
    per_seed = [_codes(b, m) for b, m in frames]
    n_cells = num_groups * 16
    # seeds evaluated on the same samples share each replicate's draw; others get their own
    families: dict[bytes, list[int]] = {}
    for i, (ids, _, _) in enumerate(per_seed):
        families.setdefault(hashlib.sha256(np.ascontiguousarray(ids).tobytes()).digest(), []).append(i)
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, SPLIT_KEYS.get(split, 3), 7]))
    boot_cells = np.zeros((settings.n_boot, seeds, n_cells))
    point_cells = np.zeros((seeds, n_cells))
    for members in families.values():
        groups = per_seed[members[0]][1]
        joint = np.stack([groups, *[per_seed[i][2] for i in members]], axis=1)
        patterns, first, counts = np.unique(joint, axis=0, return_index=True, return_counts=True)
        n = int(counts.sum())
        draws = rng.multinomial(n, counts / n, size=settings.n_boot).astype(float)  # (B, K)
        for i in members:
            cell = groups[first] * 16 + per_seed[i][2][first]  # each pattern's cell for seed i
            onehot = np.zeros((len(patterns), n_cells))
            onehot[np.arange(len(patterns)), cell] = 1.0
            boot_cells[:, i] = draws @ onehot
            point_cells[i] = counts @ onehot
    b_point, m_point = (_values(x) for x in _seed_metrics(point_cells, num_groups))
    b_boot, m_boot = (_values(x) for x in _seed_metrics(boot_cells, num_groups))
    weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=settings.n_boot).astype(float)  # (B, S)
    present = int((point_cells.reshape(seeds, num_groups, 16).sum((0, 2)) > 0).sum())
    corrected = 1 - settings.corrected_confidence(present)
    rows = []
    ones = np.ones_like(weights)
    for name in (*RUN_METRICS, GROUP_METRIC):
        diff_boot = m_boot[name] - b_boot[name]  # (B, S) or (B, S, G)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a group without samples: NaN, as it should be
            base_mean = np.atleast_1d(np.nanmean(b_point[name], axis=0))
            mit_mean = np.atleast_1d(np.nanmean(m_point[name], axis=0))
            diff = np.atleast_1d(np.nanmean(m_point[name] - b_point[name], axis=0))
        level = settings.confidence if name != GROUP_METRIC else 1 - corrected
        lo, hi = _seed_interval(diff, diff_boot, weights, ones, settings.confidence)
        b_lo, b_hi = _seed_interval(base_mean, b_boot[name], weights, ones, level)
        m_lo, m_hi = _seed_interval(mit_mean, m_boot[name], weights, ones, level)
        # a t interval can pass the ends of what the metric can be: it is cut there
        low_end, high_end = RANGES[name]
        b_lo, m_lo = np.maximum(b_lo, low_end), np.maximum(m_lo, low_end)
        b_hi, m_hi = np.minimum(b_hi, high_end), np.minimum(m_hi, high_end)
        lo, hi = np.maximum(lo, low_end - high_end), np.minimum(hi, high_end - low_end)
        if name == GROUP_METRIC:  # as bootstrap.intervals: a group with too few samples gets no interval
            few = point_cells.reshape(seeds, num_groups, 16).sum(2).min(0) < MIN_INTERVAL_SAMPLES
            for values in (lo, hi, b_lo, b_hi, m_lo, m_hi):
                values[few] = np.nan
        group_ids = range(num_groups) if name == GROUP_METRIC else [-1]
        for j, gid in enumerate(group_ids):
            rows.append({"split": split, "metric": name, "group_id": gid, "baseline": float(base_mean[j]),
                         "baseline_low": float(b_lo[j]), "baseline_high": float(b_hi[j]),
                         "mitigation": float(mit_mean[j]), "mitigation_low": float(m_lo[j]),
                         "mitigation_high": float(m_hi[j]), "diff": float(diff[j]), "diff_low": float(lo[j]),
                         "diff_high": float(hi[j]), "seeds": seeds})
    return pd.DataFrame(rows, columns=COLUMNS)


def _seed_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over seeds of (B, S) or (B, S, G) replicates, ignoring NaN (a group absent from a seed);
    returns (B, k)."""
    w = weights if values.ndim == 2 else weights[:, :, None]
    ok = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((np.where(ok, values, 0) * w).sum(1) / (w * ok).sum(1)).reshape(len(values), -1)


def _seed_interval(point: np.ndarray, boot: np.ndarray, weights: np.ndarray, ones: np.ndarray,
                   confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a mean over S seeds from the replicates ``boot`` (B, S[, G]).

    One seed: the percentile interval of the samples' resamples (seed-to-seed variation unknown).
    Several: the replicates give two variances, with the seeds drawn again (``weights``) and without
    (``ones``); their difference is the seeds' share, scaled by S/(S − 1) because resampling S values
    with replacement keeps only (S − 1)/S of their variance, and the interval is
    point ± t · sqrt(samples' share + seeds' share) with Satterthwaite's (1946) degrees of freedom
    (S − 1 when the seeds' share is all there is, many when the samples' is). The percentile interval
    of the replicates alone is too narrow with 3 or 5 seeds (bench/verdicts.py measured it).
    """
    from scipy.special import stdtrit

    seeds = weights.shape[1]
    if seeds == 1:
        return percentiles(_seed_mean(boot, ones), ((1 - confidence) / 2, (1 + confidence) / 2))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        total = np.nanvar(_seed_mean(boot, weights), axis=0, ddof=1)
        samples = np.nanvar(_seed_mean(boot, ones), axis=0, ddof=1)
        between = np.maximum(total - samples, 0) * seeds / (seeds - 1)
        variance = samples + between
        dof = np.where(between > 0, variance ** 2 / (between ** 2 / (seeds - 1)), np.inf)
        quantile = np.where(np.isinf(dof), NormalDist().inv_cdf((1 + confidence) / 2),
                            stdtrit(np.where(np.isinf(dof), 1.0, dof), (1 + confidence) / 2))
        half = quantile * np.sqrt(variance)
    return point - half, point + half


def compare(comparison: Comparison, predictions: Mapping[str, pd.DataFrame], split: str,
            settings: BootstrapSettings | None = None) -> pd.DataFrame:
    """``compare_split`` for one Comparison, from each run's predictions (run_id -> PREDICTION_COLUMNS frame)."""
    frames = []
    for _, base, mit in comparison.pairs:
        b, m = predictions[base], predictions[mit]
        frames.append((b[b["split"] == split], m[m["split"] == split]))
    num_groups = int(max(int(f["group_id"].max()) for pair in frames for f in pair if len(f)) + 1)
    return compare_split(frames, num_groups, split, settings)
