"""The audit of chosen runs: per-group numbers from the store with paired bootstrap intervals from each
run's per-sample predictions, and the default runs to compare.

The point values are the store's; the intervals come from ``ceag.analysis.bootstrap`` on the run's
predictions (``ceag.results.predictions``), which must reproduce the stored per-group counts and
accuracies; where they cannot (no predictions, no dense model, data changed since the run) the
intervals are left empty and ``Audit.notes`` says why. What people read about an audit (sentences,
the notes on data and diagnostics) is ``ceag.present``'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ceag.analysis.bootstrap import MIN_INTERVAL_SAMPLES, BootstrapSettings, run_intervals
from ceag.analysis.verdicts import tolerance_verdicts
from ceag.store import queries

CSV_COLUMNS = ["run_id", "method", "split", "group", "name", "n", "accuracy", "accuracy_low", "accuracy_high",
               "dense_accuracy", "acc_gap", "acc_gap_low", "acc_gap_high", "excess_gap", "excess_gap_low",
               "excess_gap_high", "too_small", "excess_gap_corrected_low", "excess_gap_corrected_high", "verdict",
               "min_detectable_gap", "small_for_tolerance"]


INTERVAL_METRICS = ("accuracy", "dense_accuracy", "acc_gap", "excess_gap")


RUN_INTERVAL_METRICS = ("accuracy", "max_excess_gap", "psi_pw")
EXTRA_GROUP_COLUMNS = ("excess_gap_corrected_low", "excess_gap_corrected_high", "min_detectable_gap")


class UnknownRuns(ValueError):
    """Some run ids are not finished runs of the store; the message lists them."""


@dataclass
class Audit:
    """``groups``: per (run, split, group) rows of ``queries.audit_groups`` plus ``<metric>_low`` /
    ``<metric>_high`` for INTERVAL_METRICS, ``too_small`` (a group with samples, but fewer than
    ``bootstrap.MIN_INTERVAL_SAMPLES``: no interval), the corrected ψ_g interval, ``min_detectable_gap``,
    ``verdict`` and ``small_for_tolerance`` (see ``attach_intervals``). ``runs``: per (run, split) rows
    of ``queries.audit_runs`` plus intervals for RUN_INTERVAL_METRICS and ``verdict_groups`` (the m of
    the correction). Fractions throughout."""

    groups: pd.DataFrame
    runs: pd.DataFrame
    settings: BootstrapSettings
    notes: list[str] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(self.groups["run_id"]))

    def csv_table(self) -> pd.DataFrame:
        """The per-group table with exactly CSV_COLUMNS: one row per run, split and group."""
        out = self.groups.rename(columns={"group_id": "group", "group_name": "name"})
        return out[CSV_COLUMNS].reset_index(drop=True)


def parse_run_ids(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (duplicates dropped, order kept)."""
    return list(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))


def check_runs(results: str | os.PathLike, run_ids: list[str]) -> None:
    """Raise UnknownRuns unless every id is a finished (or diverged) run in the store."""
    if not run_ids:
        raise UnknownRuns("no run ids given; list finished runs with `python -m ceag ls --status finished`")
    known = queries.finished_ids(results, run_ids)
    missing = [r for r in run_ids if r not in known]
    if missing:
        raise UnknownRuns(f"not a finished run in {results}: {', '.join(missing)}; `python -m ceag ls --status "
                          "finished` lists the runs that can be audited")


def audit(results: str | os.PathLike, run_ids: list[str], settings: BootstrapSettings | None = None) -> Audit:
    """The audit of ``run_ids`` (each a finished or diverged run of the store at ``results``).

    Raises UnknownRuns naming the ids that are not. Runs without stored predictions have theirs
    computed on demand (this loads the dataset and the models, and needs torch).
    """
    from ceag.results.predictions import RunNotFound, run_predictions

    check_runs(results, run_ids)
    groups = queries.audit_groups(results, run_ids)
    runs = queries.audit_runs(results, run_ids)
    order = {r: i for i, r in enumerate(run_ids)}
    groups = groups.sort_values("run_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    runs = runs.sort_values("run_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    predictions: dict[str, pd.DataFrame | Exception] = {}
    for rid in run_ids:
        try:
            predictions[rid] = run_predictions(results, rid)
        except (RunNotFound, ValueError, OSError) as err:
            predictions[rid] = err
    return attach_intervals(groups, runs, predictions, settings)


def attach_intervals(groups: pd.DataFrame, runs: pd.DataFrame,
                     predictions: Mapping[str, pd.DataFrame | Exception],
                     settings: BootstrapSettings | None = None) -> Audit:
    """An Audit from per-group and per-run rows and each run's per-sample predictions.

    ``groups``: rows with the columns of ``queries.audit_groups`` (run_id, dataset, model, method,
    sparsity, tolerance, seed, status, reported_epoch, split, group_id, group_name, n, accuracy,
    dense_accuracy, acc_gap, excess_gap); ``runs``: rows with at least run_id, split, accuracy,
    max_excess_gap and psi_pw; ``predictions``: run_id -> a frame with split, y_true, group_id,
    y_pred and dense_pred (``ceag.config.vocabulary.PREDICTION_COLUMNS``), or the error that kept
    them from being read (it becomes a note). Intervals are kept only where the predictions
    reproduce each group's n, accuracy and dense accuracy. Adds the interval columns, ``too_small``,
    ``excess_gap_corrected_low`` / ``_high``, ``corrected_for`` (the number of groups those intervals
    were widened for; 1: not widened), ``min_detectable_gap``, ``verdict`` (for every run held to a
    tolerance, i.e. whose ``tolerance`` is set: ``verdicts.tolerance_verdicts``) and
    ``small_for_tolerance`` (min_detectable_gap > ε).
    """
    settings = settings or BootstrapSettings()
    groups, runs = groups.copy(), runs.copy()
    for col in (*[f"{m}_{side}" for m in INTERVAL_METRICS for side in ("low", "high")], *EXTRA_GROUP_COLUMNS):
        groups[col] = np.nan
    groups["too_small"] = (groups["n"] > 0) & (groups["n"] < MIN_INTERVAL_SAMPLES)
    for col in RUN_INTERVAL_METRICS:
        runs[f"{col}_low"] = np.nan
        runs[f"{col}_high"] = np.nan
    runs["verdict_groups"] = 0
    notes = []
    for rid in dict.fromkeys(groups["run_id"]):
        mine = groups["run_id"] == rid
        num_groups = int(groups.loc[mine, "group_id"].max()) + 1
        pred = predictions.get(rid)
        try:
            if pred is None:
                raise ValueError("no predictions")
            if isinstance(pred, Exception):
                raise pred
            g_int, o_int = run_intervals(pred, num_groups, settings)
        except (LookupError, ValueError, OSError) as err:
            notes.append(f"run {rid}: no intervals ({err})")
            continue
        merged = groups.loc[mine, ["split", "group_id", "n", "accuracy", "dense_accuracy"]].merge(
            g_int, on=["split", "group_id"], how="left", suffixes=("", "_boot"))
        if not _reproduces(merged):
            notes.append(f"run {rid}: no intervals (its predictions do not reproduce the stored per-group accuracies;"
                         " the data may have changed since the run)")
            continue
        for col in [*[f"{m}_{side}" for m in INTERVAL_METRICS for side in ("low", "high")], *EXTRA_GROUP_COLUMNS]:
            groups.loc[mine, col] = merged[col].to_numpy()
        run_rows = runs["run_id"] == rid
        merged_runs = runs.loc[run_rows, ["split"]].merge(o_int, on="split", how="left")
        for col in RUN_INTERVAL_METRICS:
            runs.loc[run_rows, f"{col}_low"] = merged_runs[f"{col}_low"].to_numpy()
            runs.loc[run_rows, f"{col}_high"] = merged_runs[f"{col}_high"].to_numpy()
        runs.loc[run_rows, "verdict_groups"] = merged_runs["intervals"].fillna(0).astype(int).to_numpy()
    m = runs.set_index(["run_id", "split"])["verdict_groups"]
    widened = pd.Series(list(zip(groups["run_id"], groups["split"], strict=True))).map(m.to_dict()).fillna(0)
    groups["corrected_for"] = widened.astype(int).to_numpy() if settings.correction != "none" else 1
    groups["verdict"] = None
    constrained = groups["tolerance"].notna()  # CEAG, CEAG+VS, a model audited against ε
    for tol, part in groups[constrained].groupby("tolerance"):
        groups.loc[part.index, "verdict"] = tolerance_verdicts(
            part["excess_gap_corrected_low"], part["excess_gap_corrected_high"], part["n"], float(tol))
    groups["small_for_tolerance"] = constrained & (groups["min_detectable_gap"] > groups["tolerance"])
    return Audit(groups, runs, settings, notes)


def _reproduces(merged: pd.DataFrame) -> bool:
    if merged["n_boot"].isna().any() or (merged["n"] != merged["n_boot"]).any():
        return False
    for col in ("accuracy", "dense_accuracy"):
        a, b = merged[col].to_numpy(float), merged[f"{col}_boot"].to_numpy(float)
        if not np.allclose(a, b, rtol=0, atol=1e-9, equal_nan=True):
            return False
    return True


def default_comparison(runs: pd.DataFrame, *, dataset: str, model: str, sparsity: float, seed: int) -> list[str]:
    """NFT against CEAG at each tolerance present, for one dataset, model, sparsity and seed.

    ``runs``: rows of ``queries.runs``; only finished runs count. Returns run ids, NFT first, then
    CEAG by increasing tolerance (the newest run where one setting has several).
    """
    keep = runs[(runs["status"] == "finished") & (runs["dataset"] == dataset) & (runs["model"] == model)
                & np.isclose(runs["sparsity"], sparsity) & (runs["seed"] == seed)]
    nft = keep[keep["method"] == "nft"].head(1)
    ceag = keep[keep["method"] == "ceag"].drop_duplicates("tolerance").sort_values("tolerance")
    return list(nft["run_id"]) + list(ceag["run_id"])


def comparable_setting(runs: pd.DataFrame) -> pd.Series | None:
    """The newest finished run whose (dataset, model, sparsity, seed) has NFT and CEAG runs to compare, or None.

    ``runs``: rows of ``queries.runs`` (newest first).
    """
    finished = runs[runs["status"] == "finished"]
    for _, row in finished.drop_duplicates(["dataset", "model", "sparsity", "seed"]).iterrows():
        if len(default_comparison(finished, dataset=row.dataset, model=row.model, sparsity=row.sparsity,
                                  seed=row.seed)) >= 2:
            return row
    return None
