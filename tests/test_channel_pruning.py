"""Channel-group pruning in runs: the model a run reports, rebuilt without its pruned channels, computes what the
masked one does; its footprint is recorded and stored; it exports and loads back; a killed run resumes exactly."""

import hashlib
import json

import pandas as pd
import pytest
import torch
from torch import nn

from ceag.config.errors import ConfigError
from ceag.datasets.loading import load_dataset
from ceag.results.layout import cache_dir, run_dir
from ceag.results.model_export import EXPORT_KEYS, export_model, load_exported, masks_from_weights, small_model
from ceag.run.pipeline import run
from ceag.store import connect, ingest_run
from ceag.training.engine import make_pruner
from ceag.training.evaluation import model_outputs
from ceag.training.models import BUILDERS, build_model
from tests.conftest import fast_config

CHANNELS = dict(pruning="channels", sparsity=0.5)
DIGITS_CNN = dict(dataset="digits", model="cnn_small", masked_bn=True, method="nft", dense_epochs=1,
                  prune_epochs=1, finetune_epochs=1, batch_size=128)


def shape_of(name):
    return (12,) if name == "mlp" else (3, 16, 16)


def trained_a_few_steps(name, kind, seed=0):
    """A model of ``name`` pruned by ``kind`` at two events, a few SGD steps after each, as a run prunes it."""
    torch.manual_seed(seed)
    shape = shape_of(name)
    cfg = fast_config(model=name, pruning=kind, masked_bn=True, sparsity=0.6)
    model = build_model(name, shape, 5, seed=seed)
    pruner = make_pruner(cfg, model, shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(8, *shape), torch.randint(0, 5, (8,))
    pruned_first = None
    model.train()
    for sparsity in (0.3, 0.6):
        pruner.prune_to_(sparsity)
        pruned_first = pruned_first or {n: ~m for n, m in pruner.masks.items()}
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.apply_()
    return model, pruner, pruned_first


def eval_logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


# -- every architecture: trained with channel pruning, rebuilt to the same predictions ---------------------------
# Every architecture trained with layerwise groups; global ranking on one model of each coupling (a plain stack,
# residual additions, depthwise convolutions). tests/test_structured.py rebuilds every architecture, untrained,
# under both modes.
@pytest.mark.parametrize("name,kind", [(name, "channels") for name in BUILDERS]
                         + [(name, "channels_global") for name in ("cnn_fc", "resnet18", "mobilenet_v2")])
def test_every_model_trained_with_channel_pruning_rebuilds_to_the_masked_models_predictions(name, kind):
    model, pruner, pruned_first = trained_a_few_steps(name, kind)
    for n, dead in pruned_first.items():  # cumulative: pruned at the first event, still pruned
        assert not (pruner.masks[n] & dead).any()
    for n, bn in pruner.batch_norms.items():  # masked batch norms follow the masks
        assert torch.equal(bn.alive_channels.bool(), pruner.masks[n].flatten(1).any(1))
    small, plan = small_model(model, pruner.masks, shape_of(name), kind)
    assert sum(len(v) for v in plan.removed.values()) > 0
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(64, *shape_of(name), generator=torch.Generator().manual_seed(1))
    want, got = eval_logits(model, x), eval_logits(small, x)
    assert torch.equal(want.argmax(1), got.argmax(1))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("masked_bn", [False, True])
def test_per_layer_structured_masks_rebuild_exactly_keeping_channels_that_output_a_constant(masked_bn):
    from ceag.training.pruning import MagnitudePruner

    model = build_model("cnn", (3, 16, 16), 5, seed=0)
    x = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    model.train()
    with torch.no_grad():
        model(x)  # batch-norm statistics away from their defaults
    pruner = MagnitudePruner(model, "structured", masked_bn=masked_bn)
    pruner.prune_to_(0.5)
    small, plan = small_model(model, pruner.masks, (3, 16, 16), "structured")
    removed = sum(len(v) for v in plan.removed.values())
    # without masked batch norm a pruned channel outputs its batch norm's shift: it stays
    assert removed == (64 if masked_bn else 0)  # half of the 64 + 64 channels of the two prunable convolutions
    torch.testing.assert_close(eval_logits(small, x), eval_logits(model, x), rtol=1e-4, atol=1e-4)


def test_dead_units_of_layers_without_batch_norm_keep_zero_biases_through_training():
    model, pruner, _ = trained_a_few_steps("mlp", "channels")
    for name in ("1", "3"):
        layer = model.get_submodule(name)
        dead = ~pruner.masks[name].any(1)
        assert dead.any() and (layer.bias[dead] == 0).all() and (layer.bias[~dead] != 0).any()
    # the classifier's outputs are the classes: never pruned by channel kinds
    assert "5" not in pruner.masks


# -- a run: footprint in summary.json and the store, the small model in the run folder -------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A channels run, an unstructured one and an NFT+ES (derived) channels run on synthetic data, and a channels
    run of a CNN on digits (layers named "0" to "12"), ingested."""
    results = tmp_path_factory.mktemp("results")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"channels": run(fast_config(**CHANNELS), results), "unstructured": run(fast_config(), results),
               "nft_es": run(fast_config(method="nft_es", **CHANNELS), results),
               "cnn": run(fast_config(**{**DIGITS_CNN, **CHANNELS}), results)}
    finally:
        torch.set_num_threads(before)
    for r in out.values():
        ingest_run(results, r.run_id)
    return results, out


def test_channel_run_records_its_footprint_and_keeps_its_small_model(runs):
    results, out = runs
    result = out["channels"]
    fp = result.summary["footprint"]
    assert fp["model"] == "rebuilt" and fp["error"] is None and fp["pruning"] == "channels"
    assert fp["channels"] == {"total": 128, "removed": 64, "pruned": 64}  # the MLP's two hidden layers of 64
    assert fp["channel_sparsity"] == result.summary["channel_sparsity"] == 0.5
    shown = result.to_json()  # what `run --json` prints
    assert shown["footprint"] == fp and shown["channel_sparsity"] == 0.5
    assert fp["weight_sparsity"] == result.summary["achieved_sparsity"]
    assert fp["pruned"]["params"] < fp["dense"]["params"] and fp["pruned"]["macs"] < fp["dense"]["macs"]
    assert fp["pruned"]["size_bytes"] < fp["dense"]["size_bytes"]
    for which in ("dense", "pruned"):
        assert set(fp[which]["latency_ms"]) == {"cpu_b1", "cpu_b64"}
        assert all(v > 0 for v in fp[which]["latency_ms"].values())
    assert {(lat["model"], lat["batch"], lat["device"], lat["rounds"]) for lat in fp["latencies"]} == {
        (m, b, "cpu", 3) for m in ("dense", "pruned") for b in (1, 64)}
    assert fp["machine"]["torch_version"] == torch.__version__ and fp["machine"]["threads"] == 1
    phases = result.summary["phases"]
    assert phases["footprint"]["kind"] == "footprint" and phases["footprint"]["seconds"] > 0
    folder = run_dir(results, result.run_id)
    assert json.loads((folder / "summary.json").read_text())["footprint"] == fp
    plan = json.loads((folder / "shrink_plan.json").read_text())
    assert sorted(plan) == ["input_shape", "removed", "widths"] and plan["widths"]["1"] == 32
    state = torch.load(folder / "model_small.pt", weights_only=True)
    assert state["1.weight"].shape == (32, 16)


def test_unstructured_run_measures_the_masked_model_at_the_dense_models_size(runs):
    results, out = runs
    fp = out["unstructured"].summary["footprint"]
    assert fp["model"] == "masked" and fp["channel_sparsity"] == 0.0 and fp["channels"]["removed"] == 0
    assert fp["weight_sparsity"] == pytest.approx(0.8, abs=0.01)
    for key in ("params", "macs", "size_bytes"):
        assert fp["pruned"][key] == fp["dense"][key]
    assert not (run_dir(results, out["unstructured"].run_id) / "model_small.pt").exists()


def test_footprint_reaches_the_store_and_runs_without_one_keep_nulls(runs):
    results, out = runs
    folder = run_dir(results, out["unstructured"].run_id)
    summary = json.loads((folder / "summary.json").read_text())
    old = {k: v for k, v in summary.items() if k not in ("footprint", "channel_sparsity")}
    (folder / "summary.json").write_text(json.dumps(old))  # as a run made before footprints were measured
    try:
        ingest_run(results, out["unstructured"].run_id)
        with connect(results) as con:
            rows = con.execute("SELECT run_id, params, macs, size_bytes, latency_cpu_b1_ms, latency_cpu_b64_ms, "
                               "latency_gpu_b1_ms, dense_params, dense_latency_cpu_b64_ms, channel_sparsity, "
                               "footprint_model, latency_threads, CAST(footprint AS VARCHAR) FROM runs").df()
    finally:
        (folder / "summary.json").write_text(json.dumps(summary))
    rows = rows.set_index("run_id")
    fp = out["channels"].summary["footprint"]
    row = rows.loc[out["channels"].run_id]
    assert (row.params, row.macs, row.size_bytes) == (fp["pruned"]["params"], fp["pruned"]["macs"],
                                                      fp["pruned"]["size_bytes"])
    assert row.latency_cpu_b1_ms == fp["pruned"]["latency_ms"]["cpu_b1"] and pd.isna(row.latency_gpu_b1_ms)
    assert row.dense_params == fp["dense"]["params"] and row.dense_latency_cpu_b64_ms > 0
    assert (row.channel_sparsity, row.footprint_model, row.latency_threads) == (0.5, "rebuilt", 1)
    assert json.loads(row.iloc[-1])["channels"]["removed"] == 64
    assert rows.loc[out["nft_es"].run_id].params == row.params  # derived: the NFT run's architecture
    old_row = rows.loc[out["unstructured"].run_id]
    assert old_row.isna().all()


# -- export ------------------------------------------------------------------------------------------------------
def masked_predictions(results, result):
    """Predictions of the run's saved model (masked, every split), as the run made them."""
    data = load_dataset(result.config, cache_dir(results))
    model = build_model(result.config.model, data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(torch.load(run_dir(results, result.run_id) / "model.pt", weights_only=True))
    masks_from_weights(model, result.config)
    return data, {s: o.pred for s, o in model_outputs(model.eval(), data).items()}


@pytest.mark.parametrize("which", ["channels", "unstructured", "nft_es", "cnn"])
def test_export_and_load_give_the_runs_predictions(runs, tmp_path, which):
    results, out = runs
    result = out[which]
    path = export_model(results, result.run_id, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert set(payload) == set(EXPORT_KEYS) and payload["run_id"] == result.run_id
    assert (payload["model"], payload["num_classes"], payload["input_shape"]) == (
        ("cnn_small", 10, [1, 8, 8]) if which == "cnn" else ("mlp", 3, [16]))
    assert payload["group_names"] == result.summary["group_names"]
    assert payload["class_names"] == [str(c) for c in result.summary["class_names"]]
    loaded = load_exported(path)
    data, want = masked_predictions(results, result)
    got = model_outputs(loaded, data)
    for split in data.splits:
        assert torch.equal(got[split].pred, want[split])
    stored = pd.read_parquet(run_dir(results, result.run_id) / "predictions.parquet")
    test = stored[stored.split == "test"].sort_values("sample_id")
    assert test.y_pred.tolist() == got["test"].pred.tolist()
    params = sum(p.numel() for p in loaded.parameters())
    assert params == result.summary["footprint"]["pruned"]["params"] or which == "nft_es"


def test_export_refuses_an_unknown_suffix_and_onnx_without_onnx(runs, tmp_path):
    import importlib.util

    results, out = runs
    with pytest.raises(ValueError, match="FILE.pt"):
        export_model(results, out["channels"].run_id, tmp_path / "model.txt")
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        with pytest.raises(ValueError, match="ONNX export needs the onnx"):
            export_model(results, out["cnn"].run_id, tmp_path / "model.onnx")
    else:  # the same logits from the ONNX graph, at another batch size than it was traced with
        from onnx.reference import ReferenceEvaluator

        onnx_file = export_model(results, out["cnn"].run_id, tmp_path / "model.onnx")
        x = torch.randn(5, 1, 8, 8)
        got = ReferenceEvaluator(str(onnx_file)).run(None, {"input": x.numpy()})[0]
        want = eval_logits(load_exported(export_model(results, out["cnn"].run_id, tmp_path / "m.pt")), x)
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="not a model exported by ceag"):
        load_exported(bad)


def test_export_option_of_the_command_line(runs, tmp_path, capsys):
    from ceag.cli import main

    results, out = runs
    run_id = out["channels"].run_id
    assert main(["export", "--results", str(results), "--model", run_id, "--out", str(tmp_path / "m.pt")]) == 0
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["run_id"] == run_id and set(EXPORT_KEYS) <= set(state)
    assert "wrote the model of run" in capsys.readouterr().err
    for argv, message in (([run_id, "--out", "-"], "a model is written to a file"),
                          (["0123456789abcdef", "--out", str(tmp_path / "n.pt")], "0123456789abcdef")):
        with pytest.raises(SystemExit) as exit_:
            main(["export", "--results", str(results), "--model", *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


# -- resume, settings, and the per-layer "structured" kind as it was --------------------------------------------
class Interrupt(Exception):
    pass


def test_killed_channel_run_resumes_to_identical_results(tmp_path, one_thread):
    cfg = fast_config(**CHANNELS)
    whole = run(cfg, tmp_path / "a")

    def stop(phase, done, total):
        if phase == "fine-tuning" and done == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "b", progress=stop)
    resumed = run(cfg, tmp_path / "b")
    assert resumed.summary["resumed_from"] == "checkpoint"
    for name in ("run_metrics", "group_metrics", "duals"):
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(whole, name), check_exact=True)
    for file in ("model.pt", "model_small.pt"):
        a, b = (torch.load(run_dir(tmp_path / r, cfg.run_id) / file, weights_only=True) for r in ("a", "b"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (run_dir(tmp_path / "a", cfg.run_id) / "shrink_plan.json").read_text() == \
        (run_dir(tmp_path / "b", cfg.run_id) / "shrink_plan.json").read_text()


def test_channel_pruning_needs_masked_batch_norm_and_magnitude():
    with pytest.raises(ConfigError, match="masked batch norm.*would change the model's predictions"):
        fast_config(model="cnn", pruning="channels", masked_bn=False)
    with pytest.raises(ConfigError, match="criterion.*use criterion 'magnitude'"):
        fast_config(model="cnn", pruning="channels_global", masked_bn=True, criterion="snip")
    with pytest.raises(ConfigError, match="unstructured"):
        fast_config(method="fairgrape", pruning="channels", tolerance=None)
    # no batch norm to mask in the MLP; the classifier keeps its outputs (the classes) whatever is asked
    cfg = fast_config(pruning="channels", masked_bn=False, dense_last_layer=False)
    assert cfg.dense_last_layer is True and cfg.run_id == fast_config(pruning="channels").run_id
    assert fast_config(pruning="structured", dense_last_layer=False).dense_last_layer is False


def metric_hash(result):
    h = hashlib.sha256()
    for name in ("run_metrics", "group_metrics", "duals"):
        h.update(getattr(result, name).to_csv(index=False, float_format="%.10g").encode())
    return h.hexdigest()[:16]


# Run ids and metrics of "structured" runs as they were before channel-group pruning existed (CPU, one thread).
STRUCTURED_BEFORE = [({"pruning": "structured"}, "4f20106f1dbb966b", "b0e9cde0b5cb906e"),
                     ({"pruning": "structured", **DIGITS_CNN}, "367bdde916725962", "0584c64a38ba04f3")]


@pytest.mark.parametrize("changes,run_id,metrics", STRUCTURED_BEFORE)
def test_structured_runs_keep_their_ids_and_results(tmp_path, one_thread, changes, run_id, metrics):
    cfg = fast_config(**changes)
    assert cfg.run_id == run_id
    result = run(cfg, tmp_path)
    assert metric_hash(result) == metrics
    fp = result.summary["footprint"]  # rebuilt, without the pruned channels that output exactly zero
    assert fp["model"] == "rebuilt" and fp["error"] is None and fp["channels"]["pruned"] > 0
    if cfg.model == "mlp":  # a pruned unit's bias still feeds the next layer: nothing goes
        assert fp["channels"]["removed"] == 0 and fp["pruned"]["params"] == fp["dense"]["params"]
    else:  # a chain of convolutions with masked batch norm: each layer is its own group, every pruned channel goes
        assert fp["channels"]["removed"] == fp["channels"]["pruned"] and fp["pruned"]["macs"] < fp["dense"]["macs"]
