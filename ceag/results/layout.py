"""Where everything lies in a results folder: the one module that knows its paths.

::

    <results>/
      ceag.duckdb                 the store (ceag.store), rebuilt from the folders below at any time
      runs/<run_id>/              one folder per run (RUN_FILES): config, status, metrics, predictions, model
      dense/<dense_key>/          a dense model shared by every run with its settings (DENSE_MODEL, DENSE_OUTPUTS)
      pruned/<prune_key>/         the state at the end of gradual pruning, shared likewise (PRUNED_STATE)
      jobs/<job_id>/              a grid's progress feed, timeline, log and cancel request
      audits/<audit_id>/          an audit of a predictions file made elsewhere (AUDIT_PREDICTIONS, AUDIT_RECORD;
                                  ceag.analysis.stored_audits)
      cache/images/<key>/         decoded images, memory-mappable
      cache/fingerprints/         content hashes of data files, so only changed files are read again
      cache/verdicts/             mitigations against NFT across seeds, once resampled (ceag.analysis.seed_cache)

The folder is ``$CEAG_RESULTS``, else ``./results``, unless a command or the app names another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ceag.config.keys import dense_key, prune_key

if TYPE_CHECKING:
    from ceag.config.run_config import RunConfig

RESULTS_ENV = "CEAG_RESULTS"
DEFAULT_RESULTS = "results"
STORE_FILE = "ceag.duckdb"

# A run folder (and a phase folder: STATUS, CHECKPOINT, LOCK, PHASE).
CONFIG = "config.json"            # its settings (RunConfig.to_dict), written first
STATUS = "status.json"            # running (phase, epoch) / finished / failed / cancelled / interrupted
CHECKPOINT = "checkpoint.pt"      # while it trains: where a killed process resumes
SUMMARY = "summary.json"          # written last: its presence marks a finished run
RUN_METRICS = "run_metrics.parquet"
GROUP_METRICS = "group_metrics.parquet"
DUALS = "duals.parquet"           # multiplier and violation traces
PREDICTIONS = "predictions.parquet"
BEST_PREDICTIONS = "best_predictions.parquet"  # NFT: its best iterate's, for the NFT+ES run derived from it
MODEL = "model.pt"
BEST_MODEL = "best_model.pt"      # NFT: its best iterate's weights
SMALL_MODEL = "model_small.pt"    # structured pruning: the reported model rebuilt without its pruned channels
SHRINK_PLAN = "shrink_plan.json"  # ... and the ShrinkPlan that re-creates its architecture (ceag.results.model_export)
LOCK = ".lock"
PHASE = "phase.json"              # a phase folder: its timing, once done
DENSE_MODEL = "model.pt"          # a dense folder's model
DENSE_OUTPUTS = "outputs.pt"      # ... and its outputs on every split (predictions, losses), computed once
PRUNED_STATE = "state.pt"         # a pruning folder's end-of-pruning state
PRUNING_DIVERGED = "diverged.json"  # a pruning folder whose shared pruning diverged (no state kept)

# A job folder.
PROGRESS = "progress.json"        # the feed, rewritten at least every second while the grid runs
PHASES = "phases.json"            # every task's start, end and seconds, once the grid has ended
CANCEL = "cancel"                 # its presence asks the grid to stop
LAUNCHER = "launcher.json"        # the app's launching process
LOG = "log.txt"                   # the grid's output, for a job launched from the app

# An audit folder: the audit of a predictions file (``python -m ceag audit``, the Audit predictions page).
AUDITS = "audits"                 # <results>/audits/<audit_id>/, the id 12 hex digits of a SHA-256
AUDIT_PREDICTIONS = "predictions.parquet"  # the file's rows, normalized (label, group and split columns as text)
AUDIT_RECORD = "audit.json"       # written last: the options, the file's name and SHA-256, when it was made


def resolve_results(path: str | os.PathLike | None = None) -> Path:
    """The results folder: the argument, else $CEAG_RESULTS, else ./results."""
    return Path(path or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def store_file(results: str | os.PathLike) -> Path:
    return Path(results) / STORE_FILE


def runs_dir(results: str | os.PathLike) -> Path:
    return Path(results) / "runs"


def run_dir(results: str | os.PathLike, run_id: str) -> Path:
    return runs_dir(results) / run_id


def dense_dir(results: str | os.PathLike, cfg: RunConfig) -> Path:
    return Path(results) / "dense" / dense_key(cfg)


def pruned_dir(results: str | os.PathLike, cfg: RunConfig) -> Path:
    return Path(results) / "pruned" / prune_key(cfg)


def jobs_dir(results: str | os.PathLike) -> Path:
    return Path(results) / "jobs"


def job_dir(results: str | os.PathLike, job_id: str) -> Path:
    return jobs_dir(results) / job_id


def cache_dir(results: str | os.PathLike | None) -> Path | None:
    """``<results>/cache``, where the data layer keeps decoded images and file hashes (None: no cache)."""
    return Path(results) / "cache" if results is not None else None


def verdict_cache(results: str | os.PathLike) -> Path:
    """``<results>/cache/verdicts``: the across-seed comparisons already resampled, per split and settings."""
    return Path(results) / "cache" / "verdicts"
