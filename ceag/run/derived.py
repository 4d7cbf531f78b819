"""Derived methods: NFT+ES reports its NFT run's best iterate; CEAG+VS selects among CEAG runs on validation.

CEAG+VS: for a target tolerance eps, among CEAG runs of the same setting trained with tolerances at or below eps
(``vs_tolerances``), report the one with the best validation accuracy among those whose validation max_g psi_g
<= eps; if none qualifies, the one with the smallest validation max_g psi_g. Only finished runs are candidates.
Neither trains anything itself: its run folder holds the chosen run's metrics, model and predictions, and its
summary says what was chosen and why.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pandas as pd

from ceag.config.run_config import RunConfig
from ceag.results.files import atomic_write, now, write_json, write_parquet
from ceag.results.layout import BEST_MODEL, CONFIG, MODEL, PREDICTIONS, STATUS, SUMMARY, run_dir
from ceag.results.record import RunResult


def derive_nft_es(cfg: RunConfig, nft: RunResult, results: Path) -> RunResult:
    """NFT+ES from its NFT run: same training, reporting the best iterate on the selection split."""
    folder = run_dir(results, cfg.run_id)
    source = run_dir(results, nft.run_id)
    best = nft.summary.get("best_epoch")
    usable = nft.status == "finished" and best is not None and (source / BEST_MODEL).exists()
    reported = best if usable and best is not None else nft.summary["reported_epoch"]
    summary = {**nft.summary, "run_id": cfg.run_id, "derived_from": nft.run_id, "reported_epoch": reported,
               "achieved_sparsity": _sparsity_at(nft.run_metrics, reported, nft.summary["achieved_sparsity"]),
               "epochs_trained": 0, "dense_trained": False, "finished_at": now()}
    write_json(folder / CONFIG, cfg.to_dict())
    for name in ("group_metrics", "run_metrics", "duals"):
        write_parquet(folder / f"{name}.parquet", getattr(nft, name))
    model_file = "best_model.pt" if usable else "model.pt"
    atomic_write(folder / MODEL, lambda p: p.write_bytes((source / model_file).read_bytes()))
    pred_file = source / ("best_predictions.parquet" if usable else "predictions.parquet")
    if pred_file.exists():  # absent for NFT runs made before predictions were kept: computed on demand
        atomic_write(folder / PREDICTIONS, lambda p: p.write_bytes(pred_file.read_bytes()))
        if summary.get("diagnostics") is not None:  # whether the iterate it reports learned, not NFT's last one
            from ceag.diagnostics.learning import learning_check

            learning = learning_check(pd.read_parquet(pred_file), summary.get("class_names"))
            summary["diagnostics"] = {**summary["diagnostics"], "learning": learning}
    write_json(folder / SUMMARY, summary)
    write_json(folder / STATUS, {"status": summary["status"], "finished_at": summary["finished_at"],
                                        "derived_from": nft.run_id})
    return RunResult(cfg, summary, nft.group_metrics, nft.run_metrics, nft.duals, cached=False)


def _sparsity_at(run_metrics: pd.DataFrame, epoch: int, default: float) -> float:
    """The sparsity recorded at ``epoch`` (the reported iterate's own), else ``default``."""
    rows = run_metrics[run_metrics["epoch"] == epoch]
    return float(rows["sparsity"].iloc[0]) if len(rows) else default


SELECTION_SPLIT = "val"


def select_tolerance(candidates: pd.DataFrame, target: float) -> dict:
    """Apply the selection rule to one row per candidate run.

    ``candidates``: columns ``tolerance``, ``status``, ``accuracy`` and ``max_excess_gap`` (the
    validation split at the reported epoch, fractions), any others carried along. Returns the
    chosen row as a dict plus ``qualified`` (whether its validation max_g psi_g <= target) and
    ``rule`` (a sentence saying why). Raises ValueError when no candidate finished.
    Ties: the larger tolerance first on accuracy, the smaller gap first otherwise.
    """
    done = candidates[candidates["status"] == "finished"]
    done = done[done["accuracy"].map(_finite) & done["max_excess_gap"].map(_finite)]
    if done.empty:
        raise ValueError("no candidate CEAG run finished with validation metrics; nothing to select")
    ok = done[done["max_excess_gap"] <= target]
    if len(ok):
        row = ok.sort_values(["accuracy", "tolerance"], ascending=[False, False], kind="mergesort").iloc[0]
        rule = (f"best validation accuracy among the {len(ok)} of {len(done)} runs with validation "
                f"max ψ_g ≤ ε = {target:g}")
        return {**row.to_dict(), "qualified": True, "rule": rule}
    row = done.sort_values(["max_excess_gap", "tolerance"], ascending=[True, True], kind="mergesort").iloc[0]
    rule = f"no run has validation max ψ_g ≤ ε = {target:g}; the smallest validation max ψ_g of {len(done)}"
    return {**row.to_dict(), "qualified": False, "rule": rule}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def candidates_frame(results) -> pd.DataFrame:
    """One row per RunResult: run_id, tolerance, status and its validation accuracy and max_g psi_g."""
    rows = []
    for r in results:
        row = {"run_id": r.run_id, "tolerance": r.config.tolerance, "status": r.status,
               "accuracy": math.nan, "max_excess_gap": math.nan}
        if SELECTION_SPLIT in r.splits:
            run_row, _ = r.final(SELECTION_SPLIT)
            row.update(accuracy=float(run_row["accuracy"]), max_excess_gap=float(run_row["max_excess_gap"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "tolerance", "status", "accuracy", "max_excess_gap"])


def derive_ceag_vs(cfg: RunConfig, candidates: list, results: Path):
    """The ``ceag_vs`` run of ``cfg`` from its finished candidate CEAG runs (RunResults), written to its folder."""
    from ceag.results.files import atomic_write, now, write_json, write_parquet
    from ceag.results.layout import run_dir
    from ceag.results.record import RunResult

    assert cfg.tolerance is not None  # validation sets it for ceag_vs
    frame = candidates_frame(candidates)
    chosen = select_tolerance(frame, cfg.tolerance)
    source = next(r for r in candidates if r.run_id == chosen["run_id"])
    folder, src = run_dir(results, cfg.run_id), run_dir(results, source.run_id)
    table = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
             for rec in frame.to_dict("records")]
    summary = {**source.summary, "run_id": cfg.run_id, "derived_from": source.run_id,
               "selected_tolerance": float(source.config.tolerance), "selection": {
                   "split": SELECTION_SPLIT, "target": cfg.tolerance, "qualified": bool(chosen["qualified"]),
                   "rule": chosen["rule"], "candidates": table},
               "epochs_trained": 0, "dense_trained": False, "finished_at": now()}
    write_json(folder / CONFIG, cfg.to_dict())
    for name in ("group_metrics", "run_metrics", "duals"):
        write_parquet(folder / f"{name}.parquet", getattr(source, name))
    for name in ("model.pt", "predictions.parquet"):
        if (src / name).exists():  # predictions are absent for runs made before they were kept
            data = (src / name).read_bytes()
            atomic_write(folder / name, functools.partial(Path.write_bytes, data=data))
    write_json(folder / SUMMARY, summary)
    write_json(folder / STATUS, {"status": summary["status"], "finished_at": summary["finished_at"],
                                        "derived_from": source.run_id})
    return RunResult(cfg, summary, source.group_metrics, source.run_metrics, source.duals, cached=False)
