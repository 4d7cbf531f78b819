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

from ceag.config.vocabulary import METHOD_LABELS  # noqa: E402
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
    "compare": "Compare runs group by group",
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
    # A fresh server's first request straight to a page (a copied link) still gets the app's navigation
    # and sidebar, not a listing of the pages folder.
    open_page(page, f"{base}/frontiers", PAGES["frontiers"])
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Results folder").wait_for(timeout=10_000)
    assert sidebar.locator('[data-testid="stSidebarNav"] a').all_inner_texts()[0].endswith("Overview")
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


def sidebar_click(page, label: str, title: str) -> None:
    """Change page as a user does: the sidebar link (Streamlit clears the URL's query parameters)."""
    # The label ends the link's text ("balanceCompare"); a plain substring would also match an icon's
    # name ("compare_arrowsGeneralization").
    page.locator('[data-testid="stSidebarNav"] a', has_text=re.compile(rf"{re.escape(label)}$")).first.click()
    page.locator("h1", has_text=title).wait_for(state="visible", timeout=30_000)
    settle(page)


def url_params(page) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(page.url).query, keep_blank_values=True))


def test_launch_a_tiny_grid_watch_it_on_the_overview_then_carry_a_selection_everywhere(app, page):
    """One browser session: a grid launched on Launch is found and followed live by the Overview after a
    sidebar click, its results appear without a reload, and a selection and split survive sidebar
    navigation through every page, a reload and a copied link."""
    base, results = app
    open_page(page, f"{base}/launch", PAGES["launch"])
    for label, value in (("Sparsities", "0.9"), ("Tolerances ε (CEAG, CEAG+VS)", "0.02"), ("Dense epochs", "10"),
                         ("Pruning epochs", "3"), ("Fine-tuning epochs", "100000")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        settle(page)
    # An invalid number blocks the launch and says which field, which value and what is allowed.
    page.get_by_text("invalid Fine-tuning epochs='100000': must be a whole number from 0 to 500").wait_for()
    assert page.get_by_role("button", name="Launch", exact=True).count() == 0
    field = page.get_by_label("Fine-tuning epochs", exact=True)
    field.fill("3")
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

    # The Overview finds the job from the results folder (no ?job= in the URL) and shows it until it ends,
    # then its results, with no reload.
    sidebar_click(page, "Overview", PAGES[""])
    assert "job" not in url_params(page)
    deadline = time.monotonic() + JOB_TIMEOUT
    seen_progress, runs_metric = False, ""
    feed = results / "jobs" / job / "progress.json"
    while time.monotonic() < deadline:
        seen_progress |= page.get_by_text(re.compile(f"job {job}: (starting|running)")).count() > 0
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Runs")
        runs_metric = metric.first.inner_text() if metric.count() else ""
        if json.loads(feed.read_text()).get("state") == "finished" and runs_metric.endswith("4"):
            break
        page.wait_for_timeout(500)
    log = (results / "jobs" / job / "log.txt").read_text(errors="replace")
    progress = json.loads(feed.read_text())
    assert (progress["state"], progress["finished"], progress["failed"]) == ("finished", 4, 0), log[-3000:]
    assert runs_metric.endswith("4"), f"the Overview shows {runs_metric!r} after the job ended, without a reload"
    # The ended job leaves the live list within a refresh or two.
    page.get_by_text(re.compile(f"job {job}: (starting|running)")).wait_for(state="detached", timeout=10_000)
    assert seen_progress or progress.get("wall_seconds", 99) < 2, "the running job never showed on the Overview"
    assert page.locator(EXCEPTION).count() == 0

    open_page(page, f"{base}/frontiers", PAGES["frontiers"])
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 3", timeout=30_000)
    assert page.locator(EXCEPTION).count() == 0
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    assert len(summary) == 4
    for chart, metric in zip(plotted_traces(page)[:2], ("psi_pw", "max_excess_gap"), strict=True):
        traces = {t["name"]: t for t in chart}
        assert {"CEAG", "NFT", "NFT+ES", "EL+RB", "dense model"} <= set(traces)
        for _, row in summary.iterrows():
            trace = traces[METHOD_LABELS[row["method"]]]
            assert trace["y"] == pytest.approx([100 * row["accuracy"]])
            assert trace["x"] == pytest.approx([100 * row[metric]])

    # A selection (an NFT run) and a split: through the sidebar to every page and back, a reload, a copied link.
    nft = queries.runs(results, method="nft").run_id[0]
    open_page(page, f"{base}/frontiers?split=train&runs={nft}", PAGES["frontiers"])
    sidebar_click(page, "Multipliers", PAGES["multipliers"])
    assert url_params(page) == {"split": "train", "runs": nft}
    page.get_by_text("No CEAG or EL+RB run is in the selection").wait_for()
    sidebar_click(page, "Generalization", PAGES["generalization"])
    assert url_params(page)["runs"] == nft
    assert page.locator('[data-testid="stMultiSelect"]').filter(has_text=nft).count() == 1
    for label, key in (("Compare", "compare"), ("Launch", "launch"), ("Runs", "runs"),
                       ("Run one experiment", "run_one")):
        sidebar_click(page, label, PAGES[key])
        assert url_params(page) == {"split": "train", "runs": nft}, label
        assert page.locator(EXCEPTION).count() == 0
        if key == "compare":  # NFT against CEAG at the selected run's setting, the selection untouched
            page.get_by_text(re.compile(r"NFT hurts .* most on test")).first.wait_for(timeout=60_000)
    sidebar_click(page, "Frontiers", PAGES["frontiers"])
    assert page.get_by_role("radio", name="train").is_checked()
    page.reload()
    page.locator("h1", has_text=PAGES["frontiers"]).wait_for()
    settle(page)
    assert page.get_by_role("radio", name="train").is_checked()
    assert url_params(page) == {"split": "train", "runs": nft}
    copied = page.url
    other = page.context.browser.new_page(viewport={"width": 900, "height": 900})  # a second tab: a new session
    try:
        open_page(other, copied, PAGES["frontiers"])
        assert other.get_by_role("radio", name="train").is_checked()
        assert other.locator('[data-testid="stAlert"]').filter(has_text=nft).count() == 1  # beside any other notes
        # At 900 px the two charts stack, each as wide as the page's main column (speed and fairness below).
        other.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 3", timeout=30_000)
        widths = other.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                ".map(e => e.getBoundingClientRect().width)")
        assert len(widths) == 3 and min(widths) > 400, widths
    finally:
        other.close()
