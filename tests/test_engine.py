"""Runs end to end on tiny synthetic data: checkpoint round trip, caching, shared pruned state;
plus the model builders and the datasets the engine trains on."""

import numpy as np
import pandas as pd
import pytest
import torch

import ceag.training.engine
from ceag.config.errors import ConfigError
from ceag.config.keys import prune_key
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import MODELS
from ceag.datasets.loading import load_dataset
from ceag.results.layout import pruned_dir, run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from ceag.training.models import build_model

FRAMES = ("run_metrics", "group_metrics", "duals")


class Interrupt(Exception):
    """Raised from the progress callback to stop a run mid-way."""


def assert_same_result(a, b):
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)


def model_weights(results, run_id):
    return torch.load(run_dir(results, run_id) / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def ceag_run(tmp_path_factory, make_cfg):
    """One uninterrupted CEAG run on the fast config, shared by the tests below."""
    results = tmp_path_factory.mktemp("results")
    return results, run(make_cfg(), results)


# -- a finished run -----------------------------------------------------------------------
def test_uninterrupted_run_records_every_epoch(ceag_run, make_cfg):
    results, result = ceag_run
    cfg = make_cfg()
    assert result.status == "finished" and not result.cached
    assert result.summary["resumed_from"] is None and result.summary["dense_trained"] is True
    assert result.summary["epochs_trained"] == cfg.total_epochs
    assert sorted(set(result.run_metrics.epoch)) == list(range(cfg.total_epochs + 1))
    assert set(result.run_metrics.split) == {"train", "val", "test"}
    assert len(result.group_metrics) == len(result.run_metrics) * cfg.num_groups
    assert result.summary["achieved_sparsity"] == pytest.approx(cfg.sparsity, abs=0.01)
    # CEAG is active only after pruning: its multipliers are traced from epoch E on
    assert len(result.duals) > 0 and result.duals.epoch.min() == cfg.prune_epochs
    assert (result.duals.multiplier >= 0).all() and (result.duals.multiplier > 0).any()
    assert not (run_dir(results, result.run_id) / "checkpoint.pt").exists()


@pytest.mark.parametrize("stop_at", [2, 4])  # 2: during pruning; 4: mid fine-tuning
def test_interrupted_run_resumes_to_identical_results(ceag_run, results_dir, stop_at, make_cfg):
    _, uninterrupted = ceag_run
    cfg = make_cfg()
    seen = []

    def run_epoch(phase, done):  # progress counts within a phase; the run's epochs start with pruning
        return {"pruning": done, "fine-tuning": cfg.prune_epochs + done}.get(phase)

    def progress(phase, done, total):
        if run_epoch(phase, done) is not None:
            seen.append(run_epoch(phase, done))
            if run_epoch(phase, done) == stop_at:
                raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, results_dir, progress=progress)
    assert seen == list(range(1, stop_at + 1))
    folder = run_dir(results_dir, cfg.run_id)
    # stopped while pruning: the shared pruning phase keeps the checkpoint; later, the run itself
    assert (folder if stop_at > cfg.prune_epochs else pruned_dir(results_dir, cfg)).joinpath("checkpoint.pt").exists()
    assert load_result(results_dir, cfg.run_id) is None
    assert '"status": "failed"' in (folder / "status.json").read_text()

    resumed_epochs = []
    result = run(cfg, results_dir, progress=lambda p, d, t: run_epoch(p, d) and resumed_epochs.append(run_epoch(p, d)))
    assert result.summary["resumed_from"] == "checkpoint"
    assert result.summary["dense_trained"] is False
    assert resumed_epochs == list(range(stop_at, cfg.total_epochs + 1))  # redoes only the lost epoch
    assert_same_result(result, uninterrupted)
    assert result.summary["achieved_sparsity"] == uninterrupted.summary["achieved_sparsity"]
    assert not (folder / "checkpoint.pt").exists()
    a, b = model_weights(results_dir, cfg.run_id), model_weights(ceag_run[0], cfg.run_id)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_second_call_is_cached_without_training(ceag_run, monkeypatch, make_cfg):
    results, first = ceag_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(ceag.training.engine, "train", no_training)
    monkeypatch.setattr(ceag.training.engine, "train_dense", no_training)
    again = run(make_cfg(), results)
    assert again.cached is True and again.run_id == first.run_id
    assert_same_result(again, first)
    assert again.summary == first.summary


# -- the shared pruned state ----------------------------------------------------------------
def test_nft_reuses_the_pruned_state_of_a_ceag_run(ceag_run, tmp_path, make_cfg):
    results, ceag_result = ceag_run
    nft_cfg = make_cfg(method="nft")
    assert prune_key(nft_cfg) == prune_key(make_cfg())
    assert (results / "pruned" / prune_key(nft_cfg) / "state.pt").exists()

    shared = run(nft_cfg, results)
    assert shared.summary["resumed_from"] == "pruned" and shared.summary["dense_trained"] is False
    assert shared.summary["epochs_trained"] == nft_cfg.finetune_epochs
    # the pruning phase is common to both methods
    E = nft_cfg.prune_epochs
    pd.testing.assert_frame_equal(shared.run_metrics[shared.run_metrics.epoch <= E],
                                  ceag_result.run_metrics[ceag_result.run_metrics.epoch <= E])
    assert len(shared.duals) == 0
    # and sharing it changes nothing: the same NFT run from scratch gives the same numbers
    alone = run(nft_cfg, tmp_path)
    assert alone.summary["resumed_from"] is None
    assert_same_result(shared, alone)


def test_ceag_with_another_buffer_size_shares_pruning_exactly(ceag_run, tmp_path, make_cfg):
    results, _ = ceag_run
    cfg = make_cfg(buffer_size=4)
    assert prune_key(cfg) == prune_key(make_cfg())
    shared = run(cfg, results)
    assert shared.summary["resumed_from"] == "pruned"
    assert_same_result(shared, run(cfg, tmp_path))


def test_replay_buffer_ablation_shares_pruning_with_the_default(tmp_path, make_cfg):
    run(make_cfg(replay_buffer=False), tmp_path)
    result = run(make_cfg(), tmp_path)
    assert result.summary["resumed_from"] == "pruned"


# -- models ---------------------------------------------------------------------------------
# One small input per model; the big torchvision / CIFAR models get one forward of two samples.
SHAPES = {"mlp": (16,), "cnn": (1, 8, 8), "cnn_small": (1, 8, 8), "cnn_fc": (3, 32, 32), "resnet20": (3, 32, 32),
          "resnet18": (1, 8, 8), "resnet34": (3, 16, 16), "mobilenet_v2": (1, 8, 8), "resnet56": (3, 16, 16)}
@pytest.mark.parametrize("name", MODELS)
def test_every_config_model_builds_and_gives_logits(name):
    shape = SHAPES[name]
    model = build_model(name, shape, 7, seed=0)
    x = torch.randn(2 if name in ("resnet18", "resnet34", "mobilenet_v2", "resnet56") else 4, *shape)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (x.shape[0], 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["cnn", "cnn_fc", "resnet20"])
def test_small_image_models_train_on_digit_sized_input(name):
    model = build_model(name, (1, 8, 8), 10, seed=0)
    logits = model(torch.randn(4, 1, 8, 8))  # train mode: batch norm uses batch statistics
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_model_init_depends_only_on_the_seed():
    a, b, c = (build_model("cnn", (1, 8, 8), 3, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_image_model_on_flat_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"invalid model='cnn': needs image inputs .*use model 'mlp'"):
        build_model("cnn", (16,), 3, seed=0)
    with pytest.raises(ConfigError, match="must be one of mlp, cnn"):
        build_model("vgg", (16,), 3, seed=0)


# -- data -----------------------------------------------------------------------------------
def _rows(split):
    return {row.tobytes() for row in split.x.flatten(1).numpy()}


@pytest.fixture(scope="module")
def digits():
    return load_dataset(RunConfig(dataset="digits", rare_groups=(8,), rare_train_count=6))


def test_digits_splits_are_disjoint(digits):
    # the 1797 digits images are all distinct, so rows identify samples
    rows = {name: _rows(split) for name, split in digits.splits.items()}
    assert set(rows) == {"train", "val", "test"}
    assert all(len(r) == len(digits.splits[n]) for n, r in rows.items())
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"])
    assert not (rows["val"] & rows["test"])
    assert digits.splits["train"].x.shape[1:] == (1, 8, 8) and digits.num_classes == 10


def test_digits_splits_are_stable(digits):
    # the run seed does not move samples
    again = load_dataset(RunConfig(dataset="digits", rare_groups=(8,), rare_train_count=6, seed=5))
    for name, split in digits.splits.items():
        assert torch.equal(split.x, again.splits[name].x) and torch.equal(split.g, again.splits[name].g)


def test_rare_group_is_thinned_in_train_only(digits):
    from sklearn.datasets import load_digits

    per_digit = np.bincount(load_digits().target)
    test, val, train = (digits.group_counts(s) for s in ("test", "val", "train"))
    assert train[8] == 6
    # val and test keep the rare group's normal (stratified) share
    np.testing.assert_array_equal(test, np.round(0.3 * per_digit))
    np.testing.assert_array_equal(val, np.round(0.15 * (per_digit - test)))
    others = [d for d in range(10) if d != 8]
    np.testing.assert_array_equal(train[others], (per_digit - test - val)[others])


def test_synthetic_has_num_groups_groups():
    data = load_dataset(RunConfig(dataset="synthetic", num_groups=6, rare_groups=(2,), rare_train_count=5))
    assert data.num_groups == 6 and data.group_names == [f"group {i}" for i in range(6)]
    assert data.input_shape == (16,) and data.num_classes == 3
    for name in ("train", "val", "test"):
        assert data.group_counts(name).min() > 0 and int(data.splits[name].g.max()) == 5
    assert data.group_counts("train")[2] == 5
    assert data.group_counts("test")[2] == data.group_counts("test")[3] == pytest.approx(90, abs=3)


def test_no_validation_split_when_val_fraction_is_zero():
    data = load_dataset(RunConfig(dataset="synthetic", val_fraction=0.0))
    assert set(data.splits) == {"train", "test"}
    assert sum(len(s) for s in data.splits.values()) == 4 * 300


def test_diagnostic_window_is_evaluated_every_epoch_whatever_eval_every(tmp_path, make_cfg):
    cfg = make_cfg(method="nft", tolerance=None, prune_epochs=2, finetune_epochs=10, eval_every=4)
    result = run(cfg, tmp_path)
    epochs = sorted(set(result.run_metrics.epoch))
    # 0 (dense), the cadence (4, 8), the end of pruning (2), and the last 3 epochs (the window)
    assert epochs == [0, 2, 4, 8, 10, 11, 12]
    diag = result.summary["diagnostics"]
    assert diag["window"] == [10, 12] and diag["evaluations"]["train"] == 3
    assert diag["converged"] in (True, False)


def test_counter_survives_a_resume(ceag_run, results_dir, make_cfg):
    _, uninterrupted = ceag_run
    cfg = make_cfg()

    def stop(phase, done, total):
        if phase == "fine-tuning" and done == 2:  # run epoch 4 of 2 + 3
            raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, results_dir, progress=stop)
    resumed = run(cfg, results_dir)
    assert resumed.summary["resumed_from"] == "checkpoint"
    assert resumed.summary["diagnostics"] == uninterrupted.summary["diagnostics"]
    assert resumed.summary["diagnostics"]["constraints"]["source"] == "steps"


def test_no_evaluation_pass_is_made_twice(tmp_path, monkeypatch, make_cfg, one_thread):
    """The dense model is evaluated once per dense phase (its outputs are kept beside it), and a run's
    predictions come from its last evaluation, not from passes of their own."""
    import ceag.training.evaluation as evaluation
    from ceag.results.layout import DENSE_OUTPUTS, dense_dir

    passes = []
    real = evaluation.outputs
    monkeypatch.setattr(evaluation, "outputs", lambda model, split, *a, **k: passes.append(len(split))
                        or real(model, split, *a, **k))
    nft = make_cfg(method="nft", eval_every=1)
    splits = len(load_dataset(nft).splits)
    run(nft, tmp_path)
    # dense once; pruning evaluates after each of its 2 epochs, fine-tuning after each of its 3
    assert len(passes) == splits * (1 + nft.prune_epochs + nft.finetune_epochs)
    assert (dense_dir(tmp_path, nft) / DENSE_OUTPUTS).exists()
    passes.clear()
    result = run(nft.replace(method="ceag", tolerance=0.02), tmp_path)  # shares the dense model and the pruning
    assert len(passes) == splits * nft.finetune_epochs
    # the stored predictions are exactly those behind the stored accuracies
    frame = pd.read_parquet(run_dir(tmp_path, result.run_id) / "predictions.parquet")
    _, groups = result.final("test")
    test = frame[frame.split == "test"]
    accuracy = (test.y_pred == test.y_true).groupby(test.group_id).mean()
    assert np.allclose(accuracy.to_numpy(), groups.accuracy.to_numpy())
    dense = (test.dense_pred.astype(int) == test.y_true).groupby(test.group_id).mean()
    assert np.allclose(dense.to_numpy(), groups.dense_accuracy.to_numpy())
