"""The phase after training: what the reported model costs against the dense one, and its smaller self kept.

With structured pruning ("structured", "channels", "channels_global") the reported model is rebuilt without the
channels it can lose (``ceag.results.model_export.small_model``, which checks that its logits do not change) and
kept in the run folder (``model_small.pt``, ``shrink_plan.json``); the figures of the pruned model are the rebuilt
one's. With unstructured pruning nothing can be removed: the pruned model is the masked one, which keeps the
dense model's size and speed, and the figures say so.

Per model (dense, pruned): parameters, multiply-accumulates per sample, state-dict bytes
(``ceag.training.footprint.model_size``), and eval-mode latency on the CPU at batch 1 and 64 with the run's
thread count (``measure_latency``: ``ROUNDS`` rounds of ``REPEATS`` timed calls after ``WARMUP`` untimed ones, the
dense model and the pruned one in turns; the median of the rounds' medians), and on the GPU too when the run
trained on one. Latencies compare only within one record: same machine, threads and torch, measured side by
side; another process on the machine slows both. Channels are counted over the prunable channel groups:
``channel_sparsity`` is the fraction removed; ``channels.pruned`` counts those pruned in every layer of their
group (for "structured" more than can be removed).
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import STRUCTURED_PRUNING
from ceag.results.files import now
from ceag.results.layout import SHRINK_PLAN, SMALL_MODEL
from ceag.results.model_export import save_small, small_model
from ceag.training.footprint import Latency, machine_info, measure_latency, model_size
from ceag.training.structured import channel_groups

BATCHES = (1, 64)
ROUNDS = 3                # the dense and the pruned model timed in turns, so a load that comes and goes hits both
REPEATS = {1: 5, 64: 1}   # timed forward passes per model and round, by batch size
WARMUP = {1: 3, 64: 1}    # untimed passes per model before its first round


def measure_phase(cfg: RunConfig, dense: nn.Module, model: nn.Module, masks: dict[str, torch.Tensor] | None,
                  achieved_sparsity: float, input_shape: tuple[int, ...], folder: Path) -> tuple[dict, dict]:
    """(the run's ``footprint`` record, its phase record) for the reported ``model`` (masked, with the pruner's
    ``masks``) against ``dense``. Writes the small model into ``folder`` for a structured kind. A model that
    cannot be rebuilt exactly is measured masked, with the reason in ``error``: the run it ends keeps its
    results."""
    started, clock = now(), time.perf_counter()
    shape = tuple(int(d) for d in input_shape)
    masks = {k: v.cpu() for k, v in (masks or {}).items()}
    pruned, error, files = model, None, None
    removed = 0
    if cfg.pruning in STRUCTURED_PRUNING:
        try:
            pruned, plan = small_model(model, masks, shape, cfg.pruning)
            save_small(folder, pruned, plan)
            files = {"model": SMALL_MODEL, "plan": SHRINK_PLAN}
            removed = sum(len(v) for v in plan.removed.values())
        except ValueError as err:
            error = f"the model could not be rebuilt without its pruned channels: {err}"
    rebuilt_seconds = time.perf_counter() - clock
    try:
        total, dead = _channels(model, masks, shape)
    except ValueError as err:  # channels coupled other than one to one: counted as none
        total, dead, error = 0, 0, error or f"the channels could not be grouped: {err}"
    threads = torch.get_num_threads()
    figures = {"dense": _size(dense, shape), "pruned": _size(pruned, shape)}
    latencies = _latencies({"dense": dense, "pruned": pruned}, shape, threads)
    for lat in latencies:
        where = "cpu" if lat["device"] == "cpu" else "gpu"
        figures[lat["model"]]["latency_ms"][f"{where}_b{lat['batch']}"] = lat["median_ms"]
    footprint: dict[str, Any] = {
        "pruning": cfg.pruning, "model": "rebuilt" if files else "masked", "input_shape": list(shape),
        "weight_sparsity": achieved_sparsity, "channel_sparsity": removed / total if total else 0.0,
        "channels": {"total": total, "removed": removed, "pruned": dead},
        **figures, "latencies": latencies, "machine": machine_info(threads).to_json(), "files": files,
        "error": error, "seconds": {"rebuild": round(rebuilt_seconds, 3),
                                    "measure": round(time.perf_counter() - clock - rebuilt_seconds, 3)},
    }
    phase = {"kind": "footprint", "trained": False, "started_at": started,
             "seconds": round(time.perf_counter() - clock, 3)}
    return footprint, phase


def _size(model: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    size = model_size(model, shape)
    return {"params": size.params, "macs": size.macs, "ops": size.ops, "size_bytes": size.state_dict_bytes,
            "latency_ms": {}}


def _latencies(models: dict[str, nn.Module], shape: tuple[int, ...], threads: int) -> list[dict[str, Any]]:
    """Each model's latency at every batch size of ``BATCHES``: on the CPU (a copy, for a model on a GPU), then on
    its GPU if it is on one. ``ROUNDS`` rounds of ``REPEATS`` timed calls, the models in turns (the order
    alternating); ``median_ms`` is the median of the rounds' medians, ``min_ms`` and ``max_ms`` over every call,
    ``spread_ms`` the range of the rounds' medians."""
    out: list[dict[str, Any]] = []
    gpu = next(models["dense"].parameters()).device.type == "cuda"
    cpu = {k: copy.deepcopy(m).cpu() for k, m in models.items()} if gpu else models
    for place in (cpu, models) if gpu else (cpu,):
        for batch in BATCHES:
            rounds: dict[str, list[Latency]] = {name: [] for name in place}
            for r in range(ROUNDS):
                for name in list(place)[::1 if r % 2 == 0 else -1]:
                    rounds[name].append(measure_latency(place[name], shape, batch, repeats=REPEATS[batch],
                                                        warmup=WARMUP[batch] if r == 0 else 0,
                                                        threads=threads if place is cpu else None))
            for name, lats in rounds.items():
                medians = [lat.median_ms for lat in lats]
                out.append({"model": name, "batch": batch, "device": lats[0].device, "threads": lats[0].threads,
                            "warmup": WARMUP[batch], "rounds": ROUNDS, "repeats": ROUNDS * REPEATS[batch],
                            "median_ms": statistics.median(medians), "min_ms": min(lat.min_ms for lat in lats),
                            "max_ms": max(lat.max_ms for lat in lats), "spread_ms": max(medians) - min(medians)})
    return out


def _channels(model: nn.Module, masks: dict[str, torch.Tensor], shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels of the prunable channel groups, those pruned in every layer of their group) of ``masks``."""
    last = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    layers = [n for n in masks if n != last]
    if not layers:
        return 0, 0
    total = dead = 0
    for g in channel_groups(model, layers, shape):
        if g.prunable:
            total += g.channels
            rows = [masks[n].reshape(masks[n].shape[0], -1).any(1) for n in g.producers]
            dead += int((~torch.stack(rows).any(0)).sum())
    return total, dead
