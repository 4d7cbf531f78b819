"""Structured pruning that removes channels: coupled groups, their masks, the smaller model, its footprint."""

import json

import pytest
import torch
from torch import nn

from ceag.training.footprint import Footprint, footprint, measure_latency, model_size
from ceag.training.models import BUILDERS, build_model
from ceag.training.pruning import MagnitudePruner, MaskedBatchNorm2d
from ceag.training.structured import (
    ShrinkPlan,
    apply_plan,
    channel_groups,
    channel_masks,
    load_rebuilt,
    rebuild,
    removal_plan,
    zero_pruned_biases_,
)

IMAGE = (3, 16, 16)


def shape_of(name):
    return (12,) if name == "mlp" else IMAGE


def perturb_bn_(model, seed=0):
    """Batch-norm statistics and affine parameters away from their defaults, so a dead channel's batch norm
    would output a non-zero constant unless it is masked."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.3 * torch.randn(c, generator=gen))


def pruned(name, sparsity=0.6, mode="layerwise", masked_bn=True, zero_biases=True, dense_first_conv=True):
    """A model of ``name`` with group masks at ``sparsity`` applied as a structured run would apply them."""
    shape = shape_of(name)
    model = build_model(name, shape, 5, seed=0)
    perturb_bn_(model)
    pruner = MagnitudePruner(model, "structured", masked_bn=masked_bn, dense_first_conv=dense_first_conv)
    groups = channel_groups(model, pruner.layers, shape)
    masks = channel_masks(model, groups, sparsity, mode=mode)
    pruner.load_state_dict(masks)
    pruner.apply_()
    if zero_biases:
        zero_pruned_biases_(model, masks)
    return model, pruner, groups, masks


def dead_rows(mask):
    return int((~mask.reshape(mask.shape[0], -1).any(1)).sum())


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def params(model):
    return sum(p.numel() for p in model.parameters())


# -- every architecture: the rebuilt model computes what the masked one does ----------------------------
@pytest.mark.parametrize("mode", ["layerwise", "global"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_rebuilt_model_matches_masked_model(name, mode):
    model, _, groups, masks = pruned(name, mode=mode)
    small = rebuild(model, masks, shape_of(name))
    x = torch.randn(4, *shape_of(name), generator=torch.Generator().manual_seed(1))
    want, got = logits(model, x), logits(small, x)
    assert want.abs().max() > 0.1
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert params(small) < 0.7 * params(model)
    assert not small.training
    assert not any(isinstance(m, MaskedBatchNorm2d) for m in small.modules())
    assert any(isinstance(m, MaskedBatchNorm2d) for m in model.modules()) == (name != "mlp")
    for g in groups:  # layerwise: every producer of a prunable group lost round(0.6 C) channels, dense ones none
        widths = {n: (lambda m: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)(small.get_submodule(n))
                  for n in g.producers}
        assert len(set(widths.values())) == 1, widths  # a group's producers keep the same channels
        width = g.channels - (round(0.6 * g.channels) if g.prunable else 0)
        if mode == "layerwise" or not g.prunable:
            assert set(widths.values()) == {width}, g.name


def test_masked_model_is_left_unchanged_by_rebuild():
    model, _, _, masks = pruned("resnet20")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rebuild(model, masks, IMAGE)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_per_layer_masks_rebuild_exactly_removing_only_channels_dead_in_the_whole_group():
    # MagnitudePruner's own structured masks pick channels layer by layer: a residual group's producers
    # disagree, so those channels stay (zeroed by their batch norms); the rest goes.
    shape = IMAGE
    model = build_model("resnet20", shape, 5, seed=0)
    perturb_bn_(model)
    pruner = MagnitudePruner(model, "structured", masked_bn=True)
    pruner.prune_to_(0.5)
    plan = removal_plan(model, pruner.masks, shape)
    stream = ("layer3.0.conv2", "layer3.0.downsample.0", "layer3.1.conv2", "layer3.2.conv2")
    dead = torch.stack([~pruner.masks[n].flatten(1).any(1) for n in stream]).all(0)
    assert 0 < int(dead.sum()) < 32 and plan.removed["layer3.0.conv2"] == tuple(dead.nonzero().flatten().tolist())
    assert len(plan.removed["layer2.0.conv1"]) == 16 and plan.widths["layer3.1.conv2"] == 64 - int(dead.sum())
    small = rebuild(model, pruner.masks, shape)
    x = torch.randn(4, *shape)
    want = logits(model, x)
    assert (logits(small, x) - want).abs().max() <= 1e-5 * want.abs().max()


# -- groups ------------------------------------------------------------------------------------
def test_residual_stream_is_one_group_and_loses_the_same_channels():
    model, _, groups, masks = pruned("resnet20", sparsity=0.5)
    by_name = {g.name: g for g in groups}
    stream = by_name["layer2.0.conv2"]
    assert stream.producers == ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2")
    assert set(stream.consumers) == {"layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1", "layer3.0.downsample.0"}
    rows = [masks[n].flatten(1).any(1) for n in stream.producers]
    assert all(torch.equal(rows[0], r) for r in rows) and int((~rows[0]).sum()) == 16
    # the first stage's stream is the stem's output: dense with the stem
    stem = by_name["conv1"]
    assert stem.dense_members == ("conv1",) and not stem.prunable
    assert set(stem.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}
    assert all(bool(masks[n].all()) for n in stem.producers[1:])
    assert dead_rows(masks["layer1.0.conv1"]) == 8  # inner channels of the first stage are still pruned


def test_stem_group_is_pruned_when_the_first_conv_is_not_dense():
    model, _, groups, masks = pruned("resnet20", sparsity=0.5, dense_first_conv=False)
    stem = next(g for g in groups if g.name == "conv1")
    assert stem.prunable and all(dead_rows(masks[n]) == 8 for n in stem.producers)
    small = rebuild(model, masks, IMAGE)
    assert small.conv1.out_channels == 8 and small.layer1[0].conv1.in_channels == 8


def test_depthwise_and_classifier_couplings_of_mobilenet():
    model = build_model("mobilenet_v2", IMAGE, 5, seed=0)
    groups = {g.name: g for g in channel_groups(model, MagnitudePruner(model, "structured").layers, IMAGE)}
    expand = groups["features.2.conv.0.0"]
    assert expand.producers == ("features.2.conv.0.0", "features.2.conv.1.0")  # depthwise: same channels
    assert expand.batch_norms == ("features.2.conv.0.1", "features.2.conv.1.1")
    assert groups["features.18.0"].consumers == ("classifier.1",) and groups["features.18.0"].prunable
    assert not groups["features.0.0"].prunable and not groups["classifier.1"].prunable
    assert groups["features.2.conv.2"].producers == ("features.2.conv.2", "features.3.conv.2")  # residual


# -- how many channels -------------------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ["round", "ceil"])
def test_layerwise_removes_the_rounded_count_in_every_prunable_group(rounding):
    _, _, groups, _ = pruned("resnet20", sparsity=0.0)
    model = build_model("resnet20", IMAGE, 5, seed=0)
    masks = channel_masks(model, groups, 0.3, rounding=rounding)
    expect = {16: 5, 32: 10, 64: 19 if rounding == "round" else 20}
    for g in groups:
        for n in (p for p in g.producers if p in masks):  # the classifier has no mask: it is dense
            assert dead_rows(masks[n]) == (expect[g.channels] if g.prunable else 0), n
    assert "fc" not in masks and "conv1" not in masks


def test_at_least_one_channel_stays_in_every_group():
    model = build_model("resnet20", IMAGE, 5, seed=0)
    groups = channel_groups(model, MagnitudePruner(model, "structured").layers, IMAGE)
    for mode in ("layerwise", "global"):
        masks = channel_masks(model, groups, 0.99, mode=mode)
        for g in groups:
            if g.prunable:
                assert dead_rows(masks[g.name]) == g.channels - 1, (mode, g.name)


def test_global_counts_channels_over_all_groups_and_is_scale_invariant_per_group():
    model = build_model("resnet20", IMAGE, 5, seed=0)
    groups = channel_groups(model, MagnitudePruner(model, "structured").layers, IMAGE)
    prunable = [g for g in groups if g.prunable]
    masks = channel_masks(model, groups, 0.4, mode="global")
    counts = {g.name: dead_rows(masks[g.name]) for g in prunable}
    assert sum(counts.values()) == round(0.4 * sum(g.channels for g in prunable))
    with torch.no_grad():  # rescaling one group (as batch norm allows) changes nothing
        for n in groups[5].producers:
            model.get_submodule(n).weight.mul_(100.0)
    again = channel_masks(model, groups, 0.4, mode="global")
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    with torch.no_grad():  # half of one group's channels weak relative to their group: global takes them first
        model.get_submodule("layer3.0.conv1").weight[:32].mul_(0.01)
    weak = channel_masks(model, groups, 0.4, mode="global")
    assert not weak["layer3.0.conv1"][:32].flatten(1).any(1).any()
    assert dead_rows(weak["layer3.0.conv1"]) > counts["layer3.0.conv1"]


@pytest.mark.parametrize("mode", ["layerwise", "global"])
def test_masks_are_cumulative(mode):
    model, pruner, groups, first = pruned("resnet20", sparsity=0.5, mode=mode)
    with torch.no_grad():  # pruned weights grown back large: they must stay pruned anyway
        for n, layer in pruner.layers.items():
            layer.weight.add_(10.0 * (~first[n]))
    for s in (0.7, 0.3):
        later = channel_masks(model, groups, s, mode=mode, masks=first)
        assert all(not (later[n] & ~first[n]).any() for n in first), s
    assert all(torch.equal(later[n], first[n]) for n in first)  # lower sparsity: nothing revived, nothing new


def test_masks_keep_the_format_of_magnitude_pruner():
    _, pruner, _, masks = pruned("cnn")
    assert set(masks) == set(pruner.masks)
    for n, m in masks.items():
        assert m.dtype == torch.bool and m.shape == pruner.layers[n].weight.shape
        rows = m.flatten(1)
        assert torch.equal(rows.any(1), rows.all(1))  # whole rows


# -- the architecture description ------------------------------------------------------------------------
def test_plan_round_trip_recreates_the_rebuilt_model_from_a_state_dict():
    model, _, _, masks = pruned("mobilenet_v2", sparsity=0.5)
    small = rebuild(model, masks, IMAGE)
    plan = removal_plan(model, masks, IMAGE)
    text = json.dumps(plan.to_json())
    assert ShrinkPlan.from_json(text) == plan
    again = load_rebuilt("mobilenet_v2", 5, text, small.state_dict())
    x = torch.randn(3, *IMAGE)
    assert torch.equal(logits(again, x), logits(small, x))
    assert plan.widths["features.18.0"] == 640 and again.classifier[1].in_features == 640


def test_plan_refuses_a_model_it_does_not_fit():
    model, _, _, masks = pruned("resnet20", sparsity=0.5)
    small = rebuild(model, masks, IMAGE)
    plan = removal_plan(model, masks, IMAGE)
    with pytest.raises(ValueError, match="applied already"):
        apply_plan(small, plan)
    with pytest.raises(ValueError, match="does not fit"):
        load_rebuilt("resnet20", 5, plan, build_model("resnet20", IMAGE, 5, seed=0).state_dict())
    with pytest.raises(ValueError, match="not a shrink plan"):
        ShrinkPlan.from_json({"removed": {}})


# -- errors ------------------------------------------------------------------------------------------------
def test_unmasked_batch_norm_is_refused():
    model, _, _, masks = pruned("resnet20", masked_bn=False)
    with pytest.raises(ValueError, match="masked_bn=True"):
        rebuild(model, masks, IMAGE)


def test_live_bias_of_a_pruned_unit_is_refused():
    model, _, _, masks = pruned("mlp", zero_biases=False)
    with pytest.raises(ValueError, match="zero_pruned_biases_"):
        rebuild(model, masks, (12,))


def test_rebuild_compares_logits_and_refuses_a_removal_that_changes_them():
    # sigmoid(0) = 0.5: a dead unit with a zero bias still feeds the next layer, which only the logits show
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3))
    masks = {"0": torch.ones(8, 6, dtype=torch.bool)}
    masks["0"][:4] = False
    with torch.no_grad():
        model[0].weight.mul_(masks["0"])
    zero_pruned_biases_(model, masks)
    assert len(removal_plan(model, masks, (6,)).removed["0"]) == 4
    with pytest.raises(ValueError, match="logits differ"):
        rebuild(model, masks, (6,))
    assert rebuild(model, masks, (6,), check=False)[0].out_features == 4


def test_unapplied_masks_and_misfit_masks_are_refused():
    model = build_model("cnn", IMAGE, 5, seed=0)
    pruner = MagnitudePruner(model, "structured", masked_bn=True)
    groups = channel_groups(model, pruner.layers, IMAGE)
    masks = channel_masks(model, groups, 0.5)
    with pytest.raises(ValueError, match="apply the masks first"):
        rebuild(model, masks, IMAGE)
    with pytest.raises(ValueError, match="do not match"):
        channel_masks(model, groups, 0.5, masks={"3": masks["3"]})
    with pytest.raises(ValueError, match="has shape"):
        channel_masks(model, groups, 0.5, masks={n: m[:1] for n, m in masks.items()})
    with pytest.raises(ValueError, match="sparsity"):
        channel_masks(model, groups, 1.0)
    with pytest.raises(ValueError, match="mode"):
        channel_masks(model, groups, 0.5, mode="random")
    with pytest.raises(ValueError, match="not a Conv2d or Linear"):
        channel_groups(model, ["1"], IMAGE)
    with pytest.raises(ValueError, match="no layer"):
        channel_groups(model, ["nope"], IMAGE)
    with pytest.raises(ValueError, match="input_shape"):
        channel_groups(model, pruner.layers, ())


# -- footprint -----------------------------------------------------------------------------------------
def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(100, 3))


def test_model_size_of_a_conv_and_a_linear_layer():
    size = model_size(tiny(), (1, 5, 5))
    # conv: 4 filters x 9 weights x 25 positions; linear: 100 x 3 weights + 3 bias adds; ReLU: 100 elements
    assert size.macs == 4 * 9 * 25 + 100 * 3 + 3
    assert size.ops == size.macs + 100
    assert size.params == 4 * 9 + 100 * 3 + 3
    assert 4 * size.params < size.state_dict_bytes < 4 * size.params + 4096


def test_model_size_counts_masked_batch_norm_like_batch_norm():
    model = build_model("resnet20", IMAGE, 5, seed=0)
    plain = model_size(model, IMAGE)
    MagnitudePruner(model, "structured", masked_bn=True)
    assert model_size(model, IMAGE) == plain


def test_rebuilt_model_is_smaller_in_every_count():
    model, _, _, masks = pruned("resnet20", sparsity=0.75)
    dense, small = model_size(model, IMAGE), model_size(rebuild(model, masks, IMAGE), IMAGE)
    assert small.params < 0.5 * dense.params and small.macs < 0.5 * dense.macs
    assert small.state_dict_bytes < 0.5 * dense.state_dict_bytes


def test_latency_records_its_conditions_and_restores_threads():
    model = tiny().train()
    before = torch.get_num_threads()
    fp = footprint(model, (1, 5, 5), batches=(1, 8), repeats=5, warmup=1, threads=1)
    assert isinstance(fp, Footprint) and [lat.batch for lat in fp.latencies] == [1, 8]
    for lat in fp.latencies:
        assert lat.threads == 1 and lat.device == "cpu" and lat.repeats == 5
        assert 0 < lat.min_ms <= lat.median_ms <= lat.max_ms and lat.iqr_ms >= 0
    assert fp.machine is not None and fp.machine.threads == 1 and fp.machine.torch_version == torch.__version__
    assert torch.get_num_threads() == before and model.training
    data = json.loads(json.dumps(fp.to_json()))
    assert data["size"]["macs"] == fp.size.macs and data["latencies"][1]["batch"] == 8
    with pytest.raises(ValueError, match="batch"):
        measure_latency(model, (1, 5, 5), 0)
    with pytest.raises(ValueError, match="input_shape"):
        model_size(model, (0, 5))
