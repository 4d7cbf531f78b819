"""Cost of the method: time per training step of CEAG and EL+RB relative to NFT.

Same model, batch and data for all three; the methods are interleaved round by round (in a
shuffled order) so drift hits them alike, and each method's fastest round is compared (other
load only adds time); the per-round ratios' median and spread are shown too. With 10 and 100
groups.

CEAG's extra work per step is a fixed amount of host work (the dual step on per-group
estimates, the replay buffers, the per-sample weights), independent of the model: it is also
timed alone. Against a 0.25 ms step (the demo MLP) it is a visible fraction; against a small
CNN's or ResNet-18's step it vanishes.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F

from bench.common import Result, interleaved_rounds, median_time
from ceag.config.run_config import RunConfig
from ceag.training.methods import DenseReference, get_method
from ceag.training.models import build_model
from ceag.training.pruning import MagnitudePruner

SETUPS = {
    # name: (model, input shape, batch, target ratio)
    "demo MLP, digits 8x8, batch 64": ("mlp", (1, 8, 8), 64, 1.10),
    "small CNN, digits 8x8, batch 64": ("cnn", (1, 8, 8), 64, 1.10),
    "ResNet-18, 3x32x32, batch 128": ("resnet18", (3, 32, 32), 128, 1.02),
}


def _stepper(method_key: str, model_name: str, shape, batch: int, groups: int, attach=None):
    """A function doing one training step of ``method_key``; ``attach(method, model, cfg)`` may add
    to the method before the first step (held-out multipliers' validation stream)."""
    torch.manual_seed(0)
    cfg = RunConfig(method=method_key, tolerance=0.01 if method_key == "ceag" else None, dual_lr=1e-3,
                    dense_last_layer=True, device="cpu")  # default replay-buffer size
    model = build_model(model_name, shape, 10, seed=0)
    pruner = MagnitudePruner(model, "unstructured", dense_last_layer=True)
    pruner.prune_to_(0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    dense = DenseReference(torch.full((groups,), 0.9), torch.full((groups,), 0.3), 0.9, 0.3,
                           torch.full((groups,), 1.0 / groups))
    method = get_method(method_key)(cfg, groups, dense, torch.device("cpu"))
    if attach is not None:
        attach(method, model, cfg)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    g = torch.randint(0, groups, (batch,))
    model.train()

    def step() -> None:  # the engine's training step, less data loading
        logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="none")
        correct = logits.detach().argmax(1) == y
        objective = method.objective(loss, correct, g, True)
        method.check_finite(0, objective)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        pruner.apply_()

    return step


def run(quick: bool = False) -> list[Result]:
    out, seed = [], 0
    for label, (model_name, shape, batch, target) in SETUPS.items():
        big = model_name == "resnet18"
        if big:
            rounds, steps = (5, 1) if quick else (10, 2)
        elif model_name == "cnn":
            rounds, steps = (15, 4) if quick else (40, 4)
        else:
            rounds, steps = (10, 20) if quick else (30, 20)
        for groups in (10, 100):
            steppers = {m: _stepper(m, model_name, shape, batch, groups) for m in ("nft", "el_rb", "ceag")}
            # Warm up; on the small models until the replay buffers are full (on ResNet-18 the
            # dual step does the same operations full or not, and a step takes over a second).
            warmup = 3 if big else 2 * math.ceil(groups * RunConfig().buffer_size / batch)
            for s in steppers.values():
                for _ in range(warmup):
                    s()
            # Shuffled interleaved rounds; the ratio compares each method's fastest round and the
            # median of the per-round ratios is shown beside it.
            best, ratios, nft_times = interleaved_rounds(steppers, rounds, steps, seed=seed)
            seed += 1
            out.append(Result(f"NFT step, {label}, {groups} groups", 1000 * best["nft"], "ms", "", None,
                              f"fastest of {rounds} rounds; median {1000 * statistics.median(nft_times):.4g} ms"))
            for m in ("ceag", "el_rb"):
                ratio = best[m] / best["nft"]
                q1, q2, q3 = statistics.quantiles(ratios[m], n=4)
                out.append(Result(f"{m.upper()} / NFT step time, {label}, {groups} groups", ratio, "x",
                                  f"<= {target:.2f}", ratio <= target,
                                  f"fastest rounds of {rounds}; per-round ratios: median {q2:.3f}, "
                                  f"middle half {q1:.3f}-{q3:.3f}"))
    for groups in (10, 100):
        extra = host_work(groups)
        out.append(Result(f"CEAG host work per step beyond NFT's, batch 64, {groups} groups (alone)", extra, "us", "",
                          None, "fixed cost of the dual step and the per-sample weights; it does not grow "
                          "with the model"))
    ratio, nft_seconds = demo_finetune_ratio(3 if quick else 7)
    out.append(Result("CEAG / NFT wall time, demo fine-tuning phase (40 epochs, evaluation included)", ratio, "x",
                      "", None, f"NFT {nft_seconds:.2f} s"))
    return out


def host_work(groups: int, batch: int = 64, repeat: int = 2000) -> float:
    """Microseconds CEAG's objective (dual step, buffers, per-sample weights) adds to NFT's, timed alone."""
    cfg = RunConfig(method="ceag", tolerance=0.01, dual_lr=1e-3, device="cpu")
    dense = DenseReference(torch.full((groups,), 0.9), torch.full((groups,), 0.3), 0.9, 0.3,
                           torch.full((groups,), 1.0 / groups))
    methods = {m: get_method(m)(cfg.replace(method=m, tolerance=0.01 if m == "ceag" else None), groups, dense,
                                torch.device("cpu")) for m in ("nft", "ceag")}
    logits = torch.randn(batch, 10, requires_grad=True)
    y, g = torch.randint(0, 10, (batch,)), torch.randint(0, groups, (batch,))
    loss = F.cross_entropy(logits, y, reduction="none")
    correct = logits.detach().argmax(1) == y
    times = {}
    for m, method in methods.items():
        times[m] = min(median_time(lambda method=method: method.objective(loss, correct, g, True), repeat=200)
                       for _ in range(repeat // 200))
    return 1e6 * (times["ceag"] - times["nft"])


def demo_finetune_ratio(repeat: int) -> tuple[float, float]:
    """Wall time of the demo's fine-tuning phase (40 epochs, evaluation included): CEAG / NFT."""
    from ceag.datasets.loading import load_dataset
    from ceag.training.engine import train, train_dense

    base = RunConfig(prune_epochs=0, dense_epochs=20, device="cpu")
    data = load_dataset(base)
    dense = train_dense(base, data, torch.device("cpu"))
    times = {"nft": [], "ceag": []}
    for _ in range(repeat):
        for m in times:
            cfg = base.replace(method=m, tolerance=0.02 if m == "ceag" else None)
            start = time.perf_counter()
            train(cfg, data, dense, torch.device("cpu"))
            times[m].append(time.perf_counter() - start)
    return statistics.median(times["ceag"]) / statistics.median(times["nft"]), statistics.median(times["nft"])
