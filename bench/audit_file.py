"""Auditing a predictions file: read, check, 1,000 paired resamples and the CSV table, for a 100,000-row file
with 100 groups and one sparse model (``python -m ceag audit --predictions FILE --out table.csv`` without
the process start), against the target of 10 s on 2 cores."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Result
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.predictions_file import AuditOptions, load_predictions
from ceag.analysis.stored_audits import audit_predictions
from ceag.present.csv_export import write_csv

ROWS, GROUPS, CLASSES = 100_000, 100, 10
TARGET_SECONDS = 10.0


def synthetic(rows: int = ROWS, groups: int = GROUPS, seed: int = 0) -> pd.DataFrame:
    """A predictions file's columns: one split (no split column), ``group`` 0..groups-1, a dense model right 90 %
    of the time and a sparse one right 80 %, a score column the audit ignores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, rows)
    return pd.DataFrame({"sample_id": np.arange(rows), "y_true": y, "group": rng.integers(0, groups, rows),
                         "dense_pred": np.where(rng.random(rows) < 0.9, y, (y + 1) % CLASSES),
                         "y_pred": np.where(rng.random(rows) < 0.8, y, (y + 1) % CLASSES),
                         "p_pred": rng.random(rows).round(4)})


def audit_file(path: Path, out: Path, settings: BootstrapSettings) -> int:
    """Read + check + intervals + CSV table, as the command does; returns the table's rows."""
    pf = load_predictions(path, AuditOptions(("group",)))
    table = audit_predictions(pf, settings).csv_table()
    write_csv(table, out)
    return len(table)


def run(quick: bool = False) -> list[Result]:
    settings = BootstrapSettings(n_boot=1000)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "predictions.csv", Path(tmp) / "table.csv"
        write_csv(synthetic(), path)
        times = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            rows = audit_file(path, out, settings)
            times.append(time.perf_counter() - start)
        size = path.stat().st_size / 1024 ** 2
    seconds = min(times)
    return [Result("audit a predictions file: 100,000 rows, 100 groups, 1,000 resamples, CSV", seconds, "s",
                   f"< {TARGET_SECONDS:g} s", seconds < TARGET_SECONDS,
                   note=f"{size:.1f} MB CSV, {rows} table rows; fastest of {len(times)}")]


if __name__ == "__main__":
    for r in run():
        print(r.line())
