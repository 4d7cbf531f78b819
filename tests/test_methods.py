"""Methods: the registry, CEAG's dual and primal steps, EL+RB, divergence and ablations."""

import numpy as np
import pytest
import torch

from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import MASK_METHODS, METHODS
from ceag.training.methods import REGISTRY, DenseReference, Diverged, Method, get_method
from ceag.training.methods.lagrangian import CEAG, ELRB

G = 3
CPU = torch.device("cpu")


def dense_reference(group_accuracy=(1.0, 1.0, 1.0), group_loss=(0.4, 0.6, 0.8), accuracy=1.0, loss=0.6):
    return DenseReference(group_accuracy=torch.tensor(group_accuracy), group_loss=torch.tensor(group_loss),
                          accuracy=accuracy, loss=loss, prior=torch.full((G,), 1 / G))


def make(cls, dense=None, **cfg):
    settings = dict(method=cls.key, dataset="synthetic", buffer_size=4, dual_lr=0.1)
    if cls.key == "ceag":
        settings["tolerance"] = 0.02
    settings.update(cfg)
    return cls(RunConfig(**settings), G, dense or dense_reference(), CPU)


def group_zero_fails(per_group=4):
    """A batch where group 0 is always wrong and groups 1, 2 always right."""
    groups = torch.arange(G).repeat_interleave(per_group)
    correct = groups != 0
    loss = torch.where(correct, 0.2, 2.0).requires_grad_(True)
    return loss, correct, groups


# -- registry -----------------------------------------------------------------------------
def test_registry_keys_are_the_config_methods():
    assert tuple(REGISTRY) == ("nft", "nft_es", "el_rb", "ceag", "fairgrape")
    assert set(METHODS) - set(REGISTRY) == {"ceag_vs"}  # selected among CEAG runs: trains nothing of its own
    assert all(cls.key == key for key, cls in REGISTRY.items())
    assert get_method("ceag") is CEAG and get_method("el_rb") is ELRB and get_method("nft") is Method
    assert [k for k, c in REGISTRY.items() if c.mitigates] == ["el_rb", "ceag"]
    assert [k for k, c in REGISTRY.items() if c.selects_best] == ["nft_es"]
    assert [k for k, c in REGISTRY.items() if c.selects_masks] == list(MASK_METHODS) == ["fairgrape"]
    with pytest.raises(KeyError, match="unknown method 'fair'; known: nft, nft_es, el_rb, ceag, fairgrape"):
        get_method("fair")


# -- CEAG dual step -------------------------------------------------------------------------
def test_ceag_multiplier_grows_for_a_violated_group_only():
    method = make(CEAG)
    history = []
    for _ in range(5):
        method.objective(*group_zero_fails(), active=True)
        history.append(method.multipliers.clone())
    lam = torch.stack(history)
    assert (lam >= 0).all()
    # group 0: dense 100 %, now 0 %; overall estimate 2/3, so psi_0 = 1 - 1/3 = 2/3
    expected_step = 0.1 * (2 / 3 - 0.02)
    np.testing.assert_allclose(lam[:, 0].numpy(), expected_step * np.arange(1, 6), rtol=1e-5)
    assert (lam[:, 1:] == 0).all()  # satisfied groups: negative violations are projected to 0
    np.testing.assert_allclose(method.violations.numpy(), [2 / 3 - 0.02, -1 / 3 - 0.02, -1 / 3 - 0.02],
                               rtol=1e-5)


def test_ceag_multiplier_projected_back_to_zero_when_satisfied():
    method = make(CEAG, tolerance=0.3)
    method.objective(*group_zero_fails(), active=True)
    assert method.multipliers[0].item() == pytest.approx(0.1 * (2 / 3 - 0.3), rel=1e-5)
    history = []
    for _ in range(4):  # now every group is right: once group 0's ring is flushed, psi_0 = 0 < eps
        loss = torch.full((4 * G,), 0.1, requires_grad=True)
        groups = torch.arange(G).repeat_interleave(4)
        method.objective(loss, torch.ones(4 * G, dtype=torch.bool), groups, active=True)
        history.append(method.multipliers[0].item())
    # 0.0367 - 0.1 * 0.3 = 0.0067, then clamped at 0 instead of going negative
    assert history == pytest.approx([0.1 * (2 / 3 - 0.3) - 0.03, 0.0, 0.0, 0.0], abs=1e-6)
    assert (method.multipliers == 0).all()


def test_ceag_dual_step_waits_for_full_buffers():
    method = make(CEAG, buffer_size=8)
    method.objective(*group_zero_fails(per_group=4), active=True)  # 4 of 8 values per group
    assert (method.multipliers == 0).all()
    assert torch.isnan(method.violations).all()
    method.objective(*group_zero_fails(per_group=4), active=True)  # now full
    assert method.multipliers[0] > 0
    assert not torch.isnan(method.violations).any()


def test_ceag_dual_step_uses_buffered_accuracy_not_the_batch():
    method = make(CEAG, buffer_size=8, tolerance=0.0)
    method.objective(*group_zero_fails(per_group=8), active=True)  # buffers full: group 0 at 0 %
    before = method.multipliers[0].item()
    # a batch where group 0 is right on half its samples: the buffer now holds 2 right of 8
    groups = torch.tensor([0, 0, 0, 0, 1, 2])
    correct = torch.tensor([True, True, False, False, True, True])
    method.objective(torch.ones(6, requires_grad=True), correct, groups, active=True)
    buffered_acc = torch.tensor([2 / 8, 1.0, 1.0])
    overall = buffered_acc.mean()
    psi_0 = (1 - buffered_acc[0]) - (1 - overall)
    assert method.multipliers[0].item() == pytest.approx(before + 0.1 * psi_0.item(), rel=1e-5)


def test_ceag_without_replay_buffer_uses_batch_estimates():
    method = make(CEAG, replay_buffer=False, buffer_size=1000)
    assert method.buffer is None
    method.objective(*group_zero_fails(per_group=2), active=True)
    # the multiplier moves at the first step, with the batch's accuracies (0, 1, 1)
    assert method.multipliers[0].item() == pytest.approx(0.1 * (2 / 3 - 0.02), rel=1e-5)
    # a group absent from the batch keeps its multiplier and has no violation
    loss = torch.ones(2, requires_grad=True)
    method.objective(loss, torch.tensor([False, True]), torch.tensor([0, 1]), active=True)
    assert method.multipliers[2] == 0 and torch.isnan(method.violations[2])
    assert method.multipliers[0].item() == pytest.approx(0.1 * (2 / 3 - 0.02) + 0.1 * (0.5 - 0.02), rel=1e-5)


# -- CEAG primal objective ------------------------------------------------------------------
@pytest.mark.parametrize("detach_overall", [True, False])
def test_ceag_primal_objective_matches_the_surrogate(detach_overall):
    dense = dense_reference(group_loss=(0.4, 0.6, 0.8), loss=0.55)
    method = make(CEAG, dense=dense, buffer_size=1000, detach_overall=detach_overall)  # no dual step yet
    lam = [0.7, 5.0, 0.3]
    method.multipliers = torch.tensor(lam)
    groups = torch.tensor([0, 2, 0, 2, 2])  # group 1 is not in the batch: its lambda must not count
    values = [1.0, 0.5, 2.0, 0.25, 1.5]
    loss = torch.tensor(values, requires_grad=True)
    objective = method.objective(loss, torch.ones(5, dtype=torch.bool), groups, active=True)
    assert method.multipliers.tolist() == pytest.approx(lam)

    mean = sum(values) / 5
    l0, l2 = (1.0 + 2.0) / 2, (0.5 + 0.25 + 1.5) / 3
    expected = mean + 0.7 * ((l0 - 0.4) - (mean - 0.55)) + 0.3 * ((l2 - 0.8) - (mean - 0.55))
    assert objective.item() == pytest.approx(expected, rel=1e-6)

    objective.backward()
    # d/d loss_i = 1/B + lambda_g / n_g, minus sum of present lambdas / B unless detached
    overall_weight = 1.0 if detach_overall else 1.0 - (0.7 + 0.3)
    expected_grad = [overall_weight / 5 + (0.7 / 2 if g == 0 else 0.3 / 3) for g in groups.tolist()]
    np.testing.assert_allclose(loss.grad.numpy(), expected_grad, rtol=1e-6)


def test_ceag_primal_step_uses_the_updated_multipliers():
    method = make(CEAG, replay_buffer=False)
    loss, correct, groups = group_zero_fails(per_group=2)
    objective = method.objective(loss, correct, groups, active=True)
    lam0 = 0.1 * (2 / 3 - 0.02)
    assert method.multipliers[0].item() == pytest.approx(lam0, rel=1e-5)
    objective.backward()
    grad = loss.grad.numpy()
    np.testing.assert_allclose(grad[:2], 1 / 6 + lam0 / 2, rtol=1e-5)  # group 0 gets the extra weight
    np.testing.assert_allclose(grad[2:], 1 / 6, rtol=1e-5)


@pytest.mark.parametrize("cls", [CEAG, ELRB])
def test_inactive_objective_is_the_plain_mean(cls):
    method = make(cls)
    method.multipliers = torch.tensor([0.5, 0.0, 2.0])
    loss, correct, groups = group_zero_fails()
    objective = method.objective(loss, correct, groups, active=False)
    assert objective.item() == pytest.approx(loss.mean().item())
    assert method.multipliers.tolist() == [0.5, 0.0, 2.0]
    assert (method.buffer.count == 0).all()  # nothing pushed while inactive


# -- EL+RB ----------------------------------------------------------------------------------
def test_el_rb_multipliers_never_decrease():
    method = make(ELRB, buffer_size=5, dual_lr=0.5)
    gen = torch.Generator().manual_seed(0)
    history = [method.multipliers.clone()]
    for _ in range(15):
        groups = torch.randint(0, G, (12,), generator=gen)
        loss = (torch.rand(12, generator=gen) * (1 + groups)).requires_grad_(True)
        method.objective(loss, torch.ones(12, dtype=torch.bool), groups, active=True)
        history.append(method.multipliers.clone())
    lam = torch.stack(history)
    assert (lam[1:] >= lam[:-1]).all()
    assert (lam[-1] > 0).all()
    assert (method.violations >= 0).all()


def test_el_rb_primal_objective():
    method = make(ELRB, buffer_size=1000, detach_overall=True)
    method.multipliers = torch.tensor([1.0, 2.0, 3.0])
    loss = torch.tensor([1.0, 3.0, 0.5], requires_grad=True)
    objective = method.objective(loss, torch.ones(3, dtype=torch.bool), torch.tensor([0, 0, 1]), active=True)
    mean = 4.5 / 3
    assert objective.item() == pytest.approx(mean + 1.0 * abs(2.0 - mean) + 2.0 * abs(0.5 - mean))


# -- divergence -----------------------------------------------------------------------------
def test_huge_dual_lr_raises_diverged_naming_the_limit():
    method = make(CEAG, dual_lr=1e3, divergence_threshold=10.0)
    objective = method.objective(*group_zero_fails(), active=True)
    with pytest.raises(Diverged, match=r"diverged at step 7: a multiplier reached 647 \(limit 10\); "
                                        r"lower dual_lr \(now 1000\)") as info:
        method.check_finite(7, objective)
    assert info.value.step == 7


def test_small_multipliers_pass_the_check():
    method = make(CEAG, divergence_threshold=10.0)
    method.check_finite(0, method.objective(*group_zero_fails(), active=True))


def test_non_finite_objective_raises_diverged():
    method = make(Method)
    with pytest.raises(Diverged, match="diverged at step 3: training objective is nan"):
        method.check_finite(3, torch.tensor(float("nan")))


# -- state ----------------------------------------------------------------------------------
def test_lagrangian_state_round_trip():
    a = make(CEAG, buffer_size=8)
    for _ in range(3):
        a.objective(*group_zero_fails(), active=True)
    b = make(CEAG, buffer_size=8)
    b.load_state_dict({k: (v if not torch.is_tensor(v) else v.clone()) for k, v in a.state_dict().items()})
    for m in (a, b):
        m.objective(*group_zero_fails(), active=True)
    assert torch.equal(a.multipliers, b.multipliers)
    assert torch.equal(a.buffer.values, b.buffer.values)


def test_batches_from_an_accelerator_reach_the_host_unchanged():
    from ceag.training.methods.lagrangian import _host

    loss, correct, groups = group_zero_fails()
    direct = _host(loss, correct, groups, pack=False)
    packed = _host(loss, correct, groups, pack=True)
    for a, b in zip(direct, packed, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_el_rb_weights_a_batch_of_one_group_like_plain_fine_tuning():
    # L_g - L is exactly 0 when the batch holds one group: no rounding residue may pick a sign
    # for it (with lambda > 1 that would turn the weights negative: gradient ascent).
    method = make(ELRB, buffer_size=1000)
    method.multipliers = torch.tensor([3.0, 3.0, 3.0])
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        loss = (torch.rand(3, generator=gen) * 5).requires_grad_(True)
        method.objective(loss, torch.ones(3, dtype=torch.bool), torch.tensor([1, 1, 1]), active=True).backward()
        np.testing.assert_allclose(loss.grad.numpy(), 1 / 3, rtol=1e-6)
