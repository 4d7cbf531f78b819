"""Which dual step lets each constrained method settle and act on the ``utkface_cpu`` settings:
``python -m bench.dual_step [--faces N] [--mark A] [--ceag X ...] [--el-rb X ...] [--device cpu|cuda] [--out FILE]``.

On generated faces in the UTKFace layout (``bench.settle.make_faces``; ``--mark`` gives the
smallest group, "Others", a faint feature of its own, so pruning hurts it), with the preset's
settings otherwise, it runs NFT once and CEAG and EL+RB at each dual step, at each of the preset's
sparsities. The dense model and each end-of-pruning state are trained once and shared by the runs.
One line per run: final train and test max_g ψ_g, whether fine-tuning settled (the spread over the
last 20 % of fine-tuning), the largest multiplier against its group's share (λ_g / p_g) and
whether the constraints acted; ``--out`` appends each run's numbers as a JSON line.

Accuracies on generated images say nothing about real faces; what this compares is how each
method's multipliers behave at each dual step for the same number of steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.settle import line, make_faces, measure
    from ceag.config.presets import preset
    from ceag.config.run_config import from_dict

    spec = preset("utkface_cpu")
    p = argparse.ArgumentParser(prog="python -m bench.dual_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=23_704, help="generated images (default 23,704, UTKFace's count)")
    p.add_argument("--mark", type=float, default=0.0, metavar="A",
                   help="amplitude of the smallest group's own pattern (make_faces; default 0: none)")
    p.add_argument("--ceag", nargs="*", type=float, default=[0.01, 0.003], metavar="X", help="CEAG's dual steps")
    p.add_argument("--el-rb", nargs="*", type=float, default=[0.001, 0.0003], metavar="X", help="EL+RB's dual steps")
    p.add_argument("--sparsities", nargs="+", type=float, default=list(spec.sparsities))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--work", help="folder for the images and results (default: a temporary one)")
    p.add_argument("--out", help="append each run's numbers here as a JSON line")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ceag-bench-dual-") as tmp:
        work = Path(args.work or tmp)
        data = make_faces(work / "data", args.faces, size=64, mark=args.mark)
        base = {**spec.settings, "data_dir": str(data), "device": args.device}
        for sparsity in args.sparsities:
            cells = [("nft", None)] + [("ceag", d) for d in args.ceag] + [("el_rb", d) for d in args.el_rb]
            for method, dual_lr in cells:
                cfg = from_dict({**base, "dual_lr": dual_lr or base["dual_lr"], "dataset": "utkface",
                                 "model": spec.models[0], "method": method, "sparsity": sparsity,
                                 "tolerance": spec.tolerances[0] if method == "ceag" else None})
                m = {"mark": args.mark, "faces": args.faces, "sparsity": sparsity, **measure(cfg, work / "results")}
                print(f"mark {args.mark:g} sparsity {sparsity:g}: {line(m)}", flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(m) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
