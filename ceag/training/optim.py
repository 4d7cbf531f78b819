"""The primal optimizer of a run, and the paper's effective weight decay on the last layer."""

from __future__ import annotations

import torch
from torch import nn

from ceag.config.run_config import RunConfig


def last_layer(model: nn.Module) -> nn.Module:
    """The last convolution or linear layer in module order (the classifier of every model here)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[-1]


def make_optimizer(model: nn.Module, cfg: RunConfig, *, dense: bool = False) -> torch.optim.Optimizer:
    """The primal optimizer: SGD with the run's settings, or the dense recipe's (``dense=True``).

    With ``weight_decay_scope="last_layer"`` only the last layer (weight and bias) is decayed, in
    the second parameter group: the effective behaviour of the paper's L2 term, which
    ``model_sq_l2_norm`` (src/models/model_stats.py) overwrites layer by layer instead of summing.
    Weight decay here is the gradient of (wd / 2) * ||theta||^2 (coupled, also for Adam), as
    their loss term is.
    """
    lr = cfg.dense_lr if dense and cfg.dense_lr is not None else cfg.lr
    wd = cfg.dense_weight_decay if dense and cfg.dense_weight_decay is not None else cfg.weight_decay
    if cfg.weight_decay_scope == "last_layer":
        last = {id(p) for p in last_layer(model).parameters()}
        params = [{"params": [p for p in model.parameters() if id(p) not in last], "weight_decay": 0.0},
                  {"params": [p for p in model.parameters() if id(p) in last], "weight_decay": wd}]
    else:
        params = [{"params": list(model.parameters()), "weight_decay": wd}]
    if dense and cfg.dense_optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class LastLayerDecay:
    """The paper's effective L2 term (wd / 2) * ||last layer||^2 inside a constrained objective.

    In their code that term is added to the overall loss in place (``loss += ...`` on the same
    tensor, src/cmp/*.py), so the surrogate's overall-loss term carries it: its gradient is scaled
    by the overall-loss weight of the step (1 - sum of multipliers without ``detach_overall``),
    and EL+RB's gaps L_g - L include it. The scale goes into the decayed parameter group's weight
    decay before each step; EL+RB is told the term's value.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig):
        self.layer = last_layer(model)
        self.group = optimizer.param_groups[1]
        self.wd = cfg.weight_decay

    def before_objective(self, method, active: bool) -> None:
        if active and getattr(method, "uses_overall_loss_value", False) and self.wd:
            with torch.no_grad():
                sq = float(sum(p.detach().float().pow(2).sum() for p in self.layer.parameters()))  # one sync
            method.l2_penalty = 0.5 * self.wd * sq

    def before_step(self, method, active: bool) -> None:
        weight = getattr(method, "overall_weight", 1.0) if active else 1.0
        self.group["weight_decay"] = self.wd * weight
