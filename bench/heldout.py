"""Constraints that hold on test: plain CEAG, CEAG with held-out multipliers, CEAG+VS.

Two measurements:

1. **Cost** of held-out multipliers: time per training step on the small CNN (digits 8x8, batch
   64, 10 groups) relative to NFT's, for a validation batch every 1, 2 and 4 steps. Methods are
   interleaved round by round in a shuffled order; each method's fastest round is compared (other
   load only adds time) and the per-round ratios' median and middle half are shown. Target: the
   default (``heldout_every`` 2) within 1.35x NFT.
2. **Seed scan** on the demo data (the demo's MLP, 95 % sparsity), over seeds the tests do not
   use (100..119 by default), at eps in {1, 2, 5} %: the share of seeds whose test max_g psi_g <=
   eps, and the mean test max_g psi_g and test accuracy, for CEAG (multipliers from the training
   data), CEAG with held-out multipliers (``constraint_data="val"``) and CEAG+VS (tolerance
   selected on validation among eps, eps/2, eps/4). Runs are cached in the results folder.

``python -m bench --only heldout`` (``--quick``: 5 seeds, fewer rounds) or
``python -m bench.heldout --seeds 100-119 --workers 2 --results DIR`` for the table alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import statistics
import sys
import tempfile
import time

from bench.common import Result, interleaved_rounds

EPSILONS = (0.01, 0.02, 0.05)
SPARSITY = 0.95
SEEDS = tuple(range(100, 120))
VARIANTS = {"CEAG": dict(method="ceag"), "CEAG, held-out multipliers": dict(method="ceag", constraint_data="val"),
            "CEAG+VS": dict(method="ceag_vs")}
COST_TARGET = 1.35


# -- cost --------------------------------------------------------------------------------
def _cnn_stepper(method_key: str, heldout_every: int | None, groups: int = 10, batch: int = 64):
    """method_cost's training step on the small CNN, with a validation stream when ``heldout_every``."""
    import torch

    from bench.method_cost import _stepper
    from ceag.datasets.base import Split
    from ceag.training.methods.heldout import HeldoutStream

    shape = (1, 8, 8)

    def attach(method, model, cfg) -> None:
        n_val = 190  # the demo's validation split has 189 samples
        val = Split(torch.randn(n_val, *shape), torch.randint(0, 10, (n_val,)), torch.arange(n_val) % groups)
        method.heldout = HeldoutStream(model, val, _Stats(groups), groups, batch_size=batch,
                                       every=heldout_every, seed=0, buffer_size=cfg.buffer_size, replay_buffer=True)

    return _stepper(method_key, "cnn", shape, batch, groups, attach if heldout_every is not None else None)


class _Stats:
    """Dense validation statistics for the timing (values do not change the work done)."""

    def __init__(self, groups: int):
        self.n = [19] * groups
        self.accuracy = [0.9] * groups
        self.overall_accuracy = 0.9


def cost(rounds: int = 40, steps: int = 4) -> list[Result]:
    steppers = {"nft": _cnn_stepper("nft", None), "ceag": _cnn_stepper("ceag", None)}
    for every in (1, 2, 4):
        steppers[f"heldout/{every}"] = _cnn_stepper("ceag", every)
    for s in steppers.values():
        for _ in range(2 * math.ceil(10 * 40 / 64) + 8):  # until the buffers are full
            s()
    best, ratios, _ = interleaved_rounds(steppers, rounds, steps)
    out = [Result("NFT step, small CNN, digits 8x8, batch 64, 10 groups", 1000 * best["nft"], "ms", "", None,
                  f"fastest of {rounds} rounds")]
    for m, rs in ratios.items():
        q1, q2, q3 = statistics.quantiles(rs, n=4)
        if m == "ceag":
            name, target = "CEAG / NFT step time, small CNN", ""
        else:
            every = int(m.split("/")[1])
            name = f"held-out CEAG / NFT step time, small CNN, val batch every {every}"
            target = f"<= {COST_TARGET:.2f}" if every == 2 else ""
        ratio = best[m] / best["nft"]
        out.append(Result(name, ratio, "x", target, ratio <= COST_TARGET if target else None,
                          f"fastest rounds of {rounds}; per-round ratios: median {q2:.3f}, "
                          f"middle half {q1:.3f}-{q3:.3f}"))
    return out


# -- seed scan ---------------------------------------------------------------------------
def _seed_worker(seed: int, results: str) -> list[dict]:
    """Every run of one seed (one process: the dense model and the pruned state are shared)."""
    import torch

    torch.set_num_threads(1)
    from ceag.config.run_config import RunConfig
    from ceag.run.pipeline import run

    rows = []
    for eps in EPSILONS:
        for name, settings in VARIANTS.items():
            r = run(RunConfig(sparsity=SPARSITY, tolerance=eps, seed=seed, **settings), results)
            j = r.to_json()
            test = j.get("test") or {}
            rows.append({"seed": seed, "epsilon": eps, "variant": name, "status": j["status"],
                         "test_max_excess_gap": test.get("max_excess_gap"), "test_accuracy": test.get("accuracy"),
                         "train_max_excess_gap": j["train"]["max_excess_gap"],
                         "val_max_excess_gap": j["val"]["max_excess_gap"],
                         "max_multiplier": (j.get("diagnostics") or {}).get("max_multiplier"),
                         "selected_tolerance": j.get("selected_tolerance")})
    return rows


def scan(seeds=SEEDS, workers: int = 2, results: str | None = None, log=None) -> list[dict]:
    results = results or tempfile.mkdtemp(prefix="ceag-heldout-")
    rows: list[dict] = []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_seed_worker, s, results): s for s in seeds}
        for fut in cf.as_completed(futures):
            rows += fut.result()
            if log:
                log(f"seed {futures[fut]} done ({len(rows) // (len(EPSILONS) * len(VARIANTS))} of {len(seeds)})")
    return rows


def table(rows: list[dict]) -> str:
    """The table of docs/results.md: per eps and variant, share of seeds with test max psi <= eps, means."""
    lines = ["| ε | method | seeds | test max ψ_g ≤ ε | mean test max ψ_g | mean test accuracy | "
             "mean train max ψ_g | mean val max ψ_g | mean largest λ_g |", "|---|---|---|---|---|---|---|---|---|"]
    for eps in EPSILONS:
        for name in VARIANTS:
            sel = [r for r in rows if r["epsilon"] == eps and r["variant"] == name
                   and r["test_max_excess_gap"] is not None]
            if not sel:
                continue
            share = sum(r["test_max_excess_gap"] <= eps for r in sel) / len(sel)
            gap = statistics.mean(r["test_max_excess_gap"] for r in sel)
            acc = statistics.mean(r["test_accuracy"] for r in sel)
            train = statistics.mean(r["train_max_excess_gap"] for r in sel)
            val = statistics.mean(r["val_max_excess_gap"] for r in sel)
            lams = [r["max_multiplier"] for r in sel if r["max_multiplier"] is not None]
            lam = f"{statistics.mean(lams):.3f}" if lams else "n/a"
            lines.append(f"| {100 * eps:g} % | {name} | {len(sel)} | {100 * share:.0f} % | {100 * gap:.1f} | "
                         f"{100 * acc:.1f} | {100 * train:.1f} | {100 * val:.1f} | {lam} |")
    return "\n".join(lines)


def run(quick: bool = False) -> list[Result]:
    out = cost(rounds=15 if quick else 40)
    seeds = SEEDS[:5] if quick else SEEDS
    start = time.perf_counter()
    rows = scan(seeds, workers=2, results=os.environ.get("CEAG_BENCH_RESULTS"),
                log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(rows), file=sys.stderr, flush=True)
    for eps in EPSILONS:
        for name in VARIANTS:
            sel = [r for r in rows if r["epsilon"] == eps and r["variant"] == name
                   and r["test_max_excess_gap"] is not None]
            if sel:
                share = sum(r["test_max_excess_gap"] <= eps for r in sel) / len(sel)
                out.append(Result(f"share of seeds with test max psi <= {100 * eps:g} %, {name}", 100 * share, "%",
                                  "", None, f"{len(sel)} seeds, mean test max psi "
                                  f"{100 * statistics.mean(r['test_max_excess_gap'] for r in sel):.1f}"))
    out.append(Result("seed scan wall time (2 workers)", time.perf_counter() - start, "s", "", None,
                      f"{len(seeds)} seeds"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.heldout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="100-119", help="a range A-B (inclusive) or a comma-separated list")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--results", help="results folder (runs are cached there; default: a new temp folder)")
    p.add_argument("--cost", action="store_true", help="also time the held-out step against NFT's")
    args = p.parse_args(argv)
    if "-" in args.seeds:
        a, b = (int(v) for v in args.seeds.split("-"))
        seeds = tuple(range(a, b + 1))
    else:
        seeds = tuple(int(v) for v in args.seeds.split(","))
    if args.cost:
        for r in cost():
            print(r.line(), flush=True)
    start = time.perf_counter()
    rows = scan(seeds, args.workers, args.results, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(rows))
    print(f"\n{len(seeds)} seeds ({min(seeds)}..{max(seeds)}), sparsity {SPARSITY}, the demo's settings otherwise; "
          f"{time.perf_counter() - start:.0f} s with {args.workers} workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
