"""Every dashboard page under ``AppTest``: on an empty results folder and on a store of real runs.

The seeded store is one small grid (digits, MLP, four methods, two sparsities) trained once per
module with ``run_grid``; the pages' numbers are checked against the store's own queries.
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ceag.analysis.seed_cache import store_comparisons
from ceag.config.grid_spec import GridSpec
from ceag.config.presets import preset
from ceag.config.vocabulary import GRID_METHODS, METHOD_LABELS
from ceag.grid import driver as executor
from ceag.grid import jobs, pool
from ceag.present.glossary import GLOSSARY
from ceag.present.sentences.overview import bounds_from, overview_sentences
from ceag.results.files import write_json
from ceag.store import connect, queries
from tests.helpers import ROOT, subprocess_env

APP = str(ROOT / "app.py")
TITLES = {
    "overview": "The disparate impact of pruning",
    "frontiers": "Accuracy–disparity frontiers",
    "multipliers": "Multiplier trajectories",
    "generalization": "Train versus test excess gaps",
    "launch": "Launch a grid",
    "runs": "Runs",
    "run_one": "Run one experiment",
    "compare": "Compare runs group by group",
    "casualties": "What pruning broke",
}
EMPTY_HINT = "No runs in this results folder yet. Start the demo on **Overview** or launch a grid on **Launch**."
SEED_SETTINGS = {"dense_epochs": 20, "prune_epochs": 5, "finetune_epochs": 5}
SEED_SPEC = GridSpec(datasets=("digits",), models=("mlp",), methods=("nft", "nft_es", "el_rb", "ceag"),
                     sparsities=(0.9, 0.95), tolerances=(0.02,), seeds=(0,), settings=SEED_SETTINGS)
# What the Launch page's widgets hold before anyone touches them.
LAUNCH_DEFAULTS = dict(datasets=("digits",), models=("mlp",), methods=GRID_METHODS,
                       sparsities=(0.9, 0.95),
                       tolerances=(0.02,), seeds=(0,))
LAUNCH_DEFAULT_SETTINGS = {"dense_epochs": 60, "prune_epochs": 20, "finetune_epochs": 40}
LIMIT_VARS = ("CEAG_MAX_GRID_CELLS", "CEAG_MAX_EPOCHS", "CEAG_MAX_JOBS")


# -- fixtures ---------------------------------------------------------------------------------------


def seed(results: Path, spec: GridSpec) -> None:
    """Train ``spec`` into ``results`` in this process, on one torch thread.

    run_grid gives its single worker every core; on a shared 2-core machine that oversubscribes
    and the tiny MLP trains ~20x slower, so the fixture pins one thread (and restores the count).
    """
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CEAG_RESULTS", str(results))
        mp.setattr(pool, "init_worker", lambda _threads: torch.set_num_threads(1))
        try:
            report = executor.run_grid(spec.configs(), results, workers=1)
        finally:
            torch.set_num_threads(threads)
    assert report.finished == spec.size(), report.to_json()


@pytest.fixture(scope="module")
def seeded_results(tmp_path_factory) -> Path:
    """A results folder holding the eight finished runs of SEED_SPEC (a few seconds on a laptop CPU)."""
    results = tmp_path_factory.mktemp("seeded")
    seed(results, SEED_SPEC)
    return results


@pytest.fixture(scope="module")
def nft_only_results(tmp_path_factory) -> Path:
    """A store with plain fine-tuning runs only: nothing has multipliers."""
    results = tmp_path_factory.mktemp("nft_only")
    seed(results, GridSpec(methods=("nft",), sparsities=(0.9,),
                           settings={"dense_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1}))
    return results


def _use(monkeypatch, results: Path) -> Path:
    monkeypatch.setenv("CEAG_RESULTS", str(results))
    for name in LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)
    return results


@pytest.fixture
def empty(tmp_path, monkeypatch) -> Path:
    return _use(monkeypatch, tmp_path / "results")


@pytest.fixture
def seeded(seeded_results, monkeypatch) -> Path:
    return _use(monkeypatch, seeded_results)


# -- helpers ----------------------------------------------------------------------------------------


def open_page(page: str, *, check: bool = True, **query_params: str) -> AppTest:
    """Run the app (its default page is Overview), then switch to ``page``; fail on an uncaught exception."""
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in query_params.items():
        at.query_params[key] = value
    at.run()
    if page != "overview":
        at.switch_page(f"dashboard/{page}.py").run()
    if check:
        assert not at.exception, [e.value for e in at.exception]
        assert [t.value for t in at.title] == [TITLES[page]]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array) -> np.ndarray:
    """A plotly JSON array: a plain list, or ``{"dtype", "bdata"[, "shape"]}`` (base64) as plotly 6 writes it."""
    if isinstance(array, dict) and "bdata" in array:
        out = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        if "shape" in array:
            shape = array["shape"]
            out = out.reshape([int(s) for s in shape.split(",")] if isinstance(shape, str) else shape)
        return out
    return np.asarray(array)


def widget(elements, label: str):
    matches = [e for e in elements if e.label == label]
    assert len(matches) == 1, [e.label for e in elements]
    return matches[0]


def infos(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


def progress_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def fake_launch(calls: list):
    """Stands in for ``jobs.launch``: records the call and writes a live-looking progress feed, no process."""

    def launch(spec, results, **kwargs):
        calls.append((spec, Path(results)))
        jdir = Path(results) / "jobs" / "fakejob0001"
        jdir.mkdir(parents=True, exist_ok=True)
        write_json(jdir / "progress.json", {"job_id": "fakejob0001", "state": "running", "total": spec.size(),
                                            "cached": 0, "finished": 1, "diverged": 0, "failed": 0, "runs": {}})
        write_json(jdir / "launcher.json", {"pid": os.getpid()})  # alive: the job is not reported lost
        return "fakejob0001"

    return launch


# -- imports ----------------------------------------------------------------------------------------


def test_store_plots_and_jobs_import_without_torch_or_streamlit():
    code = ("import sys, ceag.store, ceag.present.plots.frontier, ceag.present.plots.groups, "
            "ceag.present.plots.training, ceag.present.plots.speed, ceag.present.footprint, ceag.grid.jobs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streamlit')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=subprocess_env(threads=None))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- an empty results folder ------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["frontiers", "multipliers", "generalization", "runs", "casualties"])
def test_data_pages_on_an_empty_store_show_the_empty_state(empty, page):
    at = open_page(page)
    assert infos(at) == [EMPTY_HINT]
    assert not at.get("plotly_chart") and not at.dataframe
    assert [link.proto.label for link in at.get("page_link")] == ["Go to Overview"]
    assert not empty.exists()  # reading an empty store writes nothing


def test_overview_on_an_empty_store_offers_the_demo(empty):
    at = open_page("overview")
    assert [b.label for b in at.button] == ["Run the demo grid"]
    assert [s.value for s in at.subheader] == ["Start here"]
    demo = preset("demo")  # the offer describes the grid the button launches
    assert any(f"{len(demo.seeds)} seeds each: {demo.size()} runs" in m.value for m in at.markdown)
    assert not at.metric
    assert at.expander[0].proto.expanded  # the explanation opens when there is nothing else to read


def test_overview_demo_button_launches_the_demo_grid_and_shows_its_progress(empty, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("overview")
    at.button[0].click().run()
    assert not at.exception
    assert calls == [(preset("demo"), empty)]
    assert at.query_params["job"] == "fakejob0001"
    assert progress_texts(at) == [f"job fakejob0001: running, 1 of {preset('demo').size()} runs done"]
    assert "Run the demo grid" not in [b.label for b in at.button]  # no second demo while one runs


def test_launch_on_an_empty_store_counts_the_default_grid(empty):
    at = open_page("launch")
    n = GridSpec(**LAUNCH_DEFAULTS).size()
    assert n == 8
    assert infos(at) == [f"This grid means **{n} runs**; 0 are already in the store and load from the cache, "
                         f"{n} will train."]
    assert [b.label for b in at.button] == ["Launch"]
    assert "No jobs yet." in [c.value for c in at.caption]


def test_run_one_on_an_empty_store_waits_for_a_setting(empty):
    at = open_page("run_one")
    assert infos(at) == ["Choose a setting and press **Run**."]
    assert widget(at.selectbox, "Method").value == "ceag"


# -- a seeded store ---------------------------------------------------------------------------------


def test_overview_counts_the_runs_in_the_store(seeded):
    runs = queries.runs(seeded)
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Runs": str(len(runs)), "Finished": str(len(runs)), "Datasets": "1", "Running jobs": "0"}
    assert len(runs) == SEED_SPEC.size()
    table = at.dataframe[0].value
    assert sorted(table["method"]) == sorted(SEED_SPEC.methods)
    assert set(table["sparsities"]) == {"0.9, 0.95"}
    assert table.set_index("method").loc["ceag", "tolerances"] == "0.02"
    assert not at.button  # no demo offer once there are runs


def test_overview_tells_the_seeded_stores_story_with_its_chart_and_a_glossary(seeded):
    at = open_page("overview")
    versus, _ = store_comparisons(seeded, dataset="digits", splits=("train", "test"))
    story = overview_sentences(queries.story_groups(seeded, dataset="digits", model="mlp"), bounds_from(versus))
    assert story and at.markdown[0].value == "\n".join(f"- {s}" for s in story)
    assert "this data" in at.markdown[0].value  # the sentences say what the data cannot tell
    [spec] = charts(at)
    summary = queries.frontier_summary(seeded, dataset="digits", model="mlp", split="test")
    ceag = [t for t in spec["data"] if t["name"] == "CEAG ε=2%" and t["xaxis"] == "x2"]
    assert len(ceag) == 1  # the test panel
    expected = summary[summary.method == "ceag"].sort_values("sparsity")
    np.testing.assert_allclose(values(ceag[0]["y"]), 100 * expected["max_excess_gap"])
    np.testing.assert_allclose(values(ceag[0]["x"]), 100 * expected["sparsity"])
    # The definitions stay reachable once results are there: a glossary naming every symbol, and tooltips.
    [glossary] = [e for e in at.expander if e.label.startswith("Glossary")]
    text = " ".join(m.value for m in glossary.markdown)
    assert all(f"**{term}**" in text for term in GLOSSARY)
    assert "sparsity" in at.subheader[0].proto.help and "ψ_g" in at.subheader[0].proto.help


def test_overview_sentences_are_true_for_the_store_they_are_shown_on(tmp_path, monkeypatch):
    """The hand-made store where a canned caption was wrong three times: the page says what its numbers say."""
    from tests.test_sentences import DEMO, add_run

    with connect(tmp_path, write=True) as con:
        for (method, sparsity, tol), gaps in DEMO.items():
            add_run(con, method, sparsity, tol, 0, gaps)
    _use(monkeypatch, tmp_path)
    at = open_page("overview")
    text = at.markdown[0].value
    assert text == "\n".join(f"- {s}" for s in overview_sentences(queries.story_groups(tmp_path, dataset="digits")))
    assert text.startswith("- On digits with the mlp model, pruning to 95 % sparsity shows the problem and its repair")
    assert "At 98 %, no CEAG run meets its tolerance on the training data" in text
    assert "At 90 %, NFT leaves no group more than 1.0 points behind" in text
    assert "digit 3 ends 4.2 points behind, above ε" in text  # 95 %, on test
    [details] = [e for e in at.expander if e.label == "The numbers behind these points"]
    folded = " ".join(m.value for m in details.markdown)
    assert "**90 %**: CEAG with ε = 1 %: worst on test digit 0 at 3.0 points, worse than NFT's 2.1." in folded
    assert "digit 8 loses 38.2 points of training accuracy while the model as a whole loses 5.0" in folded
    page_text = " ".join([*(m.value for m in at.markdown), *(c.value for c in at.caption)])
    assert "near ε" not in page_text and "holds it" not in page_text
    [spec] = charts(at)
    train = [t for t in spec["data"] if t["name"] == "CEAG ε=1%" and t["xaxis"] == "x"]
    assert values(train[0]["y"]).tolist() == pytest.approx([0.4, 6.8])  # 90 % and 98 %, as the store holds


@pytest.mark.parametrize("split", ["test", "train"])
def test_frontiers_plot_every_method_at_the_stores_accuracies(seeded, split):
    at = open_page("frontiers")
    if split != "test":
        widget(at.radio, "Split").set_value(split).run()
        assert not at.exception
        assert at.query_params["split"] == split
    else:  # the default is not written: a link carries only what differs from the defaults
        assert "split" not in at.query_params
    summary = queries.frontier_summary(seeded, dataset="digits", split=split)
    specs = charts(at)
    assert len(specs) == 3  # the two accuracy–disparity frontiers, then speed and fairness
    specs = specs[:2]
    for spec, metric in zip(specs, ("psi_pw", "max_excess_gap"), strict=True):
        traces = {t["name"]: t for t in spec["data"]}
        assert {METHOD_LABELS[m] for m in SEED_SPEC.methods} | {"dense model"} <= set(traces)
        for method, part in summary.groupby("method"):
            trace = traces[METHOD_LABELS[method]]
            np.testing.assert_allclose(values(trace["y"]), 100 * part["accuracy"].to_numpy())
            np.testing.assert_allclose(values(trace["x"]), 100 * part[metric].to_numpy())
            assert [row[0] for row in trace["customdata"]] == [",".join(ids) for ids in part["run_ids"]]
        np.testing.assert_allclose(values(traces["dense model"]["y"]), [100 * summary["dense_accuracy"].mean()])
        assert split in spec["layout"]["yaxis"]["title"]["text"]
    assert len(at.dataframe[0].value) == len(summary) == 8


def ceag_run(results: Path, sparsity: float) -> str:
    runs = queries.runs(results, method="ceag")
    return runs.loc[runs.sparsity == sparsity, "run_id"].item()


def test_multipliers_page_selects_the_run_in_the_url_and_plots_its_multipliers(seeded):
    # The 0.95 run is not the page's default (runs are sorted by sparsity): only the URL can select it.
    run_id = ceag_run(seeded, 0.95)
    at = open_page("multipliers", runs=run_id)
    assert widget(at.selectbox, "Run").value == run_id
    assert at.query_params["runs"] == run_id
    specs = charts(at)
    assert len(specs) == 3  # multipliers, training curves, excess-gap bars
    lines = specs[0]
    duals = queries.duals(seeded, run_id)
    n_groups = duals["group_id"].nunique()
    assert n_groups == 10
    lam = [t for t in lines["data"] if t["yaxis"] == "y"]
    constraint = [t for t in lines["data"] if t["yaxis"] == "y2"]
    assert len(lam) == len(constraint) == n_groups
    texts = [a["text"] for a in lines["layout"]["annotations"]]
    assert "multiplier λ_g" in texts and "ε = 2%" in texts
    for trace in lam:
        expected = duals.loc[duals.group_name == trace["name"], "multiplier"].to_numpy()
        np.testing.assert_allclose(values(trace["y"]), expected)
    # The excess-gap bars of the reported epoch, one trace per split.
    assert {t["name"] for t in specs[2]["data"]} == set(queries.group_metrics(seeded, run_id)["split"])


def test_multipliers_page_defaults_to_the_first_constrained_run_and_leaves_the_selection_alone(seeded):
    at = open_page("multipliers")
    run_id = ceag_run(seeded, 0.9)
    assert widget(at.selectbox, "Run").value == run_id
    assert "runs" not in at.query_params
    constrained = set(queries.runs(seeded, method="ceag").run_id) | set(queries.runs(seeded, method="el_rb").run_id)
    options = widget(at.selectbox, "Run").options  # labels that end in the run id
    assert len(options) == len(constrained) == 4
    assert {label.rsplit(" · ", 1)[-1] for label in options} == constrained


def test_multipliers_page_for_an_el_rb_run_shows_loss_gaps_without_a_tolerance(seeded):
    runs = queries.runs(seeded, method="el_rb")
    run_id = runs.loc[runs.sparsity == 0.9, "run_id"].item()
    at = open_page("multipliers", runs=run_id)
    assert widget(at.selectbox, "Run").value == run_id
    lines = charts(at)[0]
    texts = [a["text"] for a in lines["layout"]["annotations"]]
    assert "constraint: buffered loss gap |L̂_g − L̂|" in texts
    assert not any(t.startswith("ε") for t in texts)


def test_multipliers_page_without_constrained_runs_says_so(nft_only_results, monkeypatch):
    _use(monkeypatch, nft_only_results)
    at = open_page("multipliers")
    assert infos(at) == ["No finished CEAG or EL+RB runs yet: only they have multipliers. Launch some on **Launch**."]
    assert not at.get("plotly_chart")


def test_generalization_table_has_one_row_per_run_and_group(seeded):
    at = open_page("generalization")
    runs = queries.runs(seeded)
    n_groups = queries.group_metrics(seeded, runs.run_id[0]).query("split == 'train'")["group_id"].nunique()
    summary, table = (d.value for d in at.dataframe)
    assert len(table) == len(runs) * n_groups == 80
    assert not table.duplicated(["run_id", "group_id"]).any()
    assert set(table["run_id"]) == set(runs["run_id"])
    # each group's smallest detectable gap on train and test, from the run's own predictions
    assert table["test_min_detectable_gap"].notna().all() and (table["test_min_detectable_gap"] > 0).any()
    assert sorted(summary["method"]) == sorted(METHOD_LABELS[m] for m in SEED_SPEC.methods)
    spec = charts(at)[0]
    assert spec["layout"]["xaxis"]["title"]["text"] == "train ψ_g (points)"
    assert spec["layout"]["yaxis"]["title"]["text"] == "test ψ_g (points)"


def test_generalization_page_shows_only_the_runs_in_the_url(seeded):
    run_id = ceag_run(seeded, 0.95)
    at = open_page("generalization", runs=run_id)
    assert widget(at.multiselect, "Runs").value == [run_id]
    table = at.dataframe[1].value
    assert set(table["run_id"]) == {run_id}
    assert len(table) == 10
    # Test-split gaps shown in points: 100x the store's fractions.
    gen = queries.generalization(seeded, [run_id])
    np.testing.assert_allclose(table["test_excess_gap"], 100 * gen["test_excess_gap"])



def two_edits(at: AppTest, kind: str, label: str, first, second):
    widget(getattr(at, kind), label).set_value(first).run()
    assert widget(getattr(at, kind), label).value == first
    widget(getattr(at, kind), label).set_value(second).run()
    return widget(getattr(at, kind), label).value


def test_frontiers_split_keeps_a_second_edit(seeded):
    at = open_page("frontiers")
    assert two_edits(at, "radio", "Split", "train", "val") == "val"


def test_multipliers_run_keeps_a_second_edit(seeded):
    ceag, el_rb = queries.runs(seeded, method="ceag"), queries.runs(seeded, method="el_rb")
    at = open_page("multipliers")
    assert two_edits(at, "selectbox", "Run", el_rb.run_id[0], ceag.run_id[1]) == ceag.run_id[1]


def test_generalization_runs_keep_a_second_edit(seeded):
    at = open_page("generalization")
    every = widget(at.multiselect, "Runs").value
    assert two_edits(at, "multiselect", "Runs", every[:2], every[:1]) == every[:1]


def test_url_synced_widgets_keep_an_edit_after_a_rerun(seeded):
    """The working half of the above: with a rerun between edits, both take effect and reach the URL."""
    at = open_page("frontiers")
    for split in ("train", "val"):
        widget(at.radio, "Split").set_value(split).run()
        at.run()
        assert widget(at.radio, "Split").value == split
        assert at.query_params["split"] == split


def test_runs_page_lists_every_run(seeded):
    at = open_page("runs")
    runs = queries.runs(seeded)
    table = at.dataframe[0].value
    assert len(table) == len(runs)
    assert set(table["run_id"]) == set(runs["run_id"])
    assert set(table["status"]) == {"finished"}
    assert f"{len(runs)} of {len(runs)} runs." in at.caption[0].value
    assert infos(at) == ["Select runs to download their metrics or predictions."]


def test_runs_table_shows_train_and_test_metrics_blank_where_missing_and_the_reported_epoch(seeded):
    at = open_page("runs")
    table = at.dataframe[0].value.set_index("run_id")
    final = queries.frontier(seeded, dataset="digits", split="test").set_index("run_id")
    np.testing.assert_allclose(table.loc[final.index, "test acc (%)"], 100 * final["accuracy"])
    np.testing.assert_allclose(table.loc[final.index, "test max_g ψ_g"], 100 * final["max_excess_gap"])
    train = queries.frontier(seeded, dataset="digits", split="train").set_index("run_id")
    np.testing.assert_allclose(table.loc[train.index, "train Ψ_PW"], 100 * train["psi_pw"])
    runs = queries.runs(seeded).set_index("run_id")
    assert (table["epoch"] == runs.loc[table.index, "reported_epoch"]).all()
    assert set(table["progress"]) == {""}  # finished runs show the epoch they report, not "34 of 60"
    assert table.loc[runs.index[runs.method == "nft_es"], "method"].eq("NFT+ES").all()
    import pyarrow as pa

    shown = pa.ipc.open_stream(at.dataframe[0].proto.arrow_data.styler.display_values).read_pandas()  # as drawn
    cells = shown.astype(str).to_numpy().ravel().tolist()
    assert not {"None", "nan", "NaN", "<NA>"} & set(cells)
    nft = list(table.index).index(runs.index[runs.method == "nft"][0])
    assert shown.iloc[nft].astype(str).tolist().count("") >= 2  # its tolerance and reason: blank, not "None"
    grid = at.dataframe[0].proto
    assert grid.HasField("placeholder") and grid.placeholder == ""  # the grid draws a missing value as nothing


def test_runs_page_filters_by_method(seeded):
    at = open_page("runs")
    widget(at.multiselect, "Method").set_value(["ceag"]).run()
    assert not at.exception
    assert set(at.dataframe[0].value["run_id"]) == set(queries.runs(seeded, method="ceag").run_id)


def test_runs_page_preselects_the_runs_in_the_url(seeded):
    chosen = list(queries.runs(seeded).run_id[:2])
    at = open_page("runs", runs=",".join(chosen))
    assert [s.value for s in at.subheader][0] == "2 selected"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Per-group metrics (CSV)", "Per-group metrics (Parquet)"]


def test_launch_counts_the_default_grid_as_gridspec_does(seeded):
    at = open_page("launch")
    n = GridSpec(**LAUNCH_DEFAULTS, settings=LAUNCH_DEFAULT_SETTINGS).size()
    # The seeded runs trained for fewer epochs: none of the default grid's runs is cached.
    assert infos(at) == [f"This grid means **{n} runs**; 0 are already in the store and load from the cache, "
                         f"{n} will train."]


def test_launch_recognizes_runs_already_in_the_store(seeded):
    at = open_page("launch")
    for label, key in (("Dense epochs", "dense_epochs"), ("Pruning epochs", "prune_epochs"),
                       ("Fine-tuning epochs", "finetune_epochs")):
        widget(at.text_input, label).set_value(str(SEED_SETTINGS[key]))
    widget(at.text_input, "Tolerances ε (CEAG, CEAG+VS)").set_value("0.02, 0.05")
    at.run()
    assert not at.exception
    n = GridSpec(**{**LAUNCH_DEFAULTS, "tolerances": (0.02, 0.05)}, settings=SEED_SETTINGS).size()
    assert n == 10
    assert infos(at) == [f"This grid means **{n} runs**; 8 are already in the store and load from the cache, "
                         "2 will train."]


def test_launch_button_starts_the_grid_shown_by_the_widgets(empty, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("launch")
    widget(at.text_input, "Sparsities").set_value("0.9")
    widget(at.multiselect, "Methods").set_value(["nft", "ceag"])
    widget(at.text_input, "Dense epochs").set_value("10")
    at.run()
    widget(at.button, "Launch").click().run()
    assert not at.exception
    [(spec, results)] = calls
    assert results == empty
    assert spec == GridSpec(datasets=("digits",), models=("mlp",), methods=("nft", "ceag"), sparsities=(0.9,),
                            tolerances=(0.02,), seeds=(0,),
                            settings={"dense_epochs": 10, "prune_epochs": 20, "finetune_epochs": 40})
    assert [s.value for s in at.success][0].startswith("Started job fakejob0001.")
    assert progress_texts(at) == ["job fakejob0001: running, 1 of 2 runs done"]


def test_launch_offers_held_out_multipliers_and_ceag_vs(empty, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("launch")
    widget(at.multiselect, "Methods").set_value(["ceag", "ceag_vs"])
    widget(at.selectbox, "CEAG multipliers from").set_value("val")
    widget(at.text_input, "Tolerances ε (CEAG, CEAG+VS)").set_value("0.01, 0.02")
    at.run()
    assert not at.exception
    assert infos(at)[0].startswith("This grid means **8 runs**")  # 2 methods x 2 tolerances x 2 sparsities
    widget(at.button, "Launch").click().run()
    [(spec, _)] = calls
    assert spec.methods == ("ceag", "ceag_vs") and spec.settings["constraint_data"] == "val"
    cells = {(c.method, c.tolerance): c for c in spec.configs()}
    assert cells[("ceag_vs", 0.02)].vs_tolerances == (0.02, 0.01)
    assert all(c.constraint_data == "val" for c in cells.values())


def test_launch_runs_every_method_but_fairgrape_once_per_criterion(empty, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("launch")
    assert widget(at.multiselect, "Pruning criteria").value == ["magnitude"]
    assert "fairgrape" not in widget(at.multiselect, "Methods").value  # by name only
    widget(at.multiselect, "Methods").set_value(["nft", "ceag", "fairgrape"])
    widget(at.multiselect, "Pruning criteria").set_value(["magnitude", "snip"])
    widget(at.text_input, "Sparsities").set_value("0.9")
    at.run()
    assert not at.exception and not at.error
    assert at.query_params["launch_criteria"] == "magnitude,snip"
    # NFT and CEAG (one tolerance) by two criteria, FairGRAPE once (its own masks)
    assert infos(at)[0].startswith("This grid means **5 runs**")
    widget(at.button, "Launch").click().run()
    [(spec, _)] = calls
    assert spec.criteria == ("magnitude", "snip") and spec.methods == ("nft", "ceag", "fairgrape")
    cells = sorted((c.method, c.criterion) for c in spec.configs())
    assert cells == [("ceag", "magnitude"), ("ceag", "snip"), ("fairgrape", "magnitude"), ("nft", "magnitude"),
                     ("nft", "snip")]


def test_launch_names_a_bad_combination_and_keeps_the_form(empty, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("launch")
    widget(at.multiselect, "Methods").set_value(["nft", "fairgrape"])
    widget(at.selectbox, "Pruning").set_value("structured")
    widget(at.multiselect, "Pruning criteria").set_value([])
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["invalid criteria=[]: a grid axis needs at least one value"]
    widget(at.multiselect, "Pruning criteria").set_value(["synflow"]).run()
    [error] = [e.value for e in at.error]
    assert error.startswith("invalid pruning='structured': method fairgrape keeps weights layer by layer")
    assert "Launch" not in [b.label for b in at.button] and calls == []
    assert widget(at.multiselect, "Methods").value == ["nft", "fairgrape"]
    assert widget(at.selectbox, "Pruning").value == "structured"
    assert widget(at.multiselect, "Pruning criteria").value == ["synflow"]


def test_run_one_names_a_bad_combination_instead_of_running(empty, monkeypatch):
    import ceag.run.pipeline

    calls = []
    monkeypatch.setattr(ceag.run.pipeline, "run", lambda cfg, results: calls.append(cfg))
    at = open_page("run_one")
    widget(at.selectbox, "Method").set_value("fairgrape")
    widget(at.selectbox, "Pruning criterion").set_value("snip")
    at.button[0].click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("invalid criterion='snip': method fairgrape chooses the weights it keeps")
    assert calls == [] and not at.metric
    assert widget(at.selectbox, "Method").value == "fairgrape"
    assert widget(at.selectbox, "Pruning criterion").value == "snip"


@pytest.mark.parametrize(("label", "text", "message"), [
    ("Sparsities", "abc", "invalid sparsities='abc': expected comma-separated float values"),
    ("Seeds", "0.5", "invalid seeds='0.5': expected comma-separated int values"),
    ("Sparsities", "", "a grid axis needs at least one value"),
    ("Sparsities", "1.5", "sparsity"),
])
def test_launch_shows_an_error_box_for_bad_input(empty, label, text, message):
    at = open_page("launch")
    widget(at.text_input, label).set_value(text).run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert message in error
    assert not infos(at) and not at.button  # nothing to launch


def test_launch_page_works_under_a_small_epoch_limit(empty, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_EPOCHS", "50")
    at = open_page("launch", check=False)
    assert not at.exception, [e.value for e in at.exception]
    epochs = [t for t in at.text_input if t.label.endswith("epochs")]
    assert len(epochs) == 3 and all(int(t.value) <= 50 for t in epochs)
    assert not at.error


def test_run_one_page_on_a_seeded_store(seeded):
    at = open_page("run_one")
    assert [b.label for b in at.button] == ["Run"]
    assert infos(at) == ["Choose a setting and press **Run**."]


def test_run_one_shows_what_its_model_costs_beside_its_groups(seeded, monkeypatch):
    import ceag.run.pipeline
    from ceag.results.record import load_result

    run_id = ceag_run(seeded, 0.95)
    monkeypatch.setattr(ceag.run.pipeline, "run", lambda cfg, results: load_result(seeded, run_id))
    at = open_page("run_one")
    at.button[0].click().run()
    assert not at.exception
    assert set(at.dataframe[0].value.columns) >= {"group_name", "excess_gap"}  # the groups first
    footprint = at.dataframe[1].value.set_index("figure")
    dense = load_result(seeded, run_id).summary["footprint"]["dense"]
    assert footprint.loc["parameters", "dense model"] == f"{dense['params']:,}"
    assert footprint.loc["parameters", "dense / pruned"] == "1.00×"  # unstructured: the masked full-size model
    assert any("keeps the dense model's parameters, MACs, size and speed" in c.value for c in at.caption)
    assert [c.value for c in at.code] == [f"python -m ceag export --model {run_id} --out model_{run_id}.pt "
                                          f"--results {seeded}"]


def test_the_report_of_seeded_runs_says_what_their_models_cost(seeded, tmp_path):
    from ceag.analysis.bootstrap import BootstrapSettings
    from ceag.present.report import write_report

    ids = [queries.runs(seeded, method="nft").run_id.iloc[0], ceag_run(seeded, 0.95)]
    out, _ = write_report(seeded, ids, tmp_path / "r.html", BootstrapSettings(n_boot=50))
    text = out.read_text()
    assert "<h2>Speed and fairness</h2>" in text and text.count('id="speed-') == 1
    assert text.count("(1.00×)") >= 2 * 3  # two masked models: parameters, MACs and size as the dense ones


def test_run_labels_name_method_tolerance_setting_seed_and_id():
    from dashboard._shared import run_labels

    runs = pd.DataFrame({"run_id": ["a1", "b2"], "method": ["ceag", "nft_es"], "tolerance": [0.02, np.nan],
                         "dataset": ["digits", "utkface"], "model": ["mlp", "resnet18"], "sparsity": [0.9, 0.995],
                         "seed": [0, 3]})
    assert run_labels(runs) == {"a1": "CEAG ε=2% · digits/mlp · sparsity 0.9 · seed 0 · a1",
                                "b2": "NFT+ES · utkface/resnet18 · sparsity 0.995 · seed 3 · b2"}
    assert run_labels(runs.iloc[:0]) == {}


# -- the view survives navigation, and pages never rewrite the selection on their own ----------------------


def navigate(at: AppTest, page: str) -> AppTest:
    """A sidebar click: Streamlit clears the URL's query parameters, then runs the other page."""
    at.query_params.clear()
    at.switch_page(f"dashboard/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == [TITLES[page]]
    return at


def test_a_selection_and_split_survive_sidebar_navigation_through_every_page(seeded):
    nft = queries.runs(seeded, method="nft").run_id[0]
    at = open_page("frontiers", split="train", runs=nft)
    assert widget(at.radio, "Split").value == "train"
    navigate(at, "multipliers")
    assert at.query_params["runs"] == nft and at.query_params["split"] == "train"
    navigate(at, "generalization")
    assert widget(at.multiselect, "Runs").value == [nft]
    assert set(at.dataframe[1].value["run_id"]) == {nft}
    navigate(at, "runs")
    assert [s.value for s in at.subheader][0] == "1 selected"
    navigate(at, "compare")  # compares NFT against CEAG at the selected run's setting; the selection stays
    assert at.query_params["runs"] == nft and "compare" not in at.query_params
    assert at.multiselect[0].value[0] == nft and len(at.multiselect[0].value) == 2
    navigate(at, "casualties")  # shows the selected run, keeps the selection and the other pages' split
    assert widget(at.selectbox, "Run").value == nft and at.query_params["runs"] == nft
    assert at.query_params["split"] == "train"
    for page in ("launch", "run_one", "overview", "frontiers"):
        navigate(at, page)
        assert at.query_params["runs"] == nft and at.query_params["split"] == "train"
    assert widget(at.radio, "Split").value == "train"


def test_multipliers_with_no_constrained_run_selected_says_so_and_offers_the_closest(seeded):
    runs = queries.runs(seeded)
    nft = runs.loc[(runs.method == "nft") & (runs.sparsity == 0.95), "run_id"].item()
    at = open_page("multipliers", runs=nft)
    [info] = infos(at)
    assert info.startswith("No CEAG or EL+RB run is in the selection") and "your selection is unchanged" in info
    offered = widget(at.selectbox, "Run").options
    assert {label.rsplit(" · ", 1)[-1] for label in offered} == set(
        runs.loc[runs.method.isin(["ceag", "el_rb"]), "run_id"])
    assert "sparsity 0.95" in offered[0]  # the nearest setting first
    assert at.query_params["runs"] == nft  # never overwritten
    assert charts(at)


def test_runs_page_filters_are_kept_in_the_url(seeded):
    at = open_page("runs")
    widget(at.multiselect, "Method").set_value(["ceag"]).run()
    assert at.query_params["runs_method"] == "ceag"
    navigate(at, "frontiers")
    navigate(at, "runs")
    assert widget(at.multiselect, "Method").value == ["ceag"]
    assert set(at.dataframe[0].value["run_id"]) == set(queries.runs(seeded, method="ceag").run_id)


def test_launch_form_fields_survive_navigation(empty):
    at = open_page("launch")
    widget(at.text_input, "Sparsities").set_value("0.8").run()
    widget(at.text_input, "Dense epochs").set_value("12").run()
    navigate(at, "overview")
    assert at.query_params["launch_sparsities"] == "0.8"
    navigate(at, "launch")
    assert widget(at.text_input, "Sparsities").value == "0.8"
    assert widget(at.text_input, "Dense epochs").value == "12"


# -- the results folder typed in the sidebar ------------------------------------------------------------------


def results_errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


@pytest.mark.parametrize("page", list(TITLES))
def test_a_file_as_results_folder_is_an_error_box_on_every_page(empty, page):
    empty.mkdir()
    (empty / "notes.txt").write_text("not a folder")
    at = open_page(page, check=False, results="notes.txt")
    assert not at.exception, [e.value for e in at.exception]
    assert any("is a file, not a folder" in e for e in results_errors(at)), results_errors(at)
    assert not at.get("plotly_chart") and not at.dataframe


def test_a_results_folder_outside_the_configured_root_is_refused(empty, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    at = open_page("launch", check=False, results=str(outside))
    assert not at.exception
    assert f"The results folder must be {empty.resolve()} or inside it." in results_errors(at)
    assert "Launch" not in [b.label for b in at.button]


def test_a_foreign_duckdb_file_is_named_in_an_error_box(empty):
    import duckdb

    (empty / "other").mkdir(parents=True)
    with duckdb.connect(str(empty / "other" / "ceag.duckdb")) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    at = open_page("frontiers", check=False, results="other")
    assert not at.exception
    assert any("not a ceag store" in e for e in results_errors(at))


# -- numbers that are not allowed block the action ------------------------------------------------------------


@pytest.mark.parametrize(("label", "text", "message"), [
    ("Dense epochs", "100000", "invalid Dense epochs='100000': must be a whole number from 1 to 500"),
    ("Fine-tuning epochs", "-5", "invalid Fine-tuning epochs='-5': must be a whole number from 0 to 500"),
    ("Pruning epochs", "3.5", "invalid Pruning epochs='3.5': must be a whole number from 0 to 500"),
])
def test_launch_refuses_an_invalid_number_and_keeps_it_as_typed(empty, monkeypatch, label, text, message):
    calls = []
    monkeypatch.setattr(jobs, "launch", fake_launch(calls))
    at = open_page("launch")
    widget(at.text_input, label).set_value(text).run()
    assert not at.exception
    assert message in [e.value for e in at.error]
    assert "Launch" not in [b.label for b in at.button] and not infos(at)
    assert widget(at.text_input, label).value == text  # never silently replaced
    assert calls == []


@pytest.mark.parametrize(("label", "text", "message"), [
    ("Tolerance ε (CEAG)", "5", "invalid Tolerance ε (CEAG)='5': must be a number in [0, 1]"),
    ("Seed", "-3", "invalid Seed='-3': must be a whole number from 0 to 2.14748e+09"),
    ("Sparsity", "1", "invalid Sparsity='1': must be a number in [0, 1)"),
])
def test_run_one_refuses_an_invalid_number_instead_of_rerunning_the_last_setting(empty, monkeypatch, label, text,
                                                                                 message):
    import ceag.run.pipeline

    calls = []
    monkeypatch.setattr(ceag.run.pipeline, "run", lambda cfg, results: calls.append(cfg))
    at = open_page("run_one")
    widget(at.text_input, label).set_value(text)
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [message]
    assert calls == [] and not at.metric


# -- jobs on the Overview ---------------------------------------------------------------------------------------


def live_feed(results: Path, job_id: str = "livejob00001") -> None:
    runs = {f"r{i}": {"method": "ceag", "dataset": "digits", "model": "mlp", "sparsity": 0.9, "tolerance": 0.02,
                      "seed": i, "status": status}
            for i, status in enumerate(["finished", "cached", "running", "pending", "pending"])}
    runs["r2"].update(phase="fine-tuning", epoch=3, total_epochs=40)
    jdir = results / "jobs" / job_id
    write_json(jdir / "progress.json", {"job_id": job_id, "state": "running", "total": 5, "finished": 1,
                                        "cached": 1, "runs": runs, "started_at": "2026-01-01T10:00:00+00:00",
                                        "datasets": ["digits"], "models": ["mlp"], "methods": ["ceag"]})
    write_json(jdir / "launcher.json", {"pid": os.getpid()})


def test_overview_finds_a_running_job_in_the_results_folder_without_a_job_link(empty):
    live_feed(empty)
    at = open_page("overview")
    assert progress_texts(at) == ["job livejob00001: running, 2 of 5 runs done"]
    captions = " ".join(c.value for c in at.caption)
    assert "digits · mlp · CEAG · 5 cells · started 2026-01-01 10:00:00 UTC" in captions
    assert "1 finished, 1 cached, 1 running, 2 pending (of 5)" in captions
    assert "CEAG ε=2% · sparsity 0.9 · seed 2: fine-tuning, epoch 3 of 40" in " ".join(m.value for m in at.markdown)
    assert "Run the demo grid" not in [b.label for b in at.button]  # no second grid while one runs
    [link] = [p for p in at.get("page_link") if p.proto.label == "Its runs"]
    assert "runs=r0%2Cr1%2Cr2%2Cr3%2Cr4" in link.proto.page or "r0" in str(link.proto)


def test_a_stale_job_link_says_the_job_is_unknown(empty):
    at = open_page("overview", job="0123456789ab")
    assert [w.value for w in at.warning][0].startswith("Job 0123456789ab is unknown in")
    assert not progress_texts(at)
    assert [b.label for b in at.button] == ["Run the demo grid"]


def test_a_cancelled_job_says_cancelled_with_counts_that_add_up(empty):
    runs = {f"r{i}": {"method": "nft", "dataset": "digits", "model": "mlp", "sparsity": 0.9, "tolerance": None,
                      "seed": i, "status": "finished" if i < 4 else "cancelled"} for i in range(12)}
    jdir = empty / "jobs" / "cancelled001"
    write_json(jdir / "progress.json", {"job_id": "cancelled001", "state": "cancelled", "total": 12, "finished": 4,
                                        "cancelled": 8, "runs": runs})
    at = open_page("launch")
    assert progress_texts(at) == ["job cancelled001: cancelled, 12 of 12 runs done"]
    assert "4 finished, 8 cancelled, 0 pending (of 12)" in " ".join(c.value for c in at.caption)


# -- Frontiers: filters, labels, exports ---------------------------------------------------------------------------


def test_frontiers_filters_by_method_and_allows_box_and_lasso_selection(seeded):
    at = open_page("frontiers")
    widget(at.multiselect, "Methods").set_value(["ceag", "nft"]).run()
    assert not at.exception
    assert at.query_params["methods"] == "ceag,nft"
    for spec in charts(at):
        names = {t["name"] for t in spec["data"]}
        assert {"CEAG", "NFT"} <= names and not names & {"NFT+ES", "EL+RB"}
    modes = [list(c.proto.selection_mode) for c in at.get("plotly_chart")]
    assert all(len(m) == 3 for m in modes), modes
    assert set(at.dataframe[0].value["method"]) == {"CEAG", "NFT"}


def test_frontiers_tooltips_name_a_tolerance_only_where_there_is_one(seeded):
    at = open_page("frontiers")
    for spec in charts(at)[:2]:  # the accuracy–disparity frontiers
        for trace in (t for t in spec["data"] if "customdata" in t):  # the data, not the legend entries
            if trace["name"] in ("NFT", "NFT+ES", "EL+RB"):
                assert not any("tolerance" in str(row[5]) for row in trace["customdata"])
            if trace["name"] == "CEAG":
                assert all("tolerance ε 2%" in str(row[5]) for row in trace["customdata"])
        assert "0.000" not in json.dumps(spec["data"])


def test_frontiers_table_and_csv_share_labels_and_units(seeded):
    at = open_page("frontiers")
    table = at.dataframe[0].value
    button = at.get("download_button")[0]  # the speed–fairness table has one of its own below
    assert "accuracy (%)" in table.columns and "Ψ_PW (points)" in table.columns
    assert set(table["method"]) == {METHOD_LABELS[m] for m in SEED_SPEC.methods}
    summary = queries.frontier_summary(seeded, dataset="digits", split="test")
    np.testing.assert_allclose(sorted(table["accuracy (%)"]), sorted(100 * summary["accuracy"]))
    assert button.proto.label == "Download this table (CSV)"
