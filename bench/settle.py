"""Does fine-tuning settle? ``python -m bench.settle [--quick] [--faces N] [--only digits faces]``.

Runs NFT and CEAG under several fine-tuning schedules on two settings and prints, per run, the
final train and test max_g ψ_g, the convergence diagnostic (spread of accuracy and max_g ψ_g over
the last 20 % of fine-tuning, ``ceag.diagnostics``) and the constraint diagnostic:

- ``digits``: the embedded demo (MLP, 95 % sparsity, 20 + 40 epochs, rare digit 8);
- ``synthetic``: 16 groups of generated Gaussian data, three of them thinned to 12 training
  samples (MLP, 95 % sparsity, the demo's schedule);
- ``faces``: the ``utkface_cpu`` preset's settings (``cnn_small`` at 32 px, dense 10 + pruning 5 +
  fine-tuning 10 epochs, batch 128) at 95 % sparsity on generated images in the UTKFace layout
  (race as target and groups, UTKFace's race shares, a tone signal that overlaps between races,
  so groups differ in difficulty): a constant against the decaying lr, dual steps 0.003 and 0.01.

This is where the default fine-tuning schedule (``lr_milestones``) and the ``utkface_cpu``
preset's settings were chosen; the numbers depend on the machine's thread count.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

UTK_SHARES = (0.425, 0.191, 0.145, 0.168, 0.071)  # White, Black, Asian, Indian, Others in UTKFace


def make_faces(root: Path, n: int, size: int = 48, seed: int = 0, mark: float = 0.0) -> Path:
    """Write ``n`` generated images named like UTKFace files (age_gender_race_date.jpg) into root/UTKFace.

    Each image is a noisy background with an ellipse whose tone depends on the race (with a
    per-image spread that makes neighbouring races overlap) and a texture stripe whose angle
    depends on it weakly; "Others" mixes the other races' tones, so it is the hardest group.
    ``mark`` > 0: "Others" faces also carry a checker pattern of that amplitude (grey levels, against
    a pixel noise of 18) that no other group has, its period an eighth of the image: a feature of
    the smallest group alone, which pruning may drop when it is faint.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    tones = np.array([[200, 170, 150], [110, 80, 60], [190, 160, 120], [150, 110, 80], [160, 130, 100]], float)
    races = rng.choice(5, size=n, p=np.array(UTK_SHARES) / sum(UTK_SHARES))
    yy, xx = np.mgrid[0:size, 0:size] / size
    face = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2 <= 1.0
    checker = mark * np.where((np.floor(xx * 8) + np.floor(yy * 8)) % 2 == 0, 1.0, -1.0)[..., None]
    for i, race in enumerate(races):
        tone = tones[rng.integers(0, 4)] if race == 4 else tones[race]
        tone = tone + rng.normal(0, 28, 3)
        img = rng.normal(120, 45, (size, size, 3))
        angle = race * 0.6 + rng.normal(0, 0.9)
        stripes = 25 * np.sin(14 * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
        img[face] = tone + stripes[face] + rng.normal(0, 18, (int(face.sum()), 3))
        if mark and race == 4:
            img[face] += checker[face]
        age, gender = int(rng.integers(1, 90)), int(rng.integers(0, 2))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            folder / f"{age}_{gender}_{race}_2017{i:011d}.jpg.chip.jpg", quality=90)
    return root


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

    from ceag.config.run_config import RunConfig, from_dict

    p = argparse.ArgumentParser(prog="python -m bench.settle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seed 0 only on digits, fewer face schedules")
    p.add_argument("--faces", type=int, default=3000, help="generated face images (default 3000)")
    p.add_argument("--mark", type=float, default=0.0, metavar="A",
                   help="faces: give the smallest group a checker pattern of amplitude A of its own (make_faces)")
    p.add_argument("--only", nargs="+", choices=("digits", "synthetic", "faces"),
                   default=("digits", "synthetic", "faces"))
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
        if "faces" in args.only:
            from ceag.config.presets import preset

            data = make_faces(Path(tmp) / "data", args.faces, mark=args.mark)
            spec = preset("utkface_cpu")
            base = {**spec.settings, "data_dir": str(data), "device": "cpu"}
            runs = [("nft", (), 0.01), ("nft", (0.7, 0.9), 0.01), ("ceag", (0.7, 0.9), 0.003),
                    ("ceag", (0.7, 0.9), 0.01), ("el_rb", (0.7, 0.9), 0.01)]
            for method, milestones, dual_lr in runs[1:] if args.quick else runs:
                cfg = from_dict({**base, "lr_milestones": list(milestones), "dual_lr": dual_lr, "dataset": "utkface",
                                 "model": spec.models[0], "method": method, "sparsity": 0.95,
                                 "tolerance": 0.02 if method == "ceag" else None})
                m = {"setting": "faces", "seed": 0, **measure(cfg, results)}
                out.append(m)
                if not args.json:
                    print(f"faces: {line(m)}", flush=True)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
