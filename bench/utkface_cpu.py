"""The ``utkface_cpu`` preset at UTKFace's size on this machine's cores: how long its runs take,
whether fine-tuning settled and whether the multipliers acted.

The data is generated (``bench.settle.make_faces``: 23,704 images in the UTKFace layout, race
shares as in UTKFace, a tone signal that overlaps between races so groups differ in difficulty,
and a faint pattern (amplitude ``MARK``) that only the smallest group, "Others", carries: a feature
of its own that pruning drops, so that there is a disparate impact for CEAG to act on), so the
accuracies say nothing about real faces; the times and the diagnostics' behaviour are what this
measures. Two measurements, each from an empty results folder and in a fresh process:

- one CEAG run (ε = 2 %, 95 % sparsity) with ``ceag run``: what a user who runs one setting waits,
  every phase included (decoding the folder, dense, pruning, fine-tuning, evaluation);
- the whole preset with ``ceag grid --preset utkface_cpu`` (8 runs, one worker per core), where the
  dense model and each end-of-pruning state are trained once and shared.

``--quick`` uses 3,000 images (times scale with the number of images).
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

FULL, QUICK = 23_704, 3_000
ROOT = Path(__file__).resolve().parents[1]
LIMIT = 600  # seconds: "at most about 10 minutes" per run
# Amplitude of the smallest group's own pattern: at 5 the dense model learns it and the pruned one
# loses part of it (NFT's max_g psi_g about 7 points on a GPU, python -m bench.dual_step --mark 5).
MARK = 5.0


def _ceag(*args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ceag", *args], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def run(quick: bool = False) -> list[Result]:
    from bench.settle import make_faces
    from ceag.config.presets import preset
    from ceag.store import queries

    n = QUICK if quick else FULL
    spec = preset("utkface_cpu")
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="ceag-bench-utkcpu-") as tmp:
        data = make_faces(Path(tmp) / "data", n, size=64, mark=MARK)
        sets = [a for k, v in spec.settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        one, out = _ceag("run", "--dataset", "utkface", "--model", spec.models[0], "--method", "ceag",
                         "--sparsity", "0.95", "--tolerance", str(spec.tolerances[0]), "--data-dir", str(data),
                         "--results", str(Path(tmp) / "one"), "--device", "cpu", "--json", *sets)
        single = json.loads(out)
        grid_wall, _ = _ceag("grid", "--preset", "utkface_cpu", "--data-dir", str(data), "--set", 'device="cpu"',
                             "--results", str(Path(tmp) / "grid"), "--json")
        runs = queries.runs_table(Path(tmp) / "grid")
        # EL+RB's violations are the loss gaps |L_g - L| of its dual steps: each run's largest group mean
        el_ids = runs[(runs.status == "finished") & (runs.method == "el_rb")].run_id
        gaps = [queries.duals(Path(tmp) / "grid", rid).groupby("group_id").violation.mean().max() for rid in el_ids]
    finished = runs[runs.status == "finished"]
    trained = finished[~finished.method.isin(["nft_es"])]
    settled = int(finished.converged.fillna(False).astype(bool).sum())
    constrained = finished[finished.method.isin(["ceag", "el_rb"])]
    acted = int(constrained.constraints_active.fillna(False).astype(bool).sum())
    # "never acted" warnings: a group ended above ε (EL+RB: any loss gap) and the multipliers stayed small
    never = int(constrained.warnings.map(lambda w: any("never acted" in x for x in (w if w is not None else []))).sum())
    single_diag = single.get("diagnostics") or {}
    single_cons = single_diag.get("constraints") or {}
    note = f"{n} generated images, {cores} cores"
    results = [
        Result("utkface_cpu: one CEAG run from an empty folder", one, "s", f"<= {LIMIT}", one <= LIMIT,
               note=f"{note}; of which the run's own phases {single['wall_seconds']:.0f} s; settled "
                    f"{single_diag.get('converged')}, largest λ_g / p_g {single_cons.get('multiplier_ratio', 0):.2f}"
                    + (f"; {single_diag['advice']}" if single_diag.get("advice") else "")),
        Result("utkface_cpu: the whole preset (8 runs) from an empty folder", grid_wall, "s",
               note=f"{len(finished)} finished, {len(trained)} trained (NFT+ES is derived from NFT)"),
        Result("utkface_cpu: preset wall time per run", grid_wall / max(1, len(runs)), "s", f"<= {LIMIT}",
               grid_wall / max(1, len(runs)) <= LIMIT),
        Result("utkface_cpu: runs that settled", settled, f"of {len(finished)}", "all", settled == len(finished)),
        Result("utkface_cpu: CEAG and EL+RB runs whose constraints acted", acted, f"of {len(constrained)}",
               note="λ_g / p_g ≥ 0.5 for some group; without a violation there is nothing to act on"),
        Result("utkface_cpu: CEAG and EL+RB runs warned that their constraints never acted", never,
               f"of {len(constrained)}", "0", never == 0),
    ]
    if gaps:
        results.append(Result("utkface_cpu: EL+RB's largest mean loss gap |L_g - L| over fine-tuning", max(gaps),
                              "nats", note=f"dual step {spec.cell_settings('el_rb')['dual_lr']:g}; what the "
                                           "preset's EL+RB dual step is sized from"))
    for run in finished.sort_values(["sparsity", "method"]).itertuples():
        # each run, so that the docs can say which ones settled and why not
        lam = f"; largest λ_g {run.max_multiplier:.3g}" if run.max_multiplier == run.max_multiplier else ""
        verdict = float(run.converged) if isinstance(run.converged, bool) else None  # None: unknown
        results.append(Result(f"utkface_cpu: {run.method} at {run.sparsity:g}", verdict, "settled",
                              note=(f"train / test max_g ψ_g {100 * run.train_max_excess_gap:.1f} / "
                                    f"{100 * run.test_max_excess_gap:.1f} points{lam}"
                                    + (f"; {run.advice}" if isinstance(run.advice, str) else ""))))
    for sparsity in spec.sparsities:
        at = finished[finished.sparsity == sparsity].set_index("method")
        if not {"nft", "ceag", "el_rb"} <= set(at.index):
            continue
        psi = {(m, split): 100 * at.loc[m, f"{split}_max_excess_gap"] for m in ("nft", "ceag", "el_rb")
               for split in ("train", "test")}
        results.append(Result(f"utkface_cpu: CEAG's train max_g ψ_g at {sparsity:g}", psi["ceag", "train"], "points",
                              note=f"NFT {psi['nft', 'train']:.1f}, EL+RB {psi['el_rb', 'train']:.1f}; ε "
                                   f"{100 * spec.tolerances[0]:g}; on test NFT {psi['nft', 'test']:.1f}, CEAG "
                                   f"{psi['ceag', 'test']:.1f}, EL+RB {psi['el_rb', 'test']:.1f}"))
    return results
