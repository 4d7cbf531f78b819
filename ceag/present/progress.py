"""Progress on stderr: a minimal bar on a terminal; for a grid elsewhere (a log file), a line per finished task."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Call with (phase, done, total); draws ``phase [#####.....] done/total elapsed``."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_phase: str | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._last_phase not in (None, phase):
            self.stream.write("\n")
        self._last_phase = phase
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r{phase:<8} [{bar}] {done}/{total} {elapsed:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last_phase is not None:
            self.stream.write("\n")
            self.stream.flush()


FINAL_STATES = ("cached", "finished", "diverged", "failed", "cancelled")


class GridProgress:
    """A grid's progress on a stream (stderr by default): the bar on a terminal, else lines for a log.

    Call it with the grid's report (``ceag.grid.report.GridReport``: ``total``, ``pending``, ``running``,
    ``runs`` by run id, ``phases`` in the order tasks ended) whenever the report changes. On a
    terminal it draws ``grid [####....] done/total`` (only with ``bar``). On anything else (a file,
    a pipe, a cluster's output) it writes one line per finished task and per finished run with the
    local time, how many runs are done of the total, what it was (a dense or pruning phase, a run or
    a derived cell, with its settings), its short id (a run id, or the first 12 digits of a phase's
    key), its status and seconds (and why, for one that failed, diverged or was cancelled), e.g.::

        2025-06-01 12:00:03  1/4 runs done  run nft digits/mlp sparsity 0.9 seed 0 [1a2b3c4d5e6f7a8b]: finished in 5.1s

    A task that is a cell of the grid gives one line for both; runs loaded from the cache when the
    grid starts are counted in one line. ``tasks``: the grid's phase graph by task id
    (``grid.plan``), which describes the dense and pruning phases (without it they are named by kind).
    """

    def __init__(self, total: int, *, stream=None, tasks: dict | None = None, bar: bool = True):
        self.stream = stream or sys.stderr
        self.terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = ProgressBar(self.stream)
        self.bar.enabled = self.terminal and bar
        self.total = total
        self.tasks = tasks or {}
        self._phases = 0          # phase records already written
        self._told: set[str] = set()  # cells already written
        self._started = False

    def __call__(self, report) -> None:
        done = report.total - report.pending - report.running
        if self.terminal:
            self.bar("grid", done, self.total)
            return
        lines = []
        if not self._started:
            self._started = True
            cached = [rid for rid, e in report.runs.items() if e.get("status") == "cached"]
            self._told.update(cached)
            if cached:
                lines.append(f"{len(cached)} runs loaded from the cache")
        for rec in report.phases[self._phases:]:
            lines.append(self._task_line(rec, report.runs))
        self._phases = len(report.phases)
        for rid, entry in report.runs.items():
            if rid not in self._told and entry.get("status") in FINAL_STATES:
                self._told.add(rid)
                lines.append(f"{_describe('run', entry)} [{rid}]: {entry['status']}{_reason(entry)}")
        if lines:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self.stream.write("".join(f"{stamp}  {done}/{self.total} runs done  {line}\n" for line in lines))
            self.stream.flush()

    def _task_line(self, rec: dict, runs: dict) -> str:
        tid, kind = str(rec.get("task", "")), rec.get("kind", "task")
        key = tid.split(":", 1)[1] if ":" in tid else tid
        cell = key if kind in ("run", "derive") and key in runs else None
        task = self.tasks.get(tid)
        if cell is not None:
            self._told.add(cell)
            entry = runs[cell]
            what, short, status = _describe(kind, entry), cell, entry.get("status", rec.get("status"))
        else:
            what = _describe(kind, _settings(task.cfg) if task is not None else None)
            short, status, entry = (key if kind in ("run", "derive") else key[:12]), rec.get("status"), rec
        return f"{what} [{short}]: {status} in {float(rec.get('seconds') or 0.0):.1f}s{_reason(entry)}"

    def close(self) -> None:
        self.bar.close()


def _settings(cfg) -> dict:
    return {k: getattr(cfg, k, None) for k in ("dataset", "model", "method", "criterion", "sparsity", "tolerance",
                                               "seed")}


def _describe(kind: str, s: dict | None) -> str:
    """e.g. "dense digits/mlp seed 0", "pruning digits/mlp sparsity 0.9 seed 0", "run ceag tolerance 0.02 ...";
    a pruning criterion other than magnitude follows the method ("run nft snip ...", "pruning snip ...")."""
    name = {"derive": "derived"}.get(kind, kind)
    if not s:
        return name
    where = f"{s.get('dataset')}/{s.get('model')}"
    if kind == "dense":
        return f"dense {where} seed {s.get('seed')}"
    sparsity = f"sparsity {s.get('sparsity'):g}" if s.get("sparsity") is not None else ""
    criterion = s.get("criterion")
    pruned = f" {criterion}" if criterion not in (None, "magnitude") else ""
    if kind == "pruning":
        return f"pruning{pruned} {where} {sparsity} seed {s.get('seed')}"
    tol = f" tolerance {s['tolerance']:g}" if s.get("tolerance") is not None else ""
    return f"{name} {s.get('method')}{pruned}{tol} {where} {sparsity} seed {s.get('seed')}"


def _reason(entry: dict) -> str:
    """`` (why)`` for a run or task that did not finish, shortened to one line."""
    if entry.get("status") in ("failed", "diverged", "cancelled") and entry.get("reason"):
        text = " ".join(str(entry["reason"]).split())
        return f" ({text[:157] + '...' if len(text) > 160 else text})"
    return ""
