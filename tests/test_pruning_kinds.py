"""Runs that differ only in their pruning kind (unstructured, channels, …) wherever results are shown: never merged
by the store's queries, paired with NFT of the same kind, labelled with their kind only where several are shown.

The store is hand-made (rows written straight into the store), so every expected number is known.
"""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.seed_cache import attach_to_cells
from ceag.analysis.seeds import CACHE_VERSION, Comparison, pair_runs
from ceag.config.run_config import RunConfig
from ceag.present.plots.frontier import frontier, frontier_table, overview_chart
from ceag.present.plots.series import series_color
from ceag.present.sentences.compare import comparison_sentences
from ceag.present.sentences.overview import bounds_from, overview_story
from ceag.present.sentences.seeds import seed_subject, verdict_sentences
from ceag.present.words import audit_run_labels, names_kinds, run_label, series_label
from ceag.store import connect, queries
from ceag.store.ingest import RUN_COLUMNS, insert_run

NAMES = ["digit 0", "digit 3", "digit 8"]


def add_run(con, method, pruning="unstructured", *, tolerance=None, seed=0, gaps=(1.0, 2.0, 30.0), accuracy=0.85,
            drop_pruning=False):
    """One finished run of digits/mlp at sparsity 0.5 whose per-group ψ_g are ``gaps`` (points) on train and test;
    ``drop_pruning``: its config leaves the pruning kind out (as an old one might)."""
    cfg = RunConfig(method=method, pruning=pruning, sparsity=0.5, tolerance=tolerance, seed=seed)
    config = cfg.canonical()
    if drop_pruning:
        del config["pruning"]
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(run_id=cfg.run_id, status="finished", dataset="digits", model="mlp", method=method, sparsity=0.5,
               tolerance=cfg.tolerance, seed=seed, reported_epoch=10, config=json.dumps(config), data_key="d",
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
                        "psi_pw": (max(gaps) - min(gaps)) / 100, "sparsity": 0.5})
    insert_run(con, row, {"group_metrics": pd.DataFrame(groups), "run_metrics": pd.DataFrame(overall)}, None, "digits")
    return cfg.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG (ε = 2 %) at sparsity 0.5, seed 0, pruning weights (unstructured; NFT's config leaves the kind
    out) and pruning channels: each setting once per kind."""
    results = tmp_path_factory.mktemp("kinds")
    with connect(results, write=True) as con:
        ids = {
            ("nft", "unstructured"): add_run(con, "nft", gaps=(1.0, 2.0, 30.0), accuracy=0.80, drop_pruning=True),
            ("nft", "channels"): add_run(con, "nft", "channels", gaps=(1.0, 2.0, 20.0), accuracy=0.70),
            ("ceag", "unstructured"): add_run(con, "ceag", tolerance=0.02, gaps=(0.5, 1.0, 1.5)),
            ("ceag", "channels"): add_run(con, "ceag", "channels", tolerance=0.02, gaps=(0.5, 1.0, 3.0),
                                          accuracy=0.75),
        }
    return results, ids


def test_two_runs_that_differ_only_in_pruning_kind_are_two_frontier_cells(store):
    results, ids = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    assert len(summary) == 4 and (summary.seeds == 1).all()
    ceag = summary[summary.method == "ceag"].set_index("pruning")
    assert sorted(ceag.index) == ["channels", "unstructured"]
    assert ceag.loc["channels", "accuracy"] == pytest.approx(0.75)
    assert ceag.loc["unstructured", "accuracy"] == pytest.approx(0.85)
    assert list(ceag.loc["channels", "run_ids"]) == [ids[("ceag", "channels")]]
    front = queries.frontier(results, dataset="digits", split="test").set_index("run_id")
    assert front.loc[ids[("nft", "unstructured")], "pruning"] == "unstructured"  # left out of its config
    assert front.loc[ids[("nft", "channels")], "pruning"] == "channels"
    for frame in (queries.comparison_runs(results), queries.audit_groups(results, list(ids.values())),
                  queries.story_groups(results, dataset="digits"), queries.generalization(results, list(ids.values()))):
        assert set(frame.loc[frame.run_id == ids[("ceag", "channels")], "pruning"]) == {"channels"}


def test_two_runs_that_differ_only_in_pruning_kind_are_two_series(store):
    results, _ = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    fig = frontier(summary, "max_excess_gap")
    legend = [t.name for t in fig.data if t.showlegend is not False and t.legendgroup != "sparsity"
              and t.name not in ("Pareto front", "dense model")]
    assert sorted(legend) == ["CEAG · channels", "CEAG · unstructured", "NFT · channels", "NFT · unstructured"]
    points = [t for t in fig.data if t.showlegend is False]
    assert len(points) == 4 and all(len(t.x) == 1 for t in points)
    colors = {t.name: t.marker.color for t in points}
    assert colors["CEAG · channels"] != colors["CEAG · unstructured"]
    table = frontier_table(summary, "test")
    assert sorted(table["pruning"]) == ["channels", "channels", "unstructured", "unstructured"]
    both = pd.concat([summary.assign(split="test"),
                      queries.frontier_summary(results, dataset="digits", split="train").assign(split="train")])
    lines = {t.name for t in overview_chart(both).data if t.name and "ε = " not in t.name}
    assert lines == {"CEAG ε=2% · channels", "CEAG ε=2% · unstructured", "NFT · channels", "NFT · unstructured"}


def test_pair_runs_pairs_like_with_like(store):
    results, ids = store
    comparisons = {(c.method, c.pruning): c for c in pair_runs(queries.comparison_runs(results))}
    assert set(comparisons) == {("ceag", "unstructured"), ("ceag", "channels")}
    for (method, kind), comp in comparisons.items():
        assert comp.pairs == ((0, ids[("nft", kind)], ids[(method, kind)]),)
    settings = BootstrapSettings(n_boot=10)
    assert comparisons[("ceag", "channels")].key("test", settings) != comparisons[("ceag", "unstructured")].key(
        "test", settings)


def test_pair_runs_without_nft_of_the_same_kind_pairs_nothing():
    runs = pd.DataFrame({"run_id": ["n", "c"], "status": "finished", "dataset": "digits", "model": "mlp",
                         "method": ["nft", "ceag"], "sparsity": 0.5, "tolerance": [np.nan, 0.02], "seed": 0,
                         "dense_key": "d", "finished_at": "2026"})
    [comp] = pair_runs(runs)  # without a pruning column: every run unstructured
    assert comp.pruning == "unstructured" and comp.pairs == ((0, "n", "c"),)
    assert pair_runs(runs.assign(pruning=["unstructured", "channels"])) == []
    [comp] = pair_runs(runs.assign(pruning=["channels", "channels"]))
    assert comp.pruning == "channels"


def test_the_comparison_cache_key_changes_with_the_kind_and_the_version():
    assert CACHE_VERSION >= 5
    settings = BootstrapSettings(n_boot=10)
    base = Comparison("digits", "mlp", 0.5, "ceag", 0.02, ((0, "n", "c"),))
    assert base.key("test", settings) != replace(base, pruning="channels").key("test", settings)


def test_a_label_names_the_kind_only_when_several_are_shown(store):
    results, ids = store
    assert series_label("ceag", 0.02, pruning="channels") == "CEAG ε=2% · channels"
    assert series_label("ceag", 0.02) == "CEAG ε=2%"
    assert run_label("ceag", 0.02, pruning="channels") == "CEAG (ε = 2 %), channels pruning"
    both = queries.frontier_summary(results, dataset="digits", split="test")
    one = both[both.pruning == "channels"]
    assert names_kinds(both) and not names_kinds(one) and not names_kinds(both.drop(columns="pruning"))
    single = frontier(one, "max_excess_gap")
    assert {t.name for t in single.data if t.showlegend is not False} >= {"CEAG", "NFT"}
    assert not any("channels" in (t.name or "") for t in single.data)
    groups = queries.audit_groups(results, list(ids.values()))
    labels = audit_run_labels(groups)
    assert labels[ids[("ceag", "channels")]] == "CEAG ε=2% · channels"
    assert labels[ids[("ceag", "unstructured")]] == "CEAG ε=2% · unstructured"
    alone = audit_run_labels(groups[groups.run_id == ids[("ceag", "channels")]])
    assert alone == {ids[("ceag", "channels")]: "CEAG ε=2%"}
    assert series_color("ceag", "magnitude", pruning="channels") != series_color("ceag", "magnitude")


def test_sentences_compare_like_with_like_and_name_the_kind(store):
    results, ids = store
    groups = queries.audit_groups(results, list(ids.values()))
    text = " ".join(comparison_sentences(groups))
    assert "channels pruning" in text and "unstructured pruning" in text
    single = " ".join(comparison_sentences(groups[groups.pruning == "channels"]))
    assert "channels" not in single
    story = overview_story(queries.story_groups(results, dataset="digits"))
    assert {p.pruning for p in story} == {"channels", "unstructured"}
    assert any("channels pruning" in p.text for p in story)
    row = {"method": "ceag", "tolerance": 0.02, "criterion": "magnitude", "pruning": "channels"}
    assert seed_subject(row) == "CEAG (ε = 2 %)"
    assert seed_subject(row, kinds=True) == "CEAG (ε = 2 %), channels pruning"


def test_comparison_rows_reach_the_cell_of_their_kind(store):
    results, _ = store
    summary = queries.frontier_summary(results, dataset="digits", split="test")
    rows = []
    for kind, diff in (("unstructured", -0.2), ("channels", -0.1)):
        rows.append({"dataset": "digits", "model": "mlp", "sparsity": 0.5, "method": "ceag", "tolerance": 0.02,
                     "criterion": "magnitude", "pruning": kind, "run_ids": kind, "baseline_ids": "n",
                     "split": "test", "metric": "max_excess_gap", "group_id": -1, "baseline": 0.3,
                     "baseline_low": 0.2, "baseline_high": 0.4, "mitigation": 0.3 + diff, "mitigation_low": 0.0,
                     "mitigation_high": 0.4, "diff": diff, "diff_low": diff - 0.05, "diff_high": diff + 0.05,
                     "seeds": 1})
    frame = pd.DataFrame(rows)
    out = attach_to_cells(summary, frame, "test", metrics=("max_excess_gap",)).set_index(["method", "pruning"])
    assert out.loc[("ceag", "unstructured"), "max_excess_gap_vs_nft"] == pytest.approx(-0.2)
    assert out.loc[("ceag", "channels"), "max_excess_gap_vs_nft"] == pytest.approx(-0.1)
    assert np.isnan(out.loc[("nft", "channels"), "max_excess_gap_vs_nft"])
    said = verdict_sentences(frame, ["channels", "unstructured"])
    assert said[0].startswith("CEAG (ε = 2 %), channels pruning lowers")
    bounds = bounds_from(frame.assign(metric="excess_gap", group_id=2))
    assert ("mlp", "ceag", 0.02, "magnitude", "channels", 0.5, "test", 2) in bounds
