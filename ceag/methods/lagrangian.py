"""Lagrangian methods: CEAG (excess-accuracy-gap constraints) and EL+RB (equalized loss).

Both hold one multiplier per group and take the dual step first, then return the primal
objective computed with the updated multipliers: one forward and one backward per step.

The primal objective is a weighted sum of per-sample losses: every group term is linear in the
group's mean loss (|.| is linear with the sign held fixed), so its gradient equals that of
``sum_i w_i loss_i`` with per-sample weights ``w`` computed without gradient. The returned
tensor has the Lagrangian's exact value and gradient, and the backward pass costs what NFT's does.
"""

from __future__ import annotations

import torch

from .base import DenseReference, Diverged, Method
from .buffers import ReplayBuffer


class _Lagrangian(Method):
    mitigates = True

    def __init__(self, cfg, num_groups: int, dense: DenseReference, device: torch.device):
        super().__init__(cfg, num_groups, dense, device)
        self.multipliers = torch.zeros(num_groups, device=device)
        self.violations = torch.full((num_groups,), float("nan"), device=device)
        self.buffer = ReplayBuffer(num_groups, cfg.buffer_size, device) if cfg.replay_buffer else None
        self._nan = torch.full((num_groups,), float("nan"), device=device)

    def _group_means(self, values: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """(G,) per-group mean of ``values`` in the batch (0 where a group is absent)."""
        sums = torch.zeros(self.num_groups, dtype=values.dtype, device=values.device).index_add_(0, groups, values)
        return sums / counts.clamp_min(1)

    def _estimates(self, values: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor):
        """Per-group estimate for the dual step, and which groups have one (ready)."""
        if self.buffer is not None:
            self.buffer.push_(values, groups, counts)
            return self.buffer.mean(), self.buffer.full
        present = counts > 0
        return torch.where(present, self._group_means(values, groups, counts), self._nan), present

    def _overall(self, estimate: torch.Tensor, ready: torch.Tensor) -> torch.Tensor:
        """Overall estimate: groups with an estimate, weighted by their training-split share."""
        w = self.dense.prior * ready
        return (torch.nan_to_num(estimate) * w).sum() / w.sum().clamp_min(1e-12)

    def _dual_step_(self, violation: torch.Tensor, ready: torch.Tensor, projected: bool) -> None:
        updated = self.multipliers + self.cfg.dual_lr * torch.nan_to_num(violation)
        if projected:
            updated = updated.clamp_min(0.0)
        self.multipliers = torch.where(ready, updated, self.multipliers)
        self.violations = torch.where(ready, violation, self._nan)

    def _weighted(self, loss: torch.Tensor, groups: torch.Tensor, group_weight: torch.Tensor,
                  overall_weight: torch.Tensor | float, value: torch.Tensor) -> torch.Tensor:
        """sum_i (overall_weight / B + group_weight[g_i]) loss_i, shifted to have the value ``value``."""
        w = group_weight[groups] + overall_weight / loss.numel()
        primal = (w * loss).sum()
        return primal + (value - primal.detach())

    def check_finite(self, step: int, objective: torch.Tensor) -> None:
        top = self.multipliers.abs().max()
        if not bool(torch.isfinite(objective) & torch.isfinite(top) & (top <= self.cfg.divergence_threshold)):
            if not torch.isfinite(objective):
                raise Diverged(step, f"training objective is {float(objective.detach())}")
            raise Diverged(step, f"a multiplier reached {float(top):.3g} (limit {self.cfg.divergence_threshold:g}); "
                           f"lower dual_lr (now {self.cfg.dual_lr:g})")

    def state_dict(self) -> dict:
        return {"multipliers": self.multipliers.cpu().clone(), "violations": self.violations.cpu().clone(),
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.multipliers = state["multipliers"].to(self.device)
        self.violations = state["violations"].to(self.device)
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])


class CEAG(_Lagrangian):
    """min L(theta) s.t. psi_g(theta) <= tolerance for every group, with proxy constraints.

    Dual step (true constraint): psi_hat_g - eps with psi_hat_g = (A_g^d - A_hat_g) - (A^d - A_hat),
    A_hat_g from the replay buffer of 0/1 correctness, A_hat the prior-weighted mean over groups
    with full buffers. Primal step (surrogate): L + sum_{g in batch} lambda_g psi~_g with
    psi~_g = (L_g - L_g^d) - (L - L^d) on the batch (L detached inside psi~ when detach_overall).
    """

    key = "ceag"
    label = "CEAG"
    uses_tolerance = True

    def objective(self, loss, correct, groups, active):
        if not active:
            return loss.mean()
        with torch.no_grad():
            counts = torch.bincount(groups, minlength=self.num_groups)
            acc, ready = self._estimates(correct.float(), groups, counts)
            excess = (self.dense.group_accuracy - acc) - (self.dense.accuracy - self._overall(acc, ready))
            self._dual_step_(excess - self.cfg.tolerance, ready, projected=True)
            lam = self.multipliers * (counts > 0)
            mean_loss = loss.mean()
            group_loss = self._group_means(loss, groups, counts)
            surrogate = (group_loss - self.dense.group_loss) - (mean_loss - self.dense.loss)
            value = mean_loss + (lam * surrogate).sum()
            group_weight = lam / counts.clamp_min(1)
            overall_weight = 1.0 if self.cfg.detach_overall else 1.0 - lam.sum()
        return self._weighted(loss, groups, group_weight, overall_weight, value)


class ELRB(_Lagrangian):
    """Equalized loss with replay buffers: h_g = |L_g - L| = 0, multipliers not projected.

    The dual step uses buffered per-sample losses; the primal step the batch's group losses.
    """

    key = "el_rb"
    label = "EL+RB"

    def objective(self, loss, correct, groups, active):
        if not active:
            return loss.mean()
        with torch.no_grad():
            counts = torch.bincount(groups, minlength=self.num_groups)
            est, ready = self._estimates(loss.float(), groups, counts)
            self._dual_step_((est - self._overall(est, ready)).abs(), ready, projected=False)
            lam = self.multipliers * (counts > 0)
            mean_loss = loss.mean()
            gap = self._group_means(loss, groups, counts) - mean_loss
            value = mean_loss + (lam * gap.abs()).sum()
            signed = lam * torch.sign(gap)
            group_weight = signed / counts.clamp_min(1)
            overall_weight = 1.0 if self.cfg.detach_overall else 1.0 - signed.sum()
        return self._weighted(loss, groups, group_weight, overall_weight, value)


__all__ = ["CEAG", "ELRB", "Diverged"]
