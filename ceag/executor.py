"""Executors for grids: a local pool of long-lived worker processes, or Ray tasks on a cluster.

A grid runs as a graph of phases (``grid.plan``): dense training -> pruning to the end-of-
pruning state -> each run's fine-tuning -> derived cells (NFT+ES). A task starts as soon as the
tasks it reads from have ended and a worker is free, the one with the longest chain of epochs
behind it first; a failed input fails exactly the cells that need it, each with the reason.

The driver ingests each run into the store as soon as it ends (one transaction per run) and
keeps a progress feed in ``<results>/jobs/<job_id>/progress.json`` (rewritten at least every
``FEED_SECONDS`` while anything runs, with each running cell's phase and epoch). Creating the
file ``<results>/jobs/<job_id>/cancel`` cancels the job: pending cells are dropped, running
tasks stopped, and what they leave is marked ``cancelled`` (their checkpoints let a later call
resume them).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, from_dict
from .grid import Task, plan
from .runs import is_finished, mark_cancelled, now, pid_alive, resolve_results, run_dir, write_json

POLL_SECONDS = 0.25
FEED_SECONDS = 1.0  # the feed is rewritten at least this often while the grid runs
CELL_STATES = ("pending", "running", "cached", "finished", "diverged", "failed", "cancelled")
FINAL_STATES = CELL_STATES[2:]


@dataclass
class GridReport:
    """A grid's progress and outcome; ``to_json`` is the progress feed (counts always add up to ``total``)."""

    job_id: str
    total: int
    workers: int = 1
    wall_seconds: float = 0.0
    epochs_trained: int = 0
    dense_trained: int = 0
    started_at: str = field(default_factory=now)
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)  # one record per task that ran
    error: str | None = None  # why the grid as a whole stopped, when it did

    def count(self, status: str) -> int:
        return sum(1 for e in self.runs.values() if e.get("status") == status)

    pending = property(lambda self: self.count("pending"))
    running = property(lambda self: self.count("running"))
    cached = property(lambda self: self.count("cached"))
    finished = property(lambda self: self.count("finished"))
    diverged = property(lambda self: self.count("diverged"))
    failed = property(lambda self: self.count("failed"))
    cancelled = property(lambda self: self.count("cancelled"))

    @property
    def state(self) -> str:
        return "cancelled" if self.cancelled else "finished"

    @property
    def worker_seconds(self) -> float:
        """Seconds the workers spent in tasks, summed over every task."""
        return sum(p["seconds"] for p in self.phases)

    @property
    def busy_fraction(self) -> float | None:
        """Summed task time / (wall time x workers): 1.0 when every worker was busy all along."""
        if not self.phases or self.wall_seconds <= 0:
            return None
        return self.worker_seconds / (self.wall_seconds * self.workers)

    def to_json(self, phases: bool = True) -> dict[str, Any]:
        """The report; ``phases=False`` leaves out the per-task records (the feed, rewritten every second)."""
        busy = self.busy_fraction
        return {"job_id": self.job_id, "state": self.state, "total": self.total,
                **{s: self.count(s) for s in CELL_STATES},
                "started_at": self.started_at, "wall_seconds": round(self.wall_seconds, 3),
                "datasets": self.datasets, "models": self.models, "methods": self.methods,
                "workers": self.workers, "epochs_trained": self.epochs_trained, "dense_trained": self.dense_trained,
                "worker_seconds": round(self.worker_seconds, 3),
                "busy_fraction": None if busy is None else round(busy, 3),
                **({"error": self.error} if self.error else {}), "runs": self.runs,
                **({"phases": self.phases} if phases else {})}


def job_dir(results: Path, job_id: str) -> Path:
    return Path(results) / "jobs" / job_id


def request_cancel(results: str | os.PathLike, job_id: str) -> None:
    path = job_dir(resolve_results(results), job_id) / "cancel"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


# -- what every worker runs ------------------------------------------------------------------
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def execute_run(cfg_dict: dict[str, Any], results: str, progress=None) -> dict[str, Any]:
    """Run one config (or load it), all its phases included; never raises: failures come back as a record."""
    from .runs import RunBusy, run

    cfg = from_dict(cfg_dict)
    try:
        # If another process (a second grid on this folder) trains this run, wait and load it.
        result = run(cfg, results, wait=True, progress=progress)
    except RunBusy as err:  # only without waiting; kept as a failure with its reason
        return {"run_id": cfg.run_id, "status": "failed", "reason": str(err)}
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


def execute_task(task_id: str, kind: str, cfg_dict: dict[str, Any], results: str,
                 progress=None) -> dict[str, Any]:
    """One task of the phase graph (see ``grid.Task``); never raises. Adds the task's timing to the record."""
    from .phases import ensure_dense, ensure_pruned

    started, clock = time.time(), time.perf_counter()
    try:
        if kind in ("dense", "pruning"):
            ensure = ensure_dense if kind == "dense" else ensure_pruned
            phase = ensure(from_dict(cfg_dict), results, progress=progress)
            rec = {"status": "finished", "trained": phase.trained, "epochs_trained": phase.epochs_trained,
                   "dense_trained": kind == "dense" and phase.trained, "reason": phase.diverged}
            if kind == "dense":  # counted in dense_trained; epochs_trained counts pruning and fine-tuning
                rec["epochs_trained"] = 0
        else:
            rec = execute_run(cfg_dict, results, progress)
            rec["trained"] = kind == "run" and not rec.get("cached") and rec["status"] != "failed"
    except Exception as err:
        rec = {"status": "failed", "reason": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc(limit=5)}
    return {**rec, "task": task_id, "kind": kind, "started": started, "ended": time.time(),
            "seconds": round(time.perf_counter() - clock, 3), "pid": os.getpid()}


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


class Graph:
    """The driver's view of a running phase graph: what is ready, running and done, and the feed.

    Executors call ``ready()``, ``start(task)`` when a task starts, ``end(task, record)`` when it
    ends, and ``stop(reason)`` when the grid is cancelled. Every change is published to the feed.
    """

    def __init__(self, tasks: dict[str, Task], report: GridReport, results: Path, publish: Callable[[], None]):
        self.tasks, self.report, self.results, self._publish = tasks, report, Path(results), publish
        self.order = {tid: i for i, tid in enumerate(tasks)}
        self.state: dict[str, str] = dict.fromkeys(tasks, "pending")  # pending|running|done|failed|skipped
        self.live: dict[str, Callable[[], dict | None]] = {}  # running task -> its live progress
        self.serving: dict[str, str] = {}  # running task -> the cell it shows progress on
        self.lock = threading.RLock()
        self.cell_configs = {t.cfg.run_id: t.cfg for t in tasks.values() if t.kind in ("run", "derive")}

    # -- scheduling
    def ready(self) -> list[Task]:
        """Tasks whose inputs all exist, longest chain of epochs first."""
        with self.lock:
            out = [t for tid, t in self.tasks.items() if self.state[tid] == "pending"
                   and all(self.state[d] == "done" for d in t.deps)]
        return sorted(out, key=lambda t: (-t.priority, self.order[t.id]))

    def submission_order(self) -> list[Task]:
        """Every task, each after its inputs, the longest chain first among those ready together."""
        import heapq

        waiting = {tid: len(t.deps) for tid, t in self.tasks.items()}
        children: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for t in self.tasks.values():
            for d in t.deps:
                children[d].append(t.id)
        heap = [(-t.priority, self.order[tid], tid) for tid, t in self.tasks.items() if not t.deps]
        heapq.heapify(heap)
        out = []
        while heap:
            _, _, tid = heapq.heappop(heap)
            out.append(self.tasks[tid])
            for child in children[tid]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(heap, (-self.tasks[child].priority, self.order[child], child))
        return out

    def unfinished(self) -> bool:
        with self.lock:
            return any(s in ("pending", "running") for s in self.state.values())

    def start(self, task: Task, live: Callable[[], dict | None] | None = None) -> None:
        with self.lock:
            self.state[task.id] = "running"
            cell = next((c for c in task.cells if self.report.runs[c]["status"] == "pending"), None)
            if cell is not None:
                self.serving[task.id] = cell
                self.report.runs[cell].update(status="running", phase=task.phase)
            if live is not None:
                self.live[task.id] = live
        self._publish()

    def settle(self, task: Task, rec: dict[str, Any]) -> None:
        """Mark ``task`` done (or failed) so what depends on it can start; ``end`` records it afterwards."""
        with self.lock:
            self._release(task)
            self.state[task.id] = "failed" if rec["status"] == "failed" else "done"

    def end(self, task: Task, rec: dict[str, Any]) -> None:
        """Record an ended task: its timing, its cell (ingested into the store), what its failure skips."""
        from .store import ingest_run

        with self.lock:
            self._release(task)
            rep = self.report
            rep.phases.append({"task": task.id, "kind": task.kind, "cells": len(task.cells),
                               "status": rec["status"], "trained": bool(rec.get("trained")),
                               "started": rec.get("started"), "ended": rec.get("ended"),
                               "seconds": rec.get("seconds", 0.0), "pid": rec.get("pid")})
            rep.epochs_trained += rec.get("epochs_trained", 0) or 0
            rep.dense_trained += int(bool(rec.get("dense_trained")))
            failed = rec["status"] == "failed"
            self.state[task.id] = "failed" if failed else "done"
            if task.kind in ("run", "derive"):
                rid = task.cfg.run_id
                if (run_dir(self.results, rid) / "config.json").exists():
                    ingest_run(self.results, rid)
                if rid in rep.runs:
                    entry = rep.runs[rid]
                    entry["status"] = "cached" if rec.get("cached") else rec["status"]
                    for key in ("phase", "epoch", "total_epochs"):
                        entry.pop(key, None)
                    if rec.get("reason"):
                        entry["reason"] = rec["reason"]
            if failed:
                self._skip_dependents(task, rec.get("reason") or "failed")
        self._publish()

    def _release(self, task: Task) -> None:
        self.live.pop(task.id, None)
        cell = self.serving.pop(task.id, None)
        entry = self.report.runs.get(cell) if cell else None
        if entry is not None and entry["status"] == "running":
            entry["status"] = "pending"  # until a task of its next phase starts
            for key in ("phase", "epoch", "total_epochs"):
                entry.pop(key, None)

    def _skip_dependents(self, task: Task, reason: str) -> None:
        """Every task downstream of a failed one is skipped; every cell it served fails with the reason."""
        from .runs import record_skipped
        from .store import ingest_run

        what = {"dense": "its dense phase", "pruning": "its pruning phase", "run": "its NFT run",
                "derive": "its run"}[task.kind]
        why = f"not run: {what} ({task.id.split(':', 1)[1][:12]}) failed: {reason}"
        stack = [t for t in self.tasks.values() if task.id in t.deps]
        while stack:
            t = stack.pop()
            if self.state[t.id] != "pending":
                continue
            self.state[t.id] = "skipped"
            stack += [d for d in self.tasks.values() if t.id in d.deps]
        for cell in task.cells:
            entry = self.report.runs[cell]
            if entry["status"] in FINAL_STATES:  # the failed task's own cell, already recorded
                continue
            entry.update(status="failed", reason=why)
            if record_skipped(self.results, self.cell_configs[cell], why):
                ingest_run(self.results, cell)

    def stop(self, reason: str, running: list[Task]) -> None:
        """The grid was cancelled: once ``running`` tasks' processes are gone, mark what they left cancelled."""
        from .phases import dense_dir, pruned_dir
        from .store import ingest_run

        with self.lock:
            for task in running:
                self._release(task)
                folder = {"dense": dense_dir, "pruning": pruned_dir}.get(task.kind, lambda r, c: run_dir(r, c.run_id))(
                    self.results, task.cfg)
                if mark_cancelled(folder, reason) and task.kind == "run":
                    with contextlib.suppress(Exception):  # the folder says cancelled; `ls` ingests it later
                        ingest_run(self.results, task.cfg.run_id)
            for entry in self.report.runs.values():
                if entry["status"] in ("pending", "running"):
                    entry.update(status="cancelled", reason=reason)
                    for key in ("phase", "epoch", "total_epochs"):
                        entry.pop(key, None)
            for tid, s in self.state.items():
                if s in ("pending", "running"):
                    self.state[tid] = "skipped"
        self._publish()

    def refresh(self) -> None:
        """Copy each running task's live phase and epoch into the cell it serves."""
        with self.lock:
            live = list(self.live.items())
        for tid, read in live:
            try:
                status = read()
            except (OSError, ValueError):
                continue
            if not status or status.get("status", "running") != "running":
                continue
            with self.lock:
                cell = self.serving.get(tid)
                entry = self.report.runs.get(cell) if cell else None
                if entry is not None and entry["status"] == "running" and tid in self.live:
                    entry.update(phase=status.get("phase", entry.get("phase")), epoch=status.get("epoch"),
                                 total_epochs=status.get("total"))


def status_file_reader(results: Path, task: Task) -> Callable[[], dict | None]:
    """Live progress of a task on this machine: the status.json its folder keeps while it trains."""
    from .phases import dense_dir, pruned_dir

    if task.kind == "dense":
        path = dense_dir(results, task.cfg) / "status.json"
    elif task.kind == "pruning":
        path = pruned_dir(results, task.cfg) / "status.json"
    else:
        path = run_dir(results, task.cfg.run_id) / "status.json"

    def read() -> dict | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    return read


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
    cancel_file = jdir / "cancel"

    def publish(state: str = "running") -> None:
        with graph.lock:  # the feed is a consistent snapshot: no count changes while it is written
            report.wall_seconds = time.perf_counter() - start
            write_json(jdir / "progress.json", {**report.to_json(phases=False), "state": state, "pid": os.getpid(),
                                                "updated_at": now()}, durable=False)
            if state != "running":  # the timeline of every task, once the grid has ended
                write_json(jdir / "phases.json", report.phases, durable=False)
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
            from .ray_executor import run_graph

            report.workers = run_graph(graph, results, address, cancel_file)
        else:
            _run_local(graph, results, workers, cancel_file)
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


CANCELLED = "cancelled: the job was cancelled; a later call resumes it from its last checkpoint"


def _run_local(graph: Graph, results: Path, workers: int, cancel_file: Path) -> None:
    if not graph.unfinished():
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        # No pool: run in this process (no start-up cost), task by task in the graph's order.
        _init_worker(threads)
        while (ready := graph.ready()) and not cancel_file.exists():
            task = ready[0]
            graph.start(task, status_file_reader(results, task))
            graph.end(task, execute_task(task.id, task.kind, task.cfg.to_dict(), str(results)))
        if cancel_file.exists():
            graph.stop(CANCELLED, [])
        return
    ctx = multiprocessing.get_context("spawn")

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                      initargs=(threads,))

    pool = new_pool()
    running: dict[cf.Future, Task] = {}

    def submit() -> None:
        # Only as many tasks as workers are handed over, so the most urgent ready task goes next.
        for task in graph.ready()[:workers - len(running)]:
            running[pool.submit(execute_task, task.id, task.kind, task.cfg.to_dict(), str(results))] = task
            graph.start(task, status_file_reader(results, task))

    try:
        while graph.unfinished():
            if cancel_file.exists():
                _stop_pool(pool)
                graph.stop(CANCELLED, list(running.values()))
                return
            submit()
            if not running:  # nothing ready and nothing running: the rest was skipped
                break
            done, _ = cf.wait(running, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            broken = False
            ended = []
            for fut in done:
                task = running.pop(fut)
                try:
                    rec = fut.result()
                except Exception as err:  # the worker process died
                    broken = broken or isinstance(err, BrokenProcessPool)
                    rec = {"status": "failed", "reason": f"worker process died: {type(err).__name__}: {err}"}
                graph.settle(task, rec)
                ended.append((task, rec))
            if broken:  # a dead worker breaks the whole pool: start a new one for the rest
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
            # Free workers get their next task before the driver ingests (the store write takes a while).
            if ended and not cancel_file.exists():
                submit()
            for task, rec in ended:
                graph.end(task, rec)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate the workers and wait until they are gone (nothing they write can come after this)."""
    procs = list(getattr(pool, "_processes", {}).values())
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=30)
    pool.shutdown(wait=False, cancel_futures=True)
