"""GPU throughput of the paper's presets against a bare PyTorch loop: ``python -m bench --only gpu``.

For the ``utkface`` (MobileNet-V2, 200 px, batch 128) and ``fairface`` (ResNet-34, 224 px, batch 256)
presets, on random uint8 images held on the GPU (as a run holds its data there):

- a CEAG run's fine-tuning (``ceag.training.engine.train``, masks, masked batch norm, its evaluation of every
  split at the end) in images/s, against a bare loop of the same model, batch and image size, alone and with
  as many evaluation passes as the run made (target: ≥ 0.9 of the bare loop with its evaluations);
- one evaluation pass (``ceag.training.evaluation.outputs``) against one training epoch (target ≥ 2.5x);
- ``torch.compile`` of the bare loop's step: compile seconds and speed-up;
- from the measured rates, the estimated wall time of one whole ``utkface`` run (dense training, pruning,
  fine-tuning, their evaluations) and of the whole ``utkface`` preset grid (its epochs as the grid schedules
  them: shared dense and pruning phases counted once).

The card is named in every row. Without a CUDA GPU every row says so and nothing is measured. Every rate is
the faster of two timed repetitions after a warm-up (cuDNN picks its kernels for each batch shape once).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import Result
from ceag.datasets.base import GroupedDataset, Split
from ceag.datasets.faces import IMAGENET_MEAN, IMAGENET_STD

TARGET, EVAL_TARGET = 0.9, 2.5


def _dataset(n: int, size: int, groups: int, device, classes: int = 5) -> GroupedDataset:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 255, (n, 3, size, size), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, classes, n)).long()
    g = torch.from_numpy(rng.integers(0, groups, n)).long()
    split = Split(x, y, g, IMAGENET_MEAN, IMAGENET_STD)
    small = Split(x[:n // 8], y[:n // 8], g[:n // 8], IMAGENET_MEAN, IMAGENET_STD)
    return GroupedDataset("bench", classes, [f"g{i}" for i in range(groups)], {"train": split, "test": small},
                          flip=True).to(device)


def bare_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, split: Split, batch_size: int,
               step: Callable | None = None) -> None:
    """One epoch of a plain PyTorch loop over ``split`` (shuffled, no flips, no evaluation): the reference."""
    order = torch.randperm(len(split), device=split.y.device)
    for i in range(0, len(split), batch_size):
        idx = order[i:i + batch_size]
        if step is not None:
            step(split.prepare(split.inputs(idx)), split.y[idx])
            continue
        loss = F.cross_entropy(model(split.prepare(split.inputs(idx))), split.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def bare_eval(model: torch.nn.Module, data: GroupedDataset, batch_size: int) -> None:
    """One pass over every split without gradients, as a plain loop writes it."""
    model.eval()
    with torch.no_grad():
        for split in data.splits.values():
            for i in range(0, len(split), batch_size):
                model(split.prepare(split.inputs(slice(i, i + batch_size)))).argmax(1)
    model.train()


def _timed(fn: Callable[[], object], repeat: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, n: int, device: torch.device, size: int | None = None) -> dict:
    """Rates of one preset on ``device`` (``size`` overrides the preset's image size, for a smoke test)."""
    from ceag.config.presets import preset
    from ceag.training.engine import train
    from ceag.training.evaluation import model_outputs, outputs
    from ceag.training.models import build_model

    base = next(c for c in preset(name).configs() if c.method == "ceag")
    size = size or base.image_size or 200
    cfg = base.replace(prune_epochs=0, finetune_epochs=1, eval_every=1, device=device.type, val_fraction=0.0)
    data = _dataset(n, size, 5, device)
    shape = (3, size, size)
    dense = build_model(cfg.model, shape, 5, seed=0).to(device)
    dense_out = model_outputs(dense, data, cfg.amp, cfg.eval_batch_size)
    split = data.splits["train"]
    images = sum(len(s) for s in data.splits.values())
    evaluations = []

    def run() -> None:
        outcome = train(cfg, data, dense, device, dense_outputs=dense_out)
        evaluations.append(outcome.state.run_rows)

    ours = n / _timed(run)
    passes = sum(1 for row in evaluations[-1] if row["split"] == "train") - 1  # the epoch-0 rows reuse the dense pass

    model = build_model(cfg.model, shape, 5, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    bare_train = _timed(lambda: bare_epoch(model, opt, split, cfg.batch_size))
    bare_pass = _timed(lambda: bare_eval(model, data, 512))
    our_pass = _timed(lambda: outputs(model, split, cfg.amp, cfg.eval_batch_size)) * images / len(split)

    compiled = torch.compile(model)

    def step(x, y) -> None:
        loss = F.cross_entropy(compiled(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    try:
        bare_epoch(compiled, opt, split, cfg.batch_size, step)
        torch.cuda.synchronize()
        compile_seconds, compiled_train = time.perf_counter() - start, _timed(
            lambda: bare_epoch(compiled, opt, split, cfg.batch_size, step))
    except Exception as err:  # reported, never a failed bench
        compile_seconds, compiled_train = float("nan"), float("nan")
        print(f"torch.compile failed: {type(err).__name__}: {err}")
    return {"cfg": base, "size": size, "n": n, "ours": ours, "bare": n / bare_train,
            "bare_with_evals": n / (bare_train + passes * bare_pass), "passes": passes,
            "eval_over_train": (images / our_pass) / ours, "our_pass": our_pass, "bare_train": bare_train,
            "compile_seconds": compile_seconds, "compile_speedup": bare_train / compiled_train}


def estimates(name: str, m: dict, images: int = 23_705) -> tuple[float, float]:
    """Seconds of one whole run of preset ``name`` and of its whole grid, from the measured rates: every
    training epoch at the run's rate over the train split (UTKFace's ``images``, 20 % held out for test as
    its split does), every evaluation pass over all images at the evaluation rate. The grid's epochs are
    ``ceag.grid.plan.count_epochs``'s (shared dense and pruning phases counted once)."""
    from ceag.config.presets import preset
    from ceag.datasets.faces import UTK_TEST_RATIO
    from ceag.grid.plan import count_epochs

    cfg = m["cfg"]
    train_images = images * (1 - UTK_TEST_RATIO) * (1 - cfg.val_fraction)
    per_image_train, per_image_eval = 1 / m["ours"], m["our_pass"] / (m["n"] + m["n"] // 8)
    evals = cfg.total_epochs // cfg.eval_every + 2
    whole = (cfg.dense_epochs + cfg.total_epochs) * train_images * per_image_train + evals * images * per_image_eval
    grid = count_epochs(preset(name).configs())["shared"] * train_images * per_image_train
    return whole, grid


def run(quick: bool = False) -> list[Result]:
    if not torch.cuda.is_available():
        return [Result("GPU images/s, CEAG run / bare loop with its evaluations", None, "x", f">= {TARGET:g}", None,
                       "no CUDA GPU here")]
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    card = torch.cuda.get_device_name()
    out = []
    for name in ("utkface", "fairface"):
        m = measure(name, 2048 if quick else 8192, device)
        cfg, label = m["cfg"], f"{name} ({m['cfg'].model}, {m['size']} px, batch {m['cfg'].batch_size}), {card}"
        ratio = m["ours"] / m["bare_with_evals"]
        out += [
            Result(f"GPU images/s, CEAG fine-tuning epoch, {label}", m["ours"], "img/s"),
            Result(f"GPU images/s, bare loop, same model and batch, {card}", m["bare"], "img/s",
                   note=f"{m['bare_with_evals']:.0f} img/s with its {m['passes']} evaluation pass(es)"),
            Result(f"GPU CEAG run / bare loop with its evaluations, {name}", ratio, "x", f">= {TARGET:g}",
                   ratio >= TARGET, f"without them {m['ours'] / m['bare']:.2f}"),
            Result(f"GPU evaluation / training images/s, {name}, {card}", m["eval_over_train"], "x",
                   f">= {EVAL_TARGET:g}", m["eval_over_train"] >= EVAL_TARGET),
            Result(f"GPU torch.compile speed-up of the bare step, {name}", m["compile_speedup"], "x", "", None,
                   f"compiling took {m['compile_seconds']:.0f} s"),
        ]
        if name == "utkface":
            whole, grid = estimates(name, m)
            out += [Result(f"GPU one whole utkface run, estimated, {card}", whole / 60, "min", "", None,
                           f"{cfg.dense_epochs}+{cfg.prune_epochs}+{cfg.finetune_epochs} epochs at the rates above"),
                    Result(f"GPU the whole utkface preset grid, estimated, {card}", grid / 3600, "h", "", None,
                           "shared dense and pruning phases counted once")]
    return out
