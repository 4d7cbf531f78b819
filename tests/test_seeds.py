"""A mitigation against NFT across seeds: the hierarchical bootstrap, the pairing of runs, the cache, the words,
and where they show (Frontiers, Compare's first sentences, the report)."""

import json

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.bootstrap import BootstrapSettings, intervals
from ceag.analysis.seed_cache import seed_comparisons, store_comparisons
from ceag.analysis.seeds import compare_split, pair_runs
from ceag.present.sentences.seeds import seed_sentence, verdict_label
from ceag.store import queries
from tests.conftest import fast_config
from tests.helpers import finished_runs, open_app_page

FAST = BootstrapSettings(n_boot=400)


def population(n=3000, groups=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, n), rng.integers(0, groups, n), rng


def predictions(y, g, rng, acc, dense):
    """A frame of one run on the samples (y, g): right with probability acc[g]."""
    right = rng.random(len(y)) < np.asarray(acc)[g]
    return pd.DataFrame({"sample_id": np.arange(len(y)), "y_true": y, "group_id": g,
                         "y_pred": np.where(right, y, (y + 1) % 3), "dense_pred": dense})


def test_the_same_run_twice_differs_by_exactly_nothing():
    y, g, rng = population()
    dense = np.where(rng.random(len(y)) < 0.95, y, (y + 1) % 3)
    frame = predictions(y, g, rng, [0.9, 0.9, 0.9, 0.6], dense)
    out = compare_split([(frame, frame), (frame, frame)], 4, "test", FAST)
    assert (out[["diff", "diff_low", "diff_high"]].abs().to_numpy() < 1e-12).all()
    assert (out["seeds"] == 2).all() and len(out) == 3 + 4


def test_point_values_are_the_runs_own_metrics_averaged_over_seeds():
    y, g, rng = population()
    frames, gaps = [], []
    for _ in range(3):
        dense = np.where(rng.random(len(y)) < 0.95, y, (y + 1) % 3)
        base, mit = (predictions(y, g, rng, acc, dense) for acc in ([0.9, 0.9, 0.9, 0.6], [0.88, 0.88, 0.9, 0.86]))
        frames.append((base, mit))
        one = [intervals(f.y_true, f.group_id, f.y_pred, f.dense_pred, 4, BootstrapSettings(n_boot=1)).overall
               for f in (base, mit)]
        gaps.append(one[1]["max_excess_gap"] - one[0]["max_excess_gap"])
    out = compare_split(frames, 4, "test", FAST).set_index("metric")
    assert out.loc["max_excess_gap", "diff"] == pytest.approx(np.mean(gaps), abs=1e-12)
    assert out.loc["max_excess_gap", "diff_high"] < 0  # a real repair of group 3: distinguishable
    assert seed_verdict_of(out.loc["max_excess_gap"]) == "lower"


def seed_verdict_of(row):
    return verdict_label(row).split(" (")[0]


def test_with_one_seed_the_interval_is_the_paired_sample_bootstrap_of_the_difference():
    """One seed: only the samples vary; the interval matches resampling the samples by hand (same paired draw
    for both runs), within Monte Carlo error."""
    y, g, rng = population(n=2000)
    dense = np.where(rng.random(len(y)) < 0.95, y, (y + 1) % 3)
    base, mit = predictions(y, g, rng, [0.9, 0.9, 0.9, 0.6], dense), predictions(y, g, rng, [0.88] * 4, dense)
    out = compare_split([(base, mit)], 4, "test", BootstrapSettings(n_boot=4000)).set_index("metric")
    draws = []
    for _ in range(2000):
        idx = rng.integers(0, len(y), len(y))
        vals = [intervals(f.y_true.to_numpy()[idx], g[idx], f.y_pred.to_numpy()[idx], dense[idx], 4,
                          BootstrapSettings(n_boot=1)).overall["accuracy"] for f in (base, mit)]
        draws.append(vals[1] - vals[0])
    lo, hi = np.quantile(draws, [0.025, 0.975])
    assert out.loc["accuracy", "diff_low"] == pytest.approx(lo, abs=0.004)
    assert out.loc["accuracy", "diff_high"] == pytest.approx(hi, abs=0.004)


def test_seeds_that_disagree_widen_the_interval_and_one_seed_cannot_see_it():
    y, g, rng = population()
    dense = np.where(rng.random(len(y)) < 0.95, y, (y + 1) % 3)
    base = predictions(y, g, rng, [0.9, 0.9, 0.9, 0.6], dense)
    helps, hurts = (predictions(y, g, rng, acc, dense) for acc in ([0.88] * 4, [0.9, 0.9, 0.9, 0.45]))
    agree = compare_split([(base, helps), (base, helps)], 4, "test", FAST).set_index("metric")
    disagree = compare_split([(base, helps), (base, hurts)], 4, "test", FAST).set_index("metric")
    width = {name: (o.loc["max_excess_gap", "diff_high"] - o.loc["max_excess_gap", "diff_low"])
             for name, o in (("agree", agree), ("disagree", disagree))}
    assert width["disagree"] > 3 * width["agree"]
    assert seed_verdict_of(disagree.loc["max_excess_gap"]) == "not distinguishable"


def test_runs_evaluated_on_other_samples_are_refused():
    y, g, rng = population()
    dense = np.where(rng.random(len(y)) < 0.95, y, (y + 1) % 3)
    base = predictions(y, g, rng, [0.9] * 4, dense)
    with pytest.raises(ValueError, match="not evaluated on the same samples"):
        compare_split([(base, base.iloc[:-1])], 4, "test", FAST)


def test_sentences_say_the_direction_the_interval_the_verdict_and_the_seeds():
    row = {"method": "ceag", "tolerance": 0.02, "split": "test", "metric": "max_excess_gap", "diff": -0.004,
           "diff_low": -0.02, "diff_high": 0.012, "seeds": 3}
    assert seed_sentence(row) == ("CEAG (ε = 2 %) lowers test max_g ψ_g by 0.4 points (95 % interval -1.2 to 2.0): "
                                  "not distinguishable from no change, with 3 seeds.")
    row.update(diff=-0.30, diff_low=-0.34, diff_high=-0.25, seeds=1)
    assert seed_sentence(row) == (
        "CEAG (ε = 2 %) lowers test max_g ψ_g by 30.0 points (95 % interval 25.0 to 34.0): more than chance in the "
        "seeds and the samples explains, with 1 seed: seed-to-seed variation is unknown, so the interval counts "
        "only the samples.")
    row.update(metric="accuracy", diff=0.01, diff_low=0.002, diff_high=0.02, seeds=5, method="el_rb",
               tolerance=None)
    assert seed_sentence(row).startswith("EL+RB raises test accuracy by 1.0 points (95 % interval 0.2 to 2.0)")
    assert verdict_label(row) == "higher (5 seeds)"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG (ε = 1 %) on two seeds, and a CEAG run on a third seed without NFT."""
    results = tmp_path_factory.mktemp("seeds")
    cells = (("nft", None, 0), ("ceag", 0.01, 0), ("nft", None, 1), ("ceag", 0.01, 1), ("ceag", 0.01, 2))
    ids = finished_runs(results, [fast_config(method=m, tolerance=t, seed=s) for m, t, s in cells])
    return results, {(m, s): rid for (m, _, s), rid in zip(cells, ids, strict=True)}


def test_runs_are_paired_by_seed_and_dense_model(store):
    results, ids = store
    [comparison] = pair_runs(queries.comparison_runs(results))
    assert comparison.method == "ceag" and comparison.tolerance == 0.01 and comparison.seeds == 2
    assert comparison.pairs == ((0, ids[("nft", 0)], ids[("ceag", 0)]), (1, ids[("nft", 1)], ids[("ceag", 1)]))


def test_comparisons_are_kept_and_served_only_for_the_same_runs_and_settings(store, monkeypatch):
    import ceag.results.predictions as preds

    results, _ = store
    comparisons = pair_runs(queries.comparison_runs(results))
    first, notes = seed_comparisons(results, comparisons, ("test", "train"), FAST)
    assert not notes and set(first["split"]) == {"test", "train"}

    def unreadable(*args, **kwargs):
        raise OSError("must not be read again")

    monkeypatch.setattr(preds, "stored_predictions", unreadable)
    again, notes = seed_comparisons(results, comparisons, ("test", "train"), FAST)
    pd.testing.assert_frame_equal(first, again)
    # other settings are not served from the cache: they need the predictions, and say why they are missing
    other, notes = seed_comparisons(results, comparisons, ("test",), BootstrapSettings(n_boot=401))
    assert other.empty and "must not be read again" in notes[0] and len(notes) == 1


def test_frontiers_show_each_cell_against_nft_in_the_tooltip_and_the_table(store, monkeypatch):
    results, _ = store
    at = open_app_page(monkeypatch, "frontiers", "Accuracy–disparity frontiers", results)
    table = at.dataframe[0].value
    ceag = table[table.method == "CEAG"].iloc[0]
    frame, _ = store_comparisons(results, splits=("test",))
    row = frame[(frame.metric == "max_excess_gap")].iloc[0]
    assert ceag["max_g ψ_g vs NFT (points)"] == pytest.approx(100 * row["diff"])
    assert ceag["max_g ψ_g vs NFT low (points)"] == pytest.approx(100 * row["diff_low"])
    assert ceag["max_g ψ_g vs NFT: verdict"] == verdict_label(row)
    assert ceag["seeds paired with NFT"] == 2
    assert table.loc[table.method == "NFT", "max_g ψ_g vs NFT: verdict"].eq("").all()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    hover = [t for t in spec["data"] if t.get("name") == "CEAG" and t.get("customdata")][0]
    assert "points vs NFT (95 % interval" in hover["customdata"][0][8]


def test_the_report_opens_with_the_mitigations_against_nft_across_seeds(store, tmp_path):
    from ceag.present.report import write_report

    results, ids = store
    out, _ = write_report(results, [ids[("nft", 0)], ids[("ceag", 0)]], tmp_path / "r.html", FAST)
    text = out.read_text()
    assert "<h2>Across seeds</h2>" in text and "with 2 seeds." in text
    assert text.index("<h2>Across seeds</h2>") < text.index("<h2>What the numbers say</h2>")


def test_a_whole_answer_is_served_again_only_while_the_store_is_unchanged(store, monkeypatch):
    import os

    from ceag.store import db

    results, _ = store
    first = store_comparisons(results, splits=("test",), n_boot=300)

    def no_query(*args, **kwargs):
        raise AssertionError("the store was queried again")

    monkeypatch.setattr(queries, "comparison_runs", no_query)
    again = store_comparisons(results, splits=("test",), n_boot=300)
    pd.testing.assert_frame_equal(first[0], again[0])
    assert first[1] == again[1]
    stat = db.db_path(results).stat()
    os.utime(db.db_path(results), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the store changed
    with pytest.raises(AssertionError, match="queried again"):
        store_comparisons(results, splits=("test",), n_boot=300)


def test_export_writes_every_comparison_with_its_verdict(store, tmp_path):
    from ceag.present.sentences.seeds import seed_verdict
    from tests.helpers import ceag_main

    results, ids = store
    out = tmp_path / "verdicts.csv"
    code, _, err = ceag_main("export", "--table", "verdicts", "--out", out, "--results", results)
    assert code == 0, err
    table = pd.read_csv(out)
    frame, _ = store_comparisons(results, splits=("train", "val", "test"))
    assert len(table) == len(frame) and set(table["split"]) == set(frame["split"])
    row = table[(table.split == "test") & (table.metric == "max_excess_gap")].iloc[0]
    assert row["run_ids"] == f"{ids[('ceag', 0)]},{ids[('ceag', 1)]}" and row["seeds"] == 2
    assert row["verdict"] == seed_verdict(row)
    only = tmp_path / "one.csv"
    assert ceag_main("export", "--table", "verdicts", "--method", "el_rb", "--out", only, "--results", results)[0] == 0
    assert len(pd.read_csv(only)) == 0


def test_answers_of_an_earlier_store_are_forgotten_once_the_store_changes(store):
    import os

    from ceag.results.layout import verdict_cache
    from ceag.store import db

    results, ids = store
    store_comparisons(results, splits=("val",), n_boot=200)
    store_comparisons(results, splits=("val",), n_boot=200, run_ids=(ids[("ceag", 0)],))
    answers = verdict_cache(results) / "answers"
    assert len(list(answers.glob("*.json"))) >= 2
    stat = db.db_path(results).stat()
    os.utime(db.db_path(results), ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000))
    store_comparisons(results, splits=("val",), n_boot=200)
    assert len(list(answers.glob("*.json"))) == len(list(answers.glob("*.parquet"))) == 1


def test_intervals_stay_within_what_each_metric_can_be():
    """Two seeds that disagree widely on a model that is nearly always right: a t interval alone would pass 100 %."""
    y, g, rng = population()
    dense = y.copy()
    frames = [(predictions(y, g, rng, [0.999] * 4, dense), predictions(y, g, rng, acc, dense))
              for acc in ([0.999] * 4, [0.6] * 4)]
    out = compare_split(frames, 4, "test", FAST).set_index(["metric", "group_id"])
    acc = out.loc[("accuracy", -1)]
    assert 0 <= acc.baseline_low <= acc.baseline_high <= 1 and 0 <= acc.mitigation_low <= acc.mitigation_high <= 1
    assert -1 <= acc.diff_low <= acc.diff_high <= 1
    groups = out.loc["excess_gap"]
    assert (groups.mitigation_low >= -1).all() and (groups.mitigation_high <= 1).all()
