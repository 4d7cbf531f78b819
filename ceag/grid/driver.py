"""Running a grid: ``run_grid`` settles the data, checks everything before training (``preflight``), plans
the phase graph (``grid.plan``) and hands it to an executor, a local pool (``grid.pool``) or Ray
(``grid.ray_cluster``).

A task starts as soon as the tasks it reads from have ended and a worker is free, the one with the
longest chain of epochs behind it first; a failed input fails exactly the cells that need it, each with
the reason. Each run is ingested into the store as soon as it ends (one transaction per run), and the
progress feed ``<results>/jobs/<job_id>/progress.json`` is rewritten at least every ``FEED_SECONDS``
while anything runs. Creating ``<results>/jobs/<job_id>/cancel`` cancels the job: pending cells are
dropped, running tasks stopped, and what they leave is marked ``cancelled`` (their checkpoints let a later
call resume them).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ceag.config.run_config import RunConfig
from ceag.grid.plan import plan
from ceag.grid.pool import run_local
from ceag.grid.report import CELL_STATES, FEED_SECONDS, GridReport
from ceag.grid.scheduler import Graph
from ceag.grid.worker import default_workers
from ceag.results.files import now, pid_alive, write_json
from ceag.results.layout import CANCEL, LAUNCHER, PHASES, PROGRESS, job_dir, resolve_results
from ceag.results.record import is_finished


# -- the driver ---------------------------------------------------------------------------
def preflight(configs: list[RunConfig], results: Path) -> None:
    """Fail before anything is trained or written: data folders, the store, the results folder.

    Each check only reads, so a grid refused here leaves the results folder as it was.
    """
    from ceag.datasets.checks import check_data
    from ceag.results.files import ensure_writable
    from ceag.store import verify

    check_data(configs)  # folders, label columns and values of every dataset
    if any(c.dense_checkpoint for c in configs):
        from ceag.training.checkpoints import read_state_dict

        for path in sorted({c.dense_checkpoint for c in configs if c.dense_checkpoint}):
            read_state_dict(path)  # a file that is no state dict stops the grid here
    verify(results)
    ensure_writable(results)


def run_grid(configs: list[RunConfig], results: str | os.PathLike | None = None, *,
             workers: int | None = None, executor: str = "local", address: str | None = None,
             job_id: str | None = None, progress: Callable[[GridReport], None] | None = None) -> GridReport:
    """Run every config (cached ones are loaded), ingesting each into the store as it ends."""
    from ceag.store import ingest_run

    results = resolve_results(results)
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    job_id = job_id or uuid.uuid4().hex[:12]
    jdir = job_dir(results, job_id)
    from ceag.datasets.fingerprint import save_cache
    from ceag.run.data import resolve_all

    try:
        # The data's fingerprint is part of every run id (a finished run's is known without its data).
        configs = resolve_all(configs, results)
        # Runs finished earlier are loaded, not trained: only the others need their data.
        cached = {cfg.run_id for cfg in configs if is_finished(results, cfg.run_id)}
        todo = [cfg for cfg in configs if cfg.run_id not in cached]
        preflight(todo, results)
        save_cache()  # the data passed its checks: keep its files' content hashes
    except Exception as err:
        if (jdir / PROGRESS).exists():  # a job launched from the app: its feed says why
            with contextlib.suppress(OSError):
                write_json(jdir / PROGRESS, {"job_id": job_id, "state": "failed", "total": len(configs),
                                                    **dict.fromkeys(CELL_STATES, 0), "pending": len(configs),
                                                    "error": str(err), "runs": {}, "updated_at": now()})
        raise
    _clear_stale_cancel(jdir)
    workers = 1 if executor == "ray" else (workers or default_workers())
    start = time.perf_counter()
    report = GridReport(job_id=job_id, total=len(configs), workers=workers,
                        datasets=sorted({c.dataset for c in configs}), models=sorted({c.model for c in configs}),
                        methods=sorted({c.method for c in configs}))
    for cfg in configs:
        report.runs[cfg.run_id] = {"method": cfg.method, "dataset": cfg.dataset, "model": cfg.model,
                                   "sparsity": cfg.sparsity, "tolerance": cfg.tolerance, "seed": cfg.seed,
                                   "status": "pending"}
    cancel_file = jdir / CANCEL

    def publish(state: str = "running") -> None:
        with graph.lock:  # the feed is a consistent snapshot: no count changes while it is written
            report.wall_seconds = time.perf_counter() - start
            write_json(jdir / PROGRESS, {**report.to_json(phases=False), "state": state, "pid": os.getpid(),
                                                "updated_at": now()}, durable=False)
            if state != "running":  # the timeline of every task, once the grid has ended
                write_json(jdir / PHASES, report.phases, durable=False)
            if progress:
                progress(report)

    graph = Graph(plan(todo), report, results, publish)
    ticker_stop = threading.Event()

    def tick() -> None:  # the live phase and epoch of running cells, even while no task ends
        while not ticker_stop.wait(FEED_SECONDS):
            graph.refresh()
            with contextlib.suppress(OSError):
                publish()

    ticker = threading.Thread(target=tick, name="ceag-feed", daemon=True)
    try:
        # Cached runs: make sure the store has them, and skip.
        for cfg in configs:
            if cfg.run_id in cached:
                ingest_run(results, cfg.run_id)
                report.runs[cfg.run_id]["status"] = "cached"
        publish()
        ticker.start()
        if executor == "ray":
            from ceag.grid.ray_cluster import run_graph

            report.workers = run_graph(graph, results, address, cancel_file)
        else:
            run_local(graph, results, workers, cancel_file)
    except BaseException as err:
        # The grid itself stopped (not one run): say so in the feed rather than leave it 'running'.
        interrupted = isinstance(err, KeyboardInterrupt)
        report.error = "interrupted" if interrupted else f"{type(err).__name__}: {err}"
        ticker_stop.set()
        with contextlib.suppress(Exception):  # the feed is best effort; the error itself propagates
            graph.stop("cancelled: the grid was interrupted" if interrupted else f"not run: {report.error}",
                       [t for tid, t in graph.tasks.items() if graph.state[tid] == "running"])
            publish("cancelled" if interrupted else "failed")
        raise
    finally:
        ticker_stop.set()
        if ticker.is_alive():
            ticker.join()
    publish(report.state)
    return report


def _clear_stale_cancel(jdir: Path) -> None:
    """A cancel file left by an earlier job with the same id (ended, or killed) must not cancel this one.

    A job launched from the app and cancelled before its process got here keeps its request: its
    feed says 'starting' and its launcher's pid is this process.
    """
    try:
        feed = json.loads((jdir / PROGRESS).read_text())
    except (OSError, ValueError):
        return
    if feed.get("state") in ("starting", "running"):
        try:
            launcher = json.loads((jdir / LAUNCHER).read_text()).get("pid")
        except (OSError, ValueError):
            launcher = None
        if pid_alive(launcher) or pid_alive(feed.get("pid")):
            return
    (jdir / CANCEL).unlink(missing_ok=True)
