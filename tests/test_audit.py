"""The audit of chosen runs: intervals on the store's numbers, the report (HTML, CSV) and its CLI, the plots."""

import html
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.audit import CSV_COLUMNS, UnknownRuns, audit, comparable_setting, default_comparison
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.present.plots.frontier import overview_chart
from ceag.present.plots.groups import group_interval_bars
from ceag.present.report import audited, render_html, write_report
from ceag.present.sentences.compare import audit_sentences
from ceag.results.layout import PREDICTIONS as PREDICTIONS_FILE
from ceag.results.layout import run_dir
from ceag.run.pipeline import run
from ceag.store import ingest_run, queries
from tests.conftest import fast_config
from tests.helpers import ROOT, subprocess_env

FAST = BootstrapSettings(n_boot=200)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG at two tolerances on the same setting, finished and ingested (a few seconds)."""
    import torch

    results = tmp_path_factory.mktemp("audit")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ids = {}
    try:
        for method, tol in (("nft", None), ("ceag", 0.01), ("ceag", 0.05)):
            result = run(fast_config(method=method, tolerance=tol, val_fraction=0.2), results)
            ingest_run(results, result.run_id)
            ids[(method, tol)] = result.run_id
    finally:
        torch.set_num_threads(before)
    return results, ids


def ceag_cli(*args, results):
    return subprocess.run([sys.executable, "-m", "ceag", *map(str, args), "--results", str(results)],
                          capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=120)


def test_the_default_comparison_is_nft_against_ceag_at_each_tolerance(store):
    results, ids = store
    cfg = fast_config()
    chosen = default_comparison(queries.runs(results), dataset=cfg.dataset, model=cfg.model, sparsity=cfg.sparsity,
                                seed=cfg.seed)
    assert chosen == [ids[("nft", None)], ids[("ceag", 0.01)], ids[("ceag", 0.05)]]
    assert default_comparison(queries.runs(results), dataset=cfg.dataset, model=cfg.model, sparsity=0.5, seed=0) == []
    setting = comparable_setting(queries.runs(results))
    assert (setting.dataset, setting.sparsity, setting.seed) == (cfg.dataset, cfg.sparsity, cfg.seed)
    assert comparable_setting(queries.runs(results).query("method == 'nft'")) is None


def test_audit_keeps_the_store_values_and_adds_intervals_that_cover_them(store):
    results, ids = store
    chosen = list(ids.values())
    result = audited(results, chosen, FAST)
    stored = queries.audit_groups(results, chosen)
    assert len(result.groups) == len(stored) == 3 * 3 * 4  # runs x splits x groups
    merged = result.groups.merge(stored, on=["run_id", "split", "group_id"], suffixes=("", "_store"))
    for col in ("n", "accuracy", "dense_accuracy", "acc_gap", "excess_gap"):
        assert (merged[col] == merged[f"{col}_store"]).all(), col
    g = result.groups
    for col in ("accuracy", "dense_accuracy", "acc_gap", "excess_gap"):
        assert g[f"{col}_low"].notna().all(), col
        assert ((g[f"{col}_low"] <= g[col] + 1e-12) & (g[col] <= g[f"{col}_high"] + 1e-12)).all(), col
    # verdicts: only for runs with a tolerance, read from the intervals widened for the groups of each split
    assert g.loc[g.method == "nft", "verdict"].isna().all()
    ceag = g[g.method == "ceag"]
    lo, hi = ceag.excess_gap_corrected_low, ceag.excess_gap_corrected_high
    assert ((lo <= ceag.excess_gap_low + 1e-12) & (ceag.excess_gap_high <= hi + 1e-12)).all()  # wider
    expected = np.where(hi <= ceag.tolerance, "meets ε", np.where(lo > ceag.tolerance, "exceeds ε", "cannot tell"))
    assert list(ceag.verdict) == list(expected)
    assert (g.corrected_for == 4).all()  # four groups with an interval in every split
    assert (g.min_detectable_gap > 0).all()
    assert (g.small_for_tolerance == (g.min_detectable_gap > g.tolerance)).all()
    assert set(result.runs["split"]) == {"train", "val", "test"} and result.runs["max_excess_gap_low"].notna().all()
    # no note about intervals or data; the runs' own diagnostics say what they say against their numbers
    trust = queries.run_trust(results, chosen)
    expected_notes = sum(len(w) for w in trust["warnings"]) + int(((trust["converged"] == False)  # noqa: E712
                                                                   & trust["advice"].notna()).sum())
    assert len(result.notes) == expected_notes, result.notes


def test_older_runs_without_stored_predictions_get_the_same_intervals(store):
    results, ids = store
    rid = ids[("ceag", 0.01)]
    before = audit(results, [rid], FAST).groups
    path = run_dir(results, rid) / PREDICTIONS_FILE
    saved = path.read_bytes()
    path.unlink()
    try:
        after = audit(results, [rid], FAST).groups
    finally:
        path.write_bytes(saved)
    pd.testing.assert_frame_equal(before, after)


def test_unknown_or_unfinished_runs_are_named(store):
    results, ids = store
    with pytest.raises(UnknownRuns, match="not a finished run in .*: nope, 0123; `python -m ceag ls"):
        audit(results, [ids[("nft", None)], "nope", "0123"])
    with pytest.raises(UnknownRuns, match="no run ids given"):
        audit(results, [])


def test_report_csv_has_exactly_the_issue_columns_and_the_audit_values(store, tmp_path):
    results, ids = store
    chosen = [ids[("nft", None)], ids[("ceag", 0.05)]]
    out = tmp_path / "table.csv"
    proc = ceag_cli("report", "--runs", ",".join(chosen), "--out", out, "--n-boot", 200, results=results)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote the audit of 2 runs to {out}"
    table = pd.read_csv(out)
    assert list(table.columns) == CSV_COLUMNS
    assert len(table) == 2 * 3 * 4 and list(dict.fromkeys(table.run_id)) == chosen
    expected = audit(results, chosen, FAST).csv_table()
    expected["verdict"] = expected["verdict"].astype(object).where(expected["verdict"].notna(), np.nan)
    table["verdict"] = table["verdict"].astype(object)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, rtol=1e-12, atol=0)
    assert set(table.loc[table.run_id == chosen[1], "verdict"]) <= {"meets ε", "exceeds ε", "cannot tell"}
    narrow = audit(results, chosen, BootstrapSettings(n_boot=200, confidence=0.5)).csv_table()
    assert ((narrow.accuracy_high - narrow.accuracy_low) <= (table.accuracy_high - table.accuracy_low)).all()
    assert ((narrow.accuracy_high - narrow.accuracy_low) < (table.accuracy_high - table.accuracy_low)).any()


@pytest.mark.parametrize("args, message", [
    (["--runs", "nope,{nft}"], "error: not a finished run in .*: nope; `python -m ceag ls --status finished`"),
    (["--runs", " , "], "error: no run ids given"),
    (["--runs", "{nft}", "--ci", "95"], r"error: invalid --ci 95(\.0)?: must be a fraction strictly between 0 and 1"),
    (["--runs", "{nft}", "--n-boot", "0"], "error: invalid --n-boot 0: the number of resamples must be"),
    (["--runs", "{nft}", "--out", "report.pdf"], "error: invalid --out='report.pdf': the report is written as"),
])
def test_bad_report_requests_exit_2_with_a_clear_message(store, tmp_path, capsys, args, message):
    from ceag.cli import main

    results, ids = store
    args = [a.format(nft=ids[("nft", None)]) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "r.html")]
    try:
        code = main(["report", *args, "--results", str(results)])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "r.html").exists()


def test_html_report_is_self_contained_with_everything_an_auditor_attaches(store, tmp_path):
    results, ids = store
    chosen = list(ids.values())
    out, result = write_report(results, chosen, tmp_path / "report.html", FAST)
    text = out.read_text()
    assert not re.search(r"<script[^>]+src=", text), "every script is inline"
    # the audit's two charts and the speed-fairness chart of the runs' footprints; plotly.js embedded once
    assert text.count("Plotly.newPlot") == 3 and len(text) > 3_000_000
    assert "<h2>Speed and fairness</h2>" in text
    for rid in chosen:
        assert rid in text
    told = audit_sentences(result)
    assert len(told) >= 4
    for sentence in told:
        assert html.escape(sentence) in text
    config = json.loads(queries.run_config(results, chosen[0]))
    for key in ("dual_lr", "buffer_size", "prune_epochs", "tolerance"):
        assert key in config and f"<td class=\"text\">{key}</td>" in text
    for package in ("torch", "numpy", "plotly", "fairlearn", "duckdb", "python"):
        assert f"<td class=\"text\">{package}</td>" in text
    assert "95 % paired percentile bootstrap" in text and "200 resamples" in text
    first = result.groups.iloc[0]
    assert f"{100 * first.excess_gap_low:.1f} – {100 * first.excess_gap_high:.1f}" in text


def test_interval_bars_and_overview_chart(store):
    results, ids = store
    result = audit(results, list(ids.values()), FAST)
    fig = group_interval_bars(result.groups)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 3 * 3  # runs x splits
    g = result.groups
    first = g[(g.run_id == ids[("nft", None)]) & (g.split == "train")]  # runs in the given order, then splits
    np.testing.assert_allclose(bars[0].y, 100 * first.excess_gap)
    np.testing.assert_allclose(bars[0].error_y.array, 100 * (first.excess_gap_high - first.excess_gap))
    eps = sorted({round(s.y0, 9) for s in fig.layout.shapes})
    assert eps == [1.0, 5.0]  # one dashed line per CEAG tolerance (in points)
    assert len(fig.layout.shapes) == 2 * 3
    assert sorted(a.text for a in fig.layout.annotations if a.text.startswith("ε")) == ["ε = 1 %", "ε = 5 %"]
    assert not [a for a in fig.layout.annotations if a.text == "new text"]
    with pytest.raises(ValueError, match="unknown metric 'psi'; choose one of excess_gap, acc_gap, accuracy"):
        group_interval_bars(result.groups, "psi")
    summary = pd.concat([queries.frontier_summary(results, dataset="synthetic", split=s).assign(split=s)
                         for s in ("train", "test")])
    chart = overview_chart(summary)
    lines = [t for t in chart.data if t.mode == "lines+markers"]
    assert len(lines) == 2 * 3 and {t.name for t in lines} == {"NFT", "CEAG ε=1%", "CEAG ε=5%"}
    test_nft = next(t for t in lines if t.name == "NFT" and t.xaxis == "x2")
    row = summary[(summary.split == "test") & (summary.method == "nft")]
    assert list(test_nft.y) == pytest.approx(list(100 * row.max_excess_gap))
    assert sorted({round(s.y0, 9) for s in chart.layout.shapes}) == [1.0, 5.0]
    sections = re.findall(r"<h2>(.*?)</h2>", render_html(result))
    assert sections == ["What the numbers say", "Excess accuracy gap ψ_g per group, with intervals and ε",
                        "Accuracy per group", "Per-group table", "Per run", "Settings of every run", "Glossary",
                        "Software"]


def test_the_audit_modules_import_without_torch_or_streamlit():
    code = ("import sys, ceag.analysis.audit, ceag.present.report, ceag.present.sentences.compare, "
            "ceag.present.sentences.overview, ceag.analysis.bootstrap, ceag.results.predictions; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streamlit')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=subprocess_env(threads=None))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
