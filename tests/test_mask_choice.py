"""Which weights a pruning event keeps: the pruning criterion (magnitude, SNIP, SynFlow) and FairGRAPE, as settings
(validation, run ids, shared-phase keys), grid axes, command-line options, and in runs (the engine's pruning events,
resume, the pipeline end to end)."""

import json

import pandas as pd
import pytest
import torch

import ceag.training.engine
from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.config.keys import dense_key, prune_key, shares_pruning
from ceag.config.presets import preset
from ceag.config.run_config import RunConfig, from_dict
from ceag.config.vocabulary import (
    CRITERIA,
    FAIRGRAPE_ORDERS,
    GRID_METHODS,
    MASK_METHODS,
    METHOD_LABELS,
    METHODS,
)
from ceag.grid.plan import plan
from ceag.present.plots.style import METHOD_COLORS
from ceag.results.files import load_torch
from ceag.results.layout import pruned_dir, run_dir
from ceag.run.pipeline import run
from ceag.training import criteria, fairgrape
from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner
from tests.helpers import ceag_main

# Ids computed before the criterion and FairGRAPE settings existed: a run or phase made then keeps its name.
DEFAULT_RUN_ID, DEFAULT_PRUNE_KEY, DEFAULT_DENSE_KEY = "c9fe66fc96c9a10c", "1d71b42c7e172c3e", "1cc8d2193cf6de10"
UTKFACE_NFT_ID, UTKFACE_CEAG_ID, UTKFACE_PRUNE_KEY = "8ad024aa4060eec1", "8db53df8b9003789", "33ac6cef3bf82932"
FAST = dict(dataset="synthetic", model="mlp", sparsity=0.8, num_groups=4, dense_epochs=3, prune_epochs=2,
            finetune_epochs=3, buffer_size=8, dual_lr=0.05, checkpoint_every=1, device="cpu")


def cfg(**changes) -> RunConfig:
    return RunConfig(**{**FAST, **changes})


# -- identity -------------------------------------------------------------------------------------
def test_ids_and_keys_of_configs_made_before_criteria_are_unchanged():
    default = RunConfig()
    assert (default.run_id, prune_key(default), dense_key(default)) == (DEFAULT_RUN_ID, DEFAULT_PRUNE_KEY,
                                                                         DEFAULT_DENSE_KEY)
    cells = {(c.method, c.tolerance): c for c in preset("utkface").configs() if c.sparsity == 0.85 and c.seed == 0}
    nft, ceag = cells["nft", None], cells["ceag", 0.005]
    assert (nft.run_id, ceag.run_id) == (UTKFACE_NFT_ID, UTKFACE_CEAG_ID)
    assert prune_key(nft) == prune_key(ceag) == UTKFACE_PRUNE_KEY
    # a stored config written before the settings existed reads back to the same run
    old = {k: v for k, v in default.to_dict().items() if "criterion" not in k and "synflow" not in k
           and not k.startswith("fairgrape")}
    assert from_dict(old, stored=True).run_id == DEFAULT_RUN_ID


def test_a_criterion_option_is_part_of_the_run_only_with_its_criterion():
    canonical = RunConfig().canonical()
    assert not {"criterion", "criterion_batches", "synflow_iterations", "fairgrape_batches", "fairgrape_para_batch",
                "fairgrape_order"} & set(canonical)
    # options of a criterion not chosen change nothing: set back to their defaults, the same run
    unused = RunConfig(criterion_batches=7, synflow_iterations=3, fairgrape_batches=2, fairgrape_order="share")
    assert unused.run_id == DEFAULT_RUN_ID
    assert (unused.criterion_batches, unused.synflow_iterations, unused.fairgrape_batches) == (1, 100, 10)
    snip = RunConfig(criterion="snip").canonical()
    assert (snip["criterion"], snip["criterion_batches"]) == ("snip", 1) and "synflow_iterations" not in snip
    synflow = RunConfig(criterion="synflow", synflow_iterations=20).canonical()
    assert (synflow["criterion"], synflow["synflow_iterations"]) == ("synflow", 20)
    assert "criterion_batches" not in synflow
    fair = RunConfig(method="fairgrape", fairgrape_batches=4, fairgrape_para_batch=0, fairgrape_order="share")
    assert {k: v for k, v in fair.canonical().items() if k.startswith("fairgrape")} == {
        "fairgrape_batches": 4, "fairgrape_para_batch": 0, "fairgrape_order": "share"}
    assert fair.run_id != RunConfig(method="fairgrape").run_id


def test_the_saved_config_records_the_criterion_and_reads_back_to_the_same_run():
    for c in (RunConfig(criterion="snip", criterion_batches=3), RunConfig(method="fairgrape", fairgrape_batches=2),
              RunConfig()):
        saved = json.loads(json.dumps(c.to_dict()))
        assert saved["criterion"] == c.criterion and saved["fairgrape_batches"] == c.fairgrape_batches
        assert from_dict(saved) == c and from_dict(saved).run_id == c.run_id


def test_runs_with_different_criteria_never_share_a_pruning_phase():
    variants = [cfg(), cfg(criterion="snip"), cfg(criterion="snip", criterion_batches=2), cfg(criterion="synflow"),
                cfg(criterion="synflow", synflow_iterations=10)]
    assert len({prune_key(c) for c in variants}) == len(variants)
    assert len({dense_key(c) for c in variants}) == 1  # the dense model is the same
    # within a criterion, the methods share it as with magnitude
    snip_nft, snip_ceag = cfg(criterion="snip", method="nft"), cfg(criterion="snip", method="ceag", tolerance=0.01)
    assert prune_key(snip_nft) == prune_key(snip_ceag) and shares_pruning(snip_nft) and shares_pruning(snip_ceag)


def test_fairgrape_prunes_on_its_own():
    fair = cfg(method="fairgrape")
    assert prune_key(fair) == fair.run_id and not shares_pruning(fair)
    assert prune_key(fair) != prune_key(cfg(method="nft"))
    assert dense_key(fair) == dense_key(cfg(method="nft"))


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"criterion": "l1"}, "invalid criterion='l1': must be one of magnitude, snip, synflow"),
    ({"criterion": "snip", "criterion_batches": 0}, "invalid criterion_batches=0: must be an integer >= 1"),
    ({"criterion_batches": 1.5}, "invalid criterion_batches=1.5: must be an integer >= 1"),
    ({"criterion": "synflow", "synflow_iterations": -1}, "invalid synflow_iterations=-1: must be an integer >= 1"),
    ({"synflow_iterations": True}, "invalid synflow_iterations=True: must be an integer >= 1"),
    ({"method": "fairgrape", "fairgrape_batches": 0}, "invalid fairgrape_batches=0: must be an integer >= 1"),
    ({"method": "fairgrape", "fairgrape_para_batch": -1}, "invalid fairgrape_para_batch=-1: must be an integer >= 0"),
    ({"method": "fairgrape", "fairgrape_order": "delta"},
     "invalid fairgrape_order='delta': must be one of importance, share, importance_share"),
    ({"method": "fairgrape", "pruning": "structured"}, "invalid pruning='structured': method fairgrape keeps weights "
                                                       "layer by layer"),
    ({"method": "fairgrape", "pruning": "global"}, "needs pruning='unstructured'"),
    ({"method": "fairgrape", "criterion": "snip"}, "invalid criterion='snip': method fairgrape chooses the weights it "
                                                   "keeps by its own group importance"),
])
def test_bad_criterion_and_fairgrape_settings_say_what_is_allowed(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**changes)


def test_fairgrape_takes_no_tolerance_and_no_held_out_multipliers_like_nft():
    fair = RunConfig(method="fairgrape", tolerance=0.05, constraint_data="val")
    assert fair.tolerance is None and fair.constraint_data == "train"
    assert fair.run_id == RunConfig(method="fairgrape").run_id


def test_the_vocabulary_matches_the_library():
    assert CRITERIA == criteria.CRITERIA and FAIRGRAPE_ORDERS == fairgrape.ORDERS
    assert MASK_METHODS == ("fairgrape",) and "fairgrape" in METHODS and "fairgrape" not in GRID_METHODS
    assert METHOD_LABELS["fairgrape"] == "FairGRAPE"
    assert set(METHODS) <= set(METHOD_COLORS)


# -- grids and the command line ----------------------------------------------------------------------
def grid(**axes) -> GridSpec:
    base = dict(datasets=("synthetic",), methods=("nft", "ceag", "fairgrape"), criteria=("magnitude", "snip"),
                sparsities=(0.8,), tolerances=(0.01, 0.02), seeds=(0,),
                settings={k: v for k, v in FAST.items() if k not in ("dataset", "model", "sparsity")})
    return GridSpec(**{**base, **axes})


def test_a_grid_runs_criteria_times_methods_and_keeps_their_pruning_apart():
    s = grid()
    configs = s.configs()
    cells = pd.Series([(c.method, c.criterion) for c in configs]).value_counts().to_dict()
    # tolerance multiplies CEAG; the criterion every method but FairGRAPE, which chooses its own masks
    assert cells == {("nft", "magnitude"): 1, ("nft", "snip"): 1, ("ceag", "magnitude"): 2, ("ceag", "snip"): 2,
                     ("fairgrape", "magnitude"): 1}
    assert s.size() == len(configs) == 7
    tasks = plan(configs)
    pruning = [t for t in tasks.values() if t.kind == "pruning"]
    assert sorted(t.cfg.criterion for t in pruning) == ["magnitude", "snip"]  # one per criterion, none for FairGRAPE
    fair = next(c for c in configs if c.method == "fairgrape")
    assert tasks[f"run:{fair.run_id}"].deps == (f"dense:{dense_key(fair)}",)
    assert len({t.id for t in tasks.values() if t.kind == "dense"}) == 1
    # a spec file keeps the axis; one written before it existed runs magnitude
    assert GridSpec.from_dict(json.loads(json.dumps(s.to_dict()))).configs() == configs
    old = {k: v for k, v in s.to_dict().items() if k != "criteria"}
    assert {c.criterion for c in GridSpec.from_dict(old).configs()} == {"magnitude"}


def test_a_criterion_among_a_grid_settings_names_the_axis():
    with pytest.raises(ConfigError, match=r"invalid settings\.criterion='snip': use the grid axis 'criteria'"):
        grid(settings={"criterion": "snip"}).configs()
    with pytest.raises(ConfigError, match=r"invalid criterion='l2': must be one of magnitude, snip, synflow"):
        grid(criteria=("l2",)).configs()


def test_the_command_line_takes_criteria_and_fairgrape_settings():
    from ceag.cli.options import config_from_args, grid_spec
    from ceag.cli.parser import build_parser

    parse = build_parser().parse_args
    args = parse(["grid", "--methods", "nft,fairgrape", "--criteria", "magnitude,synflow", "--set",
                  "synflow_iterations=5"])
    configs = grid_spec(args).configs()
    assert sorted((c.method, c.criterion, c.synflow_iterations) for c in configs) == [
        ("fairgrape", "magnitude", 100), ("nft", "magnitude", 100), ("nft", "synflow", 5)]
    one = config_from_args(parse(["run", "--criterion", "snip", "--set", "criterion_batches=3"]))
    assert (one.criterion, one.criterion_batches) == ("snip", 3)
    fair = config_from_args(parse(["run", "--method", "fairgrape", "--set", "fairgrape_batches=4"]))
    assert (fair.method, fair.fairgrape_batches) == ("fairgrape", 4)
    assert config_from_args(parse(["run"])).run_id == DEFAULT_RUN_ID


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--method", "fairgrape", "--criterion", "synflow"], "error: invalid criterion='synflow': method "
                                                                  "fairgrape chooses"),
    (["run", "--criterion", "snip", "--set", "criterion_batches=0"], "error: invalid criterion_batches=0"),
    (["grid", "--criteria", "random"], "error: invalid criterion='random': must be one of magnitude, snip, synflow"),
])
def test_bad_criteria_on_the_command_line_exit_2(tmp_path, args, message):
    code, _, err = ceag_main(*args, "--results", tmp_path)
    assert code == 2 and message in err
    assert not (tmp_path / "runs").exists()


# -- the pruner and the engine ---------------------------------------------------------------------
def test_set_masks_installs_masks_and_keeps_masked_batch_norms_in_step():
    model = build_model("cnn_small", (1, 8, 8), 3, seed=0)
    pruner = MagnitudePruner(model, "structured", dense_first_conv=False, masked_bn=True)
    pruner.apply_()
    pruner._fused = [torch.ones(1)]  # a stale float copy of the masks, as after apply_ on a GPU
    name = next(n for n in pruner.masks if n in pruner.batch_norms)
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    masks[name][0] = False  # a whole output channel
    pruner.set_masks_(masks)
    assert pruner._fused is None
    assert torch.equal(pruner.masks[name], masks[name]) and pruner.masks[name] is not masks[name]
    assert (pruner.layers[name].weight[0] == 0).all() and (pruner.layers[name].weight[1] != 0).any()
    assert pruner.batch_norms[name].alive_channels[0] == 0 and pruner.batch_norms[name].alive_channels[1:].all()
    with pytest.raises(ValueError, match="masks must name this pruner's layers: missing"):
        pruner.set_masks_({name: masks[name]})
    with pytest.raises(ValueError, match=f"mask of '{name}' has shape"):
        pruner.set_masks_({**masks, name: masks[name][:1]})


def test_magnitude_runs_prune_by_magnitude_alone(monkeypatch, tmp_path, one_thread):
    def refuse(*args, **kwargs):
        raise AssertionError("a magnitude run must prune with MagnitudePruner.prune_to_ alone")

    monkeypatch.setattr(ceag.training.engine, "criterion_masks", refuse)
    monkeypatch.setattr(ceag.training.engine, "fairgrape_masks", refuse)
    for method in ("nft", "ceag"):
        assert run(cfg(method=method), tmp_path).status == "finished"


def calls_of(monkeypatch, name: str) -> list[dict]:
    """The keyword arguments and sparsity of every call the engine makes to ``name``."""
    real, seen = getattr(ceag.training.engine, name), []

    def spy(*args, **kwargs):
        seen.append({"sparsity": args[3] if name == "criterion_masks" else args[4], **kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(ceag.training.engine, name, spy)
    return seen


@pytest.mark.parametrize("pruning", ["unstructured", "global", "structured"])
@pytest.mark.parametrize("criterion", ["snip", "synflow"])
def test_a_criterion_chooses_the_masks_of_every_pruning_event(monkeypatch, tmp_path, one_thread, criterion, pruning):
    seen = calls_of(monkeypatch, "criterion_masks")
    c = cfg(method="nft", criterion=criterion, pruning=pruning, criterion_batches=2, synflow_iterations=4)
    result = run(c, tmp_path)
    assert result.status == "finished"
    # epoch 0 of the cubic schedule prunes nothing; epochs 1 and 2 do, by the criterion, for the run's kind
    assert [round(s["sparsity"], 6) for s in seen] == [round(0.8 * (1 - (1 - e / 2) ** 3), 6) for e in (1, 2)]
    # each criterion gets its own option; the other's is set back to its default
    assert (c.criterion_batches, c.synflow_iterations) == ((2, 100) if criterion == "snip" else (1, 4))
    assert all(s["kind"] == pruning and s["num_batches"] == c.criterion_batches
               and s["iterations"] == c.synflow_iterations for s in seen)
    assert result.summary["achieved_sparsity"] == pytest.approx(0.8, abs=0.02 if pruning == "structured" else 1e-3)
    model = torch.load(run_dir(tmp_path, c.run_id) / "model.pt", weights_only=True)
    if pruning == "structured":  # whole rows of the hidden layers are gone
        assert any(bool((w == 0).all(1).any()) for k, w in model.items() if k.endswith("weight") and w.dim() == 2)


def test_one_shot_pruning_uses_the_criterion_once(monkeypatch, tmp_path, one_thread):
    seen = calls_of(monkeypatch, "criterion_masks")
    result = run(cfg(method="nft", criterion="snip", prune_epochs=0), tmp_path)
    assert [s["sparsity"] for s in seen] == [0.8]
    assert result.summary["achieved_sparsity"] == pytest.approx(0.8, abs=1e-3)
    fair = calls_of(monkeypatch, "fairgrape_masks")
    result = run(cfg(method="fairgrape", prune_epochs=0, fairgrape_batches=3, fairgrape_order="share"), tmp_path)
    assert [(s["sparsity"], s["num_batches"], s["order"]) for s in fair] == [(0.8, 3, "share")]
    assert result.summary["achieved_sparsity"] == pytest.approx(0.8, abs=1e-3)


class Interrupt(Exception):
    """Raised from the progress callback to stop a run mid-way."""


@pytest.mark.parametrize(("changes", "stop_at"), [
    ({"criterion": "snip", "criterion_batches": 2}, 2),   # during the shared pruning phase
    ({"criterion": "snip", "criterion_batches": 2}, 4),   # during fine-tuning
    ({"method": "fairgrape", "fairgrape_batches": 2}, 2),  # FairGRAPE prunes in the run itself
])
def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, one_thread, changes, stop_at):
    c = cfg(**changes)
    uninterrupted = run(c, tmp_path / "once")

    def progress(phase, done, total):
        epoch = {"pruning": done, "fine-tuning": c.prune_epochs + done}.get(phase)
        if epoch == stop_at:
            raise Interrupt

    results = tmp_path / "twice"
    with pytest.raises(Interrupt):
        run(c, results, progress=progress)
    folder = pruned_dir(results, c) if stop_at <= c.prune_epochs and shares_pruning(c) else run_dir(results, c.run_id)
    assert (folder / "checkpoint.pt").exists()
    resumed = run(c, results)
    assert resumed.summary["resumed_from"] == "checkpoint"
    for name in ("run_metrics", "group_metrics", "duals"):
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(uninterrupted, name), check_exact=True)
    a = torch.load(run_dir(results, c.run_id) / "model.pt", weights_only=True)
    b = torch.load(run_dir(tmp_path / "once", c.run_id) / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_methods_of_one_criterion_share_its_pruning_exactly(tmp_path, one_thread):
    snip_ceag = cfg(criterion="snip", method="ceag", tolerance=0.01)
    run(snip_ceag, tmp_path)
    assert (pruned_dir(tmp_path, snip_ceag) / "state.pt").exists()
    nft = cfg(criterion="snip", method="nft")
    shared = run(nft, tmp_path)
    assert shared.summary["resumed_from"] == "pruned"
    alone = run(nft, tmp_path / "alone")
    for name in ("run_metrics", "group_metrics"):
        pd.testing.assert_frame_equal(getattr(shared, name), getattr(alone, name), check_exact=True)
    # a magnitude run next to it trains its own pruning, on the same training batches: the criterion's batches
    # come from a stream of their own
    magnitude = cfg(method="nft")
    assert run(magnitude, tmp_path).summary["resumed_from"] is None
    states = [load_torch(pruned_dir(tmp_path, c) / "state.pt") for c in (snip_ceag, magnitude)]
    assert torch.equal(states[0]["generator"], states[1]["generator"])
    assert not all(torch.equal(states[0]["masks"][k], states[1]["masks"][k]) for k in states[0]["masks"])


# -- end to end on the digits ----------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {"criterion": "snip", "criterion_batches": 2},
    {"criterion": "synflow", "synflow_iterations": 10},
    {"method": "fairgrape", "fairgrape_batches": 2},
])
def test_a_digits_run_finishes_with_its_pruning_choice_recorded(tmp_path, one_thread, changes):
    c = RunConfig(dataset="digits", model="mlp", sparsity=0.9, dense_epochs=3, prune_epochs=2, finetune_epochs=2,
                  device="cpu", **changes)
    result = run(c, tmp_path)
    assert result.status == "finished" and result.summary["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
    saved = json.loads((run_dir(tmp_path, c.run_id) / "config.json").read_text())
    assert {k: saved[k] for k in changes} == changes
    assert saved["criterion"] == changes.get("criterion", "magnitude")
    assert from_dict(saved, stored=True).run_id == c.run_id == result.run_id
    fair = c.method == "fairgrape"
    assert (result.summary["prune_key"] == c.run_id) is fair
    assert (tmp_path / "pruned").exists() is not fair  # FairGRAPE leaves no shared pruning phase
    if fair:  # fine-tuned as NFT: no tolerance, no multipliers
        assert c.tolerance is None and result.duals.empty
