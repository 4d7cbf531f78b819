"""FairGRAPE: per-group importance and the greedy selection against a hand computation in numpy and loops."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ceag.training.criteria import count_to_prune
from ceag.training.fairgrape import fairgrape_masks, greedy_keep, group_importance
from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner


def batch(x, y, g):
    return SimpleNamespace(x=x, y=y, g=g)


# -- the hand computation: plain numpy backprop and Python loops ------------------------------------
def hand_importance(W1, b1, W2, b2, masks, data, num_groups):
    """Σ_batches (|w| |dL_k/dw| mask)² for Linear-ReLU-Linear, L_k the mean cross-entropy of group k."""
    imp = {"0": np.zeros((num_groups, *W1.shape)), "2": np.zeros((num_groups, *W2.shape))}
    for bt in data:
        x, y, g = bt.x.numpy(), bt.y.numpy(), bt.g.numpy()
        h = x @ W1.T + b1
        r = np.maximum(h, 0)
        z = r @ W2.T + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for k in range(num_groups):
            rows = g == k
            if not rows.any():
                continue
            dz = np.where(rows[:, None], p - np.eye(z.shape[1])[y], 0.0) / rows.sum()
            dW2 = dz.T @ r
            dh = (dz @ W2) * (h > 0)
            dW1 = dh.T @ x
            imp["0"][k] += (np.abs(W1) * np.abs(dW1) * masks["0"]) ** 2
            imp["2"][k] += (np.abs(W2) * np.abs(dW2) * masks["2"]) ** 2
    return imp


def hand_greedy(imp, keep, para_batch, order):
    """FairGRAPE's greedy loop (their fairness_grad) over a list of per-group rows, written with loops."""
    groups, n = len(imp), len(imp[0])
    totals = [sum(row) for row in imp]
    target = [t / sum(totals) for t in totals]
    per_weight = [sum(imp[k][j] for k in range(groups)) for j in range(n)]

    def key(k, j):
        share = imp[k][j] / per_weight[j] if per_weight[j] > 0 else 0.0
        return {"importance": imp[k][j], "share": share, "importance_share": imp[k][j] * share}[order]

    ranking = [sorted(range(n), key=lambda j, k=k: (-key(k, j), j)) for k in range(groups)]
    chosen, kept_sum = [False] * n, [0.0] * groups
    share = [1.0 / groups] * groups
    pointer, count, streak, group = [0] * groups, 0, 0, 0
    while count < keep:
        if streak == 0:
            gaps = [share[k] - target[k] if totals[k] > 0 else float("inf") for k in range(groups)]
            group = gaps.index(min(gaps))
        streak = streak + 1 if streak < para_batch else 0
        j = ranking[group][pointer[group]]
        pointer[group] += 1
        if not chosen[j]:
            chosen[j] = True
            count += 1
            for k in range(groups):
                kept_sum[k] += imp[k][j]
            share = [s / sum(kept_sum) for s in kept_sum]
    return chosen


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def tiny_data(num_groups, seed=1, batches=3, size=12):
    gen = torch.Generator().manual_seed(seed)
    return [batch(torch.randn(size, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (size,), generator=gen),
                  torch.randint(0, num_groups, (size,), generator=gen)) for _ in range(batches)]


# -- tests -------------------------------------------------------------------------------------------
def test_greedy_balances_groups_where_a_ranking_by_total_would_not():
    imp = np.array([[9.0, 8.0, 0.0, 0.0],
                    [0.0, 0.0, 2.0, 1.0]])  # targets 0.85 / 0.15
    # para_batch 0: the group furthest below its target is chosen for every draw: group 0 (share 0.5 < 0.85)
    # keeps weight 0, then group 1 (share 0 < 0.15) keeps weight 2; the two largest totals are 0 and 1
    assert greedy_keep(imp, 2, para_batch=0).tolist() == [True, False, True, False]
    # para_batch 1 (their default): a chosen group draws twice, so group 0 keeps weights 0 and 1
    assert greedy_keep(imp, 2, para_batch=1).tolist() == [True, True, False, False]
    assert greedy_keep(imp, 9).all() and not greedy_keep(imp, 0).any()
    # a group with no importance in the layer is never drawn, even when every other group meets its target
    assert greedy_keep(np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 2.0]]), 2, para_batch=0).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="order must be one of"):
        greedy_keep(imp, 2, order="delta")
    with pytest.raises(ValueError, match="non-negative"):
        greedy_keep(-imp, 2)


@pytest.mark.parametrize("order", ["importance", "share", "importance_share"])
@pytest.mark.parametrize("para_batch", [0, 1, 3])
def test_random_importances_select_as_the_hand_loop(order, para_batch):
    rng = np.random.default_rng(para_batch)
    imp = rng.exponential(size=(4, 40)) * rng.integers(0, 2, size=(4, 40))  # many zeros, one group sparse
    imp[3] = 0.0  # a group with no importance in the layer takes no part
    for keep in (1, 13, 27):
        got = greedy_keep(imp, keep, para_batch=para_batch, order=order)
        assert got.tolist() == hand_greedy(imp.tolist(), keep, para_batch, order)
        assert int(got.sum()) == keep


@pytest.mark.parametrize("order,para_batch,rounding", [("importance", 1, "round"), ("share", 0, "ceil"),
                                                      ("importance_share", 2, "round")])
def test_masks_of_a_tiny_model_match_the_hand_computation(order, para_batch, rounding):
    groups = 3
    model = tiny_mlp()
    masks = {"0": torch.rand(6, 5, generator=torch.Generator().manual_seed(5)) > 0.3,
             "2": torch.ones(3, 6, dtype=torch.bool)}
    masks["2"][0, :2] = False
    with torch.no_grad():  # the pruner keeps pruned weights at zero
        model[0].weight.mul_(masks["0"])
        model[2].weight.mul_(masks["2"])
    data = tiny_data(groups)
    sparsity = 0.6
    new = fairgrape_masks(model, masks, data, groups, sparsity, rounding=rounding, para_batch=para_batch, order=order)

    W1, b1 = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    W2, b2 = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    imp = hand_importance(W1, b1, W2, b2, {n: m.numpy() for n, m in masks.items()}, data, groups)
    computed = group_importance(model, masks, data, groups)
    for name in imp:
        assert np.allclose(computed[name].numpy(), imp[name], rtol=1e-9, atol=1e-300)
        mask = masks[name].numpy().ravel()
        alive = np.flatnonzero(mask)
        keep = mask.size - count_to_prune(sparsity, mask.size, rounding)
        chosen = hand_greedy(imp[name].reshape(groups, -1)[:, alive].tolist(), keep, para_batch, order)
        expected = np.zeros(mask.size, dtype=bool)
        expected[alive[np.array(chosen)]] = True
        assert new[name].numpy().ravel().tolist() == expected.tolist()
        assert not (new[name] & ~masks[name]).any()  # pruned weights stay pruned


def test_the_rule_is_not_magnitude_and_an_absent_group_is_left_out():
    model = tiny_mlp(seed=3)
    masks = {"0": torch.ones(6, 5, dtype=torch.bool), "2": torch.ones(3, 6, dtype=torch.bool)}
    data = tiny_data(2)  # ids 0 and 1 only; group 2 of 3 has no sample
    new = fairgrape_masks(model, masks, data, 3, 0.5)
    assert all(int(m.sum()) == m.numel() - count_to_prune(0.5, m.numel()) for m in new.values())
    pruner = MagnitudePruner(copy.deepcopy(model), dense_last_layer=False)
    pruner.prune_to_(0.5)
    assert any(not torch.equal(new[n], pruner.masks[n]) for n in new)
    assert float(group_importance(model, masks, data, 3)["0"][2].sum()) == 0.0


def test_a_cnn_with_batch_norm_is_left_unchanged_and_counts_follow_the_pruner():
    model = build_model("cnn_small", (3, 8, 8), 4, seed=0)
    pruner = MagnitudePruner(model, "unstructured", rounding="ceil", masked_bn=True)
    pruner.prune_to_(0.4)
    model.eval()
    before = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    data = [batch(torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen),
                  torch.randint(0, 5, (16,), generator=gen)) for _ in range(2)]
    new = fairgrape_masks(model, pruner.masks, data, 5, 0.75, rounding="ceil", num_batches=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    for name, mask in new.items():
        assert int((~mask).sum()) == count_to_prune(0.75, mask.numel(), "ceil")
        assert not (mask & ~pruner.masks[name]).any()
    one = group_importance(model, pruner.masks, data, 5, num_batches=1)
    both = group_importance(model, pruner.masks, data, 5)
    assert not torch.equal(one["3"], both["3"])  # num_batches limits what is read


def test_bad_input_is_an_error_that_says_what_is_allowed():
    model = tiny_mlp()
    masks = {"0": torch.ones(6, 5, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"group ids must lie in \[0, 2\)"):
        group_importance(model, masks, tiny_data(3), 2)
    with pytest.raises(ValueError, match="at least one batch"):
        group_importance(model, masks, [], 2)
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\)"):
        fairgrape_masks(model, masks, tiny_data(2), 2, 1.2)
    with pytest.raises(ValueError, match="order must be one of"):
        fairgrape_masks(model, masks, tiny_data(2), 2, 0.5, order="delta_p")
