"""The Compare page under AppTest: the default comparison, its numbers against the audit, the downloads."""

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ceag.audit import audit, sentences
from ceag.bootstrap import BootstrapSettings
from ceag.runs import run
from ceag.store import ingest_run
from tests.conftest import fast_config
from tests.helpers import ROOT

APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG at two tolerances (one setting), and an NFT run at another sparsity."""
    import torch

    results = tmp_path_factory.mktemp("compare")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ids = {}
    try:
        for method, tol, sparsity in (("nft", None, 0.8), ("ceag", 0.01, 0.8), ("ceag", 0.05, 0.8), ("nft", None, 0.6)):
            result = run(fast_config(method=method, tolerance=tol, sparsity=sparsity), results)
            ingest_run(results, result.run_id)
            ids[(method, tol, sparsity)] = result.run_id
    finally:
        torch.set_num_threads(before)
    return results, ids


def open_compare(monkeypatch, results, **params) -> AppTest:
    monkeypatch.setenv("CEAG_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Compare runs group by group"]
    return at


def test_compare_opens_on_nft_against_ceag_with_sentences_chart_and_table(store, monkeypatch):
    results, ids = store
    at = open_compare(monkeypatch, results)
    default = [ids[("nft", None, 0.8)], ids[("ceag", 0.01, 0.8)], ids[("ceag", 0.05, 0.8)]]
    assert at.query_params["runs"] == ",".join(default)
    expected = audit(results, default, BootstrapSettings())
    text = at.markdown[0].value
    assert text == "\n".join(f"- {s}" for s in sentences(expected))
    assert "NFT" in text and "CEAG (ε = 1 %)" in text
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bars) == 3 * 3  # runs x splits (train, val, test)
    table = at.dataframe[0].value
    assert len(table) == len(expected.groups)
    np.testing.assert_allclose(table["ψ_g"], 100 * expected.groups["excess_gap"])
    np.testing.assert_allclose(table["ψ_g 95 % low"], 100 * expected.groups["excess_gap_low"])
    assert list(table["ψ_g interval contains ε"]) == list(expected.groups["indistinguishable"])
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Audit report (HTML, opens offline)", "Per-group table (CSV)"]


def test_a_selection_in_the_url_is_compared_as_it_is(store, monkeypatch):
    results, ids = store
    chosen = [ids[("nft", None, 0.6)], ids[("ceag", 0.05, 0.8)]]
    at = open_compare(monkeypatch, results, runs=",".join(chosen))
    assert at.multiselect[0].value == chosen
    text = at.markdown[0].value
    assert "At sparsity 60 %" in text and "there is no NFT run to compare with" in text  # paired only by setting
    at.radio[0].set_value("accuracy").run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"] == "accuracy (%)"


def test_choosing_another_setting_compares_its_nft_and_ceag_runs(store, monkeypatch):
    results, ids = store
    at = open_compare(monkeypatch, results)
    sparsity = next(s for s in at.selectbox if s.label == "Sparsity")
    assert sparsity.value == 0.8
    sparsity.set_value(0.6).run()
    assert not at.exception
    assert at.query_params["runs"] == ids[("nft", None, 0.6)]  # no CEAG run there: nothing to pair
    assert [i.value for i in at.info][0].startswith("Choose two or more finished runs")
    next(s for s in at.selectbox if s.label == "Sparsity").set_value(0.8).run()
    assert at.query_params["runs"] == ",".join([ids[("nft", None, 0.8)], ids[("ceag", 0.01, 0.8)],
                                                ids[("ceag", 0.05, 0.8)]])
