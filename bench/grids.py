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
from ceag.config.presets import preset
from ceag.grid.plan import count_epochs

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


# -- scheduling: how busy two workers are on grids whose cells depend on each other ---------------
SCHEDULE_GRIDS = {
    # The grid of the scheduling issue: one dense model, two end-of-pruning states, four fine-tunings.
    "nft+ceag x 2 sparsities": ["--methods", "nft,ceag", "--sparsities", "0.9,0.95", "--seeds", "0",
                                "--set", "dense_epochs=300", "--set", "prune_epochs=100", "--epochs", "200"],
    "demo preset": ["--preset", "demo"],
    "utkface-shaped (generated images)": ["--datasets", "utkface", "--models", "cnn", "--methods", "nft,ceag",
                                          "--sparsities", "0.9,0.95", "--seeds", "0", "--set", "image_size=24",
                                          "--set", "val_fraction=0", "--set", "batch_size=32",
                                          "--set", "dense_epochs=12", "--set", "prune_epochs=4", "--epochs", "8"],
}


def write_utkface_like(root: Path, per_cell: int = 12, size: int = 24) -> Path:
    """A tiny folder in UTKFace's published layout (``age_gender_race_date.jpg.chip.jpg``), random pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    i = 0
    for race in range(5):
        for gender in range(2):
            for k in range(per_cell):
                age = [5, 25, 45, 70][k % 4]
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{age}_{gender}_{race}_2017010{i:010d}.jpg.chip.jpg")
                i += 1
    return root


def _summed_training(results: Path, report: dict) -> tuple[float, str]:
    """Seconds the workers spent on the grid's work, and where the figure comes from.

    With phase records (the dependency scheduler) it is the sum of every phase task's time; an
    older report has none, so it is the sum of the trained runs' own wall clocks (derived NFT+ES
    cells copy their NFT run's clock and are left out).
    """
    if report.get("phases"):
        return sum(p["seconds"] for p in report["phases"]), "phase tasks"
    seconds = 0.0
    for path in (results / "runs").glob("*/summary.json"):
        summary = json.loads(path.read_text())
        if not summary.get("derived_from"):
            seconds += summary["wall_seconds"]
    return seconds, "runs"


def schedule(code: Path = ROOT, repeat: int = 2, workers: int = 2, only: list[str] | None = None) -> list[dict]:
    """Wall time against summed training time for each of SCHEDULE_GRIDS, ``repeat`` times each.

    ``code``: the checkout whose ``ceag`` runs the grid (compare another revision with ``--code``).
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_utkface_like(Path(tmp) / "data")
        for name, args in SCHEDULE_GRIDS.items():
            if only and name not in only:
                continue
            for attempt in range(repeat):
                results = Path(tmp) / f"r{len(rows)}"
                env = {**os.environ, "PYTHONPATH": str(code)}
                cmd = [sys.executable, "-m", "ceag", "grid", *args, "--workers", str(workers), "--data-dir",
                       str(data), "--results", str(results), "--json"]
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code, check=True)
                command = time.perf_counter() - start
                report = json.loads(proc.stdout)
                summed, source = _summed_training(results, report)
                wall = report["wall_seconds"]
                rows.append({"grid": name, "attempt": attempt + 1, "cells": report["total"], "wall_s": round(wall, 2),
                             "command_s": round(command, 2), "summed_s": round(summed, 2), "summed_from": source,
                             "wall_over_summed": round(wall / summed, 3),
                             "busy_fraction": round(summed / (wall * workers), 3)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.grids",
                                     description="wall time against summed training time of dependent grids")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose ceag runs the grids (default: this)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(SCHEDULE_GRIDS))
    ns = parser.parse_args()
    schedule(ns.code, ns.repeat, only=ns.only)
