"""What every worker runs: one task of the phase graph, never raising (a failure comes back as a record)."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any

from ceag.config.run_config import from_dict


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


# -- what every worker runs ------------------------------------------------------------------
def init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def execute_run(cfg_dict: dict[str, Any], results: str, progress=None) -> dict[str, Any]:
    """Run one config (or load it), all its phases included; never raises: failures come back as a record."""
    from ceag.results.files import RunBusy
    from ceag.run.pipeline import run

    cfg = from_dict(cfg_dict)
    try:
        # If another process (a second grid on this folder) trains this run, wait and load it.
        result = run(cfg, results, wait=True, progress=progress)
    except RunBusy as err:  # only without waiting; kept as a failure with its reason
        return {"run_id": cfg.run_id, "status": "failed", "reason": str(err)}
    except Exception as err:  # recorded and reported; the grid goes on
        from ceag.results.record import record_failure

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
    from ceag.run.phases import ensure_dense, ensure_pruned

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
