"""Structured pruning that removes channels: how much faster the rebuilt model runs than the dense one.

ResNet-18 and MobileNet-V2 at the UTKFace presets' image sizes (``utkface_cpu``: 32 px; the paper's
``utkface``: the images' own 200 px), masks from ``channel_masks`` (layerwise, first conv and classifier dense)
at 50, 75 and 90 % of each prunable group's channels, applied with masked batch norm to a model whose
batch-norm statistics are perturbed (so a dead channel would not output zero without the mask), then
``rebuild``. Eval-mode forward passes on the CPU at batch 1 and 64 with ``THREADS`` threads (``run(threads=...)``,
``python -m bench.shrink --threads=N``); the dense model and the three rebuilt ones are timed in rounds, in a
shuffled order each round. Other load on a shared machine only ever adds time, so each speed-up is the ratio of
the fastest calls (as ``bench.common.interleaved_rounds`` compares); the ratio of the medians over all rounds is
in the note. Target: ResNet-18 with 75 % of its channels removed runs >= 2x faster than dense at batch 64.
``--quick``: 32 px only, fewer repeats.

Where a figure falls short of the MACs ratio, the note says how much of the rebuilt model's arithmetic sits in
layers that read or write a group kept dense by coupling (ResNet-18's first-stage stream is the stem's output),
and for the target model, the MACs ratio when the stem is pruned too (``dense_first_conv=False``).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator

import torch
from torch import nn

from bench.common import Result
from ceag.training.footprint import machine_info, measure_latency, model_size
from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner
from ceag.training.structured import channel_groups, channel_masks, rebuild

THREADS = 2
SPARSITIES = (0.5, 0.75, 0.9)
MODELS = (("resnet18", "ResNet-18"), ("mobilenet_v2", "MobileNet-V2"))
TARGET_MODEL, TARGET_SPARSITY, TARGET_BATCH, TARGET_SPEEDUP = "resnet18", 0.75, 64, 2.0


def _masked(name: str, size: int, sparsity: float, dense_first_conv: bool = True) -> tuple[nn.Module, dict, list]:
    shape = (3, size, size)
    model = build_model(name, shape, 5, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=gen))
                m.bias.data.copy_(0.3 * torch.randn(m.num_features, generator=gen))
    pruner = MagnitudePruner(model, "structured", masked_bn=True, dense_first_conv=dense_first_conv)
    groups = channel_groups(model, pruner.layers, shape)
    masks = channel_masks(model, groups, sparsity)
    pruner.load_state_dict(masks)
    pruner.apply_()
    return model.eval(), masks, groups


def _timed_rounds(models: dict[str, nn.Module], shape: tuple[int, ...], batch: int, rounds: int,
                  repeats: int, warmup: int, threads: int) -> dict[str, tuple[float, float]]:
    """Per model, (fastest call, median of the rounds' medians) in ms over ``rounds`` rounds, shuffled each round."""
    rng = random.Random(0)
    fastest: dict[str, float] = dict.fromkeys(models, float("inf"))
    medians: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        order = list(models)
        rng.shuffle(order)
        for k in order:
            lat = measure_latency(models[k], shape, batch, repeats=repeats, warmup=warmup if r == 0 else 1,
                                  threads=threads)
            fastest[k] = min(fastest[k], lat.min_ms)
            medians[k].append(lat.median_ms)
    return {k: (fastest[k], statistics.median(medians[k])) for k in models}


def _dense_coupled_share(small: nn.Module, groups: list, shape: tuple[int, ...]) -> float:
    """Share of ``small``'s conv/linear MACs in layers that write or read a group kept dense."""
    from torch_pruning.utils import count_ops_and_params

    _, _, layer_ops, _ = count_ops_and_params(small, torch.zeros(1, *shape), layer_wise=True)
    per_layer = {n: int(layer_ops.get(m) or 0) for n, m in small.named_modules()
                 if isinstance(m, (nn.Conv2d, nn.Linear))}
    coupled = {n for g in groups if not g.prunable for n in (*g.producers, *g.consumers)}
    return sum(v for n, v in per_layer.items() if n in coupled) / max(1, sum(per_layer.values()))


def run(quick: bool = False, threads: int = THREADS) -> Iterator[Result]:
    sizes = (32,) if quick else (32, 200)
    rounds, warmup = (2, 3) if quick else (3, 5)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        box = machine_info(threads)
        yield Result(f"machine: {box.processor}, {box.cpu_count} CPUs", None, "", note=f"torch {box.torch_version}, "
                     f"{threads} threads, {box.platform}")
        for name, label in MODELS:
            for size in sizes:
                yield from _one(name, label, size, rounds, warmup, quick, threads)
    finally:
        torch.set_num_threads(before)


def _one(name: str, label: str, size: int, rounds: int, warmup: int, quick: bool,
         threads: int) -> Iterator[Result]:
    shape = (3, size, size)
    models: dict[str, nn.Module] = {}
    facts = {}
    for s in SPARSITIES:
        model, masks, groups = _masked(name, size, s)
        models.setdefault("dense", build_model(name, shape, 5, seed=0).eval())
        start = time.perf_counter()
        small = rebuild(model, masks, shape)
        seconds = time.perf_counter() - start
        x = torch.randn((8, *shape), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = float((model(x) - small(x)).abs().max())
        facts[s] = (seconds, diff, model_size(small, shape), _dense_coupled_share(small, groups, shape))
        models[f"{s:g}"] = small
    dense = model_size(models["dense"], shape)
    tag = f"{label} {size}px"
    yield Result(f"{tag} dense: MACs, params", dense.macs / 1e9, "GMAC", note=f"{dense.params / 1e6:.2f} M params")
    for batch in (1, 64):
        repeats = (5 if quick else 10) if batch == 1 else (2 if quick else 3)
        times = _timed_rounds(models, shape, batch, rounds, repeats, warmup, threads)
        base, base_med = times["dense"]
        yield Result(f"{tag} dense, batch {batch}, CPU {threads} thr", base, "ms",
                     note=f"fastest of {rounds} rounds x {repeats} calls; median {base_med:.1f} ms")
        for s in SPARSITIES:
            fast, med = times[f"{s:g}"]
            speed = base / fast
            size_s, share = facts[s][2], facts[s][3]
            hit = name == TARGET_MODEL and s == TARGET_SPARSITY and batch == TARGET_BATCH
            note = (f"{fast:.1f} ms; medians' ratio {base_med / med:.2f}x; "
                    f"MACs {dense.macs / size_s.macs:.1f}x fewer")
            if hit:
                note += f"; {share:.0%} of the rebuilt MACs read or write channels coupled to a dense layer"
            yield Result(f"{tag} {s:.0%} channels removed, batch {batch}: speed-up", speed, "x",
                         f">= {TARGET_SPEEDUP:g}x" if hit else "", (speed >= TARGET_SPEEDUP) if hit else None, note)
    for s in SPARSITIES:
        seconds, diff, size_s, share = facts[s]
        yield Result(f"{tag} {s:.0%}: MACs dense / rebuilt", dense.macs / size_s.macs, "x",
                     note=f"params {dense.params / size_s.params:.1f}x fewer; state dict "
                          f"{dense.state_dict_bytes / size_s.state_dict_bytes:.1f}x smaller; "
                          f"{share:.0%} of rebuilt MACs coupled to a dense layer")
        yield Result(f"{tag} {s:.0%}: rebuild", seconds, "s", note="with its check: 2 forward passes of each model")
        yield Result(f"{tag} {s:.0%}: max |logit diff|, masked vs rebuilt", diff, "", note="8 inputs, eval mode")
    if name == TARGET_MODEL:
        model, masks, _ = _masked(name, size, TARGET_SPARSITY, dense_first_conv=False)
        stem = model_size(rebuild(model, masks, shape), shape)
        yield Result(f"{tag} {TARGET_SPARSITY:.0%}, stem pruned too: MACs dense / rebuilt", dense.macs / stem.macs,
                     "x", note=f"dense_first_conv=False; {facts[TARGET_SPARSITY][2].macs / stem.macs:.1f}x fewer MACs "
                               "than with the stem dense")


if __name__ == "__main__":
    import sys

    count = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--threads=")), THREADS)
    for r in run(quick="--quick" in sys.argv, threads=count):
        print(r.line(), flush=True)
