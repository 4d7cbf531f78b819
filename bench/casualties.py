"""What pruning broke, on real runs: how fast the gallery page opens and how large the report's pictures make it.

On a results folder of runs of the real UTKFace folder (``--results``, e.g. the folders ``real_faces`` keeps; the
pictures are read from ``--data-dir``): the NFT run with the most samples and the one with the most groups.

- the gallery page (What pruning broke) opened on that run, through Streamlit's AppTest: the first visit and a
  second one (target: under 2 s after the first visit), with the pictures it shows;
- ``ceag report`` of the NFT run with the most groups at 16 pictures per group (target: under 5 MB, the report
  one self-contained file), without pictures for the difference, and of that run with its CEAG twin;
- that every group's cells add up to its size and give the stored sparse accuracy (the check is exact).

Without such a folder the suite says so and measures nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result

ROOT = Path(__file__).resolve().parents[1]
OPEN_LIMIT = 2.0           # seconds to open the page after the first visit
REPORT_LIMIT = 5 * 2**20   # bytes of a report with 16 pictures per group
PICTURES = 16


def _page_seconds(results: Path, data_dir: str, run_id: str) -> tuple[float, float, int]:
    from streamlit.testing.v1 import AppTest

    os.environ["CEAG_RESULTS"], os.environ["CEAG_DATA"] = str(results), data_dir
    times, shown = [], 0
    for _ in range(2):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["gallery"] = run_id
        at.run()
        start = time.perf_counter()
        at.switch_page("dashboard/casualties.py").run()
        times.append(time.perf_counter() - start)
        if at.exception:
            raise RuntimeError(f"the gallery raised: {at.exception[0].value}")
        shown = sum(h.proto.body.count("data:image/jpeg") for h in at.get("html"))
    return times[0], times[1], shown


def _report_bytes(results: Path, data_dir: str, run_ids: list[str], pictures: int) -> int:
    out = Path(tempfile.mkdtemp(prefix="ceag-bench-report-")) / "report.html"
    proc = subprocess.run([sys.executable, "-m", "ceag", "report", "--runs", ",".join(run_ids), "--out", str(out),
                           "--thumbnails", str(pictures), "--data-dir", data_dir, "--results", str(results)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ceag report failed: {proc.stderr[-2000:]}")
    return out.stat().st_size


def measure(results: Path, data_dir: str) -> list[Result]:
    import numpy as np

    from ceag.analysis.casualties import cell_counts
    from ceag.results.predictions import run_names, run_predictions
    from ceag.store import queries

    runs = queries.runs(results, status="finished")
    nft = runs[(runs.method == "nft") & (runs.dataset != "digits")]
    if nft.empty:
        return [Result("casualties: no finished NFT run on face images", None, "", note=str(results))]
    sizes, groups = {}, {}
    exact, unnamed = True, 0
    for rid in nft.run_id:
        frame = run_predictions(results, rid)
        names, _ = run_names(results, rid)
        if frame["file"].notna().any():  # runs made before files were recorded have no pictures to time
            sizes[rid], groups[rid] = len(frame), len(names)
        else:
            unnamed += 1
        stored = queries.group_metrics(results, rid)
        for split in sorted(set(frame.split)):
            counts = cell_counts(frame, split, names).set_index("group_id")
            mine = stored[stored.split == split].set_index("group_id")
            exact &= bool((counts.n == mine.n).all()) and bool(np.allclose(counts.accuracy, mine.accuracy,
                                                                           atol=1e-12, equal_nan=True))
    if not sizes:
        return [Result("casualties: no NFT run whose predictions name their files", None, "",
                       note=f"{unnamed} runs were made before files were recorded")]
    biggest = max(sizes, key=sizes.__getitem__)
    first, again, shown = _page_seconds(results, data_dir, biggest)
    out = [Result("casualties: cells add up to each group and give its stored accuracy", float(exact), "",
                  "1", exact, note=f"{len(nft)} NFT runs, every split"),
           Result(f"casualties: gallery page on {sizes[biggest]:,} samples, second visit", again, "s",
                  f"< {OPEN_LIMIT:g}", again < OPEN_LIMIT,
                  note=f"first visit {first:.2f} s; {shown} pictures shown; run {biggest}")]
    widest = max(groups, key=groups.__getitem__)
    row = runs.set_index("run_id").loc[widest]
    mates = runs[(runs.method == "ceag") & (runs.dataset == row.dataset) & (runs.model == row.model)
                 & np.isclose(runs.sparsity, row.sparsity) & (runs.seed == row.seed)]
    with_pictures = _report_bytes(results, data_dir, [widest], PICTURES)
    without = _report_bytes(results, data_dir, [widest], 0)
    out.append(Result(f"casualties: report of one run, {groups[widest]} groups, {PICTURES} pictures per group",
                      with_pictures / 2**20, "MB", f"< {REPORT_LIMIT / 2**20:g}", with_pictures < REPORT_LIMIT,
                      note=f"{without / 2**20:.2f} MB without pictures (plotly.js is most of it)"))
    if len(mates):
        both = _report_bytes(results, data_dir, [widest, mates.run_id.iloc[0]], PICTURES)
        out.append(Result(f"casualties: report of NFT and CEAG, {groups[widest]} groups, {PICTURES} pictures per group "
                          "each", both / 2**20, "MB"))
    return out


def run(quick: bool = False, data_dir: str | None = None, results: str | None = None) -> list[Result]:
    data_dir = data_dir or os.environ.get("CEAG_DATA") or "data"
    folder = Path(results or os.environ.get("CEAG_RESULTS") or "results")
    if not (folder / "runs").is_dir():
        return [Result("casualties: no results folder", None, "", note=f"{folder} holds no runs; pass --results")]
    return measure(folder, data_dir)
