"""Pruning criteria: magnitude, SNIP and SynFlow scores against hand computations, and the masks they keep."""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ceag.training.criteria import (
    count_to_prune,
    criterion_masks,
    keep_masks,
    magnitude_scores,
    snip_scores,
    synflow_masks,
    synflow_scores,
)
from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner, cubic_sparsity


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 10, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(40, 30), nn.ReLU(),
        nn.Linear(30, 5),
    )


def batch(x, y):
    return SimpleNamespace(x=x, y=y)


def pruned_count(masks):
    return sum(int((~m).sum()) for m in masks.values())


def snapshot(model):
    return copy.deepcopy(model.state_dict())


def unchanged(model, before):
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- counting and masks ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unstructured", "global", "structured"])
@pytest.mark.parametrize("rounding", ["round", "ceil"])
def test_magnitude_masks_are_magnitude_pruners_through_a_cumulative_schedule(kind, rounding):
    net = small_net()
    pruner = MagnitudePruner(net, kind, dense_first_conv=False, dense_last_layer=False, rounding=rounding)
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    gen = torch.Generator().manual_seed(1)
    for epoch in range(6):
        sparsity = cubic_sparsity(epoch, 0.87, 5)
        masks = criterion_masks("magnitude", net, masks, sparsity, kind=kind, rounding=rounding)
        pruner.prune_to_(sparsity)
        for name in masks:
            assert torch.equal(masks[name], pruner.masks[name]), (epoch, name)
        with torch.no_grad():  # the fine-tuning between pruning events moves the weights
            for module in pruner.layers.values():
                module.weight.add_(0.05 * torch.randn(module.weight.shape, generator=gen))
        pruner.apply_()
    assert pruner.achieved_sparsity() > 0.8


def test_count_to_prune_is_the_pruners_rule():
    # 0.07 * 100 is 7.000000000000001 in floating point: ceil gives 8, round 7 (as MagnitudePruner counts)
    assert count_to_prune(0.07, 100, "round") == 7 and count_to_prune(0.07, 100, "ceil") == 8
    assert count_to_prune(0.29, 100, "round") == 29 and count_to_prune(0.29, 100, "ceil") == 29
    layer = nn.Sequential(nn.Linear(100, 1, bias=False))
    for rounding, expected in (("round", 7), ("ceil", 8)):
        pruner = MagnitudePruner(layer, dense_last_layer=False, rounding=rounding)
        pruner.prune_to_(0.07)
        assert int((~pruner.masks["0"]).sum()) == expected == count_to_prune(0.07, 100, rounding)
    with pytest.raises(ValueError, match="rounding must be one of"):
        count_to_prune(0.5, 10, "floor")


def test_pruned_weights_stay_pruned_even_below_kept_zero_scores():
    masks = {"a": torch.tensor([True, True, True, False, False, True])}
    scores = {"a": torch.tensor([0.0, 3.0, 0.0, 5.0, 9.0, 1.0])}  # pruned ones score high, kept ones zero
    out = keep_masks(scores, masks, 0.5)
    assert out["a"].tolist() == [False, True, True, False, False, True]  # the two pruned first, then index 0
    assert keep_masks(scores, masks, 0.1)["a"].tolist() == masks["a"].tolist()  # never revived


def test_structured_keeps_one_row_and_ranks_rows_by_the_chosen_aggregate():
    masks = {"w": torch.ones(3, 2, dtype=torch.bool)}
    scores = {"w": torch.tensor([[3.0, 0.0], [2.0, 2.0], [-1.0, 1.0]])}
    by_norm = keep_masks(scores, masks, 1 / 3, kind="structured")  # norms 3, 2.83, 1.41
    by_sum = keep_masks(scores, masks, 1 / 3, kind="structured", row_aggregate="sum")  # sums 3, 4, 0
    assert by_norm["w"].all(1).tolist() == [True, True, False]
    assert by_sum["w"].all(1).tolist() == [True, True, False]
    assert keep_masks(scores, masks, 2 / 3, kind="structured", row_aggregate="sum")["w"].all(1).tolist() == \
        [False, True, False]
    assert int(keep_masks(scores, masks, 0.99, kind="structured")["w"].any(1).sum()) == 1


def test_bad_arguments_are_errors_that_say_what_is_allowed():
    masks = {"w": torch.ones(4, dtype=torch.bool)}
    with pytest.raises(ValueError, match="kind must be one of"):
        keep_masks({"w": torch.ones(4)}, masks, 0.5, kind="random")
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\)"):
        keep_masks({"w": torch.ones(4)}, masks, 1.0)
    with pytest.raises(ValueError, match="contain NaN"):
        keep_masks({"w": torch.tensor([1.0, math.nan, 0.0, 2.0])}, masks, 0.5)
    with pytest.raises(ValueError, match="no scores for layer"):
        keep_masks({}, masks, 0.5)
    net = small_net()
    pruner = MagnitudePruner(net, dense_last_layer=True)
    with pytest.raises(ValueError, match="criterion must be one of"):
        criterion_masks("grasp", net, pruner.masks, 0.5)
    with pytest.raises(ValueError, match="snip needs training batches"):
        criterion_masks("snip", net, pruner.masks, 0.5)
    with pytest.raises(ValueError, match="synflow needs the model's input_shape"):
        criterion_masks("synflow", net, pruner.masks, 0.5)
    with pytest.raises(ValueError, match="names no conv or linear layer"):
        magnitude_scores(net, {"5": torch.ones(3, dtype=torch.bool)})


# -- SNIP ----------------------------------------------------------------------------------------
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_snip_scores_equal_a_hand_computation_on_a_linear_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2] = mask[0, 0] = False
    with torch.no_grad():
        model[0].weight.mul_(mask)  # the pruner keeps pruned weights at zero
    data = [batch(torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,))) for _ in range(3)]
    before = snapshot(model)
    scores = snip_scores(model, {"0": mask}, data, num_batches=2)

    W, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    grad = np.zeros_like(W)
    for bt in data[:2]:  # dL/dW of the mean cross-entropy: (softmax - onehot)^T x / B, summed over batches
        x, y = bt.x.numpy(), bt.y.numpy()
        delta = softmax(x @ W.T + b) - np.eye(3)[y]
        grad += delta.T @ x / len(y)
    expected = np.abs(grad * W) * mask.numpy()
    expected /= expected.sum()
    got = scores["0"].numpy()
    assert np.allclose(got[mask.numpy()], expected[mask.numpy()], rtol=1e-10, atol=0)
    assert np.isneginf(got[~mask.numpy()]).all()
    assert unchanged(model, before) and model[0].weight.grad is None


def test_snip_leaves_batch_norm_alone_and_its_mode_matters():
    model = build_model("cnn", (1, 8, 8), 4, seed=0)
    pruner = MagnitudePruner(model, "unstructured")
    pruner.prune_to_(0.5)
    model.train()
    torch.manual_seed(0)
    data = [batch(torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))]
    before = snapshot(model)
    train = snip_scores(model, pruner.masks, data, train_mode=True)
    evaluated = snip_scores(model, pruner.masks, data)
    assert unchanged(model, before) and model.training
    name = next(iter(train))
    assert not torch.allclose(train[name], evaluated[name])
    with pytest.raises(ValueError, match="at least one training batch"):
        snip_scores(model, pruner.masks, [])


# -- SynFlow -------------------------------------------------------------------------------------
def two_layer_linear(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


def test_synflow_scores_equal_a_hand_computation_on_a_two_layer_linear_net():
    model = two_layer_linear()
    masks = {"0": torch.ones(4, 3, dtype=torch.bool), "2": torch.ones(2, 4, dtype=torch.bool)}
    masks["0"][2, 1] = False
    with torch.no_grad():
        model[0].weight.mul_(masks["0"])
    before = snapshot(model)
    scores = synflow_scores(model, masks, (3,))

    W1 = np.abs(model[0].weight.detach().numpy()) * masks["0"].numpy()
    b1 = np.abs(model[0].bias.detach().numpy())
    W2 = np.abs(model[2].weight.detach().numpy())
    # R = 1^T (|W2| (|W1| 1 + |b1|) + |b2|): dR/dW1[i, j] = sum_k |W2[k, i]|, dR/dW2[k, i] = (|W1| 1 + |b1|)_i
    expected1 = W2.sum(0)[:, None] * W1
    expected2 = W2 * (W1.sum(1) + b1)[None, :]
    got1 = scores["0"].numpy()
    assert np.allclose(got1[masks["0"].numpy()], expected1[masks["0"].numpy()], rtol=1e-12, atol=0)
    assert np.isneginf(got1[2, 1])
    assert np.allclose(scores["2"].numpy(), expected2, rtol=1e-12, atol=0)
    assert unchanged(model, before)
    assert (model[0].weight < 0).any()  # signs restored: the copy was linearized, not the model


@pytest.mark.parametrize("masked_bn", [True, False])
def test_synflow_scores_see_channels_of_the_given_masks_through_masked_batch_norm(masked_bn):
    model = build_model("cnn", (1, 8, 8), 4, seed=0)
    pruner = MagnitudePruner(model, "structured", dense_last_layer=False, masked_bn=masked_bn)
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    masks["3"][0] = False  # output channel 0 of the second convolution, pruned in these masks only
    scores = synflow_scores(model, masks, (1, 8, 8))
    reads_dead_channel = scores["7"][:, 0]
    # with a masked batch norm the dead channel outputs zero, so the weights reading it carry no flow
    assert bool((reads_dead_channel == 0).all()) == masked_bn
    assert all(bool(bn.alive_channels.all()) for bn in pruner.batch_norms.values())  # the model's own untouched


@pytest.mark.parametrize("kind,aggregate", [("global", "l2"), ("structured", "sum")])
def test_one_synflow_round_is_one_scoring_then_keep_masks(kind, aggregate):
    model = build_model("cnn", (1, 8, 8), 4, seed=1)
    masks = MagnitudePruner(model, kind, dense_last_layer=False).masks
    one_round = synflow_masks(model, masks, (1, 8, 8), 0.6, iterations=1, kind=kind)
    scores = synflow_scores(model, masks, (1, 8, 8))
    expected = keep_masks(scores, masks, 0.6, kind=kind, row_aggregate=aggregate)
    assert all(torch.equal(one_round[n], expected[n]) for n in masks)
    if kind == "structured":  # rows ranked by summed flow, not by its L2 norm
        by_norm = keep_masks(scores, masks, 0.6, kind=kind)
        assert any(not torch.equal(one_round[n], by_norm[n]) for n in masks)


@pytest.mark.parametrize("kind", ["global", "unstructured", "structured"])
def test_iterative_synflow_reaches_the_target_and_leaves_the_model_unchanged(kind):
    model = build_model("cnn", (1, 8, 8), 4, seed=0)
    pruner = MagnitudePruner(model, kind, dense_last_layer=False, masked_bn=True)
    pruner.prune_to_(0.3)
    model.train()
    before_masks = {n: m.clone() for n, m in pruner.masks.items()}
    before = snapshot(model)
    alive_before = {n: bn.alive_channels.clone() for n, bn in pruner.batch_norms.items()}
    masks = synflow_masks(model, pruner.masks, (1, 8, 8), 0.9, iterations=20, kind=kind)

    assert unchanged(model, before) and model.training
    assert all(torch.equal(bn.alive_channels, alive_before[n]) for n, bn in pruner.batch_norms.items())
    assert all(not (masks[n] & ~before_masks[n]).any() for n in masks)  # pruned weights stay pruned
    if kind == "global":
        total = sum(m.numel() for m in masks.values())
        assert pruned_count(masks) == count_to_prune(0.9, total)
    elif kind == "unstructured":
        assert all(int((~m).sum()) == count_to_prune(0.9, m.numel()) for m in masks.values())
    else:
        for m in masks.values():
            rows = m.flatten(1)
            assert (rows.all(1) | ~rows.any(1)).all()  # whole channels
            assert int((~rows.any(1)).sum()) == min(count_to_prune(0.9, rows.shape[0]), rows.shape[0] - 1)


def test_iterating_synflow_changes_the_result_at_high_sparsity():
    model = build_model("mlp", (1, 8, 8), 4, seed=2)
    pruner = MagnitudePruner(model, dense_last_layer=False)
    one_shot = synflow_masks(model, pruner.masks, (1, 8, 8), 0.98, iterations=1)
    iterated = synflow_masks(model, pruner.masks, (1, 8, 8), 0.98, iterations=30)
    assert pruned_count(one_shot) == pruned_count(iterated)
    assert any(not torch.equal(one_shot[n], iterated[n]) for n in one_shot)
    with pytest.raises(ValueError, match="iterations must be at least 1"):
        synflow_masks(model, pruner.masks, (1, 8, 8), 0.5, iterations=0)
