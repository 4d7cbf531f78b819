"""Gradual magnitude pruning: schedule, per-layer / global / structured masks, fixed zeros."""

import pytest
import torch
from torch import nn

from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner, cubic_sparsity, model_sparsity, prunable_layers


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 10, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(40, 30), nn.ReLU(),
        nn.Linear(30, 5),
    )


def layer_sparsity(pruner):
    return {n: 1.0 - float(m.float().mean()) for n, m in pruner.masks.items()}


# -- schedule -----------------------------------------------------------------------------
def test_cubic_schedule_endpoints():
    assert cubic_sparsity(0, 0.9, 10) == 0.0
    assert cubic_sparsity(10, 0.9, 10) == 0.9
    assert cubic_sparsity(25, 0.9, 10) == 0.9
    assert cubic_sparsity(5, 0.9, 10) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert cubic_sparsity(0, 0.9, 0) == 0.9  # no pruning phase: prune at once
    assert cubic_sparsity(0, 0.9, 10, initial=0.2) == pytest.approx(0.2)


def test_cubic_schedule_is_monotone_and_front_loaded():
    values = [cubic_sparsity(e, 0.95, 15) for e in range(20)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    steps = [b - a for a, b in zip(values[:16], values[1:16], strict=False)]
    assert all(b < a for a, b in zip(steps, steps[1:], strict=False))  # most pruning happens early


# -- which layers ---------------------------------------------------------------------------
def test_prunable_layers_skip_first_conv_and_last_linear():
    net = small_net()
    assert list(prunable_layers(net, dense_first_conv=True, dense_last_layer=True)) == ["2", "6"]
    assert list(prunable_layers(net, dense_first_conv=False, dense_last_layer=False)) == ["0", "2", "6", "8"]
    assert list(prunable_layers(net, dense_first_conv=True, dense_last_layer=False)) == ["2", "6", "8"]


def test_dense_layers_stay_dense_when_pruning():
    net = small_net()
    pruner = MagnitudePruner(net, "unstructured", dense_first_conv=True, dense_last_layer=True)
    pruner.prune_to_(0.9)
    assert (net[0].weight != 0).all() and (net[8].weight != 0).all()
    assert (net[2].bias != 0).all()  # biases stay dense
    assert layer_sparsity(pruner)["2"] == pytest.approx(0.9, abs=1 / net[2].weight.numel())


def test_cnn_first_conv_and_classifier_kept_dense():
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    layers = prunable_layers(model, dense_first_conv=True, dense_last_layer=True)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert all(m is not first_conv and m is not last_linear for m in layers.values())
    assert len(layers) == 2


def test_no_prunable_layer_left_is_an_error():
    with pytest.raises(ValueError, match="no prunable layer"):
        MagnitudePruner(nn.Sequential(nn.Linear(3, 2)), dense_last_layer=True)


# -- how much -----------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.3, 0.77, 0.95])
def test_unstructured_hits_target_in_every_layer(target):
    net = small_net()
    pruner = MagnitudePruner(net, "unstructured", dense_first_conv=False, dense_last_layer=False)
    pruner.prune_to_(target)
    for name, module in pruner.layers.items():
        n = module.weight.numel()
        assert layer_sparsity(pruner)[name] == pytest.approx(target, abs=1 / n), name
        # the kept weights are the largest ones of the layer
        kept = module.weight[pruner.masks[name]].abs()
        assert (module.weight[~pruner.masks[name]] == 0).all()
        original = small_net()[int(name)].weight.detach().abs()
        assert kept.min() >= original[~pruner.masks[name]].max()
    total = sum(m.numel() for m in pruner.masks.values())
    assert pruner.achieved_sparsity() == pytest.approx(target, abs=len(pruner.masks) / total)


@pytest.mark.parametrize("target", [0.5, 0.9])
def test_global_hits_target_overall(target):
    net = small_net()
    pruner = MagnitudePruner(net, "global", dense_first_conv=False, dense_last_layer=False)
    pruner.prune_to_(target)
    total = sum(m.numel() for m in pruner.masks.values())
    assert pruner.achieved_sparsity() == pytest.approx(target, abs=1 / total)
    # one threshold for all layers: every kept weight is at least every pruned one
    original = small_net()
    kept = torch.cat([original[int(n)].weight.detach().abs()[m] for n, m in pruner.masks.items()])
    dropped = torch.cat([original[int(n)].weight.detach().abs()[~m] for n, m in pruner.masks.items()])
    assert kept.min() >= dropped.max()
    # ... so layers differ (this net's layers have different init scales)
    assert len({round(s, 3) for s in layer_sparsity(pruner).values()}) > 1


def test_structured_zeros_whole_output_channels():
    net = small_net()
    pruner = MagnitudePruner(net, "structured", dense_first_conv=False, dense_last_layer=True)
    pruner.prune_to_(0.5)
    for name, module in pruner.layers.items():
        rows = pruner.masks[name].flatten(1)
        assert (rows.all(1) | ~rows.any(1)).all(), "a channel is partly pruned"
        pruned_rows = ~rows.any(1)
        assert int(pruned_rows.sum()) == round(0.5 * rows.shape[0])
        assert (module.weight[pruned_rows] == 0).all()
        assert (module.weight[~pruned_rows] != 0).all()


def test_structured_keeps_one_channel():
    net = small_net()
    pruner = MagnitudePruner(net, "structured", dense_first_conv=False, dense_last_layer=False)
    pruner.prune_to_(0.99)
    for mask in pruner.masks.values():
        assert mask.flatten(1).all(1).sum() >= 1


@pytest.mark.parametrize("kind", ["unstructured", "global", "structured"])
def test_repeated_targets_do_not_compound(kind):
    net = small_net()
    pruner = MagnitudePruner(net, kind, dense_first_conv=False, dense_last_layer=False)
    pruner.prune_to_(0.5)
    first = {n: m.clone() for n, m in pruner.masks.items()}
    s = pruner.achieved_sparsity()
    assert s == pytest.approx(0.5, abs=0.05)
    pruner.prune_to_(0.5)
    assert pruner.achieved_sparsity() == s
    assert all(torch.equal(first[n], pruner.masks[n]) for n in first)
    pruner.prune_to_(0.75)
    assert pruner.achieved_sparsity() == pytest.approx(0.75, abs=0.05)
    # pruned weights stay pruned
    assert all(not (pruner.masks[n] & ~first[n]).any() for n in first)


# -- fixed zeros ----------------------------------------------------------------------------
def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay():
    net = small_net()
    pruner = MagnitudePruner(net, "unstructured", dense_first_conv=False, dense_last_layer=False)
    pruner.prune_to_(0.8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    moved = False
    for _ in range(5):
        x = torch.randn(8, 1, 6, 6, generator=gen)
        y = torch.randint(0, 5, (8,), generator=gen)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # the step itself moves pruned weights (else this test would prove nothing) ...
        moved |= any((m.weight[~pruner.masks[n]] != 0).any() for n, m in pruner.layers.items())
        pruner.apply_()
        # ... and apply_ puts them back to exactly zero
        for n, m in pruner.layers.items():
            assert (m.weight[~pruner.masks[n]] == 0).all()
    assert moved
    assert pruner.achieved_sparsity() == pytest.approx(0.8, abs=0.01)
    assert model_sparsity(net) == pytest.approx(0.8, abs=0.01)


def test_masks_state_dict_round_trip():
    net = small_net()
    pruner = MagnitudePruner(net, "unstructured")
    pruner.prune_to_(0.6)
    state = pruner.state_dict()
    assert all(m.dtype == torch.bool for m in state.values())

    other_net = small_net(seed=1)
    other = MagnitudePruner(other_net, "unstructured")
    other.load_state_dict(state)
    assert set(other.masks) == set(pruner.masks)
    assert all(torch.equal(other.masks[n], pruner.masks[n]) for n in pruner.masks)
    assert other.achieved_sparsity() == pruner.achieved_sparsity()
    other.apply_()
    for n, m in other.layers.items():
        assert torch.equal(m.weight == 0, ~pruner.masks[n])

    wrong = MagnitudePruner(small_net(), "unstructured", dense_first_conv=False)
    with pytest.raises(ValueError, match="masks do not match"):
        wrong.load_state_dict(state)


def test_channel_kinds_choose_their_masks_by_channel_groups():
    model = small_net()
    with pytest.raises(ValueError, match="kind must be one of"):
        MagnitudePruner(model, "rows")
    pruner = MagnitudePruner(model, "channels")
    with pytest.raises(ValueError, match="chooses its masks by channel groups"):
        pruner.prune_to_(0.5)
    calls = []

    def choose(masks, sparsity):  # drops the first half of every layer's rows, keeps what was pruned
        calls.append(sparsity)
        out = {}
        for name, mask in masks.items():
            keep = mask.clone()
            keep[: int(sparsity * mask.shape[0])] = False
            out[name] = keep
        return out

    pruner.choose = choose
    pruner.prune_to_(0.5)
    assert calls == [0.5]
    for name, layer in pruner.layers.items():
        rows = pruner.masks[name].flatten(1).any(1)
        assert not rows[: layer.weight.shape[0] // 2].any() and rows[layer.weight.shape[0] // 2:].all()
        assert (layer.weight[~rows] == 0).all()
        assert (layer.bias[~rows] == 0).all() and (layer.bias[rows] != 0).all()  # no batch norm after them
