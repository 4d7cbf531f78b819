"""The dashboard in a real browser: ``streamlit run app.py`` driven through headless Chromium.

Like scripts/screenshots.py, these start the app on a free port and use the system Chromium
(never a downloaded one). Run them with ``pytest -m browser tests/e2e``.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright Python package")

from ceag.plots import METHOD_LABELS  # noqa: E402
from ceag.store import queries  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGES = {
    "": "The disparate impact of pruning",
    "frontiers": "Accuracy–disparity frontiers",
    "multipliers": "Multiplier trajectories",
    "generalization": "Train versus test excess gaps",
    "launch": "Launch a grid",
    "runs": "Runs",
    "run_one": "Run one experiment",
}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'
JOB_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(pid: int) -> None:
    """SIGTERM the process group of a grid job the app launched (not our child), then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def app(tmp_path):
    """The app on a free port over an empty results folder: yields (base url, results folder)."""
    results = tmp_path / "results"
    results.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEAG_MAX_")}
    env.update(CEAG_RESULTS=str(results), PYTHONPATH=str(ROOT))
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the app did not start:\n" + (tmp_path / "streamlit.log").read_text(errors="replace"))
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", results
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        for launcher in results.glob("jobs/*/launcher.json"):  # background grid jobs the app started
            pid = json.loads(launcher.read_text()).get("pid")
            if isinstance(pid, int):
                stop_group(pid)


@pytest.fixture
def page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def open_page(page, url: str, title: str) -> None:
    page.goto(url)
    heading = page.locator("h1", has_text=title)
    heading.wait_for(state="visible", timeout=30_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    assert heading.is_visible()


def settle(page) -> None:
    """Wait for the rerun a widget edit starts, then for the script to finish."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=30_000)


def test_every_page_shows_its_title_and_no_exception(app, page):
    base, _ = app
    for path, title in PAGES.items():
        open_page(page, f"{base}/{path}", title)
        errors = page.locator(EXCEPTION).all_inner_texts()
        assert not errors, f"exception on /{path}: {errors}"
        assert page.locator("h1").first.inner_text() == title
    # The empty store's states, as a user sees them.
    open_page(page, f"{base}/", PAGES[""])
    assert page.get_by_role("button", name="Run the demo grid").is_visible()
    open_page(page, f"{base}/frontiers", PAGES["frontiers"])
    assert page.get_by_text("No runs in this results folder yet.").is_visible()


def plotted_traces(page) -> list[list[dict]]:
    """Per plotly chart on the page, its traces as plotly.js holds them (name, x, y)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el =>
        (el._fullData || []).map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])})))""")


def job_text(page) -> str:
    texts = [t for t in page.locator('[data-testid="stProgress"]').all_inner_texts() if t.startswith("job ")]
    return texts[0] if texts else ""


def test_launch_a_tiny_grid_then_see_its_runs_on_the_frontier(app, page):
    base, results = app
    open_page(page, f"{base}/launch", PAGES["launch"])
    for label, value in (("Sparsities", "0.9"), ("Tolerances ε (CEAG only)", "0.02"), ("Dense epochs", "10"),
                         ("Pruning epochs", "3"), ("Fine-tuning epochs", "3")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        settle(page)
    page.get_by_text("This grid means 4 runs; 0 are already in the store").wait_for(timeout=30_000)
    assert page.locator(EXCEPTION).count() == 0

    page.get_by_role("button", name="Launch", exact=True).click()
    page.get_by_text(re.compile(r"Started job [0-9a-f]{12}\.")).wait_for(timeout=30_000)
    [job] = [d.name for d in (results / "jobs").iterdir()]
    spec = json.loads((results / "jobs" / job / "spec.json").read_text())
    assert (spec["methods"], spec["sparsities"], spec["tolerances"]) == (["nft", "nft_es", "el_rb", "ceag"], [0.9],
                                                                         [0.02])
    assert spec["settings"] == {"dense_epochs": 10, "prune_epochs": 3, "finetune_epochs": 3}
    deadline = time.monotonic() + JOB_TIMEOUT
    text = ""
    while time.monotonic() < deadline:  # the job panel refreshes itself every second
        text = job_text(page)
        if re.search(r": (finished|cancelled|lost),", text):
            break
        page.wait_for_timeout(1000)
    log = (results / "jobs" / job / "log.txt").read_text(errors="replace")
    assert text.startswith(f"job {job}: finished, 4 of 4 runs"), f"job panel says {text!r}; log:\n{log[-3000:]}"
    assert "0 failed" in text
    progress = json.loads((results / "jobs" / job / "progress.json").read_text())
    assert (progress["state"], progress["finished"], progress["failed"]) == ("finished", 4, 0)

    open_page(page, f"{base}/frontiers", PAGES["frontiers"])
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 2", timeout=30_000)
    assert page.locator(EXCEPTION).count() == 0
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    assert len(summary) == 4
    for chart, metric in zip(plotted_traces(page), ("psi_pw", "max_excess_gap"), strict=True):
        traces = {t["name"]: t for t in chart}
        assert {"CEAG", "NFT", "NFT+ES", "EL+RB", "dense model"} <= set(traces)
        for _, row in summary.iterrows():
            trace = traces[METHOD_LABELS[row["method"]]]
            assert trace["y"] == pytest.approx([100 * row["accuracy"]])
            assert trace["x"] == pytest.approx([100 * row[metric]])
    legend = page.locator(".js-plotly-plot .legend").first.text_content()
    assert "CEAG" in legend and "NFT" in legend
