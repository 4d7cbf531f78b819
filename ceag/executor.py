"""Executors for grids: a local pool of long-lived worker processes, or Ray tasks on a cluster.

The driver plans the stages (shared dense and pruning work first), hands runs to workers,
ingests each run into the store as soon as it ends (one transaction per run), and keeps a
progress feed in ``<results>/jobs/<job_id>/progress.json`` that the app polls. Creating the
file ``<results>/jobs/<job_id>/cancel`` cancels the job: pending runs are dropped, running
ones stopped (their checkpoints let a later call resume them).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, from_dict
from .grid import plan
from .runs import is_finished, now, pid_alive, resolve_results, write_json

POLL_SECONDS = 0.25


@dataclass
class GridReport:
    job_id: str
    total: int
    cached: int = 0
    finished: int = 0
    diverged: int = 0
    failed: int = 0
    cancelled: int = 0
    busy: int = 0
    wall_seconds: float = 0.0
    epochs_trained: int = 0
    dense_trained: int = 0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None  # why the grid as a whole stopped, when it did

    @property
    def state(self) -> str:
        return "cancelled" if self.cancelled else "finished"

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "total": self.total, "cached": self.cached,
                "finished": self.finished, "diverged": self.diverged, "failed": self.failed,
                "cancelled": self.cancelled, "busy": self.busy, "wall_seconds": round(self.wall_seconds, 3),
                "epochs_trained": self.epochs_trained, "dense_trained": self.dense_trained,
                **({"error": self.error} if self.error else {}), "runs": self.runs}


def job_dir(results: Path, job_id: str) -> Path:
    return Path(results) / "jobs" / job_id


def request_cancel(results: str | os.PathLike, job_id: str) -> None:
    path = job_dir(resolve_results(results), job_id) / "cancel"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


# -- the function every worker runs ---------------------------------------------------------
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def execute_run(cfg_dict: dict[str, Any], results: str) -> dict[str, Any]:
    """Run one config (or load it); never raises: failures come back as a record."""
    from .runs import RunBusy, run

    cfg = from_dict(cfg_dict)
    try:
        # If another process (a second grid on this folder) trains this run, wait and load it.
        result = run(cfg, results, wait=True)
    except RunBusy as err:
        return {"run_id": cfg.run_id, "status": "busy", "reason": str(err)}
    except Exception as err:  # recorded and reported; the grid goes on
        from .runs import record_failure

        with contextlib.suppress(OSError):  # e.g. the data failed to load: still a failed run in `ls`
            record_failure(Path(results), cfg, f"{type(err).__name__}: {err}")
        return {"run_id": cfg.run_id, "status": "failed",
                "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=5)}
    s = result.summary
    return {"run_id": cfg.run_id, "status": result.status, "reason": s.get("reason"),
            "cached": result.cached, "epochs_trained": 0 if result.cached else s.get("epochs_trained", 0),
            "dense_trained": bool(s.get("dense_trained")) and not result.cached,
            "wall_seconds": s.get("wall_seconds")}


# -- the driver ---------------------------------------------------------------------------
def preflight(configs: list[RunConfig], results: Path) -> None:
    """Fail before anything is trained or written: data folders, the store, the results folder.

    Each check only reads, so a grid refused here leaves the results folder as it was.
    """
    from .datasets.checks import check_data
    from .runs import ensure_writable
    from .store import verify

    check_data(configs)  # folders, label columns and values of every dataset
    if any(c.dense_checkpoint for c in configs):
        from .checkpoints import read_state_dict

        for path in sorted({c.dense_checkpoint for c in configs if c.dense_checkpoint}):
            read_state_dict(path)  # a file that is no state dict stops the grid here
    verify(results)
    ensure_writable(results)


def run_grid(configs: list[RunConfig], results: str | os.PathLike | None = None, *,
             workers: int | None = None, executor: str = "local", address: str | None = None,
             job_id: str | None = None, progress: Callable[[GridReport], None] | None = None) -> GridReport:
    """Run every config (cached ones are loaded), ingesting each into the store as it ends."""
    from .store import ingest_run

    results = resolve_results(results)
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    job_id = job_id or uuid.uuid4().hex[:12]
    jdir = job_dir(results, job_id)
    from .datasets.checks import resolve_all
    from .datasets.fingerprint import save_cache

    try:
        # The data's fingerprint is part of every run id (a finished run's is known without its data).
        configs = resolve_all(configs, results)
        # Runs finished earlier are loaded, not trained: only the others need their data.
        cached = {cfg.run_id for cfg in configs if is_finished(results, cfg.run_id)}
        todo = [cfg for cfg in configs if cfg.run_id not in cached]
        preflight(todo, results)
        save_cache()  # the data passed its checks: keep its files' content hashes
    except Exception as err:
        if (jdir / "progress.json").exists():  # a job launched from the app: its feed says why
            with contextlib.suppress(OSError):
                write_json(jdir / "progress.json", {"job_id": job_id, "state": "failed", "total": len(configs),
                                                    "error": str(err), "runs": {}, "updated_at": now()})
        raise
    _clear_stale_cancel(jdir)
    start = time.perf_counter()
    report = GridReport(job_id=job_id, total=len(configs))
    for cfg in configs:
        report.runs[cfg.run_id] = {"method": cfg.method, "dataset": cfg.dataset, "model": cfg.model,
                                   "sparsity": cfg.sparsity, "tolerance": cfg.tolerance, "seed": cfg.seed,
                                   "status": "pending"}

    def publish(state: str = "running") -> None:
        report.wall_seconds = time.perf_counter() - start
        write_json(jdir / "progress.json", {**report.to_json(), "state": state, "pid": os.getpid(),
                                            "updated_at": now()}, durable=False)
        if progress:
            progress(report)

    def ingest_if_written(rid: str) -> None:
        # A run that failed before writing its config (bad data, a lost Ray task) has no folder.
        if (Path(results) / "runs" / rid / "config.json").exists():
            ingest_run(results, rid)

    def record(rec: dict[str, Any], counted: bool = True) -> None:
        rid = rec["run_id"]
        if not counted:
            # Work done only to serve a derived cell (the NFT run behind an NFT+ES cell): its
            # training counts, the run is ingested, but it is not one of the grid's cells.
            report.epochs_trained += rec.get("epochs_trained", 0) or 0
            report.dense_trained += int(bool(rec.get("dense_trained")))
            if rec["status"] in ("finished", "diverged", "failed"):
                ingest_if_written(rid)
            publish()
            return
        entry = report.runs.setdefault(rid, {})
        if rec.get("cached"):
            entry["status"] = "cached"
            report.cached += 1
        else:
            entry["status"] = rec["status"]
            if rec["status"] in ("finished", "diverged", "failed", "busy"):
                setattr(report, rec["status"], getattr(report, rec["status"]) + 1)
        if rec.get("reason"):
            entry["reason"] = rec["reason"]
        report.epochs_trained += rec.get("epochs_trained", 0) or 0
        report.dense_trained += int(bool(rec.get("dense_trained")))
        if rec["status"] != "busy":
            ingest_if_written(rid)
        publish()

    cancel_file = jdir / "cancel"
    try:
        # Cached runs: make sure the store has them, and skip.
        for cfg in configs:
            if cfg.run_id in cached:
                record({"run_id": cfg.run_id, "status": "finished", "cached": True})
        publish()
        stages = plan(todo)
        wanted = {c.run_id for c in todo}
        if executor == "ray":
            _run_ray(stages, results, address, record, cancel_file, wanted)
        else:
            _run_local(stages, results, workers or default_workers(), record, cancel_file, wanted, report)
    except BaseException as err:
        # The grid itself stopped (not one run): say so in the feed rather than leave it 'running'.
        interrupted = isinstance(err, KeyboardInterrupt)
        report.error = "interrupted" if interrupted else f"{type(err).__name__}: {err}"
        with contextlib.suppress(OSError):  # the feed is best effort; the error itself propagates
            publish("cancelled" if interrupted else "failed")
        raise

    if cancel_file.exists():
        for entry in report.runs.values():
            if entry.get("status") in ("pending", "running"):
                entry["status"] = "cancelled"
                report.cancelled += 1
    publish(report.state)
    return report


def _clear_stale_cancel(jdir: Path) -> None:
    """A cancel file left by an earlier job with the same id (ended, or killed) must not cancel this one.

    A job launched from the app and cancelled before its process got here keeps its request: its
    feed says 'starting' and its launcher's pid is this process.
    """
    try:
        feed = json.loads((jdir / "progress.json").read_text())
    except (OSError, ValueError):
        return
    if feed.get("state") in ("starting", "running"):
        try:
            launcher = json.loads((jdir / "launcher.json").read_text()).get("pid")
        except (OSError, ValueError):
            launcher = None
        if pid_alive(launcher) or pid_alive(feed.get("pid")):
            return
    (jdir / "cancel").unlink(missing_ok=True)


def _run_local(stages, results, workers: int, record, cancel_file: Path, wanted: set[str], report) -> None:
    if not any(stages):
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        # No pool: run in this process (no start-up cost), still stage by stage.
        _init_worker(threads)
        for stage in stages:
            for cfg in stage:
                if cancel_file.exists():
                    return
                _mark_running(report, cfg, wanted)
                _record_if_wanted(execute_run(cfg.to_dict(), str(results)), record, wanted)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(threads,))
    try:
        for stage in stages:
            futures = {}
            for cfg in stage:
                futures[pool.submit(execute_run, cfg.to_dict(), str(results))] = cfg
                _mark_running(report, cfg, wanted)
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    cfg = futures[fut]
                    try:
                        rec = fut.result()
                    except Exception as err:  # the worker process died
                        rec = {"run_id": cfg.run_id, "status": "failed",
                               "reason": f"worker process died: {type(err).__name__}: {err}"}
                    _record_if_wanted(rec, record, wanted)
                if cancel_file.exists():
                    _stop_pool(pool)
                    return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _mark_running(report, cfg: RunConfig, wanted: set[str]) -> None:
    if cfg.run_id in report.runs and report.runs[cfg.run_id].get("status") == "pending":
        report.runs[cfg.run_id]["status"] = "running"


def _record_if_wanted(rec: dict[str, Any], record, wanted: set[str]) -> None:
    # A training that only serves a derived cell (NFT for NFT+ES) is ingested but not counted.
    record(rec, counted=rec["run_id"] in wanted)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _run_ray(stages, results, address: str | None, record, cancel_file: Path, wanted: set[str]) -> None:
    """Each stage as Ray tasks; results come back to this driver, which writes and ingests."""
    from .ray_executor import run_stages

    run_stages(stages, results, address, record, cancel_file, wanted)
