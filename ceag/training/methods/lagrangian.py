"""Lagrangian methods: CEAG (excess-accuracy-gap constraints) and EL+RB (equalized loss).

Both hold one multiplier per group and take the dual step first, then return the primal
objective computed with the updated multipliers: one forward and one backward per step.

The primal objective is a weighted sum of per-sample losses: every group term is linear in the
group's mean loss (|.| is linear with the sign held fixed), so its gradient equals that of
``sum_i w_i loss_i`` with per-sample weights ``w`` computed without gradient. The returned
tensor has the Lagrangian's exact value and gradient, and the backward pass costs what NFT's does.
"""

from __future__ import annotations

import numpy as np
import torch

from ceag.training.dual_counter import ConstraintCounter
from ceag.training.methods.base import DenseReference, Diverged, Method
from ceag.training.methods.buffers import ReplayBuffer, as_array


def _host(loss: torch.Tensor, correct: torch.Tensor, groups: torch.Tensor, pack: bool | None = None):
    """The batch's per-sample losses, 0/1 correctness and groups as host arrays.

    On the CPU these are views (no copy); from an accelerator (``pack``) the three travel as one
    (3, B) copy.
    """
    if not (loss.device.type != "cpu" if pack is None else pack):
        return loss.detach().float().numpy(), correct.numpy(), groups.numpy()
    packed = torch.stack((loss.detach().float(), correct.float(), groups.float())).cpu().numpy()
    return packed[0], packed[1] > 0.5, packed[2].astype(np.int64)


class _Lagrangian(Method):
    """The dual state (multipliers, violations, replay buffers) lives in host memory as numpy arrays.

    It is at most a few thousand numbers (groups x buffer size) updated once per step: numpy does
    that in a few tens of microseconds, where the same work as torch ops (or kernel launches on a
    GPU) costs several times more. Only the per-sample weights of the primal step travel to the
    model's device.
    """

    mitigates = True
    counter: ConstraintCounter  # set in __init__
    heldout = None        # a HeldoutStream (methods/heldout.py): the dual step reads validation samples
    overall_weight = 1.0  # weight of the overall-loss term in the last primal objective
    l2_penalty = 0.0      # an L2 term counted in the overall loss (set by the engine, see _LastLayerDecay)

    def __init__(self, cfg, num_groups: int, dense: DenseReference, device: torch.device):
        super().__init__(cfg, num_groups, dense, device)
        self._lam = np.zeros(num_groups)
        self._violations = np.full(num_groups, np.nan)
        self.buffer = ReplayBuffer(num_groups, cfg.buffer_size) if cfg.replay_buffer else None
        self.counter = ConstraintCounter(num_groups)
        host = {name: as_float64(getattr(dense, name)) for name in ("group_accuracy", "group_loss", "prior")}
        self._dense_group_accuracy, self._dense_group_loss, self._prior = (
            host["group_accuracy"], host["group_loss"], host["prior"])

    # torch views of the dual state, for traces, checkpoints and inspection
    @property
    def multipliers(self) -> torch.Tensor:
        return torch.from_numpy(self._lam)

    @multipliers.setter
    def multipliers(self, value) -> None:
        self._lam = as_float64(value)

    @property
    def violations(self) -> torch.Tensor:
        return torch.from_numpy(self._violations)

    @violations.setter
    def violations(self, value) -> None:
        self._violations = as_float64(value)

    def _group_means(self, values: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(G,) per-group mean of ``values`` in the batch (0 where a group is absent)."""
        return np.bincount(groups, weights=values, minlength=self.num_groups) / np.maximum(counts, 1)

    def _batch_means(self, losses: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-group and overall mean loss of the batch, the overall one from the same group sums.

        Summing once keeps the two consistent: a batch of a single group has a gap of exactly 0,
        not a rounding residue whose sign would flip that group's weight.
        """
        sums = np.bincount(groups, weights=losses, minlength=self.num_groups)
        return sums / np.maximum(counts, 1), float(sums.sum()) / losses.shape[0]

    def _estimates(self, values: np.ndarray, groups: np.ndarray, counts: np.ndarray):
        """Per-group estimate for the dual step (NaN where there is none), and which groups have one."""
        if self.buffer is not None:
            self.buffer.push_(values, groups, counts)
            return self.buffer.mean_array(), self.buffer.full_array()
        present = counts > 0
        return np.where(present, self._group_means(values, groups, counts), np.nan), present

    def _overall(self, estimate: np.ndarray, ready: np.ndarray, values: np.ndarray,
                 prior: np.ndarray | None = None) -> float:
        """The overall estimate the dual step compares with the dense model's.

        ``overall_estimate="train_share"``: the groups with an estimate, weighted by their share of
        the training split (consistent with the sample-weighted dense accuracy). ``"buffer_mean"``:
        the mean of every value in the full buffers, so each full buffer counts equally, as in the
        paper's code (``GroupCyclicBuffer.query``, src/cmp/cyclic_buffer.py); without replay
        buffers, the batch's mean ``values``, as theirs.
        """
        if self.cfg.overall_estimate == "buffer_mean":
            if self.buffer is None:
                return float(values.mean()) if values.shape[0] else 0.0
            return float(estimate[ready].mean()) if ready.any() else 0.0
        w = (self._prior if prior is None else prior) * ready
        return float(np.dot(np.where(ready, estimate, 0.0), w) / max(w.sum(), 1e-12))

    def _dual_step_(self, violation: np.ndarray, ready: np.ndarray, projected: bool) -> None:
        # Groups move when they have an estimate. A NaN violation (a NaN loss reached EL+RB's
        # buffers, which makes every violation NaN through the overall estimate) leaves the
        # multipliers as they were; the non-finite objective of that step stops the run anyway.
        updated = self._lam + self.cfg.dual_lr * violation
        if projected:
            np.maximum(updated, 0.0, out=updated)
        self._lam = np.where(ready & (updated == updated), updated, self._lam)
        self._violations = np.where(ready, violation, np.nan)
        self.counter.update_(self._lam, self._violations, ready)

    def _weighted(self, loss: torch.Tensor, losses: np.ndarray, groups: np.ndarray, group_weight: np.ndarray,
                  overall_weight: float, value: float) -> torch.Tensor:
        """sum_i (overall_weight / B + group_weight[g_i]) loss_i, shifted to have the value ``value``."""
        w = (group_weight[groups] + overall_weight / losses.shape[0]).astype(np.float32)
        shift = value - float(np.dot(w, losses))
        weights = torch.from_numpy(w)
        if loss.device.type != "cpu":
            weights = weights.to(loss.device, non_blocking=True)
        return torch.dot(weights, loss) + shift

    def check_finite(self, step: int, objective: torch.Tensor) -> None:
        super().check_finite(step, objective)
        top = float(np.abs(self._lam).max()) if self.num_groups else 0.0
        if not top <= self.cfg.divergence_threshold:  # NaN fails this too
            raise Diverged(step, f"a multiplier reached {top:.3g} (limit {self.cfg.divergence_threshold:g}); "
                           f"lower dual_lr (now {self.cfg.dual_lr:g})")

    def state_dict(self) -> dict:
        state = {"multipliers": torch.from_numpy(self._lam.copy()),
                 "violations": torch.from_numpy(self._violations.copy()),
                 "buffer": self.buffer.state_dict() if self.buffer is not None else None,
                 "counter": self.counter.state_dict()}
        if self.heldout is not None:
            state["heldout"] = self.heldout.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._lam = as_float64(state["multipliers"])
        self._violations = as_float64(state["violations"])
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])
        if state.get("counter") is not None:
            self.counter.load_state_dict(state["counter"])
        if self.heldout is not None:
            self.heldout.load_state_dict(state["heldout"])


def as_float64(x) -> np.ndarray:
    """A float64 host copy of a tensor (any device) or array."""
    return np.array(as_array(x), dtype=np.float64)


class CEAG(_Lagrangian):
    """min L(theta) s.t. psi_g(theta) <= tolerance for every group, with proxy constraints.

    Dual step (true constraint): psi_hat_g - eps with psi_hat_g = (A_g^d - A_hat_g) - (A^d - A_hat),
    A_hat_g from the replay buffer of 0/1 correctness, A_hat over the groups with full buffers
    (training-share weighted, or their plain mean: ``overall_estimate``).
    Primal step (surrogate): L + sum_{g in batch} lambda_g psi~_g with
    psi~_g = (L_g - L_g^d) - (L - L^d) on the batch (L detached inside psi~ when detach_overall).
    """

    key = "ceag"
    uses_tolerance = True

    def objective(self, loss, correct, groups, active):
        if not active:
            return loss.mean()
        losses, correct_np, g = _host(loss, correct, groups)
        counts = np.bincount(g, minlength=self.num_groups)
        if self.heldout is None:
            acc, ready = self._estimates(correct_np, g, counts)
            overall = self._overall(acc, ready, correct_np)
            excess = (self._dense_group_accuracy - acc) - (self.dense.accuracy - overall)
        else:  # held-out multipliers: validation estimates against the dense model on validation
            h = self.heldout
            acc, ready, values = h.estimates()
            overall = self._overall(acc, ready, values, h.prior)
            excess = (h.dense_group_accuracy - acc) - (h.dense_accuracy - overall)
        self._dual_step_(excess - self.cfg.tolerance, ready, projected=True)
        lam = self._lam * (counts > 0)
        group_loss, mean_loss = self._batch_means(losses, g, counts)
        surrogate = (group_loss - self._dense_group_loss) - (mean_loss - self.dense.loss)
        value = mean_loss + float(np.dot(lam, surrogate))
        overall_weight = 1.0 if self.cfg.detach_overall else 1.0 - float(lam.sum())
        self.overall_weight = overall_weight
        return self._weighted(loss, losses, g, lam / np.maximum(counts, 1), overall_weight, value)


class ELRB(_Lagrangian):
    """Equalized loss with replay buffers: h_g = |L_g - L| = 0, multipliers not projected.

    The dual step uses buffered per-sample losses; the primal step the batch's group losses.
    """

    key = "el_rb"
    uses_overall_loss_value = True

    def objective(self, loss, correct, groups, active):
        if not active:
            return loss.mean()
        losses, _, g = _host(loss, correct, groups)
        counts = np.bincount(g, minlength=self.num_groups)
        est, ready = self._estimates(losses, g, counts)
        self._dual_step_(np.abs(est - self._overall(est, ready, losses)), ready, projected=False)
        lam = self._lam * (counts > 0)
        group_loss, mean_loss = self._batch_means(losses, g, counts)
        # l2_penalty: the paper's L2 term inside the overall loss (weight_decay_scope="last_layer")
        gap = np.where(counts > 0, group_loss - mean_loss - self.l2_penalty, 0.0)
        value = mean_loss + float(np.dot(lam, np.abs(gap)))
        signed = lam * np.sign(gap)
        overall_weight = 1.0 if self.cfg.detach_overall else 1.0 - float(signed.sum())
        self.overall_weight = overall_weight
        return self._weighted(loss, losses, g, signed / np.maximum(counts, 1), overall_weight, value)


__all__ = ["CEAG", "ELRB", "Diverged"]
