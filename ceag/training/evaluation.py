"""Evaluating a model on a split: per-group statistics, the metric rows a run records, per-sample predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ceag.config.vocabulary import PREDICTION_COLUMNS
from ceag.datasets.base import Split
from ceag.training.device import autocast
from ceag.training.methods import DenseReference
from ceag.training.metrics import GroupStats, disparity, group_stats


@dataclass
class Outputs:
    """A model's outputs on one split, in the split's order (tensors on the split's device): ``pred`` (N,)
    int64 predicted classes, ``loss`` (N,) float32 per-sample cross-entropy, ``p_pred`` (N,) float32 softmax
    probability of ``pred``. One evaluation pass gives all three: the stored accuracies, the per-sample
    predictions and their probabilities come from the same pass."""

    pred: torch.Tensor
    loss: torch.Tensor
    p_pred: torch.Tensor

    def cpu(self) -> Outputs:
        return Outputs(self.pred.cpu(), self.loss.cpu(), self.p_pred.cpu())


@torch.inference_mode()
def outputs(model: nn.Module, split: Split, amp: bool = False, batch_size: int | None = None) -> Outputs:
    """``model``'s outputs on ``split`` in eval mode, in one pass (inference mode: no autograd records, no
    version counters; the results are inference tensors, read but never updated in place by callers).
    Nothing is read back to the host until the caller asks: predictions, losses and probabilities stay on
    the split's device.

    ``batch_size``: inputs per forward pass; None sizes it from the model's activations and the
    memory available (ceag.training.memory). Running out of memory raises EvalMemoryError naming the setting.
    """
    from ceag.training.memory import EvalMemoryError, eval_batch_size, is_out_of_memory, out_of_memory_message

    was_training = model.training
    model.eval()
    shape = split.input_shape
    batch = eval_batch_size(model, shape, split.x.device, batch_size) if len(split) else 1
    preds, losses, probs = [], [], []
    try:
        for start in range(0, len(split), batch):
            x, y = split.prepare(split.inputs(slice(start, start + batch))), split.y[start:start + batch]
            with autocast(x.device, amp):
                logits = model(x).float()
            preds.append(logits.argmax(1))
            losses.append(F.cross_entropy(logits, y, reduction="none"))
            probs.append(torch.softmax(logits, dim=1).max(dim=1).values)
    except (RuntimeError, MemoryError) as err:
        if is_out_of_memory(err):
            raise EvalMemoryError(out_of_memory_message(batch, shape, split.x.device)) from err
        raise
    finally:
        model.train(was_training)
    if not preds:
        empty = torch.empty(0, device=split.y.device)
        return Outputs(empty.long(), empty.float(), empty.float())
    return Outputs(torch.cat(preds), torch.cat(losses), torch.cat(probs))


def predict(model: nn.Module, split: Split, amp: bool = False,
            batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and per-sample cross-entropy (N,) in eval mode (``outputs`` without probabilities)."""
    out = outputs(model, split, amp, batch_size)
    return out.pred, out.loss


def model_outputs(model: nn.Module, data, amp: bool = False, batch_size: int | None = None) -> dict[str, Outputs]:
    """``outputs`` on every split of ``data`` (a GroupedDataset), by split name."""
    return {name: outputs(model, split, amp, batch_size) for name, split in data.splits.items()}


def stats_of(out: Outputs, split: Split, num_groups: int) -> GroupStats:
    """Per-group accuracy and loss of outputs ``out`` on ``split``."""
    return group_stats(out.pred == split.y, out.loss, split.g, num_groups)


def evaluate(model: nn.Module, split: Split, num_groups: int, amp: bool = False,
             batch_size: int | None = None) -> GroupStats:
    return stats_of(outputs(model, split, amp, batch_size), split, num_groups)


def metric_rows(epoch: int, split: str, stats: GroupStats, dense: GroupStats, sparsity: float,
                group_names: list[str]) -> tuple[list[dict], dict]:
    """Long rows (one per group) and the run-level row for one split at one epoch."""
    d = disparity(stats, dense)
    rows = [
        {"epoch": epoch, "split": split, "group_id": i, "group_name": group_names[i],
         "n": int(stats.n[i]), "accuracy": _f(stats.accuracy[i]), "loss": _f(stats.loss[i]),
         "dense_accuracy": _f(dense.accuracy[i]), "acc_gap": _f(d.acc_gap[i]),
         "excess_gap": _f(d.excess_gap[i])}
        for i in range(len(group_names))
    ]
    run_row = {"epoch": epoch, "split": split, "accuracy": stats.overall_accuracy,
               "loss": stats.overall_loss, "dense_accuracy": dense.overall_accuracy,
               "acc_gap": d.overall_gap, "max_excess_gap": d.max_excess_gap, "psi_pw": d.psi_pw,
               "sparsity": sparsity}
    return rows, run_row


def _f(x: float) -> float:
    return float(x)


def dense_reference(stats: GroupStats, device: torch.device) -> DenseReference:
    n = torch.as_tensor(stats.n, dtype=torch.float32, device=device)
    return DenseReference(
        group_accuracy=torch.as_tensor(np.nan_to_num(stats.accuracy), dtype=torch.float32, device=device),
        group_loss=torch.as_tensor(np.nan_to_num(stats.loss), dtype=torch.float32, device=device),
        accuracy=float(stats.overall_accuracy), loss=float(stats.overall_loss),
        prior=n / n.sum(),
    )


def predictions_frame(data, sparse: dict[str, Outputs], dense: dict[str, Outputs] | None) -> pd.DataFrame:
    """Per-sample predictions (``PREDICTION_COLUMNS``) of every split of ``data`` from the sparse model's
    ``sparse`` and the dense model's ``dense`` outputs (None: the dense columns are missing, NA)."""
    parts = []
    for name, split in data.splits.items():
        mine = sparse[name].cpu()
        if dense is not None:
            theirs = dense[name].cpu()
            dense_pred = pd.array(theirs.pred.numpy().astype(np.int64), dtype="Int64")
            dense_p = theirs.p_pred.numpy().astype(np.float32)
        else:
            dense_pred = pd.array([pd.NA] * len(split), dtype="Int64")
            dense_p = np.full(len(split), np.nan, dtype=np.float32)
        parts.append(pd.DataFrame({
            "split": name, "sample_id": np.arange(len(split), dtype=np.int64),
            "file": split.files if split.files is not None else np.full(len(split), None, dtype=object),
            "y_true": split.y.cpu().numpy(),
            "group_id": split.g.cpu().numpy(), "y_pred": mine.pred.numpy().astype(np.int64),
            "p_pred": mine.p_pred.numpy().astype(np.float32), "dense_pred": dense_pred, "dense_p_pred": dense_p,
        }))
    return pd.concat(parts, ignore_index=True)[list(PREDICTION_COLUMNS)]
