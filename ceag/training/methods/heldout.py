"""Held-out multipliers: the dual step reads validation samples, the primal step the training data.

Cotter, Gupta, Jiang, Srebro, Sridharan, Wang, Woodworth and You, "Training Well-Generalizing
Classifiers for Fairness Metrics and Other Data-Dependent Constraints" (ICML 2019): the model's
player learns on the training set and the multipliers' player on a separate validation set,
which bounds the constraint violation on new data. In CEAG terms (``constraint_data="val"``):

- every ``heldout_every`` active steps, one validation mini-batch (``batch_size`` samples,
  drawn without replacement, reshuffled each pass over the split by the stream's own generator)
  goes through the model in eval mode under ``torch.no_grad``: no gradient, and batch-norm
  running statistics are neither used in batch mode nor updated (eval mode is also how the test
  split is scored);
- its 0/1 correctness fills per-group replay buffers (or, without replay buffers, the batch's
  group means), from which the dual step's A_hat_g and A_hat come; they are compared with the
  dense model's accuracies on the same validation split;
- the dual step runs every step on the latest estimates, as with training data; the primal step
  keeps the training surrogate.

The stream's state (generator, pass order, position, buffers, step count) is part of the method's
checkpoint, so a resumed run draws the same validation batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ceag.training.methods.buffers import ReplayBuffer

# The validation stream's generator: the run seed plus this, so it never repeats the training order's.
STREAM_SEED_OFFSET = 7_919


class HeldoutStream:
    """Validation batches for the dual step, and what they say about each group.

    ``split``: the validation split (x, y, g on the model's device); ``dense`` its dense-model
    statistics (``GroupStats``: per-group ``accuracy`` (G,), ``n`` (G,), ``overall_accuracy``).
    Estimates are fractions in [0, 1]; a group without an estimate yet is NaN and not ready.
    """

    def __init__(self, model: nn.Module, split, dense, num_groups: int, *, batch_size: int, every: int,
                 seed: int, buffer_size: int, replay_buffer: bool, amp: bool = False):
        if len(split) == 0:
            raise ValueError("held-out multipliers need a non-empty validation split; raise val_fraction")
        self.model, self.split, self.num_groups = model, split, num_groups
        self.batch_size, self.every, self.amp = min(batch_size, len(split)), every, amp
        self.generator = torch.Generator().manual_seed(seed + STREAM_SEED_OFFSET)
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0
        self.calls = 0   # active steps seen (a batch is drawn when calls % every == 0)
        self.draws = 0   # validation batches evaluated
        self.buffer = ReplayBuffer(num_groups, buffer_size) if replay_buffer else None
        self._estimate = np.full(num_groups, np.nan)
        self._ready = np.zeros(num_groups, dtype=bool)
        self._last_values = np.zeros(0)
        n = np.asarray(dense.n, dtype=np.float64)
        self.dense_group_accuracy = np.nan_to_num(np.asarray(dense.accuracy, dtype=np.float64))
        self.dense_accuracy = float(dense.overall_accuracy)
        self.prior = n / max(n.sum(), 1.0)  # each group's share of the validation split

    def _next_indices(self) -> torch.Tensor:
        """The next ``batch_size`` validation indices; a pass that runs out is finished from a new shuffle."""
        parts, need = [], self.batch_size
        while need > 0:
            if self.position >= self.order.shape[0]:
                self.order = torch.randperm(len(self.split), generator=self.generator)
                self.position = 0
            take = self.order[self.position:self.position + need]
            self.position += take.shape[0]
            need -= take.shape[0]
            parts.append(take)
        return torch.cat(parts)

    @torch.no_grad()
    def evaluate_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one validation batch and score it: (correct (B,) bool, groups (B,), indices (B,)) on the host."""
        from ceag.training.device import autocast

        idx = self._next_indices()
        dev_idx = idx.to(self.split.y.device)
        x = self.split.prepare(self.split.inputs(dev_idx))
        was_training = self.model.training
        self.model.eval()  # batch norm uses its running statistics and leaves them alone
        try:
            with autocast(x.device, self.amp):
                logits = self.model(x).float()
        finally:
            self.model.train(was_training)
        correct = (logits.argmax(1) == self.split.y[dev_idx]).cpu().numpy()
        groups = self.split.g[dev_idx].cpu().numpy()
        self.draws += 1
        return correct, groups, idx.numpy()

    def estimates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-group accuracy estimates (G,), which groups have one (G,), and the values behind them.

        Called once per active step; draws a validation batch every ``every`` calls.
        """
        if self.calls % self.every == 0:
            correct, groups, _ = self.evaluate_batch()
            values = correct.astype(np.float64)
            counts = np.bincount(groups, minlength=self.num_groups)
            if self.buffer is not None:
                self.buffer.push_(values, groups, counts)
                self._estimate, self._ready = self.buffer.mean_array(), self.buffer.full_array()
            else:
                sums = np.bincount(groups, weights=values, minlength=self.num_groups)
                self._ready = counts > 0
                self._estimate = np.where(self._ready, sums / np.maximum(counts, 1), np.nan)
            self._last_values = values
        self.calls += 1
        return self._estimate, self._ready, self._last_values

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position, "calls": self.calls, "draws": self.draws,
                "estimate": torch.from_numpy(self._estimate.copy()), "ready": torch.from_numpy(self._ready.copy()),
                "last_values": torch.from_numpy(self._last_values.copy()),
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position, self.calls, self.draws = int(state["position"]), int(state["calls"]), int(state["draws"])
        self._estimate = state["estimate"].numpy().astype(np.float64)
        self._ready = state["ready"].numpy().astype(bool)
        self._last_values = state["last_values"].numpy().astype(np.float64)
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])


def attach_heldout(method, model: nn.Module, data, dense_stats: dict, cfg) -> HeldoutStream:
    """Give ``method`` (CEAG) a validation stream; its dual step then reads only validation samples."""
    if "val" not in data.splits or len(data.splits["val"]) == 0:
        raise ValueError(f"held-out multipliers need a validation split, and {data.name} has none with "
                         f"val_fraction={cfg.val_fraction:g}; raise val_fraction")
    stream = HeldoutStream(model, data.splits["val"], dense_stats["val"], data.num_groups,
                           batch_size=cfg.batch_size, every=cfg.heldout_every, seed=cfg.seed,
                           buffer_size=cfg.buffer_size, replay_buffer=cfg.replay_buffer, amp=cfg.amp)
    method.heldout = stream
    return stream


def constraint_record(cfg, data) -> dict:
    """What drove a run's multipliers, for its summary and ``run --json``."""
    from ceag.config.vocabulary import MITIGATING_METHODS

    if cfg.method not in MITIGATING_METHODS and cfg.method != "ceag_vs":
        return {"split": None, "reason": "no multipliers"}
    if cfg.constraint_data == "train":
        return {"split": "train", "samples": len(data.splits["train"])}
    from ceag.datasets.splitting import DATA_SEED

    val = data.splits["val"]
    rule = (getattr(data, "report", None) or {}).get("split_rule") or (
        f"a stratified {cfg.val_fraction:g} of the training pool (seed {DATA_SEED}), before the dense model trains")
    return {"split": "val", "samples": len(val), "every": cfg.heldout_every,
            "batch_size": min(cfg.batch_size, len(val)), "val_fraction": cfg.val_fraction, "data_seed": DATA_SEED,
            "split_rule": rule, "per_group": np.bincount(val.g.cpu().numpy(), minlength=data.num_groups).tolist()}
