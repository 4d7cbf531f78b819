"""The pure plot functions: small hand-made frames in, figures checked through ``fig.data`` / ``fig.to_dict()``.

No Streamlit and no store here; every expected number is computed by hand in the test.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

from ceag.config.vocabulary import method_label
from ceag.present.plots.frontier import frontier, frontier_table
from ceag.present.plots.groups import excess_gap_bars, generalization, generalization_summary
from ceag.present.plots.style import TOLERANCE_SIZES, pareto_front, sparsity_symbol
from ceag.present.plots.training import group_curves, multiplier_heatmap, multipliers, training_curves

# -- fixtures: tiny frames in the shapes the store queries return ----------------------------------


@pytest.fixture
def summary() -> pd.DataFrame:
    """Rows of ``queries.frontier_summary``: two methods x two sparsities, CEAG with two seeds at 0.9."""
    return pd.DataFrame({
        "model": ["mlp"] * 4,
        "method": ["ceag", "ceag", "nft", "nft"],
        "sparsity": [0.9, 0.95, 0.9, 0.95],
        "tolerance": [0.02, 0.02, np.nan, np.nan],
        "seeds": [2, 1, 1, 1],
        "accuracy": [0.85, 0.80, 0.88, 0.70],
        "accuracy_std": [0.01, np.nan, np.nan, np.nan],
        "max_excess_gap": [0.03, 0.04, 0.08, 0.15],
        "max_excess_gap_std": [0.005, np.nan, np.nan, np.nan],
        "psi_pw": [0.05, 0.07, 0.12, 0.25],
        "psi_pw_std": [0.01, np.nan, np.nan, np.nan],
        "dense_accuracy": [0.90, 0.90, 0.90, 0.90],
        "run_ids": [["a1", "a2"], ["b1"], ["c1"], ["d1"]],
    })


@pytest.fixture
def duals() -> pd.DataFrame:
    """Rows of ``queries.duals``: three groups over four steps, step-major as the query orders them."""
    rows = []
    for step, (gid, name) in itertools.product(range(4), enumerate(["g0", "g1", "g2"])):
        rows.append({"step": 10 * step, "epoch": step, "group_id": gid, "group_name": name,
                     "multiplier": 0.1 * gid + 0.01 * step, "violation": 0.001 * (gid - step)})
    return pd.DataFrame(rows)


@pytest.fixture
def gen() -> pd.DataFrame:
    """Rows of ``queries.generalization``: CEAG runs r1, r2 (two groups each) and one NFT run r3."""
    return pd.DataFrame({
        "run_id": ["r1", "r1", "r2", "r2", "r3", "r3"],
        "method": ["ceag", "ceag", "ceag", "ceag", "nft", "nft"],
        "sparsity": [0.9, 0.9, 0.95, 0.95, 0.9, 0.9],
        "tolerance": [0.02, 0.02, 0.02, 0.02, np.nan, np.nan],
        "seed": [0] * 6,
        "group_id": [0, 1, 0, 1, 0, 1],
        "group_name": ["a", "b", "a", "b", "a", "b"],
        "n_train": [100, 25, 100, 25, 100, 25],
        "n_test": [40, 10, 40, 10, 40, 10],
        "train_excess_gap": [0.01, 0.03, 0.02, -0.01, 0.05, 0.10],
        "test_excess_gap": [0.02, 0.05, 0.04, 0.00, 0.06, 0.09],
        "train_acc_gap": [0.0] * 6,
        "test_acc_gap": [0.0] * 6,
    })


def by_name(fig) -> dict:
    return {trace.name: trace for trace in fig.data}


# -- method_label / pareto_front -------------------------------------------------------------------


def test_method_label_adds_the_tolerance_only_when_there_is_one():
    assert method_label("ceag", 0.02) == "CEAG ε=2%"
    assert method_label("nft_es", None) == "NFT+ES"
    assert method_label("el_rb", float("nan")) == "EL+RB"
    assert method_label("unknown") == "unknown"


def test_pareto_front_returns_exactly_the_non_dominated_points_by_x():
    # (x = disparity, lower is better; y = accuracy, higher is better)
    x = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 0.5, 4.0])
    y = np.array([5.0, 7.0, 6.0, 7.0, 9.0, 1.0, 2.0])
    # 5 (0.5, 1): lowest x; 0 (1, 5); 1 (2, 7), whose duplicate 3 is left out; 2 (3, 6) is beaten by (2, 7);
    # 4 (4, 9); 6 (4, 2) is beaten by (4, 9) at the same x.
    assert pareto_front(x, y).tolist() == [5, 0, 1, 4]


def test_pareto_front_agrees_with_a_brute_force_check():
    rng = np.random.default_rng(0)
    x, y = rng.random(40), rng.random(40)
    dominated = {i for i in range(40) for j in range(40)
                 if j != i and x[j] <= x[i] and y[j] >= y[i] and (x[j] < x[i] or y[j] > y[i])}
    front = pareto_front(x, y)
    assert set(front.tolist()) == set(range(40)) - dominated
    assert np.all(np.diff(x[front]) > 0)  # ordered by disparity, ready to draw as a line


# -- frontier ---------------------------------------------------------------------------------------


def test_frontier_has_one_trace_per_method_then_the_pareto_front_and_the_dense_star(summary):
    fig = frontier(summary, "psi_pw", split="test")
    # Legend entries first (a method's colour as a circle; a sparsity's symbol in grey), then the data.
    assert [t.name for t in fig.data] == ["CEAG", "NFT", "CEAG", "NFT", "Pareto front", "dense model", "sparsity 0.9",
                                          "sparsity 0.95"]
    assert [t.showlegend for t in fig.data[:4]] == [None, None, False, False]
    traces = by_name(fig)
    np.testing.assert_allclose(traces["CEAG"].x, [5.0, 7.0])
    np.testing.assert_allclose(traces["CEAG"].y, [85.0, 80.0])
    np.testing.assert_allclose(traces["NFT"].x, [12.0, 25.0])
    np.testing.assert_allclose(traces["NFT"].y, [88.0, 70.0])
    # Non-dominated: (5, 85) and (12, 88); everything else loses to one of them.
    np.testing.assert_allclose(traces["Pareto front"].x, [5.0, 12.0])
    np.testing.assert_allclose(traces["Pareto front"].y, [85.0, 88.0])
    assert list(traces["dense model"].x) == [0.0]
    np.testing.assert_allclose(traces["dense model"].y, [90.0])
    assert traces["dense model"].marker.symbol == "star"


def test_frontier_customdata_carries_the_run_ids_of_each_point(summary):
    traces = by_name(frontier(summary, "psi_pw"))
    assert [row[0] for row in traces["CEAG"].customdata] == ["a1,a2", "b1"]
    assert [row[0] for row in traces["NFT"].customdata] == ["c1", "d1"]
    # Sparsity, tolerance, seed count and model follow the run ids.
    first = traces["CEAG"].customdata[0]
    assert (first[1], first[2], first[3], first[4]) == (0.9, 0.02, 2, "mlp")


def test_frontier_encodes_sparsity_as_symbol_tolerance_as_size_and_std_as_error_bars(summary):
    traces = by_name(frontier(summary, "psi_pw"))
    assert list(traces["CEAG"].marker.symbol) == ["circle", "square"]
    assert list(traces["NFT"].marker.symbol) == ["circle", "square"]
    assert list(traces["CEAG"].marker.size) == [TOLERANCE_SIZES[0]] * 2
    assert list(traces["NFT"].marker.size) == [11, 11]  # no tolerance: the fixed size
    assert traces["CEAG"].error_x.visible is True
    np.testing.assert_allclose(traces["CEAG"].error_x.array, [1.0, 0.0])
    np.testing.assert_allclose(traces["CEAG"].error_y.array, [1.0, 0.0])
    assert traces["NFT"].error_x.visible is False


def test_frontier_on_max_excess_gap_uses_that_column_and_labels_the_axes(summary):
    fig = frontier(summary, "max_excess_gap", split="train")
    traces = by_name(fig)
    np.testing.assert_allclose(traces["CEAG"].x, [3.0, 4.0])
    np.testing.assert_allclose(traces["NFT"].x, [8.0, 15.0])
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"].startswith("max_g ψ_g (points) on train")
    assert layout["yaxis"]["title"]["text"] == "train accuracy (%)"


def test_frontier_symbols_keep_their_meaning_when_runs_with_new_sparsities_arrive(summary):
    before = by_name(frontier(summary, "psi_pw"))["CEAG"].marker.symbol
    more = pd.concat([summary, summary.iloc[[0]].assign(sparsity=0.5, run_ids=[["z9"]])], ignore_index=True)
    after = by_name(frontier(more, "psi_pw"))["CEAG"].marker.symbol
    assert list(after[:2]) == list(before)
    assert after[2] == sparsity_symbol(0.5) not in before
    assert sparsity_symbol(0.937) == sparsity_symbol(0.93700001)  # any value: a stable symbol


def test_frontier_clips_a_collapsed_run_and_marks_it(summary):
    collapsed = pd.concat([summary, summary.iloc[[3]].assign(sparsity=0.99, accuracy=0.05, psi_pw=0.9,
                                                             run_ids=[["x1"]])], ignore_index=True)
    fig = frontier(collapsed, "psi_pw", clip=True)
    nft = by_name(fig)["NFT"]
    layout = fig.to_dict()["layout"]
    lo, hi = layout["xaxis"]["range"]
    assert hi < 90 and layout["yaxis"]["range"][0] > 5  # the collapsed point no longer sets the ranges
    assert nft.marker.symbol[-1].startswith("arrow") and not nft.marker.symbol[0].startswith("arrow")
    assert nft.x[-1] == pytest.approx(hi) and nft.customdata[-1][6] == pytest.approx(90.0)  # true value kept
    assert "outside the clipped range" in nft.customdata[-1][5]
    unclipped = frontier(collapsed, "psi_pw").to_dict()["layout"]
    assert "range" not in unclipped["xaxis"]


def test_frontier_tooltips_show_a_tolerance_only_for_methods_that_have_one(summary):
    traces = by_name(frontier(summary, "psi_pw"))
    assert [row[5] for row in traces["CEAG"].customdata] == ["sparsity 0.9<br>tolerance ε 2%",
                                                             "sparsity 0.95<br>tolerance ε 2%"]
    assert [row[5] for row in traces["NFT"].customdata] == ["sparsity 0.9", "sparsity 0.95"]


def test_frontier_table_names_units_and_uses_the_screen_labels(summary):
    table = frontier_table(summary, "test")
    assert list(table.columns[:9]) == ["split", "model", "method", "criterion", "sparsity (%)", "tolerance ε (%)",
                                       "seeds", "accuracy (%)", "accuracy std (points)"]
    assert list(table["method"]) == ["CEAG", "CEAG", "NFT", "NFT"]
    assert set(table["criterion"]) == {"magnitude"}  # a summary without criteria: every run pruned by magnitude
    np.testing.assert_allclose(table["Ψ_PW (points)"], [5.0, 7.0, 12.0, 25.0])
    assert table["tolerance ε (%)"].isna().tolist() == [False, False, True, True]
    assert list(table["run ids"]) == ["a1,a2", "b1", "c1", "d1"]


def test_frontier_of_an_empty_summary_is_an_empty_figure_that_says_so(summary):
    fig = frontier(summary.iloc[:0], "psi_pw")
    assert len(fig.data) == 0
    assert fig.layout.title.text == "no finished runs for this selection"


# -- multipliers ------------------------------------------------------------------------------------


def test_multipliers_has_two_traces_per_group_and_the_tolerance_line_for_ceag(duals):
    fig = multipliers(duals, 0.02, "ceag")
    assert len(fig.data) == 2 * 3
    assert [t.name for t in fig.data] == ["g0", "g0", "g1", "g1", "g2", "g2"]
    lam, constraint = fig.data[2], fig.data[3]  # group g1: λ on top, the constraint below
    assert (lam.yaxis, constraint.yaxis) == ("y", "y2")
    np.testing.assert_allclose(lam.x, [0, 10, 20, 30])
    np.testing.assert_allclose(lam.y, [0.1, 0.11, 0.12, 0.13])
    # CEAG's lower panel: the buffered excess gap, violation + ε, in points.
    np.testing.assert_allclose(constraint.y, [100 * (0.001 * (1 - s) + 0.02) for s in range(4)])
    shapes = fig.to_dict()["layout"]["shapes"]
    assert len(shapes) == 1
    assert shapes[0]["y0"] == shapes[0]["y1"] == pytest.approx(2.0)
    assert shapes[0]["yref"] == "y2"
    texts = [a["text"] for a in fig.to_dict()["layout"]["annotations"]]
    assert "multiplier λ_g" in texts and "ε = 2%" in texts


def test_multipliers_for_el_rb_shows_the_raw_loss_gap_and_no_tolerance_line(duals):
    fig = multipliers(duals, None, "el_rb")
    assert len(fig.data) == 6
    np.testing.assert_allclose(fig.data[1].y, [0.0, -0.001, -0.002, -0.003])
    assert fig.to_dict()["layout"].get("shapes", []) == []
    texts = [a["text"] for a in fig.to_dict()["layout"]["annotations"]]
    assert "constraint: buffered loss gap |L̂_g − L̂|" in texts


def test_multiplier_heatmap_is_groups_by_steps(duals):
    fig = multiplier_heatmap(duals)
    heat = fig.data[0]
    z = np.asarray(heat.z)
    assert z.shape == (3, 4)
    assert list(heat.y) == ["g0", "g1", "g2"]
    assert list(heat.x) == [0, 10, 20, 30]
    np.testing.assert_allclose(z[2], [0.2, 0.21, 0.22, 0.23])
    np.testing.assert_allclose(z[:, 0], [0.0, 0.1, 0.2])


# -- generalization -----------------------------------------------------------------------------------


def test_generalization_plots_test_against_train_excess_gap_per_method(gen):
    fig = generalization(gen, 0.02)
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"] == "train ψ_g (points)"
    assert layout["yaxis"]["title"]["text"] == "test ψ_g (points)"
    assert [t.name for t in fig.data] == ["CEAG", "NFT", "test = train"]
    traces = by_name(fig)
    np.testing.assert_allclose(traces["CEAG"].x, [1.0, 3.0, 2.0, -1.0])
    np.testing.assert_allclose(traces["CEAG"].y, [2.0, 5.0, 4.0, 0.0])
    np.testing.assert_allclose(traces["NFT"].x, [5.0, 10.0])
    assert [row[4] for row in traces["CEAG"].customdata] == ["r1", "r1", "r2", "r2"]
    # The diagonal spans every value on either axis.
    np.testing.assert_allclose(traces["test = train"].x, [-1.0, 10.0])
    np.testing.assert_allclose(traces["test = train"].y, [-1.0, 10.0])
    # ε drawn on both axes.
    shapes = layout["shapes"]
    assert len(shapes) == 2
    vertical = [s for s in shapes if s["xref"] == "x"]
    horizontal = [s for s in shapes if s["yref"] == "y"]
    assert len(vertical) == len(horizontal) == 1
    assert vertical[0]["x0"] == vertical[0]["x1"] == pytest.approx(2.0)
    assert horizontal[0]["y0"] == horizontal[0]["y1"] == pytest.approx(2.0)


def test_generalization_marker_size_grows_with_the_training_group_size(gen):
    sizes = np.asarray(by_name(generalization(gen)).get("CEAG").marker.size)
    np.testing.assert_allclose(sizes, [30.0, 19.0, 30.0, 19.0])  # 8 + 22 sqrt(n / n_max), n_max = 100


def test_generalization_summary_matches_a_hand_computation(gen):
    out = generalization_summary(gen).set_index("method")
    assert list(out.columns) == ["tolerance", "runs", "train_max_excess_gap", "test_max_excess_gap", "gap"]
    ceag, nft = out.loc["ceag"], out.loc["nft"]
    # CEAG: max train ψ per run 0.03 (r1), 0.02 (r2); max test ψ 0.05, 0.04; gaps 0.02, 0.02.
    assert ceag["runs"] == 2
    assert ceag["tolerance"] == pytest.approx(0.02)
    assert ceag["train_max_excess_gap"] == pytest.approx(0.025)
    assert ceag["test_max_excess_gap"] == pytest.approx(0.045)
    assert ceag["gap"] == pytest.approx(0.02)
    # NFT has no tolerance and is kept, not dropped as a NaN group: 0.10 on train, 0.09 on test.
    assert nft["runs"] == 1
    assert np.isnan(nft["tolerance"])
    assert nft["train_max_excess_gap"] == pytest.approx(0.10)
    assert nft["test_max_excess_gap"] == pytest.approx(0.09)
    assert nft["gap"] == pytest.approx(-0.01)


def test_generalization_of_nothing_is_empty(gen):
    assert len(generalization(gen.iloc[:0]).data) == 0
    empty = generalization_summary(gen.iloc[:0])
    assert empty.empty and "gap" in empty.columns


# -- bars and curves --------------------------------------------------------------------------------


@pytest.fixture
def groups() -> pd.DataFrame:
    return pd.DataFrame({"split": ["train", "train", "test", "test"], "group_name": ["a", "b", "a", "b"],
                         "n": [100, 25, 40, 10], "excess_gap": [0.01, 0.03, -0.02, 0.05]})


def test_excess_gap_bars_has_one_trace_per_split_in_points(groups):
    fig = excess_gap_bars(groups, 0.02)
    assert [t.name for t in fig.data] == ["train", "test"]
    assert all(t.type == "bar" for t in fig.data)
    train, test = fig.data
    assert list(train.x) == ["a", "b"]
    np.testing.assert_allclose(train.y, [1.0, 3.0])
    np.testing.assert_allclose(test.y, [-2.0, 5.0])
    assert [row[0] for row in test.customdata] == [40, 10]
    shapes = fig.to_dict()["layout"]["shapes"]
    assert len(shapes) == 1 and shapes[0]["y0"] == pytest.approx(2.0)


@pytest.mark.parametrize("tolerance", [None, float("nan")])
def test_excess_gap_bars_without_a_tolerance_draws_no_line(groups, tolerance):
    fig = excess_gap_bars(groups, tolerance)
    assert fig.to_dict()["layout"].get("shapes", []) == []


def test_training_curves_show_the_schedule_once_and_accuracy_per_split():
    metrics = pd.DataFrame({"split": ["test"] * 3 + ["train"] * 3, "epoch": [0, 1, 2] * 2,
                            "sparsity": [0.0, 0.5, 0.9] * 2, "accuracy": [0.9, 0.8, 0.85, 0.95, 0.85, 0.9]})
    fig = training_curves(metrics, prune_epochs=2)
    assert [t.name for t in fig.data] == ["sparsity", "test accuracy", "train accuracy"]
    np.testing.assert_allclose(fig.data[0].y, [0.0, 50.0, 90.0])
    np.testing.assert_allclose(fig.data[2].y, [95.0, 85.0, 90.0])
    shapes = fig.to_dict()["layout"]["shapes"]
    assert len(shapes) == 2 and all(s["x0"] == 2 for s in shapes)  # the end of pruning on both panels


# -- group_curves ------------------------------------------------------------------------------------
def test_group_curves_draw_accuracy_and_excess_gap_per_group_and_split_with_tolerance_and_window():
    rows = [{"epoch": e, "split": s, "group_id": g, "group_name": f"g{g}", "n": 10,
             "accuracy": 0.5 + 0.01 * e + 0.1 * g, "dense_accuracy": 0.9, "excess_gap": 0.02 * g - 0.001 * e}
            for s in ("train", "test") for g in range(3) for e in range(6)]
    curves = pd.DataFrame(rows)
    fig = group_curves(curves, 0.02, prune_epochs=2, window=(4, 5))
    assert len(fig.data) == 2 * 2 * 3
    # train accuracy of g1 (first column, first row), in percent
    g1 = [t for t in fig.data if t.name == "g1" and t.xaxis == "x" and t.yaxis == "y"][0]
    assert list(g1.x) == list(range(6))
    assert np.allclose(g1.y, [100 * (0.5 + 0.01 * e + 0.1) for e in range(6)])
    # test excess gap of g2 is in the second row, second column
    g2 = [t for t in fig.data if t.name == "g2" and t.xaxis == "x4"][0]
    assert np.allclose(g2.y, [100 * (0.04 - 0.001 * e) for e in range(6)])
    layout = fig.to_dict()["layout"]
    hlines = [s for s in layout["shapes"] if s["type"] == "line" and s.get("y0") == s.get("y1")]
    assert {s["y0"] for s in hlines} == {2.0} and len(hlines) == 2  # ε on both ψ panels
    rects = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert len(rects) == 4 and all((r["x0"], r["x1"]) == (3.5, 5.5) for r in rects)
    # one legend entry per group
    assert sum(1 for t in fig.data if t.showlegend) == 3
    # without a tolerance (NFT) no ε line
    assert not [s for s in group_curves(curves).to_dict()["layout"].get("shapes", []) if s["type"] == "line"]
