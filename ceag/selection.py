"""CEAG+VS: CEAG with its tolerance selected on the validation split (method key ``ceag_vs``).

For a target tolerance eps, among CEAG runs of the same setting trained with tolerances at or
below eps (``vs_tolerances``), report the one with the best validation accuracy among those
whose validation max_g psi_g <= eps; if none qualifies, the one with the smallest validation
max_g psi_g. Only finished runs are candidates (a diverged run reports no final model).

A derived method like NFT+ES: it trains nothing itself. Its run folder holds the selected run's
metrics, model and predictions, and its summary says which tolerance was selected and why.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .config import RunConfig

SELECTION_SPLIT = "val"


def candidate_configs(cfg: RunConfig) -> list[RunConfig]:
    """The CEAG runs a ``ceag_vs`` cell selects among: same setting, each of its ``vs_tolerances``."""
    if cfg.method != "ceag_vs":
        raise ValueError(f"candidate_configs needs a ceag_vs config, got method {cfg.method!r}")
    return [cfg.replace(method="ceag", tolerance=t, vs_tolerances=None) for t in cfg.vs_tolerances]


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
    from .runs import RunResult, atomic_write, now, run_dir, write_json, write_parquet

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
    write_json(folder / "config.json", cfg.to_dict())
    for name in ("group_metrics", "run_metrics", "duals"):
        write_parquet(folder / f"{name}.parquet", getattr(source, name))
    for name in ("model.pt", "predictions.parquet"):
        if (src / name).exists():  # predictions are absent for runs made before they were kept
            data = (src / name).read_bytes()
            atomic_write(folder / name, lambda p, data=data: p.write_bytes(data))
    write_json(folder / "summary.json", summary)
    write_json(folder / "status.json", {"status": summary["status"], "finished_at": summary["finished_at"],
                                        "derived_from": source.run_id})
    return RunResult(cfg, summary, source.group_metrics, source.run_metrics, source.duals, cached=False)


def grid_vs_tolerances(tolerance: float, grid_tolerances) -> tuple[float, ...]:
    """A grid cell's candidates: its tolerance and the grid's other tolerances below it."""
    return tuple(sorted({float(t) for t in grid_tolerances if t <= tolerance} | {float(tolerance)}, reverse=True))
