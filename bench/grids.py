"""Grids: the demo preset from nothing, worker-pool scaling, and the work that sharing saves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result
from ceag.grid import count_epochs, preset

ROOT = Path(__file__).resolve().parents[1]


def _grid(args: list[str], results: Path) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ceag", "grid", *args, "--results", str(results), "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return time.perf_counter() - start, json.loads(proc.stdout)


def _mean_run_seconds(results: Path) -> float:
    """Mean training time of the runs in a results folder (each run's own wall clock)."""
    seconds = [json.loads(p.read_text())["wall_seconds"] for p in (results / "runs").glob("*/summary.json")]
    return sum(seconds) / len(seconds)


def run(quick: bool = False) -> list[Result]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        seconds, report = _grid(["--preset", "demo"], Path(tmp) / "demo")
        out.append(Result("demo preset from an empty results folder", seconds, "s", "<= 60 (goal 30)",
                          seconds <= 60, f"{report['total']} runs, {report['finished']} trained, process start "
                          "included"))
        again, report2 = _grid(["--preset", "demo"], Path(tmp) / "demo")
        out.append(Result("demo preset again (everything cached)", again, "s", "", None,
                          f"{report2['cached']} of {report2['total']} cached"))

        seeds = "0,1,2,3" if quick else "0,1,2,3,4,5,6,7"
        n = len(seeds.split(","))
        axis = ["--methods", "nft", "--sparsities", "0.95", "--seeds", seeds, "--set", "finetune_epochs=200"]
        t1, _ = _grid([*axis, "--workers", "1"], Path(tmp) / "w1")
        t2, _ = _grid([*axis, "--workers", "2"], Path(tmp) / "w2")
        # The command's own fixed cost (interpreter, imports, planning, store), paid once whatever
        # the pool: the same command again, everything cached.
        fixed, _ = _grid([*axis, "--workers", "2"], Path(tmp) / "w2")
        run1, run2 = _mean_run_seconds(Path(tmp) / "w1"), _mean_run_seconds(Path(tmp) / "w2")
        out.append(Result(f"grid of {n} independent runs, 1 worker", t1, "s", "", None,
                          f"{run1:.2f} s per run, in the driver's process with both cores' threads"))
        out.append(Result(f"grid of {n} independent runs, 2 workers", t2, "s", "", None,
                          f"{run2:.2f} s per run, one thread each"))
        scaling = (t1 - fixed) / (t2 - fixed)
        out.append(Result("worker-pool speed-up, 1 -> 2 workers on 2 cores", scaling, "x", ">= 1.7", scaling >= 1.7,
                          f"wall times less the command's fixed {fixed:.1f} s (the same grid, all cached); "
                          "worker start-up included"))
        out.append(Result("same, end to end", t1 / t2, "x", "", None, "the command's fixed cost included"))
        # Where a shortfall comes from: one worker already trains on both cores' threads, and
        # each worker of a pool starts a Python process that imports torch and loads the data.
        out.append(Result("one run with both cores' threads vs one thread", run2 / run1, "x", "", None,
                          "the 1-worker baseline's own gain from the second core"))
        out.append(Result("pool start-up and feeding, 2 workers", t2 - fixed - n * run2 / 2, "s", "", None,
                          "2-worker wall time less the fixed cost and the runs' own time"))

    for name in ("demo", "utkface", "cifar100"):
        epochs = count_epochs(preset(name).configs())
        ratio = epochs["shared"] / epochs["independent"]
        out.append(Result(f"epochs executed / independent cells, {name} preset", ratio, "x", "", None,
                          f"{epochs['shared']} of {epochs['independent']} epochs"))
    return out
