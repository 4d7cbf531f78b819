"""Dense checkpoints: the shapes people save, the published layouts of the paper's dense models,
clear refusals, and no run folder for a refused checkpoint.

The published files are rebuilt here with random weights under their published key names and
shapes (enumerated in this file, not taken from our models), with a classifier bias that makes
one output win: after loading, the dense model must predict that output's dataset label.
"""

import pytest
import torch
import torchvision
from torch import nn

from ceag.cli import main
from ceag.config.run_config import RunConfig
from ceag.run.pipeline import run
from ceag.training.checkpoints import CheckpointError, fit_state_dict, read_state_dict
from ceag.training.models import build_model

SIZE = (3, 72, 72)  # > 64 pixels: the models keep their published (ImageNet) stems; small enough to be fast


def biased(state: dict, head: str, row: int) -> dict:
    """Random weights, except a classifier bias that makes output ``row`` win on any input."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            out[k] = torch.rand(v.shape, generator=gen) + 0.5 if "running_var" in k else (
                torch.randn(v.shape, generator=gen) * 0.05)
        else:
            out[k] = v.clone()
    out[f"{head}.bias"] = torch.zeros_like(out[f"{head}.bias"])
    out[f"{head}.bias"][row] = 1e4
    return out


def predictions(model, shape=SIZE, n=3):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))).argmax(1).tolist()


def load(name, num_classes, state, **kw):
    model = build_model(name, SIZE if name != "resnet56" else (3, 32, 32), num_classes, seed=0)
    fitted = fit_state_dict(model, state, **kw)
    model.load_state_dict(fitted.state)
    return model, fitted


# -- the published layouts ------------------------------------------------------------------
def chenyaofo_resnet56_keys() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of chenyaofo/pytorch-cifar-models ``cifar100_resnet56`` (resnet.py there)."""
    def bn(prefix, c):
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    keys = {"conv1.weight": (16, 3, 3, 3), **bn("bn1", 16)}
    inplanes = 16
    for k, planes in enumerate((16, 32, 64), start=1):
        for i in range(9):
            p = f"layer{k}.{i}"
            cin = inplanes if i == 0 else planes
            keys |= {f"{p}.conv1.weight": (planes, cin, 3, 3), **bn(f"{p}.bn1", planes),
                     f"{p}.conv2.weight": (planes, planes, 3, 3), **bn(f"{p}.bn2", planes)}
            if i == 0 and (k > 1):
                keys |= {f"{p}.downsample.0.weight": (planes, cin, 1, 1), **bn(f"{p}.downsample.1", planes)}
        inplanes = planes
    return keys | {"fc.weight": (100, 64), "fc.bias": (100,)}


@pytest.fixture(scope="module")
def chenyaofo_state():
    keys = chenyaofo_resnet56_keys()
    state = {k: torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.zeros(s)
             for k, s in keys.items()}
    return biased(state, "fc", 17)


def test_chenyaofo_cifar100_resnet56_loads_unchanged(chenyaofo_state):
    model, fitted = load("resnet56", 100, chenyaofo_state)
    assert fitted.note == "exact fit" and not fitted.needs_training
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == chenyaofo_resnet56_keys()
    assert predictions(model, (3, 32, 32)) == [17, 17, 17]
    # the 1x1 convolution shortcuts are there and pruned like the other convolutions
    from ceag.training.pruning import prunable_layers
    assert {"layer2.0.downsample.0", "layer3.0.downsample.0"} <= set(prunable_layers(model))


def test_the_authors_own_cifar_resnet_names_load_too(chenyaofo_state):
    theirs = {k.replace("downsample.0", "downsample_conv").replace("downsample.1", "downsample_bn"): v
              for k, v in chenyaofo_state.items()}
    theirs["layer2.0.conv1._extra_state"] = torch.zeros(1)  # their masked layers' mask slot
    path = "/dev/null"
    from ceag.training.checkpoints import normalize_names
    model, _ = load("resnet56", 100, normalize_names(theirs), path=path)
    assert predictions(model, (3, 32, 32)) == [17, 17, 17]


FAIRFACE_MODEL_ORDER = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                        "Middle Eastern", "Male", "Female", "0-2", "3-9", "10-19", "20-29", "30-39", "40-49",
                        "50-59", "60-69", "more than 70"]  # FairFace's predict.py: race, gender, age outputs


@pytest.fixture(scope="module")
def fairface_state():
    # FairFace's res34_fair_align_multi_7_20190809.pt: torchvision ResNet-34 keys with an 18-output fc
    return torchvision.models.resnet34(weights=None, num_classes=18).state_dict()


@pytest.mark.parametrize("target,output", [("race", "East Asian"), ("race", "White"), ("race", "Middle Eastern"),
                                           ("gender", "Female"), ("age", "20-29")])
def test_fairface_18_output_head_predicts_the_right_dataset_label(fairface_state, target, output):
    from ceag.training.checkpoints import dataset_labels

    labels = list(dataset_labels("fairface", target))
    state = biased(fairface_state, "fc", FAIRFACE_MODEL_ORDER.index(output))
    model, fitted = load("resnet34", len(labels), state, dataset="fairface", target=target)
    assert fitted.note.startswith(f"FairFace 18-output head: {target} rows")
    assert predictions(model) == [labels.index(output)] * 3


def test_fairface_race_rows_are_the_authors_reordering(fairface_state):
    # the paper's load_fairface_model (src/models/utils.py): idx = [3, 5, 1, 0, 6, 2, 4] for race
    _, fitted = load("resnet34", 7, fairface_state, dataset="fairface", target="race")
    assert fitted.note.endswith("rows 3, 5, 1, 0, 6, 2, 4")


def test_utkface_mobilenet_v2_with_torchvision_names_loads_unchanged():
    state = biased(torchvision.models.mobilenet_v2(weights=None, num_classes=5).state_dict(), "classifier.1", 3)
    model, fitted = load("mobilenet_v2", 5, state)
    assert fitted.note == "exact fit"
    assert predictions(model) == [3, 3, 3]


def test_torchvision_imagenet_weights_give_the_backbone_and_a_new_classifier():
    imagenet = biased(torchvision.models.resnet18(weights=None).state_dict(), "fc", 5)  # 1000 outputs
    fresh = build_model("resnet18", SIZE, 7, seed=0).state_dict()
    model, fitted = load("resnet18", 7, imagenet)
    assert fitted.needs_training and fitted.note == "ImageNet backbone; new classifier"
    got = model.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], imagenet["layer3.1.conv2.weight"])
    assert torch.equal(got["fc.weight"], fresh["fc.weight"]) and got["fc.weight"].shape == (7, 512)


@pytest.mark.parametrize("dense_epochs", [0, 1])
def test_a_1000_class_head_needs_dense_epochs(tmp_path, dense_epochs):
    path = tmp_path / "imagenet-shaped.pt"
    torch.save(build_model("cnn", (1, 8, 8), 1000, seed=0).state_dict(), path)
    cfg = RunConfig(dataset="digits", model="cnn", dense_checkpoint=str(path), dense_epochs=dense_epochs)
    from ceag.datasets.loading import load_dataset
    from ceag.training.checkpoints import dense_checkpoint_for
    if dense_epochs == 0:
        with pytest.raises(CheckpointError, match="set dense_epochs > 0 to train a new classifier"):
            dense_checkpoint_for(cfg, load_dataset(cfg))
    else:
        assert dense_checkpoint_for(cfg, load_dataset(cfg)).needs_training


def test_a_stem_that_does_not_fit_is_named(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18", SIZE, 10, seed=0).state_dict(), path)  # 3 channels, 7x7 stem
    cfg = RunConfig(dataset="digits", model="resnet18", dense_checkpoint=str(path))
    from ceag.datasets.loading import load_dataset
    from ceag.training.checkpoints import dense_checkpoint_for
    with pytest.raises(CheckpointError, match=r"key conv1.weight has shape \(64, 3, 7, 7\) in the checkpoint and "
                                              r"\(64, 1, 3, 3\) in the model"):
        dense_checkpoint_for(cfg, load_dataset(cfg))


# -- the shapes people save -------------------------------------------------------------------
def cnn_state():
    return build_model("cnn", (1, 8, 8), 10, seed=3).state_dict()


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"state_dict": s, "epoch": 3},
    lambda s: {"model": s, "optimizer": {"lr": 0.1}},
    lambda s: {"model_state_dict": s, "epoch": 9},
    lambda s: {f"module.{k}": v for k, v in s.items()},
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}},
], ids=["plain", "state_dict", "model", "model_state_dict", "dataparallel", "nested_dataparallel"])
def test_saved_shapes_load(tmp_path, wrap):
    state = cnn_state()
    path = tmp_path / "w.pt"
    torch.save(wrap(state), path)
    got = read_state_dict(path)
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    model.load_state_dict(fit_state_dict(model, got, path=path).state)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("obj", ["model", "nested"])
def test_a_pickled_model_is_refused_in_one_line(tmp_path, obj):
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    path = tmp_path / "whole.pt"
    torch.save(model if obj == "model" else {"model": model}, path)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    text = str(err.value)
    assert "\n" not in text and "model.state_dict()" in text and "torch.nn.modules.container.Sequential" in text


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"these are not weights")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        read_state_dict(path)


def test_a_mismatch_names_the_first_key_and_both_shapes():
    state = build_model("cnn", (1, 8, 8), 3, seed=0).state_dict()
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    with pytest.raises(CheckpointError, match=r"key 12\.weight has shape \(3, 64\) in the checkpoint and "
                                              r"\(10, 64\) in the model"):
        fit_state_dict(model, state)
    del state["0.bias"]
    with pytest.raises(CheckpointError, match=r"key 0\.bias \(shape \(32\)\) is missing"):
        fit_state_dict(build_model("cnn", (1, 8, 8), 3, seed=0), state)


@pytest.mark.parametrize("bad", ["pickled", "mismatch"])
def test_a_refused_checkpoint_writes_no_run_folder(tmp_path, capsys, bad):
    path = tmp_path / "dense.pt"
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    torch.save(model if bad == "pickled" else build_model("cnn", (1, 8, 8), 4, seed=0).state_dict(), path)
    results = tmp_path / "results"
    with pytest.raises(CheckpointError):
        run(RunConfig(dataset="digits", model="cnn", dense_checkpoint=str(path), device="cpu"), results)
    assert not (results / "runs").exists()
    with pytest.raises(SystemExit) as code:
        main(["run", "--dataset", "digits", "--model", "cnn", "--dense-checkpoint", str(path),
              "--results", str(results)])
    err = capsys.readouterr().err
    assert code.value.code == 1 and err.startswith("error: dense_checkpoint ") and err.count("\n") == 1
    assert "Traceback" not in err and not (results / "runs").exists()


def test_a_checkpoint_is_the_dense_model_of_a_run(tmp_path, one_thread):
    state = {k: v for k, v in build_model("mlp", (64,), 10, seed=7).state_dict().items()}
    path = tmp_path / "dense.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    cfg = RunConfig(dataset="digits", model="mlp", dense_checkpoint=str(path), prune_epochs=1, finetune_epochs=1,
                    device="cpu")
    result = run(cfg, tmp_path / "results")
    assert result.status == "finished" and result.summary["dense_trained"] is False
    # the dense accuracy the run measured is the checkpoint's (an untrained net: near chance)
    from ceag.datasets.loading import load_dataset
    from ceag.training.evaluation import predict
    net = build_model("mlp", (64,), 10, seed=0)
    net.load_state_dict(state)
    test = load_dataset(cfg).splits["test"]
    expected = float((predict(net, test)[0] == test.y).float().mean())
    assert result.to_json()["test"]["dense_accuracy"] == pytest.approx(expected)


def test_classifier_is_the_last_linear_layer():
    from ceag.training.checkpoints import classifier_name
    assert classifier_name(build_model("mobilenet_v2", SIZE, 5, 0)) == "classifier.1"
    assert classifier_name(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))) == "2"
