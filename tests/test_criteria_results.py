"""Runs that differ only in their pruning criterion, and FairGRAPE, wherever results are shown: never merged by the
store's queries, paired with NFT of the same criterion, labelled where it matters, listed by ``ceag ls``.

The stores are hand-made (rows written straight into the store), so every expected number is known.
"""

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.seed_cache import attach_to_cells
from ceag.analysis.seeds import pair_runs
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import METHOD_LABELS
from ceag.present.plots.frontier import frontier, frontier_table, overview_chart
from ceag.present.plots.series import series_color
from ceag.present.plots.style import METHOD_COLORS
from ceag.present.sentences.compare import comparison_sentences
from ceag.present.sentences.overview import overview_story
from ceag.present.sentences.seeds import seed_subject, verdict_sentences
from ceag.present.words import audit_run_labels, criterion_label, names_criteria, run_label, series_label
from ceag.store import connect, queries
from ceag.store.ingest import RUN_COLUMNS, insert_run
from tests.helpers import ceag_main

NAMES = ["digit 0", "digit 3", "digit 8"]


def add_run(con, method, criterion="magnitude", *, sparsity=0.9, tolerance=None, seed=0, gaps=(1.0, 2.0, 30.0),
            accuracy=0.85):
    """One finished run of digits/mlp whose per-group ψ_g are ``gaps`` (points) on train and test."""
    cfg = RunConfig(method=method, criterion=criterion, sparsity=sparsity, tolerance=tolerance, seed=seed)
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(run_id=cfg.run_id, status="finished", dataset="digits", model="mlp", method=method, sparsity=sparsity,
               tolerance=cfg.tolerance, seed=seed, reported_epoch=10, config=cfg.canonical_json(), data_key="d",
               dense_key="d", prune_key=cfg.run_id, finished_at=f"2026-01-01T00:00:{len(cfg.run_id) % 10:02d}")
    groups, overall = [], []
    for split in ("train", "test"):
        for gid, (name, psi) in enumerate(zip(NAMES, gaps, strict=True)):
            acc_gap = psi / 100 + 0.05
            groups.append({"run_id": cfg.run_id, "epoch": 10, "split": split, "group_id": gid, "group_name": name,
                           "n": 50, "accuracy": 0.9 - acc_gap, "loss": 0.1, "dense_accuracy": 0.9,
                           "acc_gap": acc_gap, "excess_gap": psi / 100})
        overall.append({"run_id": cfg.run_id, "epoch": 10, "split": split, "accuracy": accuracy, "loss": 0.1,
                        "dense_accuracy": 0.9, "acc_gap": 0.05, "max_excess_gap": max(gaps) / 100,
                        "psi_pw": (max(gaps) - min(gaps)) / 100, "sparsity": sparsity})
    insert_run(con, row, {"group_metrics": pd.DataFrame(groups), "run_metrics": pd.DataFrame(overall)}, None, "digits")
    return cfg.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG (ε = 2 %) pruned by magnitude and by SNIP, and FairGRAPE, at sparsity 0.9, seed 0."""
    results = tmp_path_factory.mktemp("criteria")
    with connect(results, write=True) as con:
        ids = {
            ("nft", "magnitude"): add_run(con, "nft", gaps=(1.0, 2.0, 30.0), accuracy=0.80),
            ("nft", "snip"): add_run(con, "nft", "snip", gaps=(1.0, 2.0, 20.0), accuracy=0.70),
            ("ceag", "magnitude"): add_run(con, "ceag", tolerance=0.02, gaps=(0.5, 1.0, 1.5)),
            ("ceag", "snip"): add_run(con, "ceag", "snip", tolerance=0.02, gaps=(0.5, 1.0, 3.0)),
            ("fairgrape", "magnitude"): add_run(con, "fairgrape", gaps=(1.0, 2.0, 10.0)),
        }
    return results, ids


# -- the store's queries keep criteria apart ------------------------------------------------------------------


def test_two_runs_that_differ_only_in_criterion_are_two_frontier_points(store):
    results, ids = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    nft = summary[summary.method == "nft"].set_index("criterion")
    assert sorted(nft.index) == ["magnitude", "snip"] and (nft.seeds == 1).all()
    assert nft.loc["magnitude", "accuracy"] == pytest.approx(0.80)
    assert nft.loc["snip", "accuracy"] == pytest.approx(0.70)
    assert list(nft.loc["snip", "run_ids"]) == [ids[("nft", "snip")]]
    assert len(summary) == 5
    front = queries.frontier(results, dataset="digits", split="test").set_index("run_id")
    assert front.loc[ids[("ceag", "snip")], "criterion"] == "snip"
    assert front.loc[ids[("fairgrape", "magnitude")], "criterion"] == "magnitude"


def test_every_listing_of_runs_says_their_criterion(store):
    results, ids = store
    snip = ids[("nft", "snip")]
    for frame in (queries.runs(results), queries.runs_table(results), queries.comparison_runs(results),
                  queries.audit_groups(results, [snip]), queries.audit_runs(results, [snip]),
                  queries.story_groups(results, dataset="digits"), queries.generalization(results, [snip]),
                  queries.export_table(results, "final", [snip])):
        assert set(frame.loc[frame.run_id == snip, "criterion"]) == {"snip"}
    overview = queries.overview(results)
    assert sorted(zip(overview.method, overview.criterion, overview.runs, strict=True)) == [
        ("ceag", "magnitude", 1), ("ceag", "snip", 1), ("fairgrape", "magnitude", 1), ("nft", "magnitude", 1),
        ("nft", "snip", 1)]
    exported = queries.export_table(results, "runs", [snip])
    columns = list(exported.columns)
    assert columns[columns.index("method") + 1] == "criterion" and exported.criterion.tolist() == ["snip"]


# -- pairing with NFT --------------------------------------------------------------------------------------------


def test_a_mitigation_pairs_only_with_nft_of_its_criterion_and_fairgrape_with_magnitude(store):
    results, ids = store
    comparisons = {(c.method, c.criterion): c for c in pair_runs(queries.comparison_runs(results))}
    assert set(comparisons) == {("ceag", "magnitude"), ("ceag", "snip"), ("fairgrape", "magnitude")}
    for (method, criterion), comp in comparisons.items():
        assert comp.pairs == ((0, ids[("nft", criterion)], ids[(method, criterion)]),)
    assert comparisons[("ceag", "magnitude")].key("test", _settings()) != comparisons[("ceag", "snip")].key(
        "test", _settings())


def test_without_a_criterion_column_every_run_counts_as_magnitude():
    runs = pd.DataFrame({"run_id": ["n", "c"], "status": "finished", "dataset": "digits", "model": "mlp",
                         "method": ["nft", "ceag"], "sparsity": 0.9, "tolerance": [np.nan, 0.02], "seed": 0,
                         "dense_key": "d", "finished_at": "2026"})
    [comp] = pair_runs(runs)
    assert comp.criterion == "magnitude" and comp.pairs == ((0, "n", "c"),)
    assert pair_runs(runs.assign(criterion=["magnitude", "snip"])) == []  # no NFT pruned by SNIP: no pair


def test_a_cell_gets_the_comparison_of_its_own_criterion():
    summary = pd.DataFrame({"model": "mlp", "method": ["ceag", "ceag"], "criterion": ["magnitude", "snip"],
                            "sparsity": 0.9, "tolerance": 0.02})
    frame = pd.DataFrame({"model": "mlp", "method": "ceag", "criterion": ["magnitude", "snip"], "sparsity": 0.9,
                          "tolerance": 0.02, "split": "test", "metric": "psi_pw", "diff": [-0.1, 0.2],
                          "diff_low": [-0.2, 0.1], "diff_high": [0.0, 0.3], "seeds": 1})
    out = attach_to_cells(summary, frame, "test", metrics=("psi_pw",))
    assert out["psi_pw_vs_nft"].tolist() == [-0.1, 0.2]


def _settings():
    from ceag.analysis.bootstrap import BootstrapSettings

    return BootstrapSettings(n_boot=100)


# -- labels ------------------------------------------------------------------------------------------------------


def test_criteria_are_named_where_several_or_another_than_magnitude_and_never_for_fairgrape():
    runs = pd.DataFrame({"method": ["nft", "ceag", "fairgrape"], "criterion": ["magnitude", "magnitude", "magnitude"]})
    assert not names_criteria(runs) and not names_criteria(runs.drop(columns="criterion"))
    assert names_criteria(runs.assign(criterion=["magnitude", "snip", "magnitude"]))
    assert names_criteria(runs.iloc[:1].assign(criterion="synflow"))
    assert not names_criteria(runs.iloc[2:].assign(criterion="magnitude"))
    assert series_label("ceag", 0.02, "snip", named=True) == "CEAG ε=2% · SNIP"
    assert series_label("nft", None, "magnitude", named=True) == "NFT · magnitude"
    assert series_label("fairgrape", None, "magnitude", named=True) == METHOD_LABELS["fairgrape"]
    assert series_label("ceag", 0.02, "snip") == "CEAG ε=2%"
    assert run_label("ceag", 0.02, "synflow") == "CEAG (ε = 2 %) with SynFlow pruning"
    assert run_label("fairgrape", None, "magnitude") == "FairGRAPE"
    assert criterion_label("snip") == "SNIP" and criterion_label(None) == "magnitude"
    assert criterion_label("magnitude", "fairgrape") == "group importance"


def test_run_labels_name_the_criterion_after_the_method():
    from dashboard._shared import run_labels

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "method": ["nft", "nft", "fairgrape"],
                         "criterion": ["magnitude", "snip", "magnitude"], "tolerance": np.nan, "dataset": "digits",
                         "model": "mlp", "sparsity": 0.9, "seed": 0})
    assert run_labels(runs) == {"a": "NFT · magnitude · digits/mlp · sparsity 0.9 · seed 0 · a",
                                "b": "NFT · SNIP · digits/mlp · sparsity 0.9 · seed 0 · b",
                                "c": "FairGRAPE · digits/mlp · sparsity 0.9 · seed 0 · c"}
    only = runs.iloc[[0, 2]]
    assert run_labels(only)["a"] == "NFT · digits/mlp · sparsity 0.9 · seed 0 · a"
    groups = runs.assign(seed=0)
    assert audit_run_labels(groups) == {"a": "NFT · magnitude", "b": "NFT · SNIP", "c": "FairGRAPE"}


def test_frontier_draws_one_series_per_method_and_criterion(store):
    results, _ = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    fig = frontier(summary)
    data = [t for t in fig.data if t.customdata is not None]
    names = sorted(t.name for t in data)
    assert names == ["CEAG · SNIP", "CEAG · magnitude", "FairGRAPE", "NFT · SNIP", "NFT · magnitude"]
    by_name = {t.name: t for t in data}
    assert by_name["NFT · magnitude"].marker.color == METHOD_COLORS["nft"]
    assert by_name["NFT · SNIP"].marker.color == series_color("nft", "snip") != METHOD_COLORS["nft"]
    assert "pruned by SNIP" in by_name["NFT · SNIP"].customdata[0][5]
    assert "pruned by group importance" in by_name["FairGRAPE"].customdata[0][5]
    table = frontier_table(summary, "test")
    assert list(table.columns[:4]) == ["split", "model", "method", "criterion"]
    assert sorted(zip(table["method"], table["criterion"], strict=True)) == [
        ("CEAG", "SNIP"), ("CEAG", "magnitude"), ("FairGRAPE", "group importance"), ("NFT", "SNIP"),
        ("NFT", "magnitude")]
    lines = {t.name for t in overview_chart(summary.assign(split="test")).data}
    assert {"NFT · magnitude", "NFT · SNIP", "CEAG ε=2% · SNIP", "FairGRAPE"} <= lines


def test_one_criterion_keeps_the_labels_as_they_were(store):
    results, _ = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    plain = summary[summary.criterion == "magnitude"]
    assert sorted(t.name for t in frontier(plain).data if t.customdata is not None) == ["CEAG", "FairGRAPE", "NFT"]
    assert set(frontier_table(plain, "test")["criterion"]) == {"magnitude", "group importance"}  # always a column


# -- sentences ----------------------------------------------------------------------------------------------------


def test_sentences_compare_each_run_with_nft_of_its_own_criterion(store):
    results, ids = store
    groups = queries.audit_groups(results, list(ids.values()))
    text = " ".join(comparison_sentences(groups))
    # digit 8: 30 points behind under NFT by magnitude, 20 under NFT by SNIP; each CEAG run against its own NFT
    assert "(digits/mlp, seed 0, magnitude pruning): CEAG (ε = 2 %) leaves digit 8 at ψ_g = 1.5 on train (NFT: 30.0)" \
        in text
    assert "(digits/mlp, seed 0, SNIP pruning): CEAG (ε = 2 %) leaves digit 8 at ψ_g = 3.0 on train (NFT: 20.0)" in text
    assert "FairGRAPE leaves digit 8 at ψ_g = 10.0 on train (NFT: 30.0)" in text
    only_snip = groups[groups.criterion == "snip"]
    assert comparison_sentences(only_snip)[0].startswith("On train, NFT with SNIP pruning hurts digit 8 most")


def test_verdicts_across_seeds_name_the_criterion_and_fairgrapes_baseline():
    frame = pd.DataFrame({"method": ["ceag", "fairgrape"], "criterion": ["snip", "magnitude"],
                          "tolerance": [0.02, None], "split": "test", "metric": "max_excess_gap", "diff": [-0.1, -0.05],
                          "diff_low": [-0.2, -0.1], "diff_high": [-0.05, 0.01], "seeds": 1, "run_ids": ["c", "f"]})
    lines = verdict_sentences(frame, ["c", "f"])
    assert lines[0].startswith("CEAG (ε = 2 %) with SNIP pruning lowers test max_g ψ_g by 10.0 points")
    assert lines[1].startswith("FairGRAPE (against NFT with magnitude pruning) lowers test max_g ψ_g by 5.0 points")
    assert seed_subject(frame.iloc[0]) == "CEAG (ε = 2 %)"


def test_the_overview_story_is_told_once_per_criterion(store):
    results, _ = store
    story = overview_story(queries.story_groups(results, dataset="digits"))
    assert [p.criterion for p in story] == ["magnitude", "magnitude", "snip", "snip"]
    assert story[0].text.startswith("On digits with the mlp model pruned by magnitude, pruning to 90 % sparsity")
    assert "digit 8 ends 30.0 points behind" in story[0].text
    # by SNIP, CEAG leaves digit 8 at 3.0 points, above ε = 2 %: no repair to lead with
    assert story[2].text.startswith("On digits with the mlp model pruned by SNIP, pruning hurts a group most at 90 %")
    assert "digit 8 ends 20.0 points behind" in story[2].text
    assert story[2].topic == "SNIP pruning, 90 %, on train"
    assert story[3].topic == "SNIP pruning, 90 %, out of reach"


# -- the command line -----------------------------------------------------------------------------------------


def test_ls_shows_each_runs_criterion(store):
    results, ids = store
    code, out, _ = ceag_main("ls", "--results", results)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:6] == ["run_id", "status", "dataset", "model", "method", "criterion"]
    by_id = {line.split()[0]: line.split() for line in rows if line.split() and line.split()[0] in ids.values()}
    assert by_id[ids[("nft", "snip")]][5] == "snip"
    assert by_id[ids[("ceag", "magnitude")]][5] == "magnitude"
    assert by_id[ids[("fairgrape", "magnitude")]][5] == "-"
    assert "criterion '-': fairgrape chooses the weights it keeps by its own group importance" in out


# -- the pages ------------------------------------------------------------------------------------------------


def test_frontiers_filter_by_criterion_and_keep_fairgrape(store, monkeypatch):
    import json

    from tests.helpers import open_app_page

    results, _ = store
    at = open_app_page(monkeypatch, "frontiers", "Accuracy–disparity frontiers", results)
    [criteria] = [m for m in at.multiselect if m.label == "Pruning criteria"]
    assert criteria.options == ["magnitude", "SNIP"]
    criteria.set_value(["snip"]).run()
    assert not at.exception and at.query_params["criteria"] == "snip"
    names = {t["name"] for spec in (json.loads(c.proto.spec) for c in at.get("plotly_chart")) for t in spec["data"]
             if "customdata" in t}
    assert names == {"CEAG · SNIP", "NFT · SNIP", "FairGRAPE"}
    assert set(at.dataframe[0].value["criterion"]) == {"SNIP", "group importance"}


def test_compare_pairs_runs_of_one_criterion_by_default(store, monkeypatch):
    from tests.helpers import open_app_page

    results, ids = store
    at = open_app_page(monkeypatch, "compare", "Compare runs group by group", results)
    [criterion] = [s for s in at.selectbox if s.label == "Pruning criterion"]
    chosen = [m for m in at.multiselect if m.label == "Runs (two or more)"][0].value
    shown = criterion.value
    assert sorted(chosen) == sorted([ids[("nft", shown)], ids[("ceag", shown)]])
    criterion.set_value("snip" if shown == "magnitude" else "magnitude").run()
    assert not at.exception
    other = at.selectbox(key="compare.criterion").value
    chosen = [m for m in at.multiselect if m.label == "Runs (two or more)"][0].value
    assert sorted(chosen) == sorted([ids[("nft", other)], ids[("ceag", other)]])


def test_runs_page_shows_and_filters_the_criterion(store, monkeypatch):
    from tests.helpers import open_app_page

    results, ids = store
    at = open_app_page(monkeypatch, "runs", "Runs", results)
    table = at.dataframe[0].value
    assert table.set_index("run_id").loc[ids[("nft", "snip")], "criterion"] == "SNIP"
    assert table.set_index("run_id").loc[ids[("fairgrape", "magnitude")], "criterion"] == "group importance"
    [criterion] = [m for m in at.multiselect if m.label == "Pruning criterion"]
    criterion.set_value(["SNIP"]).run()
    assert sorted(at.dataframe[0].value["run_id"]) == sorted([ids[("nft", "snip")], ids[("ceag", "snip")]])
