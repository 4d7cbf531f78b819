"""The app: server-side time to build each page on a large store, and time to the first chart in Chromium."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import Result, page_build_times
from ceag.store.synthetic import fill

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["overview", "frontiers", "multipliers", "generalization", "launch", "runs"]


def _page_times(results: Path) -> dict[str, tuple[float, float]]:
    """(first build, cached rebuild) seconds per page (``common.page_build_times``)."""
    os.environ["CEAG_RESULTS"] = str(results)
    return {page: page_build_times(page) for page in PAGES}


def _first_chart_seconds(results: Path) -> float | None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshots import CHROMIUM_ARGS, free_port, start_app

    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    port = free_port()
    app = start_app(results, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")  # warm the server (first script run, imports)
            page.wait_for_selector("h1", timeout=60_000)
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/frontiers")
            page.wait_for_selector(".js-plotly-plot .scatterlayer", timeout=60_000)
            seconds = time.perf_counter() - start
            browser.close()
            return seconds
    finally:
        app.terminate()
        app.wait(timeout=10)


def run(quick: bool = False) -> list[Result]:
    out = []
    n_runs = 2_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        fill(results, runs=n_runs, groups=100)
        for page, (first, cached) in _page_times(results).items():
            out.append(Result(f"page build: {page}, {n_runs:,} runs x 100 groups", 1000 * first, "ms", "< 300",
                              1000 * first < 300, f"{1000 * cached:.0f} ms with cached queries"))
        seconds = _first_chart_seconds(results)
        out.append(Result("open Frontiers to first chart, headless Chromium", seconds, "s", "", None,
                          "server warm" if seconds is not None else "no /usr/bin/chromium here"))
    return out
