"""The store: ingest throughput, and the dashboard's queries on a store of many runs x 100 groups."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Result, median_time
from ceag.store import connect, queries
from ceag.store.ingest import RUN_COLUMNS, TABLES, insert_run
from ceag.store.synthetic import fill, run_ids

GROUPS = 100


def _ingest_rows(results: Path, total_rows: int, rows_per_run: int = 3000) -> float:
    """Seconds to ingest ``total_rows`` per-group metric rows through the per-run transaction."""
    n_runs = total_rows // rows_per_run
    rng = np.random.default_rng(0)
    epochs = rows_per_run // (3 * GROUPS)
    base = pd.DataFrame({
        "epoch": np.repeat(np.arange(epochs), 3 * GROUPS), "split": np.tile(np.repeat(["train", "val", "test"], GROUPS),
                                                                              epochs),
        "group_id": np.tile(np.arange(GROUPS), 3 * epochs), "group_name": "g", "n": 10,
        "accuracy": rng.random(rows_per_run), "loss": rng.random(rows_per_run), "dense_accuracy": 0.9,
        "acc_gap": rng.random(rows_per_run), "excess_gap": rng.random(rows_per_run),
    })
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(status="finished", dataset="ingest", model="m", method="nft", sparsity=0.9, seed=0, config="{}",
               data_key="k", dense_key="k", prune_key="k")
    start = time.perf_counter()
    with connect(results, write=True) as con:
        for i in range(n_runs):
            rid = f"ingest{i:08d}"
            frame = base.copy()
            frame.insert(0, "run_id", rid)
            insert_run(con, {**row, "run_id": rid}, {"group_metrics": frame[TABLES["group_metrics"]]}, None, "ingest")
    return time.perf_counter() - start


def run(quick: bool = False) -> list[Result]:
    out = []
    n_rows = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        seconds = _ingest_rows(Path(tmp) / "ingest", n_rows)
        out.append(Result(f"ingest {n_rows:,} per-group rows ({n_rows // 3000} runs, one transaction each)",
                          seconds, "s", "", None, f"{n_rows / seconds:,.0f} rows/s"))

        n_runs = 2_000 if quick else 10_000
        big = Path(tmp) / "big"
        start = time.perf_counter()
        fill(big, runs=n_runs, groups=GROUPS)
        out.append(Result(f"build a store of {n_runs:,} runs x {GROUPS} groups", time.perf_counter() - start, "s",
                          "", None, "generated rows, for timing only"))
        ceag_run = run_ids(big, "ceag", 1)[0]
        some = run_ids(big, "ceag", 10) + run_ids(big, "nft", 10)
        checks = {
            "frontier (mean/std across seeds)": lambda: queries.frontier_summary(big, dataset="bench", split="test"),
            "frontier (one row per run)": lambda: queries.frontier(big, dataset="bench", split="test"),
            "multiplier trace of one run": lambda: queries.duals(big, ceag_run),
            "generalization of 20 runs": lambda: queries.generalization(big, some),
            "runs table": lambda: queries.runs(big),
        }
        for name, fn in checks.items():
            ms = 1000 * median_time(fn, 3 if quick else 7)
            out.append(Result(f"query: {name}, {n_runs:,} runs x {GROUPS} groups", ms, "ms", "< 100", ms < 100,
                              "fresh connection included"))
    return out
