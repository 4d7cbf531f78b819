"""Lagrangian methods: CEAG (excess-accuracy-gap constraints) and EL+RB (equalized loss).

Both hold one multiplier per group and take the dual step first, then return the primal
objective computed with the updated multipliers: one forward and one backward per step.
"""

from __future__ import annotations

import torch

from ..metrics import group_count, group_sum
from .base import DenseReference, Diverged, Method
from .buffers import ReplayBuffer


class _Lagrangian(Method):
    mitigates = True

    def __init__(self, cfg, num_groups: int, dense: DenseReference, device: torch.device):
        super().__init__(cfg, num_groups, dense, device)
        self.multipliers = torch.zeros(num_groups, device=device)
        self.violations = torch.full((num_groups,), float("nan"), device=device)
        self.buffer = ReplayBuffer(num_groups, cfg.buffer_size, device) if cfg.replay_buffer else None

    def _batch_groups(self, values: torch.Tensor, groups: torch.Tensor):
        """(present (G,) bool, per-group mean (G,) with 0 where absent)."""
        counts = group_count(groups, self.num_groups)
        sums = group_sum(values, groups, self.num_groups)
        return counts > 0, sums / counts.clamp_min(1).to(values.dtype)

    def _estimates(self, values: torch.Tensor, groups: torch.Tensor):
        """Per-group estimate used by the dual step and which groups have one (ready)."""
        if self.buffer is not None:
            self.buffer.push_(values, groups)
            return self.buffer.mean(), self.buffer.full
        present, means = self._batch_groups(values, groups)
        return torch.where(present, means, torch.full_like(means, float("nan"))), present

    def _overall(self, estimate: torch.Tensor, ready: torch.Tensor) -> torch.Tensor:
        """Overall estimate: groups with an estimate, weighted by their training-split share."""
        w = torch.where(ready, self.dense.prior, torch.zeros_like(self.dense.prior))
        return (torch.nan_to_num(estimate) * w).sum() / w.sum().clamp_min(1e-12)

    def _dual_step_(self, violation: torch.Tensor, ready: torch.Tensor, projected: bool) -> None:
        updated = self.multipliers + self.cfg.dual_lr * torch.nan_to_num(violation)
        if projected:
            updated = updated.clamp_min(0.0)
        self.multipliers = torch.where(ready, updated, self.multipliers)
        self.violations = torch.where(ready, violation, torch.full_like(violation, float("nan")))

    def check_finite(self, step: int, objective: torch.Tensor) -> None:
        super().check_finite(step, objective)
        top = float(self.multipliers.abs().max())
        if not torch.isfinite(self.multipliers).all() or top > self.cfg.divergence_threshold:
            raise Diverged(step, f"a multiplier reached {top:.3g} (limit {self.cfg.divergence_threshold:g}); "
                           f"lower dual_lr (now {self.cfg.dual_lr:g})")

    def state_dict(self) -> dict:
        return {"multipliers": self.multipliers.cpu(), "violations": self.violations.cpu(),
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
    with full buffers. Primal step (surrogate): psi~_g = (L_g - L_g^d) - (L - L^d) on the batch.
    """

    key = "ceag"
    label = "CEAG"
    uses_tolerance = True

    def objective(self, loss, correct, groups, active):
        mean_loss = loss.mean()
        if not active:
            return mean_loss
        with torch.no_grad():
            acc, ready = self._estimates(correct.float(), groups)
            excess = (self.dense.group_accuracy - acc) - (self.dense.accuracy - self._overall(acc, ready))
            self._dual_step_(excess - self.cfg.tolerance, ready, projected=True)
        present, group_loss = self._batch_groups(loss, groups)
        overall = mean_loss.detach() if self.cfg.detach_overall else mean_loss
        surrogate = (group_loss - self.dense.group_loss) - (overall - self.dense.loss)
        return mean_loss + (self.multipliers * surrogate * present).sum()


class ELRB(_Lagrangian):
    """Equalized loss with replay buffers: h_g = |L_g - L| = 0, multipliers not projected.

    The dual step uses buffered per-sample losses; the primal step the batch's group losses.
    """

    key = "el_rb"
    label = "EL+RB"

    def objective(self, loss, correct, groups, active):
        mean_loss = loss.mean()
        if not active:
            return mean_loss
        with torch.no_grad():
            est, ready = self._estimates(loss.detach().float(), groups)
            self._dual_step_((est - self._overall(est, ready)).abs(), ready, projected=False)
        present, group_loss = self._batch_groups(loss, groups)
        overall = mean_loss.detach() if self.cfg.detach_overall else mean_loss
        return mean_loss + (self.multipliers * (group_loss - overall).abs() * present).sum()


__all__ = ["CEAG", "ELRB", "Diverged"]
