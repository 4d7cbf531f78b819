"""The audit report opens offline in headless Chromium with its charts drawn.

Every request other than the report file itself is refused, so a chart that needed a CDN would
stay empty. Run with ``pytest -m browser tests/e2e``.
"""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright Python package")

from ceag.analysis.audit import Audit  # noqa: E402
from ceag.analysis.bootstrap import BootstrapSettings  # noqa: E402
from ceag.present.report import render_html  # noqa: E402
from ceag.store import connect, queries  # noqa: E402
from tests.test_sentences import DEMO, add_run  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def test_report_renders_offline_with_its_charts(tmp_path):
    with connect(tmp_path, write=True) as con:
        ids = [add_run(con, method, sparsity, tol, 0, gaps) for (method, sparsity, tol), gaps in DEMO.items()
               if sparsity == 0.95]
    groups = queries.audit_groups(tmp_path, ids)
    for col in ("accuracy", "dense_accuracy", "acc_gap", "excess_gap"):  # intervals as the audit adds them
        groups[f"{col}_low"], groups[f"{col}_high"] = groups[col] - 0.02, groups[col] + 0.02
    groups["excess_gap_corrected_low"], groups["excess_gap_corrected_high"] = groups.excess_gap - 0.03, \
        groups.excess_gap + 0.03
    groups["min_detectable_gap"], groups["small_for_tolerance"], groups["corrected_for"] = 0.02, False, 3
    groups["verdict"] = [("meets ε" if g < t - 0.03 else "cannot tell") if t == t else None
                         for g, t in zip(groups.excess_gap, groups.tolerance, strict=True)]
    runs = queries.audit_runs(tmp_path, ids)
    report = tmp_path / "report.html"
    report.write_text(render_html(Audit(groups, runs, BootstrapSettings())), encoding="utf-8")

    refused, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda err: errors.append(str(err)))

            def offline(route):
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(report.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            charts = page.locator(".js-plotly-plot").count()
            bars = page.locator(".js-plotly-plot .bars path").count()
            has_plotly = page.evaluate("typeof window.Plotly")
            heading = page.locator("h1").inner_text()
            first_sentence = page.locator("li").first.inner_text()
        finally:
            browser.close()
    assert errors == [] and refused == []
    assert has_plotly == "object" and charts == 2
    assert bars >= 2 * 3 * 2 * 2  # runs x groups (at least) x splits x charts
    assert heading == "ceag audit of 2 runs"
    assert first_sentence.startswith("On train, NFT hurts digit 8 most")
