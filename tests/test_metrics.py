"""Per-group metrics against an independent computation with boolean masks in numpy."""

import numpy as np
import pytest
import torch

from ceag.training.metrics import disparity, group_count, group_mean, group_stats

G = 5
EMPTY = 3  # a group with no samples in the split


def _random_split(rng, n=200):
    groups = rng.choice([g for g in range(G) if g != EMPTY], size=n)
    correct = rng.random(n) < rng.uniform(0.4, 0.95, size=G)[groups]
    loss = rng.exponential(1.0, size=n)
    return correct, loss, groups


def _stats(correct, loss, groups):
    return group_stats(torch.as_tensor(correct), torch.as_tensor(loss, dtype=torch.float32),
                       torch.as_tensor(groups), G)


def _reference(correct, loss, groups):
    """Per-group (n, accuracy, loss) with one boolean mask per group; NaN for empty groups."""
    n = np.array([(groups == g).sum() for g in range(G)])
    acc = np.array([correct[groups == g].mean() if n[g] else np.nan for g in range(G)])
    los = np.array([loss[groups == g].mean() if n[g] else np.nan for g in range(G)])
    return n, acc, los


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_stats_match_masks(seed):
    rng = np.random.default_rng(seed)
    correct, loss, groups = _random_split(rng)
    stats = _stats(correct, loss, groups)
    n, acc, los = _reference(correct, loss, groups)
    np.testing.assert_array_equal(stats.n, n)
    assert stats.n[EMPTY] == 0
    assert np.isnan(stats.accuracy[EMPTY]) and np.isnan(stats.loss[EMPTY])
    np.testing.assert_allclose(stats.accuracy, acc, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(stats.loss, los, rtol=1e-6, equal_nan=True)
    assert stats.overall_accuracy == pytest.approx(correct.mean(), abs=1e-12)
    assert stats.overall_loss == pytest.approx(loss.mean(), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disparity_matches_masks(seed):
    rng = np.random.default_rng(seed)
    dense_correct, loss, groups = _random_split(rng)
    sparse_correct = dense_correct & (rng.random(len(groups)) < rng.uniform(0.5, 1.0, size=G)[groups])
    d = disparity(_stats(sparse_correct, loss, groups), _stats(dense_correct, loss, groups))

    _, dense_acc, _ = _reference(dense_correct, loss, groups)
    _, sparse_acc, _ = _reference(sparse_correct, loss, groups)
    acc_gap = dense_acc - sparse_acc
    overall_gap = dense_correct.mean() - sparse_correct.mean()
    psi = acc_gap - overall_gap
    present = np.array([(groups == g).any() for g in range(G)])

    np.testing.assert_allclose(d.acc_gap, acc_gap, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d.excess_gap, psi, atol=1e-12, equal_nan=True)
    assert d.overall_gap == pytest.approx(overall_gap, abs=1e-12)
    assert np.isnan(d.acc_gap[EMPTY]) and np.isnan(d.excess_gap[EMPTY])
    # the empty group is left out of the headline numbers, which stay finite
    assert d.max_excess_gap == pytest.approx(psi[present].max(), abs=1e-12)
    assert d.psi_pw == pytest.approx(acc_gap[present].max() - acc_gap[present].min(), abs=1e-12)
    assert d.psi_pw == pytest.approx(np.nanmax(d.excess_gap) - np.nanmin(d.excess_gap), abs=1e-12)
    assert d.psi_pw > 0


def test_identical_models_have_zero_gaps():
    rng = np.random.default_rng(7)
    correct, loss, groups = _random_split(rng)
    same = _stats(correct, loss, groups)
    d = disparity(same, same)
    assert d.overall_gap == 0 and d.max_excess_gap == 0 and d.psi_pw == 0


def test_no_samples_at_all_gives_nan_not_zero():
    empty = torch.zeros(0, dtype=torch.int64)
    stats = group_stats(empty.bool(), empty.float(), empty, G)
    np.testing.assert_array_equal(stats.n, np.zeros(G))
    assert np.isnan(stats.accuracy).all() and np.isnan(stats.overall_accuracy)
    d = disparity(stats, stats)
    assert np.isnan(d.max_excess_gap) and np.isnan(d.psi_pw)


def test_group_mean_and_count():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0])
    groups = torch.tensor([0, 0, 2, 2])
    np.testing.assert_array_equal(group_count(groups, 4).numpy(), [2, 0, 2, 0])
    np.testing.assert_array_equal(group_mean(values, groups, 4).numpy(), [1.5, np.nan, 6.5, np.nan])
