"""Per-sample predictions of a run's reported sparse model and of its dense model.

A run writes them once, when it ends, to ``<run folder>/predictions.parquet``: one row per sample
of every split, with columns

    split         "train" | "val" | "test"
    sample_id     the sample's index within the split (its file name instead when the dataset's
                  splits carry ``sample_names``)
    y_true        true class (int)
    group_id      protected group (int)
    y_pred        class predicted by the reported sparse model (int)
    p_pred        that model's softmax probability of ``y_pred`` (float32, in [0, 1])
    dense_pred    class predicted by the dense model (int)
    dense_p_pred  the dense model's probability of ``dense_pred``

Confidence intervals, comparisons and the predictions export read this file, so none of them
reloads the data or a model. Runs made before it existed are computed on demand (slower: the
dataset and both models are loaded); their dense columns are missing (NA) when the dense model
is not in the results folder. An NFT run also keeps ``best_predictions.parquet`` for the best
iterate its NFT+ES twin reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .config import dense_key, from_dict
from .runs import load_torch, resolve_results, run_dir, write_parquet

PREDICTIONS_FILE = "predictions.parquet"
BEST_PREDICTIONS_FILE = "best_predictions.parquet"  # NFT's best iterate, for the NFT+ES run derived from it
COLUMNS = ["split", "sample_id", "y_true", "group_id", "y_pred", "p_pred", "dense_pred", "dense_p_pred"]
SPLITS = ("train", "val", "test")


class RunNotFound(LookupError):
    pass


def predict_proba(model, split, amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,) int64, its softmax probability (N,) float32) of ``model`` on ``split``.

    Runs ``engine.predict`` (the same batches and eval mode as the run's evaluation, so the
    predicted classes are exactly those behind the stored accuracies) and reads the logits of
    each batch through a forward hook.
    """
    import torch

    from .engine import predict

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
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def write_run_predictions(folder: Path, model, dense, data, best_state: dict | None = None,
                          amp: bool = False) -> pd.DataFrame:
    """At the end of a run: the reported model's predictions (and, for NFT, the best iterate's).

    Returns the reported model's predictions (``COLUMNS``)."""
    import copy

    frame = predictions_frame(model, dense, data, amp)
    write_parquet(folder / PREDICTIONS_FILE, frame)
    if best_state is not None:
        best = copy.deepcopy(model)
        best.load_state_dict(best_state)
        write_parquet(folder / BEST_PREDICTIONS_FILE, predictions_frame(best, dense, data, amp))
    return frame


def stored_predictions(results: str | os.PathLike | None, run_id: str) -> pd.DataFrame | None:
    """The run's stored predictions (every split), or None for a run made before they were kept."""
    path = run_dir(resolve_results(results), run_id) / PREDICTIONS_FILE
    return pd.read_parquet(path) if path.exists() else None


def run_predictions(results: str | os.PathLike | None, run_id: str) -> pd.DataFrame:
    """Predictions of every split (columns ``COLUMNS``): stored ones, else computed now.

    Raises RunNotFound when the run has no finished model.
    """
    results = resolve_results(results)
    stored = stored_predictions(results, run_id)
    if stored is not None:
        return stored
    return _compute(results, run_id)


def _compute(results: Path, run_id: str) -> pd.DataFrame:
    from .datasets.loading import load_dataset
    from .models import build_model

    folder = run_dir(results, run_id)
    if not (folder / "model.pt").exists():
        raise RunNotFound(f"run {run_id} has no finished model in {folder}; `python -m ceag ls` lists the runs")
    cfg = from_dict(json.loads((folder / "config.json").read_text()), stored=True)
    data = load_dataset(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    model.load_state_dict(load_torch(folder / "model.pt"))
    if cfg.masked_bn:
        from .pruning import restore_masked_bn

        restore_masked_bn(model, dense_first_conv=cfg.dense_first_conv, dense_last_layer=cfg.dense_last_layer)
    dense = None
    dense_path = Path(cfg.dense_checkpoint) if cfg.dense_checkpoint else results / "dense" / dense_key(cfg) / "model.pt"
    if dense_path.exists():
        state = load_torch(dense_path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        dense = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
        dense.load_state_dict(state)
    return predictions_frame(model, dense, data, cfg.amp)


def predictions(results: str | os.PathLike | None, run_id: str, split: str = "test") -> pd.DataFrame:
    """One row per sample of ``split``, for auditors' own tools (e.g. Fairlearn).

    Columns: ``y_true``, ``y_pred``, ``group`` (id), ``group_name``, then ``sample_id``,
    ``p_pred`` (probability of ``y_pred``), ``dense_pred`` and ``dense_p_pred``.
    """
    frame = run_predictions(results, run_id)
    if split not in set(frame["split"]):
        present = [s for s in SPLITS if s in set(frame["split"])]
        raise ValueError(f"split {split!r} does not exist for this run; it has {', '.join(present)}")
    part = frame[frame["split"] == split].reset_index(drop=True)
    names = _group_names(resolve_results(results), run_id)
    group_name = [names[g] if 0 <= g < len(names) else str(g) for g in part["group_id"]]
    return pd.DataFrame({"y_true": part["y_true"], "y_pred": part["y_pred"], "group": part["group_id"],
                         "group_name": group_name, "sample_id": part["sample_id"], "p_pred": part["p_pred"],
                         "dense_pred": part["dense_pred"], "dense_p_pred": part["dense_p_pred"]})


def _group_names(results: Path, run_id: str) -> list[str]:
    summary = run_dir(results, run_id) / "summary.json"
    if summary.exists():
        return list(json.loads(summary.read_text()).get("group_names") or [])
    return []
