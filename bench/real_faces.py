"""Real faces on a CPU: the ``utkface_cpu`` presets on the real UTKFace folder, measured against the paper's finding.

Three grids, each from an empty results folder, in fresh processes, one worker per core:

1. ``ceag grid --preset utkface_cpu`` (race; NFT, NFT+ES, EL+RB and CEAG at 95 and 99 %, seed 0);
2. NFT and CEAG at the sparsity where NFT's train max_g ψ_g is largest, on seeds 1 and 2 (with seed 0:
   three seeds);
3. ``ceag grid --preset utkface_cpu_intersectional`` (race × gender, 10 groups; seed 0).

Targets (the mechanism the paper's structured-sparsity table shows for UTKFace, at CPU size): the dense model
fits its training set (train accuracy ≥ 97 %); NFT leaves a group ≥ 10 points behind on train at one sparsity
at least; CEAG's train max_g ψ_g ≤ ε + 1 point there, with its constraints acting; every run settled; each run
after the dense model (its share of the pruning phase and its fine-tuning) ≤ 10 minutes. What happens on test
is reported as it is. The folder is read in place (``--data-dir``, else $CEAG_DATA, else ./data); nothing is
copied. Without a UTKFace folder the suite says so and measures nothing. About 2 hours on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result

ROOT = Path(__file__).resolve().parents[1]
RUN_LIMIT = 600.0  # seconds per run after the dense model
FIT = 0.97         # the dense model's train accuracy that counts as fitting the training set
HURT = 0.10        # NFT's train max_g psi_g that shows the phenomenon
SEEDS = (1, 2)     # the seeds added to seed 0 at the sparsity that shows it


def _grid(results: Path, data_dir: str, *args: str) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ceag", "grid", "--data-dir", data_dir, "--results", str(results),
                          "--json", *args], env=env, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"ceag grid {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - start, json.loads(out.stdout)


def _runs(results: Path, report: dict):
    """Per run of the grid: settings, metrics, diagnostics and the groups behind the train/test maxima."""
    from ceag.store import queries

    ids = [rid for rid, e in report["runs"].items() if e.get("status") in ("finished", "cached")]
    table = queries.runs_table(results)
    table = table[table.run_id.isin(ids)].copy()
    groups = queries.audit_groups(results, ids)
    worst = {}
    for (rid, split), part in groups.groupby(["run_id", "split"]):
        row = part.loc[part.excess_gap.idxmax()]
        worst[(rid, split)] = row.group_name
    fit = {}
    for rid, part in groups[groups.split == "train"].groupby("run_id"):
        n = part.n.sum()
        fit[rid] = float((part.dense_accuracy * part.n).sum() / n)
    table["train_worst"] = [worst.get((r, "train")) for r in table.run_id]
    table["test_worst"] = [worst.get((r, "test")) for r in table.run_id]
    table["dense_train_accuracy"] = [fit.get(r) for r in table.run_id]
    return table


def _times(report: dict) -> dict:
    """Seconds of the dense phase(s), and per run its fine-tuning plus its pruning phase's seconds."""
    phases = report.get("phases") or []
    dense = [p["seconds"] for p in phases if p["kind"] == "dense" and p.get("trained")]
    pruning = max([p["seconds"] for p in phases if p["kind"] == "pruning" and p.get("trained")] or [0.0])
    runs = {p["task"].split(":", 1)[1]: p["seconds"] + pruning for p in phases if p["kind"] == "run"}
    return {"dense": dense, "runs": runs}


def _per_run(label: str, table, times: dict, tolerance: float) -> list[Result]:
    out = []
    for r in table.sort_values(["sparsity", "method", "seed"]).itertuples():
        settled = bool(r.converged) if r.converged == r.converged and r.converged is not None else None
        acted = "" if r.method not in ("ceag", "el_rb") else (
            f"; constraints {'acted' if r.constraints_active else 'never acted'}")
        seconds = times["runs"].get(r.run_id)
        out.append(Result(
            f"{label}: {r.method} {r.sparsity:g} seed {r.seed}", 100 * r.train_max_excess_gap, "points",
            note=(f"train max_g ψ_g ({r.train_worst}); test {100 * r.test_max_excess_gap:.1f} ({r.test_worst}); "
                  f"accuracy train {100 * r.train_accuracy:.1f}, test {100 * r.test_accuracy:.1f}; "
                  f"settled {settled}{acted}" + (f"; {seconds:.0f} s after the dense model" if seconds else "")
                  + (f"; {r.advice}" if isinstance(r.advice, str) else ""))))
    return out


def _targets(label: str, table, times: dict, tolerance: float, sparsity: float) -> list[Result]:
    at = table[table.sparsity == sparsity]
    nft, ceag = at[at.method == "nft"], at[at.method == "ceag"]
    out = [Result(f"{label}: dense train accuracy", 100 * float(table.dense_train_accuracy.min()), "%",
                  f">= {100 * FIT:g}", bool(table.dense_train_accuracy.min() >= FIT),
                  note=f"dense phase {', '.join(f'{s:.0f}' for s in times['dense'])} s (once per seed and data)")]
    if len(nft):
        low = float(nft.train_max_excess_gap.min())
        out.append(Result(f"{label}: NFT train max_g ψ_g at {sparsity:g}", 100 * low, "points",
                          f">= {100 * HURT:g}", low >= HURT,
                          note=f"smallest over {len(nft)} seed(s); group: {', '.join(sorted(set(nft.train_worst)))}"))
    if len(ceag):
        high = float(ceag.train_max_excess_gap.max())
        acted = bool(ceag.constraints_active.fillna(False).astype(bool).all())
        out.append(Result(f"{label}: CEAG train max_g ψ_g at {sparsity:g}", 100 * high, "points",
                          f"<= {100 * tolerance + 1:g}, acting", high <= tolerance + 0.01 and acted,
                          note=f"largest over {len(ceag)} seed(s); constraints acted in every run: {acted}; "
                               f"test {', '.join(f'{100 * v:.1f}' for v in ceag.test_max_excess_gap)} against NFT "
                               f"{', '.join(f'{100 * v:.1f}' for v in nft.test_max_excess_gap)}"))
    settled = table.converged.fillna(False).astype(bool)
    out.append(Result(f"{label}: runs that settled", int(settled.sum()), f"of {len(table)}", "all",
                      bool(settled.all())))
    slowest = max(times["runs"].values() or [0.0])
    out.append(Result(f"{label}: slowest run after the dense model", slowest, "s", f"<= {RUN_LIMIT:g}",
                      slowest <= RUN_LIMIT))
    return out


def run(quick: bool = False, data_dir: str | None = None) -> list[Result]:
    from ceag.config.presets import preset
    from ceag.datasets.layouts import DatasetError, locate

    data_dir = data_dir or os.environ.get("CEAG_DATA") or "data"
    try:
        locate("utkface", data_dir)
    except DatasetError as err:
        return [Result("real_faces: no UTKFace folder", None, "", note=str(err))]
    if quick:
        return [Result("real_faces", None, "", note="not run with --quick: it trains on the whole folder")]
    spec = preset("utkface_cpu")
    tolerance = spec.tolerances[0]
    keep = Path(tempfile.mkdtemp(prefix="ceag-bench-real-faces-"))
    results: list[Result] = []
    wall, report = _grid(keep / "race", data_dir, "--preset", "utkface_cpu")
    race = _runs(keep / "race", report)
    times = _times(report)
    nft = race[race.method == "nft"]
    effect = float(nft.loc[nft.train_max_excess_gap.idxmax(), "sparsity"])
    results.append(Result("real_faces: utkface_cpu (8 runs, seed 0), wall time", wall, "s",
                          note=f"results kept in {keep / 'race'} (open the app on it: CEAG_RESULTS=...)"))
    wall3, report3 = _grid(keep / "race", data_dir, "--preset", "utkface_cpu", "--methods", "nft,ceag",
                           "--sparsities", f"{effect:g}", "--seeds", ",".join(map(str, SEEDS)))
    seeds = _runs(keep / "race", report3)
    times3 = _times(report3)
    both = {"dense": times["dense"] + times3["dense"], "runs": {**times["runs"], **times3["runs"]}}
    results.append(Result(f"real_faces: NFT and CEAG at {effect:g} on seeds {', '.join(map(str, SEEDS))}, wall time",
                          wall3, "s"))
    import pandas as pd

    everything = pd.concat([race, seeds], ignore_index=True)
    results += _targets("race", everything, both, tolerance, effect)
    results += _per_run("race", everything, both, tolerance)
    wall_i, report_i = _grid(keep / "intersectional", data_dir, "--preset", "utkface_cpu_intersectional")
    inter = _runs(keep / "intersectional", report_i)
    times_i = _times(report_i)
    results.append(Result("real_faces: utkface_cpu_intersectional (8 runs, seed 0), wall time", wall_i, "s",
                          note=f"results kept in {keep / 'intersectional'}"))
    results += _targets("race × gender", inter, times_i, tolerance, effect)
    results += _per_run("race × gender", inter, times_i, tolerance)
    return results
