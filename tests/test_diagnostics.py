"""Convergence and constraint diagnostics: the pure logic on hand-made records, then on demo runs."""

import numpy as np
import pandas as pd
import pytest

from ceag.config.run_config import RunConfig
from ceag.config.schedule import window_first_epoch, window_length
from ceag.diagnostics.constraints import constraint_report, counter_from_trace, moving_multipliers
from ceag.diagnostics.convergence import convergence, convergence_advice
from ceag.diagnostics.learning import learning_check
from ceag.diagnostics.run import run_diagnostics
from ceag.present.sentences.trust import summary_line
from ceag.training.dual_counter import ConstraintCounter


def run_metrics(accuracy, gap, *, first_epoch=1, splits=("train", "test")):
    rows = []
    for split in splits:
        for i, (a, g) in enumerate(zip(accuracy, gap, strict=True)):
            rows.append({"epoch": first_epoch + i, "split": split, "accuracy": a, "max_excess_gap": g})
    return pd.DataFrame(rows)


# -- window -------------------------------------------------------------------------------
@pytest.mark.parametrize("finetune, length", [(0, 0), (2, 2), (3, 3), (10, 3), (40, 8), (45, 9)])
def test_window_is_a_fifth_of_fine_tuning_with_at_least_three_epochs(finetune, length):
    assert window_length(finetune) == length
    assert window_first_epoch(20 + finetune, finetune) == 20 + finetune - length + 1


# -- convergence --------------------------------------------------------------------------
def test_steady_metrics_are_converged():
    rm = run_metrics([0.900, 0.902, 0.901, 0.903], [0.05, 0.055, 0.05, 0.06])
    out = convergence(rm, {"train": 1000, "test": 1000}, {"train": 100, "test": 100}, first_epoch=1,
                         last_epoch=4)
    assert out["converged"] is True
    assert out["spread"]["train"]["accuracy"] == pytest.approx(0.003)
    assert out["spread"]["test"]["max_excess_gap"] == pytest.approx(0.01)
    assert out["evaluations"] == {"train": 4, "test": 4}
    assert out["window"] == [1, 4]


def test_a_swinging_max_excess_gap_is_not_converged_and_gets_advice():
    rm = run_metrics([0.9, 0.9, 0.9, 0.9], [0.03, 0.38, 0.10, 0.25])
    out = convergence(rm, {"train": 1000, "test": 1000}, {"train": 100, "test": 100}, first_epoch=1,
                         last_epoch=4)
    assert out["converged"] is False
    assert out["spread"]["train"]["max_excess_gap"] == pytest.approx(0.35)
    advice = convergence_advice(out, lr=0.05, lr_milestones=(), finetune_epochs=10)
    assert "max_g ψ_g on train moved 35.0 points over epochs 1–4" in advice
    assert "lower lr (now 0.05)" in advice and "lr_milestones" in advice and "10 epochs" in advice
    # with a schedule already in place, the advice does not suggest one
    assert "lr_milestones" not in convergence_advice(out, lr=0.05, lr_milestones=(0.7, 0.9), finetune_epochs=10)


def test_accuracy_spread_beyond_a_point_is_not_converged():
    rm = run_metrics([0.90, 0.88, 0.91], [0.0, 0.0, 0.0])
    out = convergence(rm, {"train": 5000, "test": 5000}, {"train": 500, "test": 500}, first_epoch=1,
                         last_epoch=3)
    assert out["converged"] is False


def test_one_sample_of_a_small_group_is_within_the_limit():
    # a 6-sample group flips one prediction: psi_g moves by 1/6, which the limit allows
    rm = run_metrics([0.95, 0.95, 0.95], [0.10, 0.10 + 1 / 6, 0.10], splits=("train",))
    out = convergence(rm, {"train": 600}, {"train": 6}, first_epoch=1, last_epoch=3)
    assert out["limit"]["train"]["max_excess_gap"] == pytest.approx(0.02 + 1 / 6)
    assert out["converged"] is True
    # two flips are not
    rm = run_metrics([0.95, 0.95, 0.95], [0.10, 0.10 + 2 / 6, 0.10], splits=("train",))
    assert convergence(rm, {"train": 600}, {"train": 6}, first_epoch=1, last_epoch=3)["converged"] is False


def test_too_few_evaluations_make_convergence_unknown():
    rm = run_metrics([0.9, 0.5], [0.0, 0.5])
    out = convergence(rm, {"train": 100, "test": 100}, {"train": 10, "test": 10}, first_epoch=2, last_epoch=2)
    assert out["converged"] is None
    assert convergence_advice(out, lr=0.1, lr_milestones=(), finetune_epochs=1) is None


# -- constraint counter -------------------------------------------------------------------
def test_counter_tallies_every_dual_step():
    c = ConstraintCounter(3)
    nan = np.nan
    c.update_(np.array([0.0, 0.1, 0.0]), np.array([nan, 0.2, -0.1]), np.array([False, True, True]))
    c.in_window = True
    c.update_(np.array([0.0, 0.3, 0.0]), np.array([0.05, 0.1, -0.2]), np.array([True, True, True]))
    c.update_(np.array([0.0, 0.2, 0.0]), np.array([-0.05, -0.1, nan]), np.array([True, True, False]))
    state = c.state_dict()
    assert state["max_multiplier"] == pytest.approx([0.0, 0.3, 0.0])
    assert state["steps"] == [2, 3, 2]
    assert state["violated"] == [1, 2, 0]
    assert state["positive_sum"] == pytest.approx([0.05, 0.3, 0.0])
    assert state["last"] == pytest.approx([-0.05, -0.1, -0.2])
    assert state["window_steps"] == [2, 2, 1]
    assert state["window_sum"] == pytest.approx([0.0, 0.0, -0.2])
    again = ConstraintCounter(3)
    again.load_state_dict(state)
    assert again.state_dict() == state


def report(counter, window_gap, *, share=(0.5, 0.3, 0.2), tolerance=0.02, dual_lr=0.01, counts=(500, 300, 200),
           split="train"):
    return constraint_report(counter, method="ceag", tolerance=tolerance, dual_lr=dual_lr,
                                group_share=np.array(share), group_names=["a", "b", "c"],
                                train_excess_gap=np.array(window_gap), window_train_excess_gap=np.array(window_gap),
                                train_count=np.array(counts), window_epochs=3, buffer_size=40, split=split)


def counter_state(max_multiplier, window_mean, *, steps=1000, violated=(0, 500, 0), positive=(0.0, 50.0, 0.0)):
    return {"max_multiplier": list(max_multiplier), "steps": [steps] * 3, "violated": list(violated),
            "positive_sum": list(positive), "last": list(window_mean), "window_steps": [200] * 3,
            "window_sum": [200 * m for m in window_mean]}


def test_multipliers_that_reweight_a_group_count_as_active():
    # group b (30 % of the data) reached lambda 0.6: twice its own weight in the objective
    out = report(counter_state([0.0, 0.6, 0.0], [-0.01, 0.0, -0.02]), [-0.01, 0.02, -0.02])
    assert out["constraints_active"] is True and out["multiplier_ratio"] == pytest.approx(2.0)
    assert out["multiplier_group"] == "b" and out["max_multiplier"] == pytest.approx(0.6)
    assert out["estimates_agree"] is True and out["warnings"] == []
    b = out["groups"][1]
    assert b["violated_share"] == pytest.approx(0.5) and b["dual_steps"] == 1000
    assert b["last_estimate"] == pytest.approx(0.02)  # the violation plus the tolerance: psi_hat_g


def test_tiny_multipliers_on_a_violated_constraint_warn_with_the_needed_dual_step():
    out = report(counter_state([0.0, 0.007, 0.0], [-0.01, 0.22, -0.02]), [-0.01, 0.22, -0.02], dual_lr=0.003)
    assert out["constraints_active"] is False
    (warning,) = out["warnings"]
    assert "never acted" in warning and "b ended at train ψ_g 22.0 points against ε = 2" in warning
    # lambda can reach at most dual_lr x 50; reaching half of b's 0.3 share needs 0.15 / 50 = 0.003
    assert "about 0.003 (now 0.003)" in warning


def test_held_out_multipliers_warn_about_the_validation_split_they_saw():
    out = report(counter_state([0.0, 0.007, 0.0], [-0.01, 0.22, -0.02]), [-0.01, 0.22, -0.02], dual_lr=0.003,
                 split="val")
    (warning,) = out["warnings"]
    assert "b ended at val ψ_g 22.0 points" in warning and "of the validation split" in warning
    assert "train ψ_g" not in warning and "training" not in warning
    lines = summary_line({"converged": None, "constraints": out})
    assert "its share of the validation split" in lines[1] and "training" not in lines[1]
    counter = counter_state([0.0, 0.6, 0.0], [-0.01, -0.025 - 0.02, -0.02])
    (warning,) = report(counter, [-0.01, 0.243, -0.02], split="val")["warnings"]
    assert "evaluated val ψ_g was 24.3" in warning and "train-mode" not in warning


def test_constraints_that_were_never_needed_do_not_warn():
    out = report(counter_state([0.0, 0.0, 0.0], [-0.01, 0.0, -0.02], violated=(0, 0, 0), positive=(0, 0, 0)),
                 [-0.01, 0.01, -0.02])
    assert out["constraints_active"] is False and out["warnings"] == []


def test_disagreement_between_buffers_and_evaluation_fires_on_a_hand_made_trace():
    # the buffers read b's constraint as met (psi_hat about -2.5 points) while the evaluation says +24.3
    counter = counter_state([0.0, 0.6, 0.0], [-0.01, -0.025 - 0.02, -0.02])
    out = report(counter, [-0.01, 0.243, -0.02])
    assert out["estimates_agree"] is False
    b = out["groups"][1]
    assert b["disagree"] is True and b["window_estimate"] == pytest.approx(-0.025)
    assert b["window_train_excess_gap"] == pytest.approx(0.243)
    assert any("disagree" in w and "for b" in w and "-2.5 points" in w and "24.3" in w for w in out["warnings"])
    # the same trace with estimates within the tolerance of the evaluation does not fire
    counter = counter_state([0.0, 0.6, 0.0], [-0.01 - 0.02, 0.235 - 0.02, -0.02 - 0.02])
    assert report(counter, [-0.01, 0.243, -0.02])["estimates_agree"] is True


def moving(counter, method="ceag", tolerance=0.02, dual_lr=0.01):
    return moving_multipliers(counter, method=method, tolerance=tolerance, dual_lr=dual_lr,
                                 group_share=np.array([0.5, 0.3, 0.2]), group_names=["a", "b", "c"], window=[13, 15])


def test_a_constraint_still_violated_over_the_window_explains_why_a_run_does_not_settle():
    # b's violation psi_hat - eps averaged 0.04 over 200 window steps: lambda_b gained 0.01 x 8 = 0.08,
    # 0.27 of its share 0.3
    sentence = moving(counter_state([0.0, 0.6, 0.0], [-0.01, 0.04, -0.02]))
    assert sentence.startswith("Its multipliers were still growing: b's constraint stayed violated")
    assert "ψ̂_g 6.0 points on average against ε = 2 over epochs 13–15" in sentence
    assert "added about 0.08 to λ_g, 0.27 of the group's share" in sentence
    assert "a looser ε (now 0.02), a lower sparsity, or a smaller dual_lr (now 0.01)" in sentence
    # EL+RB: a loss gap, never negative
    sentence = moving(counter_state([0.0, 0.6, 0.0], [0.1, 0.5, 0.02]), method="el_rb", tolerance=None,
                      dual_lr=1e-3)
    assert "b's loss gap |L_g − L| stayed at 0.5 on average over epochs 13–15" in sentence
    assert "added about 0.1 to λ_g, 0.33 of the group's share" in sentence
    assert "a smaller dual_lr (now 0.001)" in sentence


def test_met_constraints_or_a_small_growth_do_not_count_as_moving_multipliers():
    assert moving(counter_state([0.0, 0.6, 0.0], [-0.01, -0.03, -0.02])) is None
    # 0.01 x 200 x 0.01 = 0.02, 0.07 of b's share: below the 0.1 that still moves the model
    assert moving(counter_state([0.0, 0.6, 0.0], [-0.01, 0.01, -0.02])) is None
    assert moving({"window_sum": [], "window_steps": []}) is None


def test_the_advice_of_a_run_that_did_not_settle_names_its_growing_multipliers():
    cfg = RunConfig(method="ceag", tolerance=0.02, dual_lr=0.01, prune_epochs=5, finetune_epochs=10)
    epochs = range(0, 16)
    runs, groups = [], []
    for e in epochs:
        for split in ("train", "test"):
            acc = 0.8 + (0.03 if e == 14 else 0.0)  # a 3-point swing inside the window (epochs 13-15)
            runs.append({"epoch": e, "split": split, "accuracy": acc, "max_excess_gap": 0.06, "loss": 0.5})
            for gid, (name, n) in enumerate((("a", 500), ("b", 300), ("c", 200))):
                groups.append({"epoch": e, "split": split, "group_id": gid, "group_name": name, "n": n,
                               "excess_gap": 0.06 if name == "b" else 0.0, "loss": 0.5})
    counter = counter_state([0.0, 0.6, 0.0], [-0.01, 0.04, -0.02])
    diag = run_diagnostics(cfg, pd.DataFrame(runs), pd.DataFrame(groups), counter, last_epoch=15)
    assert diag["converged"] is False
    assert diag["advice"].startswith("not settled: accuracy on")
    assert "Its multipliers were still growing: b's constraint stayed violated" in diag["advice"]
    # settled: the same multipliers are not advice
    steady = pd.DataFrame([{**r, "accuracy": 0.8} for r in runs])
    assert run_diagnostics(cfg, steady, pd.DataFrame(groups), counter, last_epoch=15)["advice"] is None


def test_counter_rebuilt_from_a_trace_matches_the_traced_steps():
    duals = pd.DataFrame({"step": [0, 0, 5, 5], "epoch": [3, 3, 3, 3], "group_id": [0, 1, 0, 1],
                          "multiplier": [0.0, 0.1, 0.0, 0.4], "violation": [-0.1, 0.3, np.nan, 0.2]})
    state = counter_from_trace(duals, 2)
    assert state["max_multiplier"] == pytest.approx([0.0, 0.4])
    assert state["steps"] == [1, 2] and state["violated"] == [0, 2]


# -- on the demo ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import torch

    from ceag.run.pipeline import run

    results = tmp_path_factory.mktemp("diag-demo")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield lambda **kw: run(RunConfig(sparsity=0.95, **kw), results)
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_demo_default_settles_and_a_constant_lr_of_one_half_does_not(demo):
    settled = demo(method="nft").diagnostics
    assert settled["converged"] is True, settled
    # lr 0.5 held constant (no decay): the last epochs swing the rare digit (six training images)
    unstable = demo(method="nft", lr=0.5, lr_milestones=(), rare_train_count=6).diagnostics
    assert unstable["converged"] is False, unstable
    assert "lower lr (now 0.5)" in unstable["advice"]
    # every split's spread is reported, as fractions
    assert set(unstable["spread"]) == {"train", "val", "test"}
    assert all(0 <= v["accuracy"] <= 1 for v in unstable["spread"].values())


@pytest.mark.slow
def test_demo_ceag_constraints_act_and_a_tiny_dual_step_never_does(demo):
    acted = demo(method="ceag", tolerance=0.02).diagnostics
    assert acted["constraints_active"] is True and acted["max_multiplier"] > 0.01
    assert acted["constraints"]["source"] == "steps"
    tiny = demo(method="ceag", tolerance=0.02, dual_lr=1e-6).diagnostics
    assert tiny["constraints_active"] is False and tiny["max_multiplier"] < 1e-3
    assert any("never acted" in w and "dual step of about" in w for w in tiny["constraints"]["warnings"])
    assert demo(method="nft").diagnostics["constraints_active"] is None


def test_a_run_recorded_before_diagnostics_gets_them_from_its_records(tmp_path, make_cfg, one_thread):
    from dataclasses import replace

    from ceag.run.pipeline import run

    result = run(make_cfg(), tmp_path)
    stored = result.summary["diagnostics"]
    old = replace(result, summary={k: v for k, v in result.summary.items() if k != "diagnostics"})
    rebuilt = old.diagnostics
    # convergence comes from the per-epoch metrics alone: the same
    for key in ("converged", "window", "spread", "spread_limit"):
        assert rebuilt[key] == stored[key]
    # the advice too, less what only every dual step tells (multipliers still growing over the window)
    assert (rebuilt["advice"] is None) == (stored["advice"] is None)
    assert rebuilt["advice"] is None or stored["advice"].startswith(rebuilt["advice"])
    # the constraint part from the subsampled trace, and says so
    assert rebuilt["constraints"]["source"] == "trace" and stored["constraints"]["source"] == "steps"
    assert rebuilt["max_multiplier"] <= stored["max_multiplier"] + 1e-12
    assert old.to_json()["diagnostics"]["converged"] == stored["converged"]


# -- did the models learn anything? ---------------------------------------------------------------
def predictions(split, y_true, y_pred, dense_pred):
    return pd.DataFrame({"split": split, "y_true": y_true, "y_pred": y_pred,
                         "dense_pred": pd.array(dense_pred, dtype="Int64")})


def test_a_dense_model_at_the_majority_rate_learned_nothing_and_a_one_class_pruned_model_collapsed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    frame = pd.concat([predictions("train", y, np.zeros(240, int), rng.integers(0, 2, 240)),
                       predictions("test", y[:60], np.zeros(60, int), rng.integers(0, 2, 60))])
    out = learning_check(frame, ["dark", "bright"])
    assert out["dense_at_chance"] is True and out["sparse_collapsed"] == ["train", "test"]
    assert out["splits"]["train"]["majority_rate"] == pytest.approx(np.bincount(y).max() / 240)
    assert "the dense model learned nothing" in out["warnings"][0] and "always answering" in out["warnings"][0]
    assert "it answers dark for every one of the 60 test samples" in out["warnings"][2]
    lines = summary_line({"converged": True, "window": [5, 7], "spread": {}, "spread_limit": {},
                             "learning": out})
    assert lines[0].startswith("settled") and sum(line.startswith("warning: ") for line in lines) == 3


def test_a_model_that_learned_gets_no_warning_even_on_a_skewed_split():
    y = np.array([0] * 90 + [1] * 10)
    frame = predictions("train", y, y, y)  # 100 % where always answering 0 scores 90 %
    out = learning_check(frame)
    assert out["dense_at_chance"] is False and out["sparse_collapsed"] == [] and out["warnings"] == []
    within_noise = y.copy()
    within_noise[90:95] = 0  # 95 %: within two standard errors (3 points) of 90 %
    assert learning_check(predictions("train", y, y, within_noise))["dense_at_chance"] is True


def test_a_run_on_data_it_cannot_learn_says_so_in_run_ls_and_its_json(tmp_path):
    """Two classes whose images are identical: the dense model sits at the majority rate."""
    import csv
    import json

    from PIL import Image

    from tests.helpers import ceag_main

    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(data / "img" / "same.png")
    rows = [{"file": "img/same.png", "cls": ["a", "b", "b"][i % 3], "grp": ["g", "h"][i % 2]} for i in range(90)]
    with open(data / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "cls", "grp"])
        writer.writeheader()
        writer.writerows(rows)
    args = ["--dataset", "custom", "--data-dir", data, "--target", "cls", "--groups", "grp", "--model", "mlp",
            "--dense-epochs", 2, "--prune-epochs", 1, "--epochs", 3, "--sparsity", 0.5, "--results",
            tmp_path / "results"]
    code, out, err = ceag_main("run", *args, "--json")
    assert code == 0, err
    learning = json.loads(out)["diagnostics"]["learning"]
    assert learning["dense_at_chance"] is True, learning
    code, out, err = ceag_main("run", *args)
    assert "warning: the dense model learned nothing" in out, out
    run_id = json.loads(ceag_main("run", *args, "--json")[1])["run_id"]
    code, out, err = ceag_main("ls", "--results", tmp_path / "results")
    assert "the dense model learned nothing" in out, out
    code, out, err = ceag_main("report", "--runs", run_id, "--out", tmp_path / "audit.html", "--results",
                               tmp_path / "results")
    assert code == 0, err
    assert "the dense model learned nothing" in (tmp_path / "audit.html").read_text()
