"""The Compare page under AppTest: the default comparison, its numbers against the audit, the downloads."""

import json

import numpy as np
import pytest

from ceag.analysis.audit import audit
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.present.sentences.compare import audit_sentences, headline_sentences
from ceag.run.pipeline import run
from ceag.store import ingest_run
from tests.conftest import fast_config
from tests.helpers import open_app_page


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


def open_compare(monkeypatch, results, **params):
    return open_app_page(monkeypatch, "compare", "Compare runs group by group", results, **params)


def test_compare_opens_on_nft_against_ceag_with_the_answer_first_then_chart_sentences_and_table(store, monkeypatch):
    results, ids = store
    at = open_compare(monkeypatch, results)
    default = [ids[("nft", None, 0.8)], ids[("ceag", 0.01, 0.8)], ids[("ceag", 0.05, 0.8)]]
    assert at.multiselect[0].value == default
    assert "runs" not in at.query_params and "compare" not in at.query_params  # nothing chosen, nothing written
    expected = audit(results, default, BootstrapSettings())
    across, headline, every = (m.value for m in at.markdown[:3])
    # the answer first: each CEAG run against NFT across seeds (one seed here, and the sentence says so)
    assert across.startswith("**Across seeds**")
    assert across.count("with 1 seed: seed-to-seed variation is unknown") == 2
    assert "- CEAG (ε = 1 %) lowers test max_g ψ_g" in across or "- CEAG (ε = 1 %) raises test max_g ψ_g" in across
    assert headline == "**These runs**:\n" + "\n".join(f"- {s}" for s in headline_sentences(expected.groups))
    assert headline.startswith("**These runs**:\n- At 80 % sparsity (seed 0, one run per method), ")
    assert "95 % interval" in headline
    assert every == "\n".join(f"- {s}" for s in audit_sentences(expected))
    assert "CEAG (ε = 1 %)" in every
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bars) == 3 * 2  # runs x splits (test and train; validation on demand)
    assert [a["text"] for a in spec["layout"]["annotations"]][:2] == ["test", "train"]  # test on top
    table = at.dataframe[0].value
    assert len(table) == len(expected.groups)
    np.testing.assert_allclose(table["ψ_g"], 100 * expected.groups["excess_gap"])
    np.testing.assert_allclose(table["ψ_g 95 % low"], 100 * expected.groups["excess_gap_low"])
    assert list(table["verdict vs ε"]) == list(expected.groups["verdict"].fillna(""))
    assert set(table.loc[table.run.str.startswith("CEAG"), "verdict vs ε"]) <= {"meets ε", "exceeds ε", "cannot tell"}
    np.testing.assert_allclose(table["min detectable gap"], 100 * expected.groups["min_detectable_gap"])
    counted = next(c.value for c in at.caption if c.value.startswith("Verdicts against ε: "))
    assert "CEAG ε=1%, test: " in counted and "for the 4 groups together (Bonferroni" in counted
    next(s for s in at.selectbox if s.label == "Verdict intervals").set_value("none").run()
    counted = next(c.value for c in at.caption if c.value.startswith("Verdicts against ε: "))
    assert "not widened for the number of groups" in counted and "Bonferroni" not in counted
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Audit report (HTML, opens offline)", "Per-group table (CSV)"]
    [link] = [p.proto for p in at.get("page_link") if "pruning broke" in p.proto.label]
    assert link.page.endswith("casualties") or "casualties" in link.page
    assert f"gallery={default[0]}" in link.query_string and "gallery_vs=CEAG" in link.query_string
    next(m for m in at.multiselect if m.label == "Splits").set_value(["train", "val", "test"]).run()
    assert len([t for t in charts(at)[0]["data"] if t["type"] == "bar"]) == 3 * 3


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_a_selection_in_the_url_is_compared_as_it_is_and_never_rewritten(store, monkeypatch):
    results, ids = store
    chosen = [ids[("nft", None, 0.6)], ids[("ceag", 0.05, 0.8)]]
    at = open_compare(monkeypatch, results, runs=",".join(chosen))
    assert at.multiselect[0].value == chosen
    text = at.markdown[1].value
    assert "At 60 % sparsity" in text and "At 80 % sparsity (seed 0, one run per method) there is no NFT run" in text
    at.radio[0].set_value("accuracy").run()
    assert not at.exception
    spec = charts(at)[0]
    assert spec["layout"]["yaxis"]["title"]["text"] == "accuracy (%)"
    assert at.query_params["runs"] == ",".join(chosen) and "compare" not in at.query_params


def test_choosing_another_setting_compares_its_runs_in_its_own_field_and_keeps_the_selection(store, monkeypatch):
    results, ids = store
    nft06 = ids[("nft", None, 0.6)]
    default = [ids[("nft", None, 0.8)], ids[("ceag", 0.01, 0.8)], ids[("ceag", 0.05, 0.8)]]
    at = open_compare(monkeypatch, results, runs=nft06)  # one selected run: its setting, nothing to pair there
    assert next(s for s in at.selectbox if s.label == "Sparsity").value == 0.6
    assert [i.value for i in at.info][0].startswith("Choose two or more finished runs")
    next(s for s in at.selectbox if s.label == "Sparsity").set_value(0.8).run()
    assert not at.exception
    assert at.query_params["compare"] == ",".join(default)
    assert at.query_params["runs"] == nft06  # the selection is never replaced
    assert at.multiselect[0].value == default
    next(s for s in at.selectbox if s.label == "Sparsity").set_value(0.6).run()
    assert at.query_params["compare"] == nft06 and at.query_params["runs"] == nft06
    next(s for s in at.selectbox if s.label == "Sparsity").set_value(0.8).run()
    # Only the button adds the compared runs to the selection, after what was selected.
    next(b for b in at.button if b.label == "Add them to the selection").click().run()
    assert at.query_params["runs"] == ",".join([nft06, *default])


def test_a_link_to_a_comparison_shows_those_runs_and_names_unknown_ones(store, monkeypatch):
    results, ids = store
    chosen = [ids[("nft", None, 0.8)], ids[("ceag", 0.05, 0.8)]]
    at = open_compare(monkeypatch, results, compare=",".join([*chosen, "0123456789abcdef"]))
    assert at.multiselect[0].value == chosen
    assert "0123456789abcdef" in at.warning[0].value
    assert "runs" not in at.query_params
    assert "CEAG (ε = 5 %) brings" in at.markdown[1].value


def test_compare_shows_what_each_model_costs_and_how_to_export_it(store, monkeypatch):
    results, ids = store
    at = open_compare(monkeypatch, results)
    chosen = at.multiselect[0].value
    [costs] = [d.value for d in at.dataframe if "parameters" in d.value.columns]
    assert len(costs) == len(chosen) and set(costs["pruning"]) == {"unstructured"}
    assert all(cell.endswith("(1.00×)") for cell in costs["parameters"])  # masked models keep the dense size
    assert any(c.value.startswith("Timed on ") for c in at.caption)
    [code] = [c.value for c in at.code]
    assert code.splitlines() == [f"python -m ceag export --model {r} --out model_{r}.pt --results {results}"
                                 for r in sorted(chosen)]
