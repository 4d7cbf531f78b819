"""The record of one run: its result as its folder holds it, and the records of runs that did not run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ceag.config.run_config import RunConfig, from_dict
from ceag.results.files import RunBusy, json_safe, now, run_lock, write_json
from ceag.results.layout import CONFIG, DUALS, GROUP_METRICS, RUN_METRICS, STATUS, SUMMARY, run_dir

FINISHED_STATES = ("finished", "diverged")


# -- the result of one run ----------------------------------------------------------------
@dataclass
class RunResult:
    config: RunConfig
    summary: dict[str, Any]
    group_metrics: pd.DataFrame  # epoch, split, group_id, group_name, n, accuracy, loss, ...
    run_metrics: pd.DataFrame    # epoch, split, accuracy, loss, ..., max_excess_gap, psi_pw, sparsity
    duals: pd.DataFrame          # step, epoch, group_id, multiplier, violation
    cached: bool = False

    @property
    def run_id(self) -> str:
        return self.summary["run_id"]

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def diagnostics(self) -> dict[str, Any]:
        """Convergence and constraint diagnostics (``ceag.diagnostics``), stored in the summary.

        A run recorded before diagnostics existed gets them computed from its records, the
        constraint part from the subsampled multiplier trace (``constraints.source`` "trace").
        """
        if self.summary.get("diagnostics") is not None:
            return self.summary["diagnostics"]
        from ceag.config.vocabulary import MITIGATING_METHODS
        from ceag.diagnostics.constraints import counter_from_trace
        from ceag.diagnostics.run import run_diagnostics

        counter = None
        if self.config.method in MITIGATING_METHODS and not self.duals.empty:
            counter = counter_from_trace(self.duals, int(self.group_metrics["group_id"].max()) + 1)
        last = int(self.run_metrics["epoch"].max()) if self.status == "finished" else -1
        return run_diagnostics(self.config, self.run_metrics, self.group_metrics, counter, last_epoch=last,
                               counter_source="trace")

    @property
    def splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in set(self.run_metrics["split"])]

    def final(self, split: str) -> tuple[dict[str, Any], pd.DataFrame]:
        """The run-level row and the per-group rows of ``split`` at the reported epoch."""
        epoch = self.summary["reported_epoch"]
        run = self.run_metrics[(self.run_metrics.split == split) & (self.run_metrics.epoch == epoch)]
        groups = self.group_metrics[(self.group_metrics.split == split) & (self.group_metrics.epoch == epoch)]
        return run.iloc[0].to_dict(), groups.sort_values("group_id")

    def to_json(self) -> dict[str, Any]:
        """The command line's JSON contract (fractions, NaN as null)."""
        s = self.summary
        out: dict[str, Any] = {
            "run_id": self.run_id, "status": self.status, "cached": self.cached,
            "dataset": self.config.dataset, "model": self.config.model,
            "method": self.config.method, "sparsity": self.config.sparsity,
            "achieved_sparsity": s["achieved_sparsity"], "tolerance": self.config.tolerance,
            "seed": self.config.seed, "reported_epoch": s["reported_epoch"],
            "selection_split": s["selection_split"], "device": s["device"],
            "wall_seconds": s["wall_seconds"], "reason": s.get("reason"),
            "skipped_files": s.get("skipped_files") or {},
            # per group (where known): {group: {"skipped", "of", "share"}}; rows read in all
            "skipped_by_group": (s.get("data_report") or {}).get("lost_by_group", {}),
            "rows_read": (s.get("data_report") or {}).get("rows_read"),
            "data_fingerprint": self.config.data_fingerprint,
            "data_warnings": (s.get("data_report") or {}).get("warnings", []),
            "data_notes": (s.get("data_report") or {}).get("notes", []),
            "diagnostics": self.diagnostics,
            # which data drove the multipliers (runs made before it was recorded: the training data)
            "constraint_data": s.get("constraint_data") or (
                {"split": "train"} if self.config.method in ("el_rb", "ceag") else {"split": None}),
            # what the pruned model costs against the dense one (runs made before it was measured: null)
            "footprint": s.get("footprint"), "channel_sparsity": s.get("channel_sparsity"),
        }
        if self.config.method == "ceag_vs":
            out["selected_tolerance"] = s.get("selected_tolerance")
            out["selection"] = s.get("selection")
        for split in self.splits:
            run, groups = self.final(split)
            out[split] = {
                "accuracy": run["accuracy"], "dense_accuracy": run["dense_accuracy"],
                "max_excess_gap": run["max_excess_gap"], "psi_pw": run["psi_pw"],
                "groups": [
                    {"group": int(r.group_id), "name": r.group_name, "n": int(r.n),
                     "accuracy": r.accuracy, "dense_accuracy": r.dense_accuracy,
                     "excess_gap": r.excess_gap}
                    for r in groups.itertuples()
                ],
            }
        return json_safe(out)


def read_config(folder: Path) -> RunConfig:
    """The ``RunConfig`` a run folder holds (``config.json``, read as stored). Raises OSError when it cannot be
    read, ValueError (``json.JSONDecodeError``, ``ConfigError``) or TypeError when it is not a ceag config."""
    return from_dict(json.loads((folder / CONFIG).read_text()), stored=True)


def is_finished(results: Path, run_id: str) -> bool:
    """Whether the run's folder holds a finished run (its summary is written last, atomically)."""
    return (run_dir(results, run_id) / SUMMARY).exists()


def load_result(results: Path, run_id: str) -> RunResult | None:
    """A finished run from its folder, or None when it has not finished."""
    if not is_finished(results, run_id):
        return None
    folder = run_dir(results, run_id)
    summary = json.loads((folder / SUMMARY).read_text())
    config = read_config(folder)
    return RunResult(config, summary, pd.read_parquet(folder / GROUP_METRICS),
                     pd.read_parquet(folder / RUN_METRICS),
                     pd.read_parquet(folder / DUALS), cached=True)


def mark_cancelled(folder: Path, reason: str) -> bool:
    """Record a stopped, unfinished run or phase folder as ``cancelled`` (it stays resumable).

    Call only once the process that trained it is gone. Returns whether the folder was marked.
    """
    if (folder / SUMMARY).exists() or not (folder / STATUS).exists():
        return False
    try:
        status = json.loads((folder / STATUS).read_text())
    except (OSError, ValueError):
        status = {}
    if status.get("status") not in (None, "running", "interrupted"):
        return False
    write_json(folder / STATUS, {**status, "status": "cancelled", "reason": reason, "finished_at": now()})
    return True


def record_skipped(results: Path, cfg: RunConfig, reason: str) -> bool:
    """Record a cell that was not run because an input it needs failed: its folder says ``failed`` with why.

    Writes ``config.json`` and ``status.json`` only (a later call runs it normally); leaves a
    finished run, or one another process trains, alone. Returns whether the folder was written.
    """
    folder = run_dir(results, cfg.run_id)
    if is_finished(results, cfg.run_id):
        return False
    try:
        with run_lock(folder, wait=False):
            write_json(folder / CONFIG, cfg.to_dict())
            write_json(folder / STATUS, {"status": "failed", "reason": reason, "finished_at": now()})
    except RunBusy:
        return False
    return True


def record_failure(results: Path, cfg: RunConfig, reason: str) -> bool:
    """Record ``cfg`` as a failed run with ``reason`` when it failed before writing its folder
    (e.g. while loading its data), so grids, ``ls`` and the app list it. True when written."""
    if (run_dir(Path(results), cfg.run_id) / CONFIG).exists():
        return False  # the run wrote its own record
    return record_skipped(Path(results), cfg, reason)
