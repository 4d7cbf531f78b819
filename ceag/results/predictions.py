"""Per-sample predictions of a run's reported sparse model and of its dense model.

A run writes them once, when it ends, to ``<run folder>/predictions.parquet``: one row per sample
of every split, with columns

    split         "train" | "val" | "test"
    sample_id     the sample's index within the split (int)
    file          the sample's image file relative to the data folder (str; null for built-in data
                  and in runs made before files were recorded)
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

import pandas as pd

from ceag.results.files import load_torch, write_parquet
from ceag.results.layout import (
    BEST_PREDICTIONS,
    CONFIG,
    DENSE_MODEL,
    MODEL,
    PREDICTIONS,
    SUMMARY,
    dense_dir,
    resolve_results,
    run_dir,
)
from ceag.results.record import read_config

SPLITS = ("train", "val", "test")


class RunNotFound(LookupError):
    """The run has no finished model in its results folder; the message names the run and the folder."""


def write_run_predictions(folder: Path, outcome, data, *, best: bool = False, amp: bool = False,
                          batch_size: int | None = None) -> pd.DataFrame:
    """At the end of a run: the reported model's predictions, and with ``best`` (NFT) its best iterate's.

    ``outcome``: the ``training.engine.TrainOutcome``; its outputs come from the evaluation passes the run
    made, so no model is run again here unless the run resumed after its best iterate was found.
    Returns the reported model's predictions (``PREDICTION_COLUMNS``)."""
    import copy

    from ceag.training.evaluation import model_outputs, predictions_frame  # torch: only where a model predicts

    sparse = outcome.outputs if outcome.outputs is not None else model_outputs(outcome.model, data, amp, batch_size)
    frame = predictions_frame(data, sparse, outcome.dense_outputs)
    write_parquet(folder / PREDICTIONS, frame)
    if best and outcome.best_model is not None:
        best_outputs = outcome.best_outputs
        if best_outputs is None:
            model = copy.deepcopy(outcome.model)
            model.load_state_dict(outcome.best_model)
            best_outputs = model_outputs(model, data, amp, batch_size)
        write_parquet(folder / BEST_PREDICTIONS, predictions_frame(data, best_outputs, outcome.dense_outputs))
    return frame


FILE_DATASETS = ("utkface", "fairface", "custom")  # datasets whose samples are image files


def stored_predictions(results: str | os.PathLike | None, run_id: str) -> pd.DataFrame | None:
    """The run's stored predictions (every split), or None for a run made before they were kept.

    Runs made before predictions named their files get a ``file`` column of nulls."""
    path = run_dir(resolve_results(results), run_id) / PREDICTIONS
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    if "file" not in frame.columns:
        frame.insert(frame.columns.get_loc("sample_id") + 1, "file", pd.Series([None] * len(frame), dtype=object))
    return frame


def files_note(results: str | os.PathLike | None, run_id: str, frame: pd.DataFrame) -> str | None:
    """A sentence when a run of a dataset read from files has predictions without file names (made before
    they were recorded): its samples are named by their index within the split. None otherwise."""
    config = run_dir(resolve_results(results), run_id) / CONFIG
    try:
        dataset = json.loads(config.read_text()).get("dataset")
    except (OSError, json.JSONDecodeError):
        return None
    if dataset in FILE_DATASETS and len(frame) and frame["file"].isna().all():
        return (f"run {run_id} was made before predictions named their image files: its samples are named "
                "by their index within the split (sample_id) only")
    return None


def run_predictions(results: str | os.PathLike | None, run_id: str) -> pd.DataFrame:
    """Predictions of every split (columns ``PREDICTION_COLUMNS``): stored ones, else computed now.

    Raises RunNotFound when the run has no finished model.
    """
    results = resolve_results(results)
    stored = stored_predictions(results, run_id)
    if stored is not None:
        return stored
    return _compute(results, run_id)


def _compute(results: Path, run_id: str) -> pd.DataFrame:
    from ceag.datasets.loading import load_dataset
    from ceag.training.evaluation import model_outputs, predictions_frame
    from ceag.training.models import build_model

    folder = run_dir(results, run_id)
    if not (folder / MODEL).exists():
        raise RunNotFound(f"run {run_id} has no finished model in {folder}; `python -m ceag ls` lists the runs")
    cfg = read_config(folder)
    data = load_dataset(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    model.load_state_dict(load_torch(folder / MODEL))
    if cfg.masked_bn:
        from ceag.training.pruning import restore_masked_bn

        restore_masked_bn(model, dense_first_conv=cfg.dense_first_conv, dense_last_layer=cfg.dense_last_layer)
    dense = None
    dense_path = Path(cfg.dense_checkpoint) if cfg.dense_checkpoint else dense_dir(results, cfg) / DENSE_MODEL
    if dense_path.exists():
        state = load_torch(dense_path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        dense = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
        dense.load_state_dict(state)
    dense_outputs = None if dense is None else model_outputs(dense, data, cfg.amp, cfg.eval_batch_size)
    return predictions_frame(data, model_outputs(model, data, cfg.amp, cfg.eval_batch_size), dense_outputs)


ALL_SPLITS = "all"  # ``predictions(split=ALL_SPLITS)``: every split, with a split column first


def predictions(results: str | os.PathLike | None, run_id: str, split: str = "test") -> pd.DataFrame:
    """One row per sample of ``split``, for auditors' own tools (e.g. Fairlearn, ``ceag audit --predictions``).

    Columns: ``y_true``, ``y_pred``, ``group`` (id), ``group_name``, then ``sample_id``, ``file`` (the
    image relative to the data folder; null for built-in data), ``p_pred`` (probability of ``y_pred``),
    ``dense_pred`` and ``dense_p_pred``. ``split="all"``: every split of the run (train, val, test, each
    in the run's sample order) with a ``split`` column first. Raises ValueError for a split the run lacks.
    """
    frame = run_predictions(results, run_id)
    present = [s for s in SPLITS if s in set(frame["split"])]
    if split == ALL_SPLITS:
        order = frame["split"].map({s: i for i, s in enumerate(SPLITS)})
        part = frame.iloc[order.to_numpy().argsort(kind="stable")].reset_index(drop=True)
    elif split not in present:
        raise ValueError(f"split {split!r} does not exist for this run; it has {', '.join(present)} "
                         f"(or {ALL_SPLITS}: every split)")
    else:
        part = frame[frame["split"] == split].reset_index(drop=True)
    names, _ = run_names(results, run_id)
    group_name = [names[g] if 0 <= g < len(names) else str(g) for g in part["group_id"]]
    out = pd.DataFrame({"y_true": part["y_true"], "y_pred": part["y_pred"], "group": part["group_id"],
                        "group_name": group_name, "sample_id": part["sample_id"], "file": part["file"],
                        "p_pred": part["p_pred"],
                        "dense_pred": part["dense_pred"], "dense_p_pred": part["dense_p_pred"]})
    if split == ALL_SPLITS:
        out.insert(0, "split", part["split"].to_numpy())
    return out


def run_names(results: str | os.PathLike | None, run_id: str) -> tuple[list[str], list[str]]:
    """(group names, class names) of a run, from its summary; empty lists where the summary has none."""
    summary = run_dir(resolve_results(results), run_id) / SUMMARY
    try:
        data = json.loads(summary.read_text())
    except (OSError, json.JSONDecodeError):
        return [], []
    return list(data.get("group_names") or []), [str(c) for c in data.get("class_names") or []]
