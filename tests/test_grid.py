"""Grids: expansion (tolerance multiplies only CEAG), validation, presets, the plan that shares
dense and pruning work, and a small grid that really shares it and then loads from the cache."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

import ceag.training.engine
from ceag.config.derived import training_config
from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.config.keys import dense_key, prune_key
from ceag.config.presets import preset, preset_names
from ceag.config.run_config import NOT_IN_RUN_ID, RunConfig
from ceag.grid.driver import run_grid
from ceag.grid.plan import count_epochs, plan
from ceag.results.files import read_status
from ceag.results.layout import run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from tests.helpers import ROOT, subprocess_env

TINY = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 2, "device": "cpu"}
ALL_METHODS = ("nft", "nft_es", "el_rb", "ceag")


def spec(**axes) -> GridSpec:
    base = dict(datasets=("synthetic",), methods=ALL_METHODS, sparsities=(0.8,), tolerances=(0.02,), seeds=(0,),
                settings=dict(TINY))
    base.update(axes)
    return GridSpec(**base)


# -- expansion ----------------------------------------------------------------------------
def test_tolerance_multiplies_only_ceag():
    s = spec(sparsities=(0.8, 0.9), tolerances=(0.01, 0.02, 0.05), seeds=(0, 1))
    configs = s.configs()
    assert s.size() == len(configs) == (3 + 3) * 2 * 2 == 24
    by_method = pd.Series([c.method for c in configs]).value_counts().to_dict()
    assert by_method == {"ceag": 12, "nft": 4, "nft_es": 4, "el_rb": 4}
    assert {c.tolerance for c in configs if c.method != "ceag"} == {None}
    assert sorted({c.tolerance for c in configs if c.method == "ceag"}) == [0.01, 0.02, 0.05]
    assert len({c.run_id for c in configs}) == 24
    # every cell carries the shared settings
    assert {(c.dataset, c.dense_epochs, c.prune_epochs, c.finetune_epochs) for c in configs} == {("synthetic", 2, 2, 2)}


def test_duplicate_axis_values_give_one_cell_each():
    s = spec(methods=("nft", "nft", "ceag"), sparsities=(0.8, 0.80), tolerances=(0.02, 0.02, 0.05), seeds=(0, 0))
    configs = s.configs()
    assert len(configs) == len({c.run_id for c in configs}) == 1 + 2
    assert [c.method for c in configs] == ["nft", "ceag", "ceag"]


def test_configs_are_in_a_stable_order():
    s = spec(sparsities=(0.9, 0.8), seeds=(1, 0))
    assert [c.run_id for c in s.configs()] == [c.run_id for c in s.configs()]
    assert GridSpec.from_dict(json.loads(json.dumps(s.to_dict()))).configs() == s.configs()


@pytest.mark.parametrize("axis", ["datasets", "models", "methods", "criteria", "sparsities", "tolerances", "seeds"])
def test_an_empty_axis_is_a_config_error(axis):
    with pytest.raises(ConfigError, match=rf"invalid {axis}=\[\]: a grid axis needs at least one value"):
        spec(**{axis: ()}).configs()


def test_unknown_grid_key_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"invalid method=.*unknown grid key; known: criteria, datasets, "
                                          r"method_settings, methods, models, seeds, settings, sparsities, tolerances"):
        GridSpec.from_dict({"method": ["nft"]})


def test_unknown_setting_in_a_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown setting"):
        spec(settings={"learning_rate": 0.1}).configs()


@pytest.mark.parametrize("name,axis,value", [
    ("dataset", "datasets", "digits"), ("model", "models", "cnn"), ("method", "methods", "nft"),
    ("sparsity", "sparsities", 0.5),
    ("tolerance", "tolerances", 0.1), ("seed", "seeds", 3)])
def test_an_axis_given_as_a_setting_points_to_the_axis(name, axis, value):
    with pytest.raises(ConfigError, match=rf"invalid settings\.{name}=.*use the grid axis '{axis}' instead"):
        spec(settings={**TINY, name: value}).configs()


def test_a_bad_axis_value_names_the_field():
    with pytest.raises(ConfigError, match="invalid method='magic': must be one of nft, nft_es, el_rb, ceag"):
        spec(methods=("nft", "magic")).configs()


def test_too_many_cells_is_refused_before_expanding():
    s = spec(tolerances=(0.01, 0.05), seeds=tuple(range(10)))  # 5 cells per seed = 50
    assert s.size() == 50
    with pytest.raises(ConfigError, match=r"invalid grid='50 cells': at most 20 cells per grid"):
        s.configs(max_cells=20)
    assert len(s.configs(max_cells=50)) == 50


def test_spec_file_with_invalid_json(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text('{"methods": ["nft",]}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1, column"):
        GridSpec.from_file(path)
    with pytest.raises(ConfigError, match="cannot read the spec file"):
        GridSpec.from_file(tmp_path / "missing.json")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="a grid spec is a JSON object"):
        GridSpec.from_file(path)


def test_spec_file_round_trip(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"datasets": "synthetic", "methods": ["nft", "ceag"], "tolerances": [0.01, 0.02],
                                "settings": TINY}))
    configs = GridSpec.from_file(path).configs()
    assert [(c.method, c.tolerance) for c in configs] == [("nft", None), ("ceag", 0.01), ("ceag", 0.02)]


def test_cli_grid_with_a_bad_spec_exits_2_with_the_reason(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text("{oops")
    proc = subprocess.run([sys.executable, "-m", "ceag", "grid", "--spec", str(path), "--results", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=subprocess_env(threads=None),
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid spec=") and "not valid JSON" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_method_settings_apply_to_that_method_and_to_the_cells_derived_from_it():
    grid = spec(methods=("nft", "nft_es", "el_rb", "ceag", "ceag_vs"), tolerances=(0.01, 0.02),
                settings={**TINY, "dual_lr": 0.003},
                method_settings={"el_rb": {"dual_lr": 1e-4}, "ceag": {"dual_lr": 0.02}, "nft": {"lr": 0.01}})
    configs = grid.configs()
    by = {(c.method, c.tolerance): c for c in configs}
    assert by["el_rb", None].dual_lr == 1e-4
    assert by["ceag", 0.01].dual_lr == by["ceag", 0.02].dual_lr == 0.02
    assert by["nft", None].lr == by["nft_es", None].lr == 0.01
    assert by["ceag", 0.01].lr == by["el_rb", None].lr == RunConfig().lr
    # a derived cell reads runs with the settings of the cells it derives from, so nothing trains twice
    assert training_config(by["nft_es", None]).run_id == by["nft", None].run_id
    from ceag.config.derived import training_configs
    ceag_ids = {c.run_id for c in configs if c.method == "ceag"}
    assert {t.run_id for t in training_configs(by["ceag_vs", 0.02])} == ceag_ids


def test_method_settings_round_trip_through_a_spec_file(tmp_path):
    grid = spec(method_settings={"el_rb": {"dual_lr": 1e-4}})
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid.to_dict()))
    again = GridSpec.from_file(path)
    assert again == grid and [c.run_id for c in again.configs()] == [c.run_id for c in grid.configs()]
    assert "method_settings" not in spec().to_dict()


@pytest.mark.parametrize("own, message", [
    ({"elrb": {"dual_lr": 1e-4}}, "invalid method_settings='elrb': unknown method; known: nft, nft_es"),
    ({"el_rb": 1e-4}, "must be a JSON object of {method: {setting: value}}"),
    ([1], "must be a JSON object of {method: {setting: value}}"),
])
def test_malformed_method_settings_say_what_is_allowed(own, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        GridSpec.from_dict({"method_settings": own})


@pytest.mark.parametrize("own, message", [
    ({"el_rb": {"dual_lr": -1}}, "invalid method_settings.el_rb.dual_lr=-1: must be a number in"),
    ({"nft": {"lr": "fast"}}, "invalid method_settings.nft.lr='fast'"),
    ({"ceag": {"seed": 3}}, "invalid method_settings.ceag.seed=3: use the grid axis 'seeds' instead"),
    ({"el_rb": {"dual_rate": 1}}, "invalid method_settings.el_rb.dual_rate=1"),
])
def test_a_bad_method_setting_names_the_method_it_was_given_for(own, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        spec(method_settings=own).configs()


def test_a_setting_typed_for_the_whole_grid_holds_in_every_cell_over_a_method_own():
    from ceag.cli.options import grid_spec
    from ceag.cli.parser import build_parser

    args = build_parser().parse_args(["grid", "--preset", "utkface_cpu", "--set", "dual_lr=0.005"])
    assert {c.dual_lr for c in grid_spec(args).configs()} == {0.005}
    args = build_parser().parse_args(["grid", "--preset", "utkface_cpu", "--set", "lr=0.02"])
    dual = {c.method: c.dual_lr for c in grid_spec(args).configs()}
    assert dual == {"nft": 0.01, "nft_es": 0.01, "el_rb": 1e-4, "ceag": 0.01}
    assert preset("utkface_cpu").with_settings({"dual_lr": 0.005}).method_settings == {}


# -- presets ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", preset_names())
def test_every_preset_expands_and_validates(name):
    s = preset(name)
    configs = s.configs()
    assert all(isinstance(c, RunConfig) for c in configs)
    assert len(configs) == s.size() == len({c.run_id for c in configs})
    assert {c.method for c in configs} == set(ALL_METHODS)
    n_other = len([m for m in s.methods if m != "ceag"])
    assert len(configs) == len(s.datasets) * len(s.models) * len(s.sparsities) * len(s.seeds) * (
        n_other + len(s.tolerances))


def test_demo_preset_is_the_teaching_grid():
    configs = preset("demo").configs()
    assert len(configs) == 3 * (3 + 3) * 3 == 54  # three seeds: the frontiers get error bars
    assert len({c.seed for c in configs}) == 3
    assert {c.dataset for c in configs} == {"digits"}
    assert count_epochs(configs)["shared"] < count_epochs(configs)["independent"]


def test_unknown_preset_lists_the_names():
    with pytest.raises(ConfigError, match="must be one of demo, "):
        preset("nope")


# -- run identity -------------------------------------------------------------------------
# One other valid value for every setting (base: CEAG on utkface, which offers several attributes).
ALTERNATIVES = {
    "dataset": "fairface", "model": "cnn", "method": "el_rb", "sparsity": 0.9, "tolerance": 0.03, "seed": 1,
    "target": "gender", "groups": ("race", "gender"), "image_size": 32, "val_fraction": 0.1,
    "rare_groups": (1,), "rare_train_count": 7, "num_groups": 5, "dense_epochs": 61, "prune_epochs": 21,
    "finetune_epochs": 41, "pruning": "global", "dense_first_conv": False, "dense_last_layer": True,
    "batch_size": 128, "lr": 0.01, "momentum": 0.5, "nesterov": True, "weight_decay": 0.0,
    "lr_milestones": (0.5,), "lr_gamma": 0.5, "dual_lr": 0.01, "buffer_size": 20, "replay_buffer": False,
    "detach_overall": False, "mitigation_start": "start", "divergence_threshold": 1e5, "eval_every": 2,
    "max_trace_points": 100, "amp": True,
    "dense_optimizer": "adam", "dense_lr": 0.001, "dense_weight_decay": 0.0, "dense_batch_size": 32,
    "dense_lr_milestones": (0.6, 0.8), "overall_estimate": "buffer_mean", "masked_bn": True,
    "prune_rounding": "ceil", "weight_decay_scope": "last_layer",
}
# Settings that change neither results nor run id may exist; these are the known ones.
NOT_RESULT_AFFECTING = {"checkpoint_every"}


@pytest.fixture
def base_cfg():
    return RunConfig(dataset="utkface", model="mlp", method="ceag", tolerance=0.02)


def _alternative(name, tmp_path):
    if name == "dense_checkpoint":
        path = tmp_path / "dense.pt"
        path.write_bytes(b"weights")
        return str(path)
    return ALTERNATIVES[name]


def test_every_result_setting_is_covered_here(base_cfg):
    known = set(ALTERNATIVES) | NOT_RESULT_AFFECTING | {"dense_checkpoint"}
    missing = set(base_cfg.canonical()) - known
    assert not missing, f"new settings {sorted(missing)}: add a value to ALTERNATIVES in tests/test_grid.py"


@pytest.mark.parametrize("name", sorted(set(ALTERNATIVES) | {"dense_checkpoint"}))
def test_changing_a_result_setting_changes_the_run_id(base_cfg, name, tmp_path):
    if name not in base_cfg.canonical():
        pytest.skip(f"{name} is not a setting of this version")
    changed = base_cfg.replace(**{name: _alternative(name, tmp_path)})
    assert changed.canonical()[name] != base_cfg.canonical()[name]
    assert changed.run_id != base_cfg.run_id


@pytest.mark.parametrize("name,value", [("device", "cpu"), ("device", "cuda"), ("data_dir", "/elsewhere/data")])
def test_where_a_run_happens_is_not_part_of_its_id(base_cfg, name, value):
    assert name in NOT_IN_RUN_ID
    assert base_cfg.replace(**{name: value}).run_id == base_cfg.run_id


def test_shared_phase_keys(base_cfg):
    # the dense model depends on data, model, seed and optimizer, not on method, sparsity or tolerance
    for change in ({"method": "nft"}, {"sparsity": 0.5}, {"tolerance": 0.1}, {"dual_lr": 0.5},
                   {"prune_epochs": 3}):
        assert dense_key(base_cfg.replace(**change)) == dense_key(base_cfg), change
    for change in ({"seed": 3}, {"lr": 0.5}, {"dense_epochs": 3}, {"model": "cnn"}, {"val_fraction": 0.2},
                   {"dense_optimizer": "adam"}, {"dense_lr": 1e-3}, {"dense_lr_milestones": (0.6,)},
                   {"weight_decay_scope": "last_layer"}):
        assert dense_key(base_cfg.replace(**change)) != dense_key(base_cfg), change
    for change in ({"masked_bn": True}, {"prune_rounding": "ceil"}, {"overall_estimate": "buffer_mean"}):
        assert dense_key(base_cfg.replace(**change)) == dense_key(base_cfg), change
    # the end of pruning is shared by methods and tolerances, not across sparsities
    for change in ({"method": "nft"}, {"method": "el_rb"}, {"tolerance": 0.1}, {"buffer_size": 3},
                   {"replay_buffer": False}, {"dual_lr": 0.5}):
        assert prune_key(base_cfg.replace(**change)) == prune_key(base_cfg), change
    for change in ({"sparsity": 0.5}, {"prune_epochs": 3}, {"pruning": "global"}, {"seed": 3},
                   {"masked_bn": True}, {"prune_rounding": "ceil"}):
        assert prune_key(base_cfg.replace(**change)) != prune_key(base_cfg), change
    assert prune_key(base_cfg.replace(overall_estimate="buffer_mean")) == prune_key(base_cfg)
    # starting mitigation with pruning makes the pruning phase the run's own
    start = base_cfg.replace(mitigation_start="start")
    assert prune_key(start) == start.run_id


# -- planning -----------------------------------------------------------------------------
def test_plan_is_a_graph_of_phases_each_shared_phase_once():
    configs = spec(sparsities=(0.8, 0.9), tolerances=(0.01, 0.05), seeds=(0, 1)).configs()
    tasks = plan(configs)
    kinds = [t.kind for t in tasks.values()]
    trainings = {training_config(c).run_id: training_config(c) for c in configs}
    # one dense task per dense model, one pruning task per end-of-pruning state, one run per training
    assert kinds.count("dense") == len({dense_key(t) for t in trainings.values()}) == 2
    assert kinds.count("pruning") == len({prune_key(t) for t in trainings.values()}) == 4
    assert sorted(t.cfg.run_id for t in tasks.values() if t.kind == "run") == sorted(trainings)
    assert sorted(t.cfg.run_id for t in tasks.values() if t.kind == "derive") == \
        sorted(c.run_id for c in configs if c.method == "nft_es")
    seen = set()
    for task in tasks.values():  # a topological order: every input before the task reading it
        assert set(task.deps) <= seen
        seen.add(task.id)
        if task.kind == "run":
            assert task.deps == (f"dense:{dense_key(task.cfg)}", f"pruning:{prune_key(task.cfg)}")
            assert task.epochs == task.cfg.finetune_epochs
        if task.kind == "pruning":
            assert task.deps == (f"dense:{dense_key(task.cfg)}",)
    # a failure of a dense phase concerns exactly the cells of its seed
    for task in tasks.values():
        if task.kind == "dense":
            assert sorted(task.cells) == sorted(c.run_id for c in configs if dense_key(c) == dense_key(task.cfg))
    # the longest chain goes first: dense (2) + pruning (2) + fine-tuning (2)
    assert {t.priority for t in tasks.values() if t.kind == "dense"} == {6}
    assert {t.priority for t in tasks.values() if t.kind == "derive"} == {0}


def test_plan_of_a_grid_without_nft_trains_nft_for_nft_es():
    configs = spec(methods=("nft_es",)).configs()
    tasks = plan(configs)
    assert [t.kind for t in tasks.values()] == ["dense", "pruning", "run", "derive"]
    run_task = tasks[f"run:{configs[0].replace(method='nft').run_id}"]
    assert run_task.cfg.method == "nft" and run_task.cells == [configs[0].run_id]  # it serves the derived cell
    assert plan([]) == {}


def test_plan_without_a_shared_pruning_phase(tmp_path):
    # mitigation from the start makes pruning part of the run; no pruning epochs leave nothing to share
    for settings in ({**TINY, "mitigation_start": "start"}, {**TINY, "prune_epochs": 0}):
        tasks = plan(spec(methods=("ceag",), settings=settings).configs())
        assert [t.kind for t in tasks.values()] == ["dense", "run"]
    (tmp_path / "model.pt").write_bytes(b"")
    given = plan(spec(methods=("nft",), settings={**TINY, "dense_checkpoint": str(tmp_path / "model.pt")}).configs())
    # a given dense model still has its task: it checks the file, or trains from an ImageNet backbone once
    assert [t.kind for t in given.values()] == ["dense", "pruning", "run"]


def test_count_epochs_shared_is_less_than_independent():
    configs = spec(tolerances=(0.01, 0.05), seeds=(0, 1)).configs()
    counts = count_epochs(configs)
    # per seed: dense 2 once; pruning 2 + fine-tuning 2 once, then fine-tuning only for the 3 other trainings
    assert counts == {"shared": 2 * (2 + 4 + 3 * 2), "independent": 10 * (2 + 4)}
    assert counts["shared"] < counts["independent"]
    # mitigation from the start: CEAG and EL+RB no longer share the pruning phase
    start = spec(tolerances=(0.01, 0.05), seeds=(0, 1), settings={**TINY, "mitigation_start": "start"}).configs()
    assert count_epochs(start)["shared"] == 2 * (2 + 4 + 3 * 4)


# -- a small grid that really shares work -------------------------------------------------
@pytest.fixture(scope="module")
def shared_grid(tmp_path_factory):
    results = tmp_path_factory.mktemp("grid")
    configs = spec(tolerances=(0.01, 0.05), seeds=(0, 1)).configs()
    report = run_grid(configs, results, workers=1)
    return results, configs, report


def test_grid_trains_each_dense_model_and_pruning_phase_once(shared_grid):
    results, configs, report = shared_grid
    assert report.total == len(configs) == 10
    assert report.finished == 10 and report.failed == report.cached == report.cancelled == 0
    assert report.dense_trained == len({(c.dataset, c.model, c.seed) for c in configs}) == 2
    assert report.epochs_trained == count_epochs(configs)["shared"] - 2 * 2 == 20
    assert len(list((results / "dense").iterdir())) == 2
    assert len(list((results / "pruned").iterdir())) == 2
    # the shared phases ran as tasks of their own; every run fine-tuned from its pruned state
    trained = [p for p in report.phases if p["trained"]]
    assert sorted(p["kind"] for p in trained) == ["dense"] * 2 + ["pruning"] * 2 + ["run"] * 8
    summaries = [load_result(results, c.run_id).summary for c in configs if c.method != "nft_es"]
    assert [s["resumed_from"] for s in summaries] == ["pruned"] * 8
    assert sum(s["dense_trained"] for s in summaries) == 0
    assert [s["epochs_trained"] for s in summaries] == [2] * 8
    assert report.busy_fraction is not None and 0 < report.busy_fraction <= 1.01


def test_nft_es_is_derived_from_the_nft_run(shared_grid):
    results, configs, _ = shared_grid
    derived = [c for c in configs if c.method == "nft_es"]
    assert len(derived) == 2
    for cfg in derived:
        nft_id = cfg.replace(method="nft").run_id
        es, nft = load_result(results, cfg.run_id), load_result(results, nft_id)
        assert es.summary["derived_from"] == nft_id
        assert es.summary["epochs_trained"] == 0
        assert nft.summary["best_epoch"] is not None
        assert es.summary["reported_epoch"] == nft.summary["best_epoch"]
        pd.testing.assert_frame_equal(es.run_metrics, nft.run_metrics)
        assert es.final("test")[0]["epoch"] == nft.summary["best_epoch"]
        # it reports the best iterate's weights
        assert (run_dir(results, cfg.run_id) / "model.pt").read_bytes() == \
            (run_dir(results, nft_id) / "best_model.pt").read_bytes()


def test_a_second_grid_is_all_cached_and_trains_nothing(shared_grid, monkeypatch):
    results, configs, first = shared_grid

    def refuse(*args, **kwargs):
        raise AssertionError("a cached run trained")

    monkeypatch.setattr(ceag.training.engine, "train", refuse)
    monkeypatch.setattr(ceag.training.engine, "train_dense", refuse)
    report = run_grid(configs, results, workers=1)
    assert report.cached == len(configs) and report.finished == 0
    assert report.epochs_trained == 0 and report.dense_trained == 0
    assert {e["status"] for e in report.runs.values()} == {"cached"}
    for cfg in configs:
        again = run(cfg, results)
        assert again.cached is True
        pd.testing.assert_frame_equal(again.group_metrics, load_result(results, cfg.run_id).group_metrics)


def test_a_new_cell_in_a_cached_grid_reuses_dense_and_pruning(shared_grid, monkeypatch):
    results, configs, _ = shared_grid

    def refuse(*args, **kwargs):
        raise AssertionError("the dense model was trained again")

    monkeypatch.setattr(ceag.training.engine, "train_dense", refuse)
    extra = spec(methods=("ceag",), tolerances=(0.03,), seeds=(1,)).configs()
    report = run_grid([*configs, *extra], results, workers=1)
    assert report.cached == len(configs) and report.finished == 1
    assert report.dense_trained == 0 and report.epochs_trained == 2  # fine-tuning only
    assert load_result(results, extra[0].run_id).summary["resumed_from"] == "pruned"


def test_work_done_for_a_derived_cell_is_counted(tmp_path):
    configs = spec(methods=("nft_es", "ceag")).configs()
    report = run_grid(configs, tmp_path, workers=1)
    assert report.finished == 2
    assert len(list((tmp_path / "dense").iterdir())) == 1  # a dense model was trained ...
    assert report.dense_trained == 1  # ... and the report says so
    assert report.epochs_trained == count_epochs(configs)["shared"] - 2 == 4 + 2


def test_a_grid_that_stops_says_so_in_its_progress_feed(tmp_path, monkeypatch):
    import ceag.config.run_config
    import ceag.grid.driver
    import ceag.grid.worker
    import ceag.results.layout

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ceag.grid.driver, "run_local", broken)
    with pytest.raises(OSError, match="No space left"):
        run_grid(spec(methods=("nft",)).configs(), tmp_path, workers=1, job_id="stopped")
    feed = json.loads((ceag.results.layout.job_dir(tmp_path, "stopped") / "progress.json").read_text())
    assert feed["state"] == "failed" and "No space left on device" in feed["error"]


def test_a_launched_grid_refused_before_training_says_why_in_its_feed(tmp_path):
    import ceag.config.run_config
    import ceag.grid.driver
    import ceag.grid.worker
    import ceag.results.layout
    from ceag.datasets import DatasetError

    feed_file = ceag.results.layout.job_dir(tmp_path, "launched") / "progress.json"
    feed_file.parent.mkdir(parents=True)
    feed_file.write_text(json.dumps({"job_id": "launched", "state": "starting", "runs": {}}))
    configs = spec(datasets=("utkface",), models=("cnn",), methods=("nft",), settings={**TINY,
                                                                     "data_dir": str(tmp_path / "no-data")}).configs()
    with pytest.raises(DatasetError, match="UTKFace"):
        run_grid(configs, tmp_path, workers=1, job_id="launched")
    feed = json.loads(feed_file.read_text())
    assert feed["state"] == "failed" and "UTKFace" in feed["error"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "dense").exists()


def test_a_cancel_left_by_an_ended_job_does_not_cancel_a_job_reusing_its_id(tmp_path):
    from ceag.grid.jobs import request_cancel

    first = run_grid(spec(methods=("nft",)).configs(), tmp_path, workers=1, job_id="reused")
    assert first.state == "finished"
    request_cancel(tmp_path, "reused")  # too late for that job: it had ended
    again = run_grid(spec(methods=("ceag",)).configs(), tmp_path, workers=1, job_id="reused")
    assert again.finished == 1 and again.cancelled == 0


def test_a_cancel_before_a_launched_job_starts_is_kept(tmp_path):
    from ceag.grid.jobs import request_cancel
    from ceag.results.layout import job_dir

    feed = job_dir(tmp_path, "launched") / "progress.json"
    feed.parent.mkdir(parents=True)
    feed.write_text(json.dumps({"job_id": "launched", "state": "starting", "runs": {}}))
    (feed.parent / "launcher.json").write_text(json.dumps({"pid": os.getpid()}))  # the launched process
    request_cancel(tmp_path, "launched")
    report = run_grid(spec(methods=("nft",)).configs(), tmp_path, workers=1, job_id="launched")
    assert report.cancelled == 1 and report.finished == 0


def test_a_cancel_left_by_a_killed_job_does_not_cancel_a_job_reusing_its_id(tmp_path):
    from ceag.grid.jobs import request_cancel
    from ceag.results.layout import job_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    feed = job_dir(tmp_path, "killed") / "progress.json"
    feed.parent.mkdir(parents=True)
    feed.write_text(json.dumps({"job_id": "killed", "state": "running", "pid": dead.pid, "runs": {}}))
    request_cancel(tmp_path, "killed")
    report = run_grid(spec(methods=("nft",)).configs(), tmp_path, workers=1, job_id="killed")
    assert report.finished == 1 and report.cancelled == 0


def test_a_grid_of_cached_runs_needs_no_data_folder(tmp_path):
    """Runs imported from another machine, or whose data moved, load without their data."""
    import numpy as np
    from PIL import Image

    from ceag.datasets import DatasetError

    rng = np.random.default_rng(0)
    for i in range(40):
        name = f"{[5, 25, 45, 70][i % 4]}_{i % 2}_{(i // 2) % 5}_20170101{i:09d}.jpg.chip.jpg"
        (tmp_path / "data" / "UTKFace").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / "UTKFace" / name)
    configs = spec(datasets=("utkface",), models=("cnn",), methods=("nft",),
                   settings={**TINY, "data_dir": str(tmp_path / "data"), "val_fraction": 0.0}).configs()
    assert run_grid(configs, tmp_path / "results", workers=1).finished == 1
    (tmp_path / "data").rename(tmp_path / "moved")
    assert run_grid(configs, tmp_path / "results", workers=1).cached == 1
    extra = spec(datasets=("utkface",), models=("cnn",), methods=("nft",), seeds=(1,),
                 settings={**TINY, "data_dir": str(tmp_path / "data"), "val_fraction": 0.0}).configs()
    with pytest.raises(DatasetError, match="UTKFace"):  # a cell to train still needs it
        run_grid([*configs, *extra], tmp_path / "results", workers=1)


def test_a_failed_training_behind_a_derived_cell_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    import ceag.config.run_config
    import ceag.grid.driver
    import ceag.grid.worker
    import ceag.results.layout

    real = ceag.grid.worker.execute_run

    def failing_nft(cfg_dict, results, progress=None):
        if cfg_dict["method"] == "nft":
            return {"run_id": ceag.config.run_config.from_dict(cfg_dict).run_id, "status": "failed",
                    "reason": "DatasetError: no data"}
        return real(cfg_dict, results, progress)

    monkeypatch.setattr(ceag.grid.worker, "execute_run", failing_nft)
    configs = spec(methods=("nft_es", "ceag")).configs()
    report = run_grid(configs, tmp_path, workers=1)
    assert report.finished == 1 and report.failed == 1 and report.error is None  # the grid went on
    es = next(c for c in configs if c.method == "nft_es")
    # the derived cell fails with the reason of the run it needs; its folder and the store say so
    reason = report.runs[es.run_id]["reason"]
    assert reason.startswith("not run: its NFT run") and "DatasetError: no data" in reason
    assert read_status(run_dir(tmp_path, es.run_id)) == {**read_status(run_dir(tmp_path, es.run_id)),
                                                          "status": "failed", "reason": reason}


def test_utkface_cpu_preset_is_every_method_at_two_sparsities_with_a_dual_step_that_acts():
    from ceag.config.presets import UTKFACE_TRAIN_IMAGES, preset, preset_names
    from ceag.present.preset_notes import utkface_cpu_note

    assert {"utkface_cpu", "utkface_cpu_intersectional"} <= set(preset_names())
    spec = preset("utkface_cpu")
    configs = spec.configs()
    assert sorted((c.method, c.sparsity) for c in configs) == [
        (m, s) for m in ("ceag", "el_rb", "nft", "nft_es") for s in (0.95, 0.99)]
    for c in configs:
        assert (c.dataset, c.model, c.image_size, c.target, c.groups) == ("utkface", "cnn_fc", 32, "race", ("race",))
        assert c.lr_milestones and c.finetune_epochs == 15
        # a dense model that can fit its training set: long enough, without weight decay
        assert c.dense_epochs == 50 and c.dense_weight_decay == 0.0
    inter = preset("utkface_cpu_intersectional").configs()
    assert {c.groups for c in inter} == {("race", "gender")} and len(inter) == len(configs)
    # one epoch of a 0.1 violation moves a CEAG multiplier past the smallest race's share (0.07)
    steps = -(-UTKFACE_TRAIN_IMAGES // spec.settings["batch_size"])
    dual = {c.method: c.dual_lr for c in configs}
    assert dual["ceag"] * 0.1 * steps > 0.07
    # EL+RB's loss gaps (about 0.5 nats) never close: over all of fine-tuning its multipliers grow
    # about as far as the smallest share, not a hundred times further
    assert 0.5 * 0.07 < dual["el_rb"] * 0.5 * steps * 15 < 2 * 0.07
    note = utkface_cpu_note(spec)
    assert f"about {steps} steps per epoch" in note and f"{steps * 15:,} dual steps" in note
    assert "With CEAG's dual step 0.01" in note and "with its own dual step 0.0001 by about 0.11" in note
    assert "The dense model trains 50 epochs (lr 0.05, ×0.1 at 60 %, weight decay 0)" in note
    # the epochs whose spread says whether a run settled all run at the final learning rate
    from ceag.config.schedule import lr_at, window_length
    c = configs[0]
    window = range(c.total_epochs - window_length(c.finetune_epochs), c.total_epochs)
    assert {lr_at(e, c.total_epochs, c.lr, c.lr_milestones, c.lr_gamma) for e in window} == {c.lr * c.lr_gamma ** 2}
    assert "the last 3 epochs, over which each run's spread is measured, run at 0.0005" in note
