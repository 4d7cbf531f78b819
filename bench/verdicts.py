"""Do ceag's intervals and verdicts mean what they say? Simulated audits where the truth is known.

Every audit draws a test split from a population whose per-group probabilities are set, so the true
ψ_g, max_g ψ_g and Ψ_PW are known, then runs the product's own functions on it at their defaults
(``ceag.analysis.bootstrap.intervals`` with 1,000 resamples at 95 %, ``ceag.analysis.verdicts
.tolerance_verdicts``, ``ceag.analysis.seeds.compare_split``, the last at 500 resamples to keep the run
time: see SEED_RESAMPLES) and checks what they say against the truth:

1. **ψ_g, max_g ψ_g and Ψ_PW intervals**: coverage of the true value by the 95 % interval, which side
   the misses fall on, and the bias of the point estimate of a maximum over groups (one group clearly
   ahead, and several groups tied at the maximum).
2. **Verdicts against ε** (ε = 2 %): how often a group truly at ε is called "exceeds ε" (per group and
   for any such group of an audit), with the Bonferroni correction (the default) and without; how often
   a group truly at 2ε or 3ε is called "exceeds ε" and one truly at 0 "meets ε" (power).
3. **Minimum detectable gap**: for groups truly at ψ_g = 0, how often |ψ̂_g| exceeds the formula's
   ``min_detectable_gap`` (about 5 % at 95 % if the formula is right), and its ratio to the half-width
   of the bootstrap interval.
4. **Across seeds**: a mitigation against NFT over 1, 3, 5 and 10 seeds (``compare_split``), with
   per-seed group accuracies drawn around population means (seed-to-seed sd τ) and per-sample
   correctness from a latent difficulty shared by every run, so runs agree on most samples, as real
   models do. The truth is the population mean difference over seeds with infinite test data.

Populations are like UTKFace by race (5 groups, shares 0.42/0.19/0.15/0.17/0.07, N = 4,700), the same
with a 1 % group (about 47 samples), and the demo (10 digit groups of equal share, N = 360 and 1,800).
A split is drawn by sampling N people from the population, so a group's size varies between audits.

``python -m bench --only verdicts`` or ``python -m bench.verdicts [--quick] [--workers N]`` (the
tables alone). 1,000 audits per scenario (200 with ``--quick``); the audits run in a pool of
single-thread workers (two by default on a 2-core machine).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing import get_context
from statistics import NormalDist

import numpy as np
import pandas as pd

from bench.common import Result
from ceag.analysis.bootstrap import BootstrapSettings, intervals
from ceag.analysis.seeds import GROUP_METRIC, RUN_METRICS, compare_split
from ceag.analysis.verdicts import CANNOT_TELL, EXCEEDS, MEETS, tolerance_verdicts

EPS = 0.02
AUDITS, QUICK_AUDITS = 1000, 200
CHUNK = 50  # audits per task of the pool
CONFIDENCE = 0.95
ROOT_SEED = 20_251_206
SEED_COUNTS = (1, 3, 5, 10)
TRUTH_DRAWS = 2_000_000  # seeds drawn to compute the true mean difference of max_g ψ_g and Ψ_PW
# compare_split at 500 resamples rather than its default 1,000: 8,000 comparisons of up to 10 seeds
# would take about 17 minutes of CPU at 1,000 (the intervals of sections 1-3 use the default 1,000)
SEED_RESAMPLES = 500
SMALL = 100  # groups with fewer samples than this are reported apart

UTK_SHARES = (0.42, 0.19, 0.15, 0.17, 0.07)
UTK_NAMES = ("White", "Black", "Asian", "Indian", "Others")
UTK_DENSE = (0.90, 0.88, 0.89, 0.88, 0.84)
DEMO_DENSE = (0.99, 0.95, 0.98, 0.96, 0.97, 0.97, 0.99, 0.97, 0.93, 0.95)


# -- populations ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Population:
    """A population of (group, dense right, sparse right) with known gaps.

    ``psi``: the true ψ_g of each group, None for the groups that balance the others (ψ_g averages to
    zero over the population's shares, by definition); ``drop``: the overall Δ (dense − sparse accuracy);
    ``churn``: the share of each group the sparse model gets right and the dense one wrong (the dense
    model alone is right on churn + Δ_g; both are right on the rest of the dense model's accuracy).
    """

    key: str
    title: str
    shares: tuple[float, ...]
    n: int
    psi_spec: tuple[float | None, ...]
    dense: tuple[float, ...]
    drop: float
    churn: float
    names: tuple[str, ...]

    @property
    def groups(self) -> int:
        return len(self.shares)

    @property
    def psi(self) -> np.ndarray:
        shares = np.asarray(self.shares)
        known = np.array([p is not None for p in self.psi_spec])
        psi = np.array([0.0 if p is None else p for p in self.psi_spec])
        if (~known).any():
            psi[~known] = -(shares[known] @ psi[known]) / shares[~known].sum()
        return psi

    @property
    def delta(self) -> np.ndarray:
        return self.drop + self.psi

    def cells(self) -> np.ndarray:
        """(G, 4) probabilities of code 2·sparse_right + dense_right within each group."""
        delta = self.delta
        dense_only = self.churn + delta
        sparse_only = np.full(self.groups, self.churn)
        both = np.asarray(self.dense) - dense_only
        neither = 1 - both - dense_only - sparse_only
        out = np.stack([neither, dense_only, sparse_only, both], axis=1)
        if (out < 0).any():
            raise ValueError(f"population {self.key}: negative cell probabilities")
        return out

    @property
    def max_psi(self) -> float:
        return float(self.psi.max())

    @property
    def psi_pw(self) -> float:
        return float(self.delta.max() - self.delta.min())

    @property
    def discordance(self) -> float:
        c = self.cells()
        return float(np.asarray(self.shares) @ (c[:, 1] + c[:, 2]))


def populations() -> list[Population]:
    demo_names = tuple(f"digit {d}" for d in range(10))
    e = EPS
    utk = dict(dense=UTK_DENSE, drop=0.04, churn=0.02, names=UTK_NAMES)
    demo = dict(shares=(0.1,) * 10, dense=DEMO_DENSE, drop=0.05, churn=0.01, names=demo_names)
    mixed = (3 * e, 2 * e, e, e, 0.0, 0.0, None, None, None, None)
    return [
        Population("utk-lead", "UTKFace-like, Others leads (ψ 8 points)", UTK_SHARES, 4700,
                   (None, 0.0, 0.0, 0.0, 0.08), **utk),
        Population("utk-tie", "UTKFace-like, 3 groups tie at ψ = ε", UTK_SHARES, 4700,
                   (None, e, e, e, 0.0), **utk),
        Population("utk-small", "UTKFace-like + a 1 % group (ψ 2ε, 3ε, ε)", (0.42, 0.19, 0.15, 0.16, 0.07, 0.01),
                   4700, (None, 2 * e, 0.0, 0.0, 3 * e, e), dense=(*UTK_DENSE, 0.86), drop=0.04, churn=0.02,
                   names=(*UTK_NAMES, "1 % group")),
        Population("demo-360", "demo, N 360: ψ 3ε, 2ε, ε, ε, 0, 0, 4 below", n=360, psi_spec=mixed, **demo),
        Population("demo-1800", "demo, N 1,800: same", n=1800, psi_spec=mixed, **demo),
        Population("demo-360-tie", "demo, N 360: no disparity (10-way tie)", n=360, psi_spec=(0.0,) * 10, **demo),
        Population("demo-1800-tie", "demo, N 1,800: no disparity (10-way tie)", n=1800, psi_spec=(0.0,) * 10,
                   **demo),
    ]


GROUP_FIELDS = ("n", "est", "low", "high", "clow", "chigh", "mdg", "disc")
RUN_FIELDS = ("max", "max_low", "max_high", "pw", "pw_low", "pw_high")


def _draw_splits(pop: Population, count: int, rng: np.random.Generator):
    """(group ids, sparse right, dense right), each (count, N)."""
    cum_share = np.cumsum(pop.shares)
    groups = np.minimum(np.searchsorted(cum_share, rng.random((count, pop.n)), side="right"), pop.groups - 1)
    cum_cell = np.cumsum(pop.cells(), axis=1)[:, :3]
    code = (rng.random((count, pop.n))[..., None] >= cum_cell[groups]).sum(-1)
    return groups, code >> 1, code & 1


def audit_chunk(pop: Population, count: int, key: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``count`` simulated audits of ``pop``: per group (count, G) and per audit (count,) figures."""
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, *key]))
    groups, sparse_ok, dense_ok = _draw_splits(pop, count, rng)
    y = np.zeros(pop.n, dtype=np.int64)
    settings = BootstrapSettings()  # the defaults: 1,000 resamples, 95 %, Bonferroni for the verdicts
    out = {f: np.full((count, pop.groups), np.nan) for f in GROUP_FIELDS}
    out.update({f: np.full(count, np.nan) for f in RUN_FIELDS})
    for i in range(count):
        res = intervals(y, groups[i], 1 - sparse_ok[i], 1 - dense_ok[i], pop.groups, settings)
        g, o = res.groups, res.overall
        for f, col in zip(GROUP_FIELDS[:-1], ("n", "excess_gap", "excess_gap_low", "excess_gap_high",
                                         "excess_gap_corrected_low", "excess_gap_corrected_high",
                                         "min_detectable_gap"), strict=True):
            out[f][i] = g[col].to_numpy(float)
        out["disc"][i] = np.bincount(groups[i], weights=sparse_ok[i] != dense_ok[i], minlength=pop.groups)
        for f, col in zip(RUN_FIELDS, ("max_excess_gap", "max_excess_gap_low", "max_excess_gap_high", "psi_pw",
                                       "psi_pw_low", "psi_pw_high"), strict=True):
            out[f][i] = o[col]
        if i == 0:  # correction="none": the wider of the ordinary interval and ψ ± the detectable gap (same
            # resamples), checked here, then rebuilt from the ordinary one for every audit (``_plain``)
            plain = intervals(y, groups[i], 1 - sparse_ok[i], 1 - dense_ok[i], pop.groups,
                              BootstrapSettings(correction="none")).groups
            low, high = _plain({f: out[f][i] for f in ("est", "low", "high", "mdg")})
            if not (np.allclose(plain["excess_gap_corrected_low"], low, equal_nan=True)
                    and np.allclose(plain["excess_gap_corrected_high"], high, equal_nan=True)):
                raise AssertionError("correction='none' is no longer the wider of the ordinary interval and "
                                     "ψ_g ± min_detectable_gap")
    return out


def _plain(o: dict) -> tuple[np.ndarray, np.ndarray]:
    """The verdict interval without a correction: the wider of the ordinary percentile interval and
    ψ_g ± min_detectable_gap (at the same 95 %), as ``bootstrap.intervals`` builds it."""
    none = np.isnan(o["low"])  # a group too small for an interval has none here either
    with np.errstate(invalid="ignore"):
        low, high = np.fmin(o["low"], o["est"] - o["mdg"]), np.fmax(o["high"], o["est"] + o["mdg"])
    return np.where(none, np.nan, low), np.where(none, np.nan, high)


# -- across seeds -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedScenario:
    """NFT and a mitigation over seeds on one shared test split.

    Per seed, each group's accuracy of each sparse model is its population mean plus N(0, τ²); a
    sample is right under a model when sqrt(ρ)·z + sqrt(1 − ρ)·e < Φ⁻¹(accuracy of its group), with z
    the sample's difficulty (shared by every run and the dense model) and e the run's own noise.
    """

    key: str
    title: str
    nft_drop: tuple[float, ...]
    mit_drop: tuple[float, ...]
    tau: float
    seeds: tuple[int, ...]
    shares: tuple[float, ...] = UTK_SHARES
    dense: tuple[float, ...] = UTK_DENSE
    n: int = 4700
    rho: float = 0.9

    @property
    def groups(self) -> int:
        return len(self.shares)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        dense = np.asarray(self.dense)
        return dense - np.asarray(self.nft_drop), dense - np.asarray(self.mit_drop)


NFT_DROP = (0.03, 0.04, 0.035, 0.04, 0.11)  # NFT: Others loses 11 points, the others 3-4
MIT_DROP = (0.04, 0.045, 0.04, 0.045, 0.06)  # the mitigation: Others loses 6, the others a little more


def seed_scenarios() -> list[SeedScenario]:
    out = [SeedScenario("effect", "mitigation helps Others, τ = 2 points", NFT_DROP, MIT_DROP, 0.02, SEED_COUNTS),
           SeedScenario("null", "mitigation = NFT (no true change), τ = 2 points", NFT_DROP, NFT_DROP, 0.02,
                        SEED_COUNTS)]
    for tau in (0.0, 0.01, 0.03):
        out.append(SeedScenario(f"effect-tau{tau:g}", f"mitigation helps Others, τ = {100 * tau:g} points",
                                NFT_DROP, MIT_DROP, tau, (1,)))
    return out


def metric_names(groups: int) -> list[str]:
    return [*RUN_METRICS, *[f"{GROUP_METRIC}[{g}]" for g in range(groups)]]


def _infinite_data_metrics(acc: np.ndarray, dense: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """(..., 3 + G) max_g ψ_g, Ψ_PW, accuracy and each ψ_g of models with per-group accuracies ``acc``."""
    gap = dense - acc
    psi = gap - (gap @ shares)[..., None]
    return np.concatenate([psi.max(-1, keepdims=True), (gap.max(-1) - gap.min(-1))[..., None],
                           (acc @ shares)[..., None], psi], axis=-1)


def _seed_accuracies(mean: np.ndarray, tau: float, rng: np.random.Generator, size) -> np.ndarray:
    return np.clip(mean + tau * rng.standard_normal((*size, len(mean))), 0.001, 0.999)


def seed_truth(sc: SeedScenario, draws: int = TRUTH_DRAWS) -> np.ndarray:
    """The population mean over seeds (infinite test data) of mitigation − NFT for every metric."""
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, 99]))
    nft, mit = sc.means()
    dense, shares = np.asarray(sc.dense), np.asarray(sc.shares)
    if sc.nft_drop == sc.mit_drop:
        return np.zeros(3 + sc.groups)  # the same distribution: every mean difference is 0
    if sc.tau == 0:
        return _infinite_data_metrics(mit, dense, shares) - _infinite_data_metrics(nft, dense, shares)
    total, done = 0.0, 0
    while done < draws:
        k = min(250_000, draws - done)
        a_nft = _seed_accuracies(nft, sc.tau, rng, (k,))
        a_mit = _seed_accuracies(mit, sc.tau, rng, (k,))
        total = total + (_infinite_data_metrics(a_mit, dense, shares)
                         - _infinite_data_metrics(a_nft, dense, shares)).sum(0)
        done += k
    return total / draws


def seed_chunk(sc: SeedScenario, count: int, key: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``count`` audits: for each seed count, (count, len(seeds), 3 + G) diff, diff_low, diff_high.

    Each audit draws one test split and max(seeds) seeds; the comparison with S seeds uses the first S.
    """
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, *key]))
    nft_mean, mit_mean = sc.means()
    inv = np.vectorize(NormalDist().inv_cdf)
    a, b = math.sqrt(sc.rho), math.sqrt(1 - sc.rho)
    cum_share = np.cumsum(sc.shares)
    settings = BootstrapSettings(n_boot=SEED_RESAMPLES)
    n_metrics = 3 + sc.groups
    out = {f: np.full((count, len(sc.seeds), n_metrics), np.nan) for f in ("diff", "low", "high")}
    ids = np.arange(sc.n)
    y = np.zeros(sc.n, dtype=np.int64)
    names = metric_names(sc.groups)
    for i in range(count):
        groups = np.minimum(np.searchsorted(cum_share, rng.random(sc.n), side="right"), sc.groups - 1)
        z = rng.standard_normal(sc.n)

        def right(acc: np.ndarray, groups=groups, z=z) -> np.ndarray:
            return (a * z + b * rng.standard_normal(sc.n) < inv(acc)[groups]).astype(np.int64)

        dense_pred = 1 - right(np.asarray(sc.dense))
        frames = []
        for _ in range(max(sc.seeds)):
            nft = 1 - right(_seed_accuracies(nft_mean, sc.tau, rng, ()))
            mit = 1 - right(_seed_accuracies(mit_mean, sc.tau, rng, ()))
            frames.append(tuple(pd.DataFrame({"sample_id": ids, "y_true": y, "group_id": groups, "y_pred": pred,
                                              "dense_pred": dense_pred}) for pred in (nft, mit)))
        for j, s in enumerate(sc.seeds):
            df = compare_split(frames[:s], sc.groups, "test", settings)
            label = np.where(df["metric"] == GROUP_METRIC, df["metric"] + "[" + df["group_id"].astype(str) + "]",
                             df["metric"])
            df = df.set_index(label).loc[names]
            out["diff"][i, j] = df["diff"].to_numpy(float)
            out["low"][i, j] = df["diff_low"].to_numpy(float)
            out["high"][i, j] = df["diff_high"].to_numpy(float)
    return out


# -- running -----------------------------------------------------------------------------------------
def _init_worker() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class Measurement:
    audits: int
    pops: list[Population]
    pop_out: dict[str, dict[str, np.ndarray]]
    scenarios: list[SeedScenario]
    seed_out: dict[str, dict[str, np.ndarray]]
    truths: dict[str, np.ndarray]
    seconds: float
    workers: int


def measure(quick: bool = False, workers: int | None = None, audits: int | None = None) -> Measurement:
    audits = audits or (QUICK_AUDITS if quick else AUDITS)
    workers = workers or min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    pops, scenarios = populations(), seed_scenarios()
    jobs = []
    for p_i, pop in enumerate(pops):
        for c_i, first in enumerate(range(0, audits, CHUNK)):
            jobs.append(("pop", pop.key, audit_chunk, pop, min(CHUNK, audits - first), (1, p_i, c_i)))
    for s_i, sc in enumerate(scenarios):
        per = 10 if max(sc.seeds) > 1 else CHUNK
        for c_i, first in enumerate(range(0, audits, per)):
            jobs.append(("seed", sc.key, seed_chunk, sc, min(per, audits - first), (2, s_i, c_i)))
    jobs.sort(key=lambda j: -_cost(j[3], j[4]))  # longest first: the pool's tail stays short
    parts: dict[tuple[str, str], list] = {}
    with cf.ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(fn, obj, count, key): (kind, name, key) for kind, name, fn, obj, count, key in jobs}
        truths = {sc.key: seed_truth(sc) for sc in scenarios}  # in the parent, while the pool works
        done = {futures[f]: f.result() for f in cf.as_completed(futures)}
    for (kind, name, key) in sorted(done, key=lambda k: k[2]):
        parts.setdefault((kind, name), []).append(done[(kind, name, key)])
    pop_out = {pop.key: _concat(parts[("pop", pop.key)]) for pop in pops}
    seed_out = {sc.key: _concat(parts[("seed", sc.key)]) for sc in scenarios}
    return Measurement(audits, pops, pop_out, scenarios, seed_out, truths, time.perf_counter() - start, workers)


def _cost(obj, count: int) -> float:
    """A rough relative cost of a job, to start the longest first."""
    if isinstance(obj, Population):
        return count * obj.n * 1e-5
    return count * sum(0.03 * s + 0.005 for s in obj.seeds)


# -- summaries -----------------------------------------------------------------------------------------
def mc_error(p: float, r: int) -> float:
    """The half-width of a 95 % Monte-Carlo band for a share p estimated from r audits."""
    return 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / r)


def band(r: int, k: int = 1, p: float = CONFIDENCE) -> float:
    """The Monte-Carlo band around p for one of k shares each from r audits (Bonferroni over the k)."""
    z = NormalDist().inv_cdf(1 - 0.025 / k)
    return z * math.sqrt(p * (1 - p) / r)


def _pct(x: float, digits: int = 1) -> str:
    return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def psi_coverage(m: Measurement) -> pd.DataFrame:
    rows = []
    for pop in m.pops:
        o = m.pop_out[pop.key]
        truth = pop.psi
        cover = (o["low"] <= truth) & (truth <= o["high"])
        above = o["low"] > truth  # the interval lies wholly above the truth
        below = o["high"] < truth
        for g in range(pop.groups):
            rows.append({"population": pop.key, "group": pop.names[g], "n": o["n"][:, g].mean(), "true": truth[g],
                         "bias": np.mean(o["est"][:, g] - truth[g]), "coverage": cover[:, g].mean(),
                         "miss_above": above[:, g].mean(), "miss_below": below[:, g].mean(),
                         "half_width": np.mean((o["high"][:, g] - o["low"][:, g]) / 2)})
    return pd.DataFrame(rows)


def small_group_breakdown(m: Measurement) -> pd.DataFrame:
    """Groups of fewer than SMALL samples, pooled: coverage by how many of the group's samples the two models
    disagree on (its changed answers) in the audit."""
    cover, disc, below = [], [], []
    for pop in m.pops:
        o = m.pop_out[pop.key]
        small = o["n"].mean(0) < SMALL
        if not small.any():
            continue
        truth = pop.psi[small]
        cover.append(((o["low"][:, small] <= truth) & (truth <= o["high"][:, small])).ravel())
        below.append((o["high"][:, small] < truth).ravel())
        disc.append(o["disc"][:, small].ravel())
    if not cover:
        return pd.DataFrame()
    cover, disc, below = np.concatenate(cover), np.concatenate(disc), np.concatenate(below)
    rows = []
    for label, mask in (("0", disc == 0), ("1-2", (disc >= 1) & (disc <= 2)), ("3 or more", disc >= 3)):
        rows.append({"changed": label, "share": mask.mean(), "coverage": cover[mask].mean() if mask.any() else np.nan,
                     "miss_below": below[mask].mean() if mask.any() else np.nan, "cases": int(mask.sum())})
    return pd.DataFrame(rows)


def run_coverage(m: Measurement) -> pd.DataFrame:
    rows = []
    for pop in m.pops:
        o = m.pop_out[pop.key]
        for name, est, low, high, truth in (("max_g ψ_g", o["max"], o["max_low"], o["max_high"], pop.max_psi),
                                            ("Ψ_PW", o["pw"], o["pw_low"], o["pw_high"], pop.psi_pw)):
            rows.append({"population": pop.key, "metric": name, "true": truth, "mean_est": est.mean(),
                         "bias": np.mean(est - truth), "coverage": np.mean((low <= truth) & (truth <= high)),
                         "miss_above": np.mean(low > truth), "miss_below": np.mean(high < truth)})
    return pd.DataFrame(rows)


def verdict_rates(m: Measurement) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group with ψ_g in {0, ε, 2ε, 3ε}: shares of each verdict, corrected and not; and per population
    with groups at or above ε: the share of audits where any group truly at ε is called "exceeds ε", and
    where any group truly above ε is called "meets ε"."""
    rows, family = [], []
    for pop in m.pops:
        if pop.key.startswith("demo") and pop.key.endswith("-tie"):
            continue  # no group at or above ε (groups at 0 are in the other populations)
        o = m.pop_out[pop.key]
        bonf = tolerance_verdicts(o["clow"], o["chigh"], o["n"], EPS)
        plain = tolerance_verdicts(*_plain(o), o["n"], EPS)
        truth = pop.psi
        for g in range(pop.groups):
            k = truth[g] / EPS
            if not any(abs(k - j) < 1e-9 for j in (0, 1, 2, 3)):
                continue
            rows.append({"population": pop.key, "group": pop.names[g], "n": o["n"][:, g].mean(), "true": truth[g],
                         "bonf_exceeds": np.mean(bonf[:, g] == EXCEEDS), "bonf_meets": np.mean(bonf[:, g] == MEETS),
                         "bonf_cannot": np.mean(bonf[:, g] == CANNOT_TELL),
                         "none_exceeds": np.mean(plain[:, g] == EXCEEDS), "none_meets": np.mean(plain[:, g] == MEETS)})
        at_eps, above = np.isclose(truth, EPS), truth > EPS + 1e-9
        if at_eps.any():
            family.append({"population": pop.key, "at_eps": int(at_eps.sum()), "above": int(above.sum()),
                           "groups": pop.groups,
                           "bonf_any": np.mean((bonf[:, at_eps] == EXCEEDS).any(1)),
                           "none_any": np.mean((plain[:, at_eps] == EXCEEDS).any(1)),
                           "bonf_wrong_meets": np.mean((bonf[:, above] == MEETS).any(1)) if above.any() else np.nan,
                           "none_wrong_meets": np.mean((plain[:, above] == MEETS).any(1)) if above.any() else np.nan})
    return pd.DataFrame(rows), pd.DataFrame(family)


def mdg_table(m: Measurement) -> pd.DataFrame:
    rows = []
    for pop in m.pops:
        o = m.pop_out[pop.key]
        zero = np.isclose(pop.psi, 0.0)
        if not zero.any():
            continue
        est, mdg = o["est"][:, zero], o["mdg"][:, zero]
        half = (o["high"][:, zero] - o["low"][:, zero]) / 2
        beyond = np.abs(est) > mdg
        rows.append({"population": pop.key, "groups_at_0": int(zero.sum()), "n": o["n"][:, zero].mean(),
                     "beyond": beyond.mean(), "beyond_min": beyond.mean(0).min(), "beyond_max": beyond.mean(0).max(),
                     "ratio": np.median(mdg / half), "mdg": np.median(mdg), "discordance": pop.discordance})
    return pd.DataFrame(rows)


def seed_only_coverage(seeds: int, draws: int = 1_000_000) -> float:
    """Coverage of mean ± 1.96 · sqrt((S − 1)/S) · sd/sqrt(S) when seed-to-seed variation is all there is:
    P(|t_(S−1)| ≤ 1.96 · sqrt((S − 1)/S)), by Monte Carlo (the variance of a bootstrap over S seeds is
    (S − 1)/S of the sample variance, and a normal quantile stands where Student's t belongs)."""
    if seeds < 2:
        return float("nan")
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, 5, seeds]))
    t = rng.standard_normal(draws) / np.sqrt(rng.chisquare(seeds - 1, draws) / (seeds - 1))
    return float(np.mean(np.abs(t) <= 1.96 * math.sqrt((seeds - 1) / seeds)))


def seed_table(m: Measurement) -> pd.DataFrame:
    rows = []
    for sc in m.scenarios:
        o, truth = m.seed_out[sc.key], m.truths[sc.key]
        names = metric_names(sc.groups)
        for j, s in enumerate(sc.seeds):
            cover = (o["low"][:, j] <= truth) & (truth <= o["high"][:, j])
            exclude0 = (o["low"][:, j] > 0) | (o["high"][:, j] < 0)
            for k, name in enumerate(names):
                rows.append({"scenario": sc.key, "tau": sc.tau, "seeds": s, "metric": name, "true": truth[k],
                             "bias": np.mean(o["diff"][:, j, k] - truth[k]), "coverage": cover[:, k].mean(),
                             "miss_above": np.mean(o["low"][:, j, k] > truth[k]),
                             "miss_below": np.mean(o["high"][:, j, k] < truth[k]),
                             "half_width": np.mean((o["high"][:, j, k] - o["low"][:, j, k]) / 2),
                             "sd_est": np.std(o["diff"][:, j, k]), "excludes_0": exclude0[:, k].mean()})
    return pd.DataFrame(rows)


def tables(m: Measurement) -> str:
    r = m.audits
    lines = [f"Simulated audits: {r} per scenario, the product's defaults (intervals: 1,000 resamples, 95 %, "
             f"Bonferroni; compare_split: {SEED_RESAMPLES} resamples); ε = {100 * EPS:g} %; {m.seconds:.0f} s on "
             f"{m.workers} worker(s). Figures in % (ψ in points).",
             f"Monte-Carlo error of a share near 95 % from {r} audits: ±{100 * mc_error(0.95, r):.1f}; "
             f"near 5 %: ±{100 * mc_error(0.05, r):.1f}.", ""]
    pc = psi_coverage(m)
    lines.append("1. ψ_g intervals (95 %): coverage of the true ψ_g per population")
    lines.append(f"{'population':<15} {'groups':>6} {'n, smallest':>11} {'cov min':>8} {'cov mean':>8} "
                 f"{'miss: int. above / below truth':>30} {'half-width, mean':>16}")
    for pop in m.pops:
        d = pc[pc["population"] == pop.key]
        lines.append(f"{pop.key:<15} {pop.groups:>6} {d['n'].min():>11.0f} {_pct(d['coverage'].min()):>8} "
                     f"{_pct(d['coverage'].mean()):>8} {_pct(d['miss_above'].mean()):>14} / "
                     f"{_pct(d['miss_below'].mean()):<13} {_pct(d['half_width'].mean(), 2):>16}")
    for label, part in ((f"groups of {SMALL} samples or more", pc[pc["n"] >= SMALL]),
                        (f"groups of fewer than {SMALL}", pc[pc["n"] < SMALL])):
        worst = part.loc[part["coverage"].idxmin()]
        lines.append(f"{label} ({len(part)}): mean coverage {_pct(part['coverage'].mean())} "
                     f"(±{100 * band(r * len(part)):.1f}); lowest {_pct(worst['coverage'])} ({worst['population']}, "
                     f"{worst['group']}, n ≈ {worst['n']:.0f}; ±{100 * mc_error(worst['coverage'], r):.1f})")
    sb = small_group_breakdown(m)
    if len(sb):
        lines.append(f"groups of fewer than {SMALL}, by the group's changed answers (samples where exactly one "
                     "model is right) in the audit:")
        for row in sb.itertuples():
            lines.append(f"  {row.changed:>9} changed: {_pct(row.share):>5} of cases, coverage "
                         f"{_pct(row.coverage):>5}, interval wholly below the truth {_pct(row.miss_below):>5}")
    lines.append("")
    rc = run_coverage(m)
    lines.append("1b. max_g ψ_g and Ψ_PW: the point estimate's bias and the 95 % interval's coverage of the truth")
    lines.append(f"{'population':<15} {'metric':<10} {'true':>6} {'mean est':>8} {'bias':>6} {'coverage':>8} "
                 f"{'miss: int. above / below truth':>30}")
    for row in rc.itertuples():
        lines.append(f"{row.population:<15} {row.metric:<10} {_pct(row.true, 2):>6} {_pct(row.mean_est, 2):>8} "
                     f"{_pct(row.bias, 2):>6} {_pct(row.coverage):>8} {_pct(row.miss_above):>14} / "
                     f"{_pct(row.miss_below)}")
    lines.append("")
    rates, family = verdict_rates(m)
    lines.append(f"2. Verdicts against ε = {100 * EPS:g} %: share of audits with each verdict, per group "
                 "(Bonferroni: the default; none: correction='none')")
    lines.append(f"{'population':<15} {'group':<10} {'n':>5} {'true ψ':>6} | {'exceeds':>7} {'meets':>6} "
                 f"{'cannot':>6} | {'none: exceeds':>13} {'meets':>6}")
    for row in rates.itertuples():
        lines.append(f"{row.population:<15} {row.group:<10} {row.n:>5.0f} {_pct(row.true, 0):>6} | "
                     f"{_pct(row.bonf_exceeds):>7} {_pct(row.bonf_meets):>6} {_pct(row.bonf_cannot):>6} | "
                     f"{_pct(row.none_exceeds):>13} {_pct(row.none_meets):>6}")
    lines.append("family-wise, per audit: any group truly at ε called 'exceeds ε'; any group truly above ε "
                 "called 'meets ε':")
    for row in family.itertuples():
        wrong = ("" if math.isnan(row.bonf_wrong_meets) else
                 f"; {row.above} above ε called 'meets': Bonferroni {_pct(row.bonf_wrong_meets)}, "
                 f"none {_pct(row.none_wrong_meets)}")
        lines.append(f"  {row.population:<15} {row.at_eps} of {row.groups} groups at ε called 'exceeds': "
                     f"Bonferroni {_pct(row.bonf_any)}, none {_pct(row.none_any)}{wrong}")
    lines.append("")
    md = mdg_table(m)
    lines.append("3. min_detectable_gap for groups truly at ψ_g = 0: share of |ψ̂_g| > it (nominal 5 %), "
                 "its median / half-width of the bootstrap interval")
    lines.append(f"{'population':<15} {'groups':>6} {'n':>5} {'d':>5} {'beyond':>6} {'(range)':>11} "
                 f"{'MDG, median':>11} {'MDG / half-width':>16}")
    for row in md.itertuples():
        lines.append(f"{row.population:<15} {row.groups_at_0:>6} {row.n:>5.0f} {_pct(row.discordance):>5} "
                     f"{_pct(row.beyond):>6} {_pct(row.beyond_min) + '-' + _pct(row.beyond_max):>11} "
                     f"{_pct(row.mdg, 2):>11} {row.ratio:>16.3f}")
    lines.append("")
    st = seed_table(m)
    lines.append("4. Across seeds (compare_split, UTKFace-like, N 4,700, 5 groups, shared test samples): coverage "
                 "of the true mean difference mitigation − NFT")
    for sc in m.scenarios:
        truth = m.truths[sc.key]
        lines.append(f"  {sc.key}: {sc.title}; truth: max_g ψ_g {_pct(truth[0], 2)}, Ψ_PW {_pct(truth[1], 2)}, "
                     f"accuracy {_pct(truth[2], 2)}, ψ_g " + " ".join(_pct(t, 2) for t in truth[3:]) + " points")
    lines.append(f"{'scenario':<15} {'seeds':>5} | {'max_g ψ_g':>9} {'Ψ_PW':>5} {'acc':>5} {'ψ_g min':>7} "
                 f"{'ψ_g mean':>8} | {'seeds-only':>10} | {'max: above/below':>16} {'hw/sd max':>9} "
                 f"{'hw/sd acc':>9}")
    for sc in m.scenarios:
        for s in sc.seeds:
            d = st[(st["scenario"] == sc.key) & (st["seeds"] == s)].set_index("metric")
            g = d[d.index.str.startswith(GROUP_METRIC)]
            mx, acc = d.loc["max_excess_gap"], d.loc["accuracy"]
            lines.append(f"{sc.key:<15} {s:>5} | {_pct(mx['coverage']):>9} {_pct(d.loc['psi_pw', 'coverage']):>5} "
                         f"{_pct(acc['coverage']):>5} {_pct(g['coverage'].min()):>7} {_pct(g['coverage'].mean()):>8}"
                         f" | {_pct(seed_only_coverage(s)):>10} | "
                         f"{_pct(mx['miss_above']) + ' / ' + _pct(mx['miss_below']):>16} "
                         f"{_ratio(mx):>9} {_ratio(acc):>9}")
    null = st[st["scenario"] == "null"]
    lines.append("null scenario, share of audits whose interval excludes 0 ('distinguishable from no change'):")
    for s in SEED_COUNTS:
        d = null[null["seeds"] == s].set_index("metric")["excludes_0"]
        g = d[d.index.str.startswith(GROUP_METRIC)]
        lines.append(f"  {s:>2} seed(s): max_g ψ_g {_pct(d['max_excess_gap'])}, Ψ_PW {_pct(d['psi_pw'])}, "
                     f"accuracy {_pct(d['accuracy'])}, ψ_g {_pct(g.min())} to {_pct(g.max())}")
    lines.append("seeds-only: the coverage expected if seed-to-seed variation were the only chance "
                 "(P(|t_(S-1)| <= 1.96 sqrt((S-1)/S))); hw/sd: mean half-width of the interval over 1.96 x the sd "
                 "of the point estimate across audits (1 = the right width)")
    return "\n".join(lines)


def _ratio(row) -> str:
    return f"{row['half_width'] / (1.96 * row['sd_est']):.2f}" if row["sd_est"] > 0 else "n/a"


def results(m: Measurement) -> list[Result]:
    r = m.audits
    out = []
    pc = psi_coverage(m)
    for label, part in ((f"n >= {SMALL}", pc[pc["n"] >= SMALL]), (f"n < {SMALL}", pc[pc["n"] < SMALL])):
        k = len(part)
        cov = float(part["coverage"].mean())
        tol = band(r * k)
        out.append(Result(f"ψ_g 95 % intervals: coverage, mean of {k} groups, {label}", 100 * cov, "%",
                          f"95 ± {100 * tol:.1f}", abs(cov - CONFIDENCE) <= tol,
                          f"{part['population'].nunique()} populations, {r} audits each"))
    worst = pc.loc[pc["coverage"].idxmin()]
    floor = CONFIDENCE - band(r, len(pc))
    out.append(Result("ψ_g 95 % intervals: lowest coverage of one group", 100 * worst["coverage"], "%",
                      f">= {100 * floor:.1f}", bool(worst["coverage"] >= floor),
                      f"{worst['population']}, {worst['group']}, n ≈ {worst['n']:.0f}; "
                      f"band for the lowest of {len(pc)}"))
    rc = run_coverage(m)
    for key, label in (("utk-lead", "one group leads"), ("utk-tie", "3 groups tie"),
                       ("demo-1800-tie", "demo N 1,800, 10 tie")):
        row = rc[(rc["population"] == key) & (rc["metric"] == "max_g ψ_g")].iloc[0]
        out.append(Result(f"max_g ψ_g 95 % interval: coverage, {label}", 100 * row["coverage"], "%", "", None,
                          f"bias of the estimate {100 * row['bias']:+.2f} points"))
    _, family = verdict_rates(m)
    worst_fw = family.loc[family["bonf_any"].idxmax()]
    out.append(Result("a group truly at ε called 'exceeds ε' (any, Bonferroni)", 100 * worst_fw["bonf_any"], "%",
                      "<= 5", bool(worst_fw["bonf_any"] <= 0.05),
                      f"highest of {len(family)} populations: {worst_fw['population']}"))
    out.append(Result("same, correction='none'", 100 * family["none_any"].max(), "%", "", None))
    wrong = family.dropna(subset=["bonf_wrong_meets"])
    worst_wm = wrong.loc[wrong["bonf_wrong_meets"].idxmax()]
    out.append(Result("a group truly above ε called 'meets ε' (any, Bonferroni)", 100 * worst_wm["bonf_wrong_meets"],
                      "%", "<= 2.5", bool(worst_wm["bonf_wrong_meets"] <= 0.025),
                      f"highest of {len(wrong)} populations: {worst_wm['population']}"))
    md = mdg_table(m)
    beyond = float((md["beyond"] * md["groups_at_0"]).sum() / md["groups_at_0"].sum())
    out.append(Result("|ψ̂_g| > min_detectable_gap when ψ_g = 0", 100 * beyond, "%", "≈ 5", None,
                      f"median MDG / bootstrap half-width {md['ratio'].median():.2f}"))
    st = seed_table(m)
    eff = st[st["scenario"] == "effect"]
    for s in (3, 5):
        d = eff[eff["seeds"] == s].set_index("metric")
        cov = float(d.loc["max_excess_gap", "coverage"])
        out.append(Result(f"across seeds, {s} seeds: coverage, diff of max_g ψ_g", 100 * cov, "%",
                          f"95 ± {100 * band(r):.1f}", abs(cov - CONFIDENCE) <= band(r), "τ = 2 points"))
        others = d.drop(index="max_excess_gap")
        low = others["coverage"].idxmin()
        cov = float(others.loc[low, "coverage"])
        floor = CONFIDENCE - band(r, len(others))
        out.append(Result(f"across seeds, {s} seeds: lowest coverage of the other {len(others)}", 100 * cov, "%",
                          f">= {100 * floor:.1f}", cov >= floor, f"{low}"))
    null = st[st["scenario"] == "null"]
    for s in SEED_COUNTS:
        d = null[null["seeds"] == s].set_index("metric")["excludes_0"]
        ceiling = 0.05 + band(r, len(d), p=0.05)
        out.append(Result(f"no true change called distinguishable, {s} seed(s)", 100 * d.max(), "%",
                          f"<= 5 (+{100 * (ceiling - 0.05):.1f} MC)", bool(d.max() <= ceiling),
                          f"highest of {len(d)} metrics ({d.idxmax()}), τ = 2 points"))
    return out


def run(quick: bool = False) -> list[Result]:
    m = measure(quick)
    print(tables(m), file=sys.stderr, flush=True)
    return results(m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_AUDITS} audits per scenario instead of {AUDITS}")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: 2, or 1 on one core)")
    args = parser.parse_args(argv)
    m = measure(args.quick, args.workers)
    print(tables(m))
    print()
    for r in results(m):
        print(r.line())
    print(f"\n{m.seconds:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
