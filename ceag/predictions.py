"""Per-sample predictions of the model a run reports, for auditors' own tools (e.g. Fairlearn)."""

from __future__ import annotations

import json
import os

import pandas as pd

from .config import from_dict
from .runs import load_torch, resolve_results, run_dir


class RunNotFound(LookupError):
    pass


def predictions(results: str | os.PathLike | None, run_id: str, split: str = "test") -> pd.DataFrame:
    """Columns ``y_true``, ``y_pred``, ``group`` (id) and ``group_name``, one row per sample of ``split``."""
    from .data import load_dataset
    from .engine import predict
    from .models import build_model

    folder = run_dir(resolve_results(results), run_id)
    if not (folder / "model.pt").exists():
        raise RunNotFound(f"run {run_id} has no finished model in {folder}; `python -m ceag ls` lists the runs")
    cfg = from_dict(json.loads((folder / "config.json").read_text()))
    data = load_dataset(cfg)
    if split not in data.splits:
        raise ValueError(f"split {split!r} does not exist for this run; it has {', '.join(data.splits)}")
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    model.load_state_dict(load_torch(folder / "model.pt"))
    if cfg.masked_bn:
        from .pruning import restore_masked_bn

        restore_masked_bn(model, dense_first_conv=cfg.dense_first_conv, dense_last_layer=cfg.dense_last_layer)
    part = data.splits[split]
    pred, _ = predict(model, part)
    groups = part.g.numpy()
    return pd.DataFrame({"y_true": part.y.numpy(), "y_pred": pred.numpy(), "group": groups,
                         "group_name": [data.group_names[g] for g in groups]})
