"""Whom pruning hurt: per sample, what the dense model and the sparse model got right.

Every sample of a split falls in one of four cells (``CELLS``):

    kept        dense right, sparse right
    casualty    dense right, sparse wrong   (what pruning broke: Hooker et al. 2019, "What do compressed
                                             deep neural networks forget?", arXiv:1911.05248)
    recovered   dense wrong, sparse right
    both_wrong  dense wrong, sparse wrong

so a group's dense accuracy is (kept + casualty) / n and its sparse accuracy (kept + recovered) / n.
Across seeds of one setting (the splits do not depend on the seed), a sample is a *pruning identified
exemplar* (PIE, Hooker et al.) when the most common prediction of the sparse models differs from that of
the dense models; ``consistent_casualties`` also counts in how many seeds it was a casualty. ``kept_by``
counts the casualties of a baseline (NFT) that a mitigation's model on the same seed gets right.

Input frames are a run's predictions (``ceag.results.predictions.run_predictions``: columns
``PREDICTION_COLUMNS``). Runs whose dense predictions are unknown (``dense_pred`` NA) have no cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELLS = ("kept", "casualty", "recovered", "both_wrong")
CELL_LABELS = {"kept": "dense right, sparse right", "casualty": "dense right, sparse wrong",
               "recovered": "dense wrong, sparse right", "both_wrong": "dense wrong, sparse wrong"}
SAMPLE_KEY = ["split", "sample_id"]


class CasualtyError(ValueError):
    """The predictions cannot give cells (no dense predictions) or cannot be paired (other samples)."""


def cells(frame: pd.DataFrame) -> pd.Series:
    """(len(frame),) the cell (``CELLS``) of each row of a predictions frame.

    Raises CasualtyError when the frame has no dense predictions (a run whose dense model is not in its
    results folder)."""
    if frame["dense_pred"].isna().any():
        raise CasualtyError("these predictions have no dense model's predictions (its weights are not in the "
                            "results folder), so what pruning changed cannot be told")
    dense_right = frame["dense_pred"].to_numpy(dtype=np.int64) == frame["y_true"].to_numpy()
    sparse_right = frame["y_pred"].to_numpy() == frame["y_true"].to_numpy()
    code = np.where(dense_right, np.where(sparse_right, 0, 1), np.where(sparse_right, 2, 3))
    return pd.Series(np.asarray(CELLS, dtype=object)[code], index=frame.index, name="cell")


def cell_counts(frame: pd.DataFrame, split: str, group_names: list[str]) -> pd.DataFrame:
    """Per group of ``split``: ``n``, the four cells' counts, ``casualty_rate`` (the share of the samples the dense
    model got right that the sparse model gets wrong: casualties / (kept + casualties), a fraction), ``dense_accuracy``
    and ``accuracy`` (the sparse model's) computed from the cells.

    One row per group named in ``group_names`` (a group without samples has n 0 and NaN rates)."""
    part = frame[frame["split"] == split]
    table = pd.crosstab(part["group_id"], cells(part)).reindex(index=range(len(group_names)), columns=list(CELLS),
                                                             fill_value=0)
    table = table.fillna(0).astype(np.int64)
    n = table.sum(axis=1)
    out = pd.DataFrame({"group_id": table.index, "group_name": [group_names[g] for g in table.index], "n": n})
    for cell in CELLS:
        out[cell] = table[cell]
    with np.errstate(invalid="ignore", divide="ignore"):
        right = out["kept"] + out["casualty"]
        out["casualty_rate"] = out["casualty"] / right.where(right > 0)
        out["dense_accuracy"] = (out["kept"] + out["casualty"]) / n.where(n > 0)
        out["accuracy"] = (out["kept"] + out["recovered"]) / n.where(n > 0)
    return out.reset_index(drop=True)


def ranked(frame: pd.DataFrame, split: str, cell: str = "casualty", group_id: int | None = None) -> pd.DataFrame:
    """The samples of one cell in ``split`` (and group), most telling first.

    Casualties are ranked by how confidently the dense model was right and the sparse one wrong
    (``dense_p_pred`` × ``p_pred``, both probabilities of the model's own answer); recovered samples the other
    way round (the same product); kept and both-wrong samples by the sparse model's confidence. Columns: the
    predictions' columns and ``confidence`` (that product, in [0, 1])."""
    if cell not in CELLS:
        raise CasualtyError(f"cell {cell!r} is not one of {', '.join(CELLS)}")
    part = frame[frame["split"] == split]
    if group_id is not None:
        part = part[part["group_id"] == group_id]
    part = part[cells(part) == cell].copy()
    weight = part["dense_p_pred"] if cell in ("casualty", "recovered") else 1.0
    part["confidence"] = (part["p_pred"] * weight).astype(float)
    return part.sort_values(["confidence", "sample_id"], ascending=[False, True]).reset_index(drop=True)


def _aligned(frames: dict[int, pd.DataFrame], split: str) -> dict[int, pd.DataFrame]:
    parts = {seed: f[f["split"] == split].sort_values("sample_id").reset_index(drop=True)
             for seed, f in frames.items()}
    first = next(iter(parts.values()))
    for seed, part in parts.items():
        same = len(part) == len(first) and (part["y_true"].to_numpy() == first["y_true"].to_numpy()).all() and (
            part["file"].fillna("").to_numpy() == first["file"].fillna("").to_numpy()).all()
        if not same:
            raise CasualtyError(f"seed {seed}'s {split} split holds other samples than the first run's: its runs "
                                "cannot be paired sample by sample")
    return parts


def _modal(predictions: np.ndarray) -> np.ndarray:
    """(N,) the most common value of each row of (N, S) predictions (ties: the smallest class)."""
    out = np.empty(len(predictions), dtype=np.int64)
    for i, row in enumerate(predictions):
        values, counts = np.unique(row, return_counts=True)
        out[i] = values[np.argmax(counts)]
    return out


def consistent_casualties(frames: dict[int, pd.DataFrame], split: str) -> pd.DataFrame:
    """Across seeds of one setting (``frames``: seed -> that run's predictions), per sample of ``split``:
    ``seeds`` (how many), ``lost`` (in how many it was a casualty), ``dense_modal`` / ``sparse_modal`` (the most
    common predictions), ``pie`` (the two differ: Hooker et al.'s pruning identified exemplar), with
    ``sample_id``, ``file``, ``y_true`` and ``group_id``. Sorted by ``lost``, most first.

    Raises CasualtyError when the runs' splits hold other samples."""
    parts = _aligned(frames, split)
    first = next(iter(parts.values()))
    lost = sum((cells(p) == "casualty").to_numpy().astype(np.int64) for p in parts.values())
    dense = np.stack([p["dense_pred"].to_numpy(dtype=np.int64) for p in parts.values()], axis=1)
    sparse = np.stack([p["y_pred"].to_numpy(dtype=np.int64) for p in parts.values()], axis=1)
    dense_modal, sparse_modal = _modal(dense), _modal(sparse)
    out = first[["sample_id", "file", "y_true", "group_id"]].copy()
    out["seeds"], out["lost"] = len(parts), lost
    out["dense_modal"], out["sparse_modal"] = dense_modal, sparse_modal
    out["pie"] = dense_modal != sparse_modal
    return out.sort_values(["lost", "sample_id"], ascending=[False, True]).reset_index(drop=True)


def kept_by(baseline: dict[int, pd.DataFrame], mitigation: dict[int, pd.DataFrame], split: str,
            group_names: list[str]) -> pd.DataFrame:
    """Per group: ``casualties`` of the baseline's runs (summed over the seeds both have), how many of them the
    mitigation's run on the same seed got right (``kept``), and ``seeds``.

    Raises CasualtyError when no seed has both runs or their splits hold other samples."""
    seeds = sorted(set(baseline) & set(mitigation))
    if not seeds:
        raise CasualtyError("no seed has runs of both methods")
    casualties = np.zeros(len(group_names), dtype=np.int64)
    kept = np.zeros(len(group_names), dtype=np.int64)
    for seed in seeds:
        base, mine = _aligned({seed: baseline[seed], -1: mitigation[seed]}, split).values()
        lost = (cells(base) == "casualty").to_numpy()
        right = mine["y_pred"].to_numpy() == mine["y_true"].to_numpy()
        g = base["group_id"].to_numpy()
        casualties += np.bincount(g[lost], minlength=len(group_names))
        kept += np.bincount(g[lost & right], minlength=len(group_names))
    return pd.DataFrame({"group_id": range(len(group_names)), "group_name": group_names,
                         "casualties": casualties, "kept": kept, "seeds": len(seeds)})


def casualty_export(frame: pd.DataFrame, split: str, group_names: list[str], class_names: list[str] | None = None,
                    cell: str = "casualty") -> pd.DataFrame:
    """The samples of one cell in ``split`` for an auditor's own review, most telling first: ``split``,
    ``sample_id``, ``file`` (null for built-in data), ``group``, ``true``, ``dense_pred``, ``dense_p``,
    ``pruned_pred``, ``pruned_p`` (class names where known) and ``confidence``."""
    rows = ranked(frame, split, cell)

    def name(values: pd.Series) -> list:
        if not class_names:
            return list(values)
        return [class_names[int(v)] if 0 <= int(v) < len(class_names) else int(v) for v in values]

    return pd.DataFrame({
        "split": split, "sample_id": rows["sample_id"], "file": rows["file"],
        "group": [group_names[g] if 0 <= g < len(group_names) else g for g in rows["group_id"]],
        "true": name(rows["y_true"]), "dense_pred": name(rows["dense_pred"]), "dense_p": rows["dense_p_pred"],
        "pruned_pred": name(rows["y_pred"]), "pruned_p": rows["p_pred"], "confidence": rows["confidence"],
    })


def run_label(cfg) -> str:
    """How the gallery names a run's method: ``"CEAG ε=2%"``, ``"CEAG (held-out λ) ε=2%"`` for held-out multipliers
    (the ``*_heldout`` labels the store's queries use)."""
    from ceag.config.vocabulary import method_label

    return method_label(cfg.method + ("_heldout" if cfg.constraint_data != "train" else ""), cfg.tolerance)


def related_runs(configs: dict[str, str], run_id: str) -> dict[str, dict[int, str]]:
    """Runs related to ``run_id`` among ``configs`` ({run id: config JSON} of finished runs, newest first, as
    ``ceag.store.queries.finished_configs`` gives them; ``run_id`` must be among them):

    - ``"seeds"``: {seed: run id} of the runs with every setting of ``run_id`` but the seed (``run_id`` included);
    - for each method label (``run_label``): {seed: run id} of the runs whose pruned model has the same settings
      as ``run_id``'s but the seed (same data, dense model, sparsity and schedule): the runs to set beside it.

    The newest run where several match. Configs that cannot be read are left out."""
    import json

    from ceag.config.keys import PRUNE_FIELDS
    from ceag.config.run_config import from_dict

    mine = from_dict(json.loads(configs[run_id]), stored=True)
    fields = tuple(f for f in mine.canonical() if f != "seed")
    prune_fields = tuple(f for f in PRUNE_FIELDS if f != "seed")
    out: dict[str, dict[int, str]] = {"seeds": {}}
    for rid in dict.fromkeys([run_id, *configs]):
        try:
            other = from_dict(json.loads(configs[rid]), stored=True)
        except (TypeError, ValueError):
            continue
        if other.key(fields) == mine.key(fields):
            out["seeds"].setdefault(other.seed, rid)
        if other.key(prune_fields) == mine.key(prune_fields):
            out.setdefault(run_label(other), {}).setdefault(other.seed, rid)
    return out
