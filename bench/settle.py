"""Does fine-tuning settle? ``python -m bench.settle [--quick] [--only digits synthetic]``.

Runs NFT and CEAG under several fine-tuning schedules on two settings and prints, per run, the
final train and test max_g ψ_g, the convergence diagnostic (spread of accuracy and max_g ψ_g over
the last 20 % of fine-tuning, ``ceag.diagnostics``) and the constraint diagnostic:

- ``digits``: the embedded demo (MLP, 95 % sparsity, 20 + 40 epochs, rare digit 8);
- ``synthetic``: 16 groups of generated Gaussian data, three of them thinned to 12 training
  samples (MLP, 95 % sparsity, the demo's schedule).

This is where the default fine-tuning schedule (``lr_milestones``) was chosen; the numbers depend on
the machine's thread count. Whether the ``utkface_cpu`` preset's runs settle on real faces is measured
by ``python -m bench --only real_faces``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def measure(cfg, results: Path) -> dict:
    from ceag.run.pipeline import run

    start = time.perf_counter()
    r = run(cfg, results)
    seconds = time.perf_counter() - start
    d = r.diagnostics
    train, _ = r.final("train")
    test, _ = r.final("test")
    spread = {s: (v["accuracy"], v["max_excess_gap"]) for s, v in d["spread"].items()}
    c = d.get("constraints") or {}
    return {"method": cfg.method, "lr": cfg.lr, "milestones": list(cfg.lr_milestones), "dual_lr": cfg.dual_lr,
            "train_max_psi": train["max_excess_gap"], "test_max_psi": test["max_excess_gap"],
            "train_acc": train["accuracy"], "test_acc": test["accuracy"],
            "converged": d["converged"], "spread": spread, "constraints_active": d["constraints_active"],
            "multiplier_ratio": c.get("multiplier_ratio"), "estimates_agree": c.get("estimates_agree"),
            "seconds": seconds}


def line(m: dict) -> str:
    spread = " ".join(f"{s}:{100 * a:.1f}/{100 * g:.1f}" for s, (a, g) in m["spread"].items()
                      if a is not None and g is not None)
    ratio = "" if m["multiplier_ratio"] is None else f" λ/p {m['multiplier_ratio']:.2f} agree {m['estimates_agree']}"
    return (f"{m['method']:5} lr {m['lr']:<5g} milestones {str(m['milestones']):<16} dual {m['dual_lr']:<7g} "
            f"train acc {100 * m['train_acc']:5.1f} ψ {100 * m['train_max_psi']:5.1f} | test acc "
            f"{100 * m['test_acc']:5.1f} ψ {100 * m['test_max_psi']:5.1f} | settled {str(m['converged']):5} "
            f"spread acc/ψ {spread}{ratio} ({m['seconds']:.0f} s)")


SCHEDULES = ((), (0.6, 0.8, 0.9), (0.7, 0.9), (0.8, 0.9))


def main(argv: list[str] | None = None) -> int:
    import torch

    from ceag.config.run_config import RunConfig

    p = argparse.ArgumentParser(prog="python -m bench.settle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seed 0 only")
    p.add_argument("--only", nargs="+", choices=("digits", "synthetic"), default=("digits", "synthetic"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        if "digits" in args.only:
            for seed in (0,) if args.quick else (0, 1, 2):
                for milestones in SCHEDULES:
                    for method in ("nft", "ceag"):
                        cfg = RunConfig(method=method, sparsity=0.95, seed=seed, lr_milestones=milestones)
                        m = {"setting": "digits", "seed": seed, **measure(cfg, results)}
                        out.append(m)
                        if not args.json:
                            print(f"digits seed {seed}: {line(m)}", flush=True)
        if "synthetic" in args.only:
            for seed in (0,) if args.quick else (0, 1):
                for milestones in SCHEDULES:
                    for method in ("nft", "ceag"):
                        cfg = RunConfig(dataset="synthetic", num_groups=16, rare_groups=(3, 7, 11),
                                        rare_train_count=12, method=method, sparsity=0.95, seed=seed,
                                        lr_milestones=milestones)
                        m = {"setting": "synthetic", "seed": seed, **measure(cfg, results)}
                        out.append(m)
                        if not args.json:
                            print(f"synthetic seed {seed}: {line(m)}", flush=True)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
