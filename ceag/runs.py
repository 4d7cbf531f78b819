"""Run folders, cached runs and the result record of one run.

A run writes only inside ``<results>/runs/<run_id>/``, every file atomically (temp + rename):
``config.json``, ``status.json``, ``checkpoint.pt`` while it trains, and when it ends
``group_metrics.parquet``, ``run_metrics.parquet``, ``duals.parquet``, ``predictions.parquet``
(per-sample predictions, see ceag.predictions), ``model.pt`` and ``summary.json`` (written last:
its presence marks a finished run). Shared phases live beside:
``dense/<key>/model.pt`` (one dense model per dataset, model and seed) and
``pruned/<key>/state.pt`` (the state at the end of gradual pruning).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .config import RunConfig, dense_key, from_dict, prune_key

RESULTS_ENV = "CEAG_RESULTS"
DEFAULT_RESULTS = "results"
FINISHED_STATES = ("finished", "diverged")


def resolve_results(path: str | os.PathLike | None = None) -> Path:
    """The results folder: the argument, else $CEAG_RESULTS, else ./results."""
    return Path(path or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def run_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / run_id


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- atomic files -------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename over ``path``.

    ``durable=False`` skips the fsync (still atomic for a killed process): for progress files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    text = json.dumps(_json_safe(data), indent=2, sort_keys=True)
    atomic_write(path, lambda p: p.write_text(text), durable=durable)


def read_status(folder: Path) -> dict[str, Any]:
    """The run's status; a 'running' run whose process is gone on this host is 'interrupted'."""
    try:
        status = json.loads((folder / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"status": "interrupted"}
    running_here = status.get("status") == "running" and status.get("host") == socket.gethostname()
    if running_here and not pid_alive(status.get("pid")):
        status["status"] = "interrupted"
    return status


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of this process stays a zombie until reaped; reap it if so.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class RunBusy(RuntimeError):
    """Another process is training this run right now."""


class ResultsNotWritable(OSError):
    """The results folder cannot be written; nothing was changed."""


def ensure_writable(results: Path) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ResultsNotWritable(f"cannot write to the results folder {results}: {err.strerror or err}; choose a "
                                 "writable folder with --results DIR or CEAG_RESULTS") from err


@contextlib.contextmanager
def run_lock(folder: Path, *, wait: bool = True):
    """An exclusive lock on a run folder, released when the process ends however it ends.

    ``wait``: block until another process training this run is done (then its result loads);
    otherwise raise RunBusy at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".lock", "a+")  # noqa: SIM115
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            raise RunBusy(f"run {folder.name} is being trained by another process") from err
        yield
    finally:
        fh.close()


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda p: torch.save(obj, p))


def load_torch(path: Path) -> Any:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, no code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null so the files are valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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
        from .config import MITIGATING_METHODS
        from .diagnostics import counter_from_trace, run_diagnostics

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
        return _json_safe(out)


def is_finished(results: Path, run_id: str) -> bool:
    """Whether the run's folder holds a finished run (its summary is written last, atomically)."""
    return (run_dir(results, run_id) / "summary.json").exists()


def load_result(results: Path, run_id: str) -> RunResult | None:
    """A finished run from its folder, or None when it has not finished."""
    if not is_finished(results, run_id):
        return None
    folder = run_dir(results, run_id)
    summary = json.loads((folder / "summary.json").read_text())
    config = from_dict(json.loads((folder / "config.json").read_text()), stored=True)
    return RunResult(config, summary, pd.read_parquet(folder / "group_metrics.parquet"),
                     pd.read_parquet(folder / "run_metrics.parquet"),
                     pd.read_parquet(folder / "duals.parquet"), cached=True)


def run(cfg: RunConfig, results: str | os.PathLike | None = None, *,
        progress: Callable[[str, int, int], None] | None = None, wait: bool = True) -> RunResult:
    """Run ``cfg``, or load it when a finished run with the same id is in ``results``.

    An unfinished run folder (a killed process) resumes from its last checkpoint. NFT+ES is
    NFT with a different reported iterate, so it is derived from the NFT run (run if needed);
    CEAG+VS selects among its CEAG runs (ceag.selection), run if needed.
    A run that raises is recorded as failed with its reason, then the error propagates.
    """
    from .datasets.checks import cache_dir, resolve
    from .datasets.fingerprint import save_cache
    from .datasets.loading import load_dataset

    results = resolve_results(results)
    cfg = resolve(cfg, results)  # the data's fingerprint is part of the run id
    cached = load_result(results, cfg.run_id)
    if cached is not None:
        return cached
    # A missing or malformed dataset fails here, before anything is written.
    data = load_dataset(cfg, cache_dir(results))
    if cfg.dense_checkpoint:
        from .checkpoints import dense_checkpoint_for

        dense_checkpoint_for(cfg, data)  # so does a checkpoint that cannot be used
    ensure_writable(results)
    save_cache()  # the data loaded: keep its files' content hashes for the next fingerprint
    folder = run_dir(results, cfg.run_id)
    with run_lock(folder, wait=wait):
        cached = load_result(results, cfg.run_id)  # finished while we waited for the lock
        if cached is not None:
            return cached
        if cfg.method == "nft_es":
            nft = run(cfg.replace(method="nft"), results, progress=progress, wait=wait)
            return derive_nft_es(cfg, nft, results)
        if cfg.method == "ceag_vs":  # derived: selects among its CEAG runs on validation
            from .selection import candidate_configs, derive_ceag_vs

            found = [run(c, results, progress=progress, wait=wait) for c in candidate_configs(cfg)]
            return derive_ceag_vs(cfg, found, results)
        try:
            return _train_run(cfg, results, folder, progress)
        except BaseException as err:
            if not (folder / "config.json").exists():
                raise
            status = read_status(folder)
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
            with contextlib.suppress(OSError):  # best effort: the disk may be what failed
                write_json(folder / "status.json", {**status, "status": "interrupted" if isinstance(
                    err, KeyboardInterrupt) else "failed", "reason": reason, "finished_at": now()})
            raise


def _train_run(cfg: RunConfig, results: Path, folder: Path, progress) -> RunResult:
    import torch

    from .datasets.checks import cache_dir
    from .datasets.loading import load_dataset
    from .engine import resolve_device, train, train_dense
    from .methods.heldout import constraint_record
    from .phases import dense_ready, ensure_dense, ensure_pruned, pruned_ready, shares_pruning

    elapsed = _stopwatch()
    device = resolve_device(cfg.device)
    write_json(folder / "config.json", cfg.to_dict())
    started = now()
    base_status = {"status": "running", "started_at": started, "pid": os.getpid(),
                   "host": socket.gethostname()}
    # The phase it starts in: the first whose output is missing.
    if not dense_ready(results, cfg):
        first = {"phase": "dense", "epoch": 0, "total": cfg.dense_epochs, "run_epoch": 0}
    elif shares_pruning(cfg) and pruned_ready(results, cfg):
        first = {"phase": "fine-tuning", "epoch": 0, "total": cfg.finetune_epochs, "run_epoch": cfg.prune_epochs}
    else:
        first = _phase_epoch(cfg, 0)
    write_json(folder / "status.json", {**base_status, **first})

    def report(phase: str, done: int, total: int) -> None:
        # The engine counts the run's epochs from the start of pruning; the status names the phase
        # and counts within it ("pruning 3 of 15", "fine-tuning 2 of 45").
        where = _phase_epoch(cfg, done) if phase == "train" else {"phase": phase, "epoch": done, "total": total,
                                                                              "run_epoch": 0}
        write_json(folder / "status.json", {**base_status, **where}, durable=False)
        if progress:
            progress(where["phase"], where["epoch"], where["total"])

    # The shared phases first, each under its own lock (a grid may have run them already).
    dense_phase = ensure_dense(cfg, results, progress=report)
    pruned_phase = ensure_pruned(cfg, results, progress=report)
    tuning_started, tuning_clock = now(), _stopwatch()
    data = load_dataset(cfg, cache_dir(results)).to(device)
    dense, _ = load_dense(cfg, data, results, device, report, train_dense)

    resume, resumed_from = None, None
    if (folder / "checkpoint.pt").exists():
        resume, resumed_from = load_torch(folder / "checkpoint.pt"), "checkpoint"
    shares = shares_pruning(cfg)
    pruned_path = Path(results) / "pruned" / prune_key(cfg) / "state.pt"
    if resume is None and shares and pruned_path.exists():
        # No method is active while pruning, so the saved method state carries nothing; it may come
        # from a run with other method settings (buffer size, ablation), so it is not loaded.
        resume = {**load_torch(pruned_path), "method": None}
        # Pruned by this call: the run did all its phases itself, as if it never stopped.
        resumed_from = ("checkpoint" if pruned_phase.resumed else None) if pruned_phase.trained else "pruned"

    outcome = train(cfg, data, dense, device, resume=resume,
                    save_checkpoint=lambda ckpt: save_torch(folder / "checkpoint.pt", ckpt),
                    progress=report)
    state = outcome.state
    group_metrics = pd.DataFrame(state.group_rows)
    run_metrics = pd.DataFrame(state.run_rows)
    duals = _duals_frame(state)
    from .diagnostics import learning_check, run_diagnostics
    from .predictions import write_run_predictions  # per-sample predictions; NFT also keeps its best iterate's

    predictions = write_run_predictions(folder, outcome.model, dense, data,
                                        outcome.best_model if cfg.method == "nft" else None, amp=cfg.amp)
    diagnostics = run_diagnostics(cfg, run_metrics, group_metrics, outcome.constraint_counter,
                                  last_epoch=-1 if outcome.diverged else state.epoch)
    diagnostics["learning"] = learning_check(predictions, data.class_names)
    summary = {
        "run_id": cfg.run_id, "status": "diverged" if outcome.diverged else "finished",
        "reason": str(outcome.diverged) if outcome.diverged else None,
        "diverged_step": outcome.diverged.step if outcome.diverged else None,
        "reported_epoch": outcome.reported_epoch, "best_epoch": state.best_epoch,
        "selection_split": outcome.selection_split,
        "achieved_sparsity": outcome.achieved_sparsity, "model_sparsity": outcome.model_sparsity,
        "group_names": data.group_names, "class_names": data.class_names,
        "dense_key": dense_key(cfg), "prune_key": prune_key(cfg),
        "dense_trained": dense_phase.trained, "resumed_from": resumed_from, "skipped_files": data.skipped or {},
        "data_fingerprint": cfg.data_fingerprint, "data_report": data.report or {},
        "epochs_trained": pruned_phase.epochs_trained + cfg.total_epochs - (resume["state"]["epoch"] if resume else 0),
        "phases": {"dense": dense_phase.to_json(), "pruning": pruned_phase.to_json(),
                   "fine-tuning": {"kind": "fine-tuning", "trained": True, "started_at": tuning_started,
                                   "seconds": tuning_clock()}},
        "constraint_data": constraint_record(cfg, data),
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "started_at": started, "finished_at": now(),
        "wall_seconds": elapsed(), "diagnostics": diagnostics,
    }
    write_parquet(folder / "group_metrics.parquet", group_metrics)
    write_parquet(folder / "run_metrics.parquet", run_metrics)
    write_parquet(folder / "duals.parquet", duals)
    save_torch(folder / "model.pt", {k: v.cpu() for k, v in outcome.model.state_dict().items()})
    if outcome.best_model is not None and cfg.method == "nft":  # NFT+ES is derived from it
        save_torch(folder / "best_model.pt", outcome.best_model)
    write_json(folder / "summary.json", summary)
    write_json(folder / "status.json", {"status": summary["status"], "started_at": started,
                                        "finished_at": summary["finished_at"], **_phase_epoch(cfg, state.epoch)})
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return RunResult(cfg, summary, group_metrics, run_metrics, duals, cached=False)


def _phase_epoch(cfg: RunConfig, run_epoch: int) -> dict[str, Any]:
    """Where a run stands after ``run_epoch`` epochs of pruning + fine-tuning: phase, epoch in it, its length.

    ``run_epoch`` (the run's own count, what the store's ``progress_epoch`` holds) travels along.
    """
    E = cfg.prune_epochs
    if 0 < run_epoch <= E or (run_epoch == 0 and E > 0):
        return {"phase": "pruning", "epoch": run_epoch, "total": E, "run_epoch": run_epoch}
    return {"phase": "fine-tuning", "epoch": run_epoch - E, "total": cfg.total_epochs - E, "run_epoch": run_epoch}


def mark_cancelled(folder: Path, reason: str) -> bool:
    """Record a stopped, unfinished run or phase folder as ``cancelled`` (it stays resumable).

    Call only once the process that trained it is gone. Returns whether the folder was marked.
    """
    if (folder / "summary.json").exists() or not (folder / "status.json").exists():
        return False
    try:
        status = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        status = {}
    if status.get("status") not in (None, "running", "interrupted"):
        return False
    write_json(folder / "status.json", {**status, "status": "cancelled", "reason": reason, "finished_at": now()})
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
            write_json(folder / "config.json", cfg.to_dict())
            write_json(folder / "status.json", {"status": "failed", "reason": reason, "finished_at": now()})
    except RunBusy:
        return False
    return True


def record_failure(results: Path, cfg: RunConfig, reason: str) -> bool:
    """Record ``cfg`` as a failed run with ``reason`` when it failed before writing its folder
    (e.g. while loading its data), so grids, ``ls`` and the app list it. True when written."""
    if (run_dir(Path(results), cfg.run_id) / "config.json").exists():
        return False  # the run wrote its own record
    return record_skipped(Path(results), cfg, reason)


def derive_nft_es(cfg: RunConfig, nft: RunResult, results: Path) -> RunResult:
    """NFT+ES from its NFT run: same training, reporting the best iterate on the selection split."""
    folder = run_dir(results, cfg.run_id)
    source = run_dir(results, nft.run_id)
    best = nft.summary.get("best_epoch")
    usable = nft.status == "finished" and best is not None and (source / "best_model.pt").exists()
    reported = best if usable else nft.summary["reported_epoch"]
    summary = {**nft.summary, "run_id": cfg.run_id, "derived_from": nft.run_id, "reported_epoch": reported,
               "achieved_sparsity": _sparsity_at(nft.run_metrics, reported, nft.summary["achieved_sparsity"]),
               "epochs_trained": 0, "dense_trained": False, "finished_at": now()}
    write_json(folder / "config.json", cfg.to_dict())
    for name in ("group_metrics", "run_metrics", "duals"):
        write_parquet(folder / f"{name}.parquet", getattr(nft, name))
    model_file = "best_model.pt" if usable else "model.pt"
    atomic_write(folder / "model.pt", lambda p: p.write_bytes((source / model_file).read_bytes()))
    pred_file = source / ("best_predictions.parquet" if usable else "predictions.parquet")
    if pred_file.exists():  # absent for NFT runs made before predictions were kept: computed on demand
        atomic_write(folder / "predictions.parquet", lambda p: p.write_bytes(pred_file.read_bytes()))
        if summary.get("diagnostics") is not None:  # whether the iterate it reports learned, not NFT's last one
            from .diagnostics import learning_check

            learning = learning_check(pd.read_parquet(pred_file), summary.get("class_names"))
            summary["diagnostics"] = {**summary["diagnostics"], "learning": learning}
    write_json(folder / "summary.json", summary)
    write_json(folder / "status.json", {"status": summary["status"], "finished_at": summary["finished_at"],
                                        "derived_from": nft.run_id})
    return RunResult(cfg, summary, nft.group_metrics, nft.run_metrics, nft.duals, cached=False)


def _sparsity_at(run_metrics: pd.DataFrame, epoch: int, default: float) -> float:
    """The sparsity recorded at ``epoch`` (the reported iterate's own), else ``default``."""
    rows = run_metrics[run_metrics["epoch"] == epoch]
    return float(rows["sparsity"].iloc[0]) if len(rows) else default


def load_dense(cfg, data, results: Path, device, progress, train_dense):
    """(model, trained now?): the dense model for its settings, loaded if trained before.

    With ``dense_checkpoint`` the model is the checkpoint (checkpoints.py says which layouts
    load), or is trained from it when only its backbone fits (ImageNet weights).
    """
    from .models import build_model

    path = Path(results) / "dense" / dense_key(cfg) / "model.pt"
    fitted = None
    if cfg.dense_checkpoint:
        from .checkpoints import dense_checkpoint_for

        fitted = dense_checkpoint_for(cfg, data)
        if not fitted.needs_training:
            model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
            model.load_state_dict(fitted.state)
            return model.to(device), False
    if path.exists():
        model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
        model.load_state_dict(load_torch(path))
        return model.to(device), False
    model = train_dense(cfg, data, device, progress, **({"initial": fitted.state} if fitted else {}))
    save_torch(path, {k: v.cpu() for k, v in model.state_dict().items()})
    return model, True


def _duals_frame(state) -> pd.DataFrame:
    import numpy as np

    cols = ["step", "epoch", "group_id", "multiplier", "violation"]
    if not state.trace_steps:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    mult = np.asarray(state.trace_multipliers, dtype=np.float64)
    viol = np.asarray(state.trace_violations, dtype=np.float64)
    steps, groups = mult.shape
    return pd.DataFrame({
        "step": np.repeat(state.trace_steps, groups), "epoch": np.repeat(state.trace_epochs, groups),
        "group_id": np.tile(np.arange(groups), steps),
        "multiplier": mult.ravel(), "violation": viol.ravel(),
    })


def _stopwatch() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: round(time.perf_counter() - start, 3)
