"""The driver's view of a running phase graph: what is ready, running and done; each ended run ingested."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ceag.grid.plan import Task
from ceag.grid.report import FINAL_STATES, GridReport
from ceag.results.layout import CONFIG, STATUS, run_dir
from ceag.results.record import mark_cancelled

CANCELLED = "cancelled: the job was cancelled; a later call resumes it from its last checkpoint"


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
        from ceag.store import ingest_run

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
                if (run_dir(self.results, rid) / CONFIG).exists():
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
        from ceag.results.record import record_skipped
        from ceag.store import ingest_run

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
        from ceag.results.layout import dense_dir, pruned_dir
        from ceag.store import ingest_run

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
    from ceag.results.layout import dense_dir, pruned_dir

    if task.kind == "dense":
        path = dense_dir(results, task.cfg) / STATUS
    elif task.kind == "pruning":
        path = pruned_dir(results, task.cfg) / STATUS
    else:
        path = run_dir(results, task.cfg.run_id) / STATUS

    def read() -> dict | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    return read
