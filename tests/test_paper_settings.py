"""The settings that let a run follow the paper's code: masked batch norm, the pruned-weight count,
the dual step's overall estimate, last-layer weight decay, the dense recipe, NFT+ES's sparsity."""

import numpy as np
import pytest
import torch
from torch import nn

from ceag.config.run_config import RunConfig
from ceag.training.methods import DenseReference
from ceag.training.methods.lagrangian import CEAG, ELRB
from ceag.training.models import build_model
from ceag.training.optim import LastLayerDecay, make_optimizer
from ceag.training.pruning import MagnitudePruner, batch_norm_after, prunable_layers, restore_masked_bn

CPU = torch.device("cpu")


# -- masked batch norm ----------------------------------------------------------------------
def bn_outputs(model, x):
    """Output of every BatchNorm2d of ``model`` on ``x`` (after any masking), by module name."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_hook(lambda mod, i, o, n=name: seen.__setitem__(n, o.detach())))
    model(x)
    for h in handles:
        h.remove()
    return seen


def pruned_cnn(masked_bn: bool):
    model = build_model("cnn", (1, 8, 8), 5, seed=0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 0.7)  # a dead channel of a plain batch norm outputs its bias
    pruner = MagnitudePruner(model, "structured", dense_first_conv=True, dense_last_layer=True, masked_bn=masked_bn)
    pruner.prune_to_(0.5)
    return model, pruner


@pytest.mark.parametrize("train", [True, False])
def test_masked_batch_norm_zeroes_fully_pruned_channels(train):
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain, pruner = pruned_cnn(masked_bn=False)
    masked, _ = pruned_cnn(masked_bn=True)
    plain.train(train), masked.train(train)
    before, after = bn_outputs(plain, x), bn_outputs(masked, x)
    for conv in ("3", "7"):  # the pruned convolutions; their batch norms are "4" and "8"
        dead = ~pruner.masks[conv].flatten(1).any(1)
        assert dead.sum() == 32  # half of the 64 channels
        assert (after[str(int(conv) + 1)][:, dead] == 0).all()
    dead = ~pruner.masks["3"].flatten(1).any(1)
    assert torch.equal(after["4"][:, ~dead], before["4"][:, ~dead])  # live channels: unchanged
    if train:  # a standard batch norm gives a dead channel (a constant) its bias
        assert torch.allclose(before["4"][:, dead], torch.tensor(0.7))
    assert torch.equal(after["1"], before["1"])  # the first convolution stays dense, so does its batch norm


def test_dead_channels_get_no_gradient_and_masks_survive_a_reload():
    model, pruner = pruned_cnn(masked_bn=True)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    dead = ~pruner.masks["3"].flatten(1).any(1)
    assert (model[4].bias.grad[dead] == 0).all() and (model[4].bias.grad[~dead] != 0).any()
    # a pruned model saved as a state dict and loaded again gets the same masked batch norms
    again = build_model("cnn", (1, 8, 8), 5, seed=1)
    again.load_state_dict(model.state_dict())
    restore_masked_bn(again, dense_first_conv=True, dense_last_layer=True)
    x = torch.randn(3, 1, 8, 8)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))
    assert "alive_channels" not in " ".join(model.state_dict())  # state dict keys as published


@pytest.mark.parametrize("train", [True, False])
def test_masked_batch_norm_masks_scale_and_shift_with_the_values_and_gradients_of_a_masked_output(train):
    from ceag.training.pruning import MaskedBatchNorm2d, zero_dead_channels

    model, pruner = pruned_cnn(masked_bn=True)
    assert isinstance(model[4], MaskedBatchNorm2d) and not model[4].all_alive
    # the reference: the same batch norms as plain ones whose whole output is multiplied by the mask
    reference, _ = pruned_cnn(masked_bn=False)
    for name in ("4", "8"):
        bn = reference[int(name)]
        bn.register_buffer("alive_channels", model[int(name)].alive_channels.clone(), persistent=False)
        bn.all_alive = False
        bn.register_forward_hook(zero_dead_channels)
    model.train(train), reference.train(train)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours, theirs = model(x), reference(x)
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    (ours ** 2).sum().backward()
    (theirs ** 2).sum().backward()
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
    for (name, a), (_, b) in zip(model.named_buffers(), reference.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    dead = ~pruner.masks["3"].flatten(1).any(1)
    assert (model[4].weight.grad[dead] == 0).all() and (model[4].bias.grad[dead] == 0).all()


@pytest.mark.parametrize("name,shape", [("mobilenet_v2", (3, 72, 72)), ("resnet34", (3, 72, 72)),
                                        ("resnet56", (3, 32, 32))])
def test_every_pruned_convolution_has_its_batch_norm(name, shape):
    model = build_model(name, shape, 5, seed=0)
    convs = {n for n, m in prunable_layers(model).items() if isinstance(m, nn.Conv2d)}
    assert set(batch_norm_after(model, convs)) == convs


def test_at_95_percent_many_depthwise_channels_of_mobilenet_v2_are_dead():
    model = build_model("mobilenet_v2", (3, 72, 72), 5, seed=0)
    pruner = MagnitudePruner(model, "unstructured", masked_bn=True, rounding="ceil")
    pruner.prune_to_(0.95)
    depthwise = [n for n, m in pruner.layers.items() if isinstance(m, nn.Conv2d) and m.groups > 1]
    dead = sum(int((~pruner.masks[n].flatten(1).any(1)).sum()) for n in depthwise)
    total = sum(pruner.masks[n].shape[0] for n in depthwise)
    assert dead / total > 0.3  # a 3x3 filter has 9 weights: many lose all of them
    for n in depthwise:
        assert pruner.batch_norms[n].all_alive == bool(pruner.masks[n].flatten(1).any(1).all())


# -- pruned-weight count ----------------------------------------------------------------------
@pytest.mark.parametrize("rounding,expected", [("round", 2), ("ceil", 3)])
def test_pruned_count_rounds_or_ceils(rounding, expected):
    net = nn.Sequential(nn.Linear(5, 2), nn.Linear(2, 2))  # the first layer has 10 weights
    pruner = MagnitudePruner(net, "unstructured", dense_first_conv=False, dense_last_layer=True, rounding=rounding)
    pruner.prune_to_(0.21)  # 2.1 weights: round -> 2, the paper's math.ceil -> 3
    assert int((~pruner.masks["0"]).sum()) == expected


# -- the dual step's overall estimate -----------------------------------------------------------
G = 3


def ceag(**cfg):
    dense = DenseReference(group_accuracy=torch.tensor([0.9, 0.8, 0.7]), group_loss=torch.tensor([0.4, 0.6, 0.8]),
                           accuracy=0.85, loss=0.5, prior=torch.tensor([0.7, 0.2, 0.1]))
    settings = dict(method="ceag", dataset="synthetic", tolerance=0.01, buffer_size=4, dual_lr=0.1, **cfg)
    return CEAG(RunConfig(**settings), G, dense, CPU)


def batch():
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    correct = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    return torch.full((12,), 0.5, requires_grad=True), correct, groups


@pytest.mark.parametrize("estimate", ["train_share", "buffer_mean"])
def test_overall_estimate_is_the_chosen_mean(estimate):
    method = ceag(overall_estimate=estimate)
    method.objective(*batch(), active=True)
    acc = np.array([1.0, 0.5, 0.25])  # buffer means of the batch above
    overall = acc.mean() if estimate == "buffer_mean" else float(np.dot(acc, [0.7, 0.2, 0.1]))
    expected = (np.array([0.9, 0.8, 0.7]) - acc) - (0.85 - overall) - 0.01
    np.testing.assert_allclose(method.violations.numpy(), expected, atol=1e-6)


def test_buffer_mean_without_buffers_is_the_batch_mean():
    method = ceag(overall_estimate="buffer_mean", replay_buffer=False)
    loss, correct, groups = batch()
    method.objective(loss, correct, groups, active=True)
    overall = float(correct.float().mean())  # 7 of 12, as the paper's batch avg_acc
    acc = np.array([1.0, 0.5, 0.25])
    expected = (np.array([0.9, 0.8, 0.7]) - acc) - (0.85 - overall) - 0.01
    np.testing.assert_allclose(method.violations.numpy(), expected, atol=1e-6)


# -- weight decay of the last layer only -------------------------------------------------------
def test_last_layer_scope_decays_only_the_classifier():
    model = build_model("cnn", (1, 8, 8), 4, seed=0)
    cfg = RunConfig(dataset="digits", model="cnn", weight_decay=0.1, lr=1.0, momentum=0.0,
                    weight_decay_scope="last_layer")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer(model, cfg)
    (0 * model(torch.randn(2, 1, 8, 8)).sum()).backward()
    opt.step()
    after = dict(model.named_parameters())
    for k in ("12.weight", "12.bias"):
        assert torch.allclose(after[k], before[k] * (1 - 0.1))  # lr 1, wd 0.1
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith("12."))


@pytest.mark.parametrize("detach", [True, False])
def test_last_layer_decay_follows_the_overall_loss_weight(detach):
    """Their L2 term sits inside the overall loss: without detach its weight is 1 - sum(lambda)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    cfg = RunConfig(dataset="synthetic", model="mlp", method="ceag", tolerance=0.0, weight_decay=0.5, lr=0.1,
                    momentum=0.0, detach_overall=detach, weight_decay_scope="last_layer")
    opt = make_optimizer(model, cfg)
    decay = LastLayerDecay(model, opt, cfg)
    method = CEAG(cfg, G, DenseReference(torch.ones(G), torch.zeros(G), 1.0, 0.0, torch.full((G,), 1 / G)), CPU)
    method.multipliers = np.array([0.5, 0.25, 0.5])
    loss = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    method.objective(loss, torch.tensor([True, False, True]), torch.tensor([0, 1, 2]), active=True)
    decay.before_step(method, active=True)
    lam = method.multipliers.numpy().sum()  # after this step's dual update
    assert opt.param_groups[1]["weight_decay"] == pytest.approx(0.5 * (1.0 if detach else 1.0 - lam))
    assert opt.param_groups[0]["weight_decay"] == 0.0


def test_el_rb_gap_counts_the_l2_term_in_the_overall_loss():
    cfg = RunConfig(dataset="synthetic", model="mlp", method="el_rb", buffer_size=1, dual_lr=0.1,
                    detach_overall=False)
    method = ELRB(cfg, 2, DenseReference(torch.ones(2), torch.zeros(2), 1.0, 0.0, torch.full((2,), 0.5)), CPU)
    method.multipliers = np.array([1.0, 1.0])
    loss = torch.tensor([1.0, 1.1], requires_grad=True)
    groups = torch.tensor([0, 1])
    method.objective(loss, torch.tensor([True, True]), groups, active=True)
    without = method.overall_weight  # gaps -0.05, +0.05: signs cancel
    method.l2_penalty = 0.2           # the overall loss is now larger than both group losses
    method.multipliers = np.array([1.0, 1.0])
    method.objective(loss, torch.tensor([True, True]), groups, active=True)
    assert without == pytest.approx(1.0) and method.overall_weight > 2.5  # both gaps negative: 1 + sum(lambda)


# -- dense recipe ----------------------------------------------------------------------------
def test_dense_recipe_optimizer():
    model = build_model("cnn", (1, 8, 8), 4, seed=0)
    adam = make_optimizer(model, RunConfig(dense_optimizer="adam", dense_lr=1e-3, dense_weight_decay=1e-4), dense=True)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 1e-3
    assert adam.param_groups[0]["weight_decay"] == 1e-4
    sgd = make_optimizer(model, RunConfig(lr=0.3), dense=True)  # no dense settings: the run's own
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["lr"] == 0.3


# -- NFT+ES ---------------------------------------------------------------------------------
def test_nft_es_records_the_sparsity_of_the_iterate_it_reports(tmp_path, make_cfg, one_thread):
    from ceag.run.pipeline import run

    result = run(make_cfg(method="nft_es", tolerance=None), tmp_path)
    rows = result.run_metrics
    at = rows[rows.epoch == result.summary["reported_epoch"]]["sparsity"].iloc[0]
    assert result.summary["achieved_sparsity"] == at
    assert result.summary["reported_epoch"] >= make_cfg().prune_epochs  # only iterates at the target sparsity


@pytest.mark.parametrize("method,model", [("ceag", "cnn"), ("el_rb", "mlp")])
def test_a_run_with_every_paper_setting_finishes(tmp_path, method, model, one_thread):
    from ceag.config.presets import PAPER_COMMON
    from ceag.run.pipeline import run

    settings = {k: v for k, v in PAPER_COMMON.items() if k not in ("rare_groups",)}
    settings.update(prune_epochs=1, finetune_epochs=1, dense_epochs=1, dense_optimizer="adam", dense_lr=1e-3,
                    dense_lr_milestones=(0.6, 0.8, 0.9), lr_milestones=(0.9,), dual_lr=0.05, buffer_size=4,
                    batch_size=256, dense_batch_size=256)
    cfg = RunConfig(dataset="digits", model=model, method=method, sparsity=0.9, device="cpu", **settings,
                    **({"tolerance": 0.0} if method == "ceag" else {}))
    result = run(cfg, tmp_path)
    assert result.status == "finished"
    assert result.summary["achieved_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert len(result.duals) > 0  # the constrained phase ran
