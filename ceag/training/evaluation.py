"""Evaluating a model on a split: per-group statistics, the metric rows a run records, per-sample predictions."""

from __future__ import annotations

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


@torch.no_grad()
def predict(model: nn.Module, split: Split, amp: bool = False,
            batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and per-sample cross-entropy (N,) in eval mode.

    ``batch_size``: inputs per forward pass; None sizes it from the model's activations and the
    memory available (ceag.training.memory). Running out of memory raises EvalMemoryError naming the setting.
    """
    from ceag.training.memory import EvalMemoryError, eval_batch_size, is_out_of_memory, out_of_memory_message

    was_training = model.training
    model.eval()
    shape = split.input_shape
    batch = eval_batch_size(model, shape, split.x.device, batch_size) if len(split) else 1
    preds, losses = [], []
    try:
        for start in range(0, len(split), batch):
            x, y = split.prepare(split.inputs(slice(start, start + batch))), split.y[start:start + batch]
            with autocast(x.device, amp):
                logits = model(x).float()
            preds.append(logits.argmax(1))
            losses.append(F.cross_entropy(logits, y, reduction="none"))
    except (RuntimeError, MemoryError) as err:
        if is_out_of_memory(err):
            raise EvalMemoryError(out_of_memory_message(batch, shape, split.x.device)) from err
        raise
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(losses)


def evaluate(model: nn.Module, split: Split, num_groups: int, amp: bool = False,
             batch_size: int | None = None) -> GroupStats:
    pred, loss = predict(model, split, amp, batch_size)
    return group_stats(pred == split.y, loss, split.g, num_groups)


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


def predict_proba(model, split, amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,) int64, its softmax probability (N,) float32) of ``model`` on ``split``.

    Runs ``engine.predict`` (the same batches and eval mode as the run's evaluation, so the
    predicted classes are exactly those behind the stored accuracies) and reads the logits of
    each batch through a forward hook.
    """
    import torch


    probs: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        probs.append(torch.softmax(output.detach().float(), dim=1).max(dim=1).values.cpu())

    handle = model.register_forward_hook(keep)
    try:
        pred, _ = predict(model, split, amp)
    finally:
        handle.remove()
    return pred.cpu().numpy().astype(np.int64), torch.cat(probs).numpy().astype(np.float32)


def _sample_ids(split) -> np.ndarray:
    names = getattr(split, "sample_names", None)  # file names, for datasets read from files
    if names is not None and len(names) == len(split):
        return np.asarray(names, dtype=object)
    return np.arange(len(split), dtype=np.int64)


def predictions_frame(model, dense, data, amp: bool = False) -> pd.DataFrame:
    """Predictions of ``model`` (sparse) and ``dense`` (or None) on every split of ``data``."""
    parts = []
    for name, split in data.splits.items():
        y_pred, p_pred = predict_proba(model, split, amp)
        if dense is not None:
            dense_pred, dense_p = predict_proba(dense, split, amp)
            dense_pred = pd.array(dense_pred, dtype="Int64")
        else:
            dense_pred = pd.array([pd.NA] * len(split), dtype="Int64")
            dense_p = np.full(len(split), np.nan, dtype=np.float32)
        parts.append(pd.DataFrame({
            "split": name, "sample_id": _sample_ids(split), "y_true": split.y.cpu().numpy(),
            "group_id": split.g.cpu().numpy(), "y_pred": y_pred, "p_pred": p_pred,
            "dense_pred": dense_pred, "dense_p_pred": dense_p,
        }))
    return pd.concat(parts, ignore_index=True)[list(PREDICTION_COLUMNS)]
