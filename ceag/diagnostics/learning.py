"""Did the models learn anything? A dense model at the majority-class rate, or a pruned model that answers
one class for everything, makes every gap a comparison with chance. Read from a run's per-sample
predictions. No torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ceag.diagnostics.constraints import NOISE_Z


# -- did the models learn anything? -----------------------------------------------------------
def learning_check(predictions: pd.DataFrame, class_names: list[str] | None = None) -> dict[str, Any]:
    """Whether the dense model learned anything and whether the pruned one collapsed, from a run's predictions.

    ``predictions``: the run's per-sample predictions (``split``, ``y_true``, ``y_pred``, ``dense_pred``).
    Per split: ``n``, ``majority_rate`` (the share of the most common class: what always predicting it
    scores), the dense and sparse ``accuracy`` and how many distinct classes each predicts. The dense
    model *learned nothing* when on the training split its accuracy is within ``NOISE_Z`` binomial
    standard errors of the majority rate; the pruned model *collapsed* when it predicts one class on a
    split that holds several. Returns ``{"splits": {...}, "dense_at_chance": bool | None,
    "sparse_collapsed": [splits], "warnings": [sentences]}`` (fractions).
    """
    out: dict[str, Any] = {"splits": {}, "dense_at_chance": None, "sparse_collapsed": [], "warnings": []}
    names = list(class_names or [])

    def name(c: int) -> str:
        return names[c] if 0 <= c < len(names) else f"class {c}"

    for split in [s for s in ("train", "val", "test") if s in set(predictions["split"])]:
        part = predictions[predictions["split"] == split]
        y = part["y_true"].to_numpy(dtype=np.int64)
        if not len(y):
            continue
        counts = np.bincount(y)
        majority = float(counts.max() / len(y))
        row: dict[str, Any] = {"n": int(len(y)), "classes": int((counts > 0).sum()), "majority_rate": majority,
                               "accuracy": float((part["y_pred"].to_numpy(dtype=np.int64) == y).mean()),
                               "predicted_classes": int(part["y_pred"].nunique())}
        dense = part["dense_pred"]
        if dense.notna().all():
            row["dense_accuracy"] = float((dense.to_numpy(dtype=np.int64) == y).mean())
            row["dense_predicted_classes"] = int(dense.nunique())
            noise = NOISE_Z * math.sqrt(majority * (1 - majority) / len(y))
            row["dense_at_chance"] = bool(row["dense_accuracy"] <= majority + noise)
        out["splits"][split] = row
        if row["classes"] > 1 and row["predicted_classes"] == 1:
            out["sparse_collapsed"].append(split)
    train = out["splits"].get("train", {})
    if "dense_at_chance" in train:
        out["dense_at_chance"] = train["dense_at_chance"]
    if out["dense_at_chance"]:
        train_y = predictions.loc[predictions["split"] == "train", "y_true"].to_numpy(np.int64)
        top = int(np.bincount(train_y).argmax())
        out["warnings"].append(
            f"the dense model learned nothing: its train accuracy {100 * train['dense_accuracy']:.1f} % is within "
            f"noise of always answering {name(top)} ({100 * train['majority_rate']:.1f} % of the {train['n']:,} "
            f"training samples), so every gap is measured against a model at chance. Check that the data is read "
            f"as it should be (the run's data notes and warnings), then the dense recipe (dense_epochs, dense_lr)")
    for split in out["sparse_collapsed"]:
        row = out["splits"][split]
        only = int(predictions.loc[predictions["split"] == split, "y_pred"].iloc[0])
        out["warnings"].append(
            f"the pruned model collapsed: it answers {name(only)} for every one of the {row['n']:,} {split} samples "
            f"({row['classes']} classes there), so its accuracy is {100 * row['accuracy']:.1f} % by construction; "
            "a lower sparsity, a lower lr or more fine-tuning epochs may keep it from collapsing")
    return out
