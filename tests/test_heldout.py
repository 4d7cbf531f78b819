"""Held-out multipliers (constraint_data="val"): the dual step reads validation samples only."""

import json

import numpy as np
import pytest
import torch

from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig
from ceag.datasets import load_dataset
from ceag.training.engine import train, train_dense
from ceag.training.evaluation import evaluate
from ceag.training.methods.buffers import ReplayBuffer
from ceag.training.methods.heldout import HeldoutStream
from ceag.training.models import build_model
from tests.conftest import fast_config

CPU = torch.device("cpu")


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(len(x), -1).numpy()}


def test_the_default_keeps_run_ids_and_val_enters_them():
    plain = RunConfig(method="ceag", tolerance=0.02)
    assert "constraint_data" not in plain.canonical() and "heldout_every" not in plain.canonical()
    held = plain.replace(constraint_data="val")
    assert held.canonical()["constraint_data"] == "val" and held.run_id != plain.run_id
    assert held.replace(heldout_every=3).run_id != held.run_id
    assert plain.replace(heldout_every=3).run_id == plain.run_id  # unused while the data is train


def test_bad_constraint_settings_are_named():
    with pytest.raises(ConfigError, match="constraint_data='tst'.*train, val"):
        RunConfig(method="ceag", constraint_data="tst")
    with pytest.raises(ConfigError, match="constraint_data.*el_rb"):
        RunConfig(method="el_rb", constraint_data="val")
    with pytest.raises(ConfigError, match="val_fraction.*validation split"):
        RunConfig(method="ceag", constraint_data="val", val_fraction=0.0)
    with pytest.raises(ConfigError, match="heldout_every"):
        RunConfig(method="ceag", constraint_data="val", heldout_every=0)
    # Methods without a dual step read nothing: the setting is not part of their run.
    assert RunConfig(method="nft", constraint_data="val").constraint_data == "train"


def test_validation_split_is_disjoint_from_train_and_test():
    cfg = fast_config(constraint_data="val")
    data = load_dataset(cfg)
    rows = {s: _rows(data.splits[s].x) for s in ("train", "val", "test")}
    assert all(len(r) == len(data.splits[s]) for s, r in rows.items())  # continuous features: no duplicates
    assert not rows["val"] & rows["train"] and not rows["val"] & rows["test"] and not rows["train"] & rows["test"]
    # digits (whose images may repeat): the split indices themselves are disjoint
    from ceag.datasets.builtin import _make_splits
    n = 1797
    ids = np.arange(n, dtype=np.float32)[:, None]
    labels = np.arange(n) % 10
    parts = _make_splits(ids, labels, labels.copy(), RunConfig(method="ceag", constraint_data="val"), 10)
    sets = {s: set(parts[s].x[:, 0].int().tolist()) for s in parts}
    assert sets["val"] and not sets["val"] & sets["train"] and not sets["val"] & sets["test"]


def test_the_dual_step_never_reads_a_training_sample(monkeypatch, one_thread):
    cfg = fast_config(constraint_data="val", heldout_every=2)
    data = load_dataset(cfg)
    train_rows, val_rows = _rows(data.splits["train"].x), _rows(data.splits["val"].x)
    dense = train_dense(cfg, data, CPU)
    forwarded, pushes, in_heldout = [], [], [False]

    original_eval, original_push = HeldoutStream.evaluate_batch, ReplayBuffer.push_

    def spy_eval(self):
        in_heldout[0] = True
        handle = self.model.register_forward_pre_hook(lambda m, args: forwarded.append(args[0].detach().clone()))
        try:
            out = original_eval(self)
        finally:
            handle.remove()
            in_heldout[0] = False
        correct, groups, idx = out
        split = self.split
        assert np.array_equal(groups, split.g[torch.as_tensor(idx)].numpy())
        return out

    def spy_push(self, values, groups, counts=None):
        pushes.append((np.asarray(values).copy(), np.asarray(groups).copy(), len(forwarded)))
        return original_push(self, values, groups, counts)

    monkeypatch.setattr(HeldoutStream, "evaluate_batch", spy_eval)
    monkeypatch.setattr(ReplayBuffer, "push_", spy_push)
    outcome = train(cfg, data, dense, CPU)
    assert outcome.diverged is None
    steps = len(outcome.state.trace_steps)
    assert forwarded and len(pushes) == len(forwarded), "one push per validation batch, nothing else"
    # every batch pushed was a validation batch, fed to the model (prepared inputs equal raw rows here)
    for x in forwarded:
        got = _rows(x)
        assert got <= val_rows and not got & train_rows
    val = data.splits["val"]
    group_of = {r.tobytes(): int(g) for r, g in zip(val.x.reshape(len(val), -1).numpy(), val.g, strict=True)}
    for (values, groups, n_seen), x in zip(pushes, forwarded, strict=True):
        # each push holds exactly the batch just forwarded: its samples' groups, in order
        assert n_seen >= 1 and len(values) == len(x)
        assert groups.tolist() == [group_of[r.tobytes()] for r in x.reshape(len(x), -1).numpy()]
    assert steps > 0 and len(forwarded) < steps  # drawn every other step, not every step


def test_validation_batches_leave_batch_norm_and_gradients_alone():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    model.train()
    model(torch.randn(32, 1, 8, 8))  # running statistics that differ from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = 50
    val = _split(torch.randn(n, 1, 8, 8), torch.randint(0, 10, (n,)), torch.arange(n) % 5)
    stats = evaluate(model, val, 5)
    model.train()
    stream = HeldoutStream(model, val, stats, 5, batch_size=16, every=1, seed=0, buffer_size=4, replay_buffer=True)
    for _ in range(6):
        stream.estimates()
    assert model.training  # the training mode is restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())
    assert stream.draws == 6 and stream.buffer.full_array().all()


def _split(x, y, g):
    from ceag.datasets.base import Split

    return Split(x, y, g)


def test_held_out_estimates_compare_with_the_dense_model_on_validation():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    val = _split(torch.randn(30, 4), torch.randint(0, 3, (30,)), torch.arange(30) % 3)
    stats = evaluate(model, val, 3)
    stream = HeldoutStream(model, val, stats, 3, batch_size=30, every=1, seed=0, buffer_size=10, replay_buffer=True)
    est, ready, _ = stream.estimates()
    # the same model as the dense one: its estimates are the dense accuracies on validation
    assert ready.all()
    np.testing.assert_allclose(est, stats.accuracy)
    np.testing.assert_allclose(stream.prior, np.asarray(stats.n) / 30)


def test_kill_and_resume_continues_the_validation_stream_exactly(tmp_path, one_thread):
    from ceag.run.pipeline import run

    cfg = fast_config(constraint_data="val", heldout_every=1, finetune_epochs=4)
    straight = run(cfg, tmp_path / "a")

    def kill_after_two_finetune_epochs(phase, done, total):
        if phase == "fine-tuning" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", progress=kill_after_two_finetune_epochs)
    ckpt = torch.load(tmp_path / "b" / "runs" / cfg.run_id / "checkpoint.pt", weights_only=True)
    assert ckpt["method"]["heldout"]["draws"] > 0  # the stream's state travels with the checkpoint
    resumed = run(cfg, tmp_path / "b")
    assert resumed.summary["resumed_from"] == "checkpoint"
    for name in ("run_metrics", "group_metrics", "duals"):
        a, b = getattr(straight, name), getattr(resumed, name)
        assert a.equals(b), name
    assert resumed.summary["constraint_data"]["split"] == "val"


def test_the_run_records_which_data_drove_its_multipliers(tmp_path, one_thread):
    from ceag.run.pipeline import run

    held = run(fast_config(constraint_data="val"), tmp_path).to_json()
    plain = run(fast_config(), tmp_path).to_json()
    nft = run(fast_config(method="nft", tolerance=None), tmp_path).to_json()
    assert held["constraint_data"]["split"] == "val"
    assert held["constraint_data"]["samples"] == sum(held["constraint_data"]["per_group"]) == held["val"]["groups"][
        0]["n"] + sum(g["n"] for g in held["val"]["groups"][1:])
    assert "seed" in held["constraint_data"]["split_rule"]
    assert plain["constraint_data"] == {"split": "train", "samples": len(load_dataset(fast_config()).splits["train"])}
    assert nft["constraint_data"]["split"] is None
    json.dumps(held)


def test_held_out_ceag_is_its_own_method_on_the_frontier(tmp_path, one_thread):
    """Plain and held-out CEAG of the same setting are never averaged into one frontier point."""
    from ceag.config.vocabulary import METHOD_LABELS
    from ceag.present.plots.frontier import frontier
    from ceag.run.pipeline import run
    from ceag.store import ingest_all, queries

    held = run(fast_config(constraint_data="val"), tmp_path)
    plain = run(fast_config(), tmp_path)
    ingest_all(tmp_path)
    summary = queries.frontier_summary(tmp_path, dataset="synthetic")
    ids = {m: list(ids) for m, ids in zip(summary.method, summary.run_ids, strict=True)}
    assert ids == {"ceag": [plain.run_id], "ceag_heldout": [held.run_id]}
    names = {t.name for t in frontier(summary).data}
    assert {METHOD_LABELS["ceag"], METHOD_LABELS["ceag_heldout"]} <= names


def test_the_multipliers_page_names_the_validation_split_for_held_out_runs(tmp_path, monkeypatch, one_thread):
    from streamlit.testing.v1 import AppTest

    from ceag.run.pipeline import run
    from ceag.store import ingest_all
    from tests.helpers import ROOT

    held = run(fast_config(constraint_data="val"), tmp_path)
    ingest_all(tmp_path)
    monkeypatch.setenv("CEAG_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["runs"] = held.run_id
    at.run()
    at.switch_page("dashboard/multipliers.py").run()
    assert not at.exception, [e.value for e in at.exception]
    (table,) = [d.value for d in at.dataframe if "max_multiplier" in d.value.columns]
    assert any(c.startswith("val, evaluated") for c in table.columns)
    assert not any(c.startswith("train, evaluated") for c in table.columns)
    assert any("share of the validation split" in c.value for c in at.caption)
