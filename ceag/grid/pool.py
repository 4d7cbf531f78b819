"""The local executor: a pool of long-lived worker processes fed the most urgent ready task."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ceag.grid.plan import Task
from ceag.grid.scheduler import CANCELLED, Graph, status_file_reader
from ceag.grid.worker import execute_task, init_worker

POLL_SECONDS = 0.25


def run_local(graph: Graph, results: Path, workers: int, cancel_file: Path) -> None:
    if not graph.unfinished():
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        # No pool: run in this process (no start-up cost), task by task in the graph's order.
        init_worker(threads)
        while (ready := graph.ready()) and not cancel_file.exists():
            task = ready[0]
            graph.start(task, status_file_reader(results, task))
            graph.end(task, execute_task(task.id, task.kind, task.cfg.to_dict(), str(results)))
        if cancel_file.exists():
            graph.stop(CANCELLED, [])
        return
    ctx = multiprocessing.get_context("spawn")

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
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
