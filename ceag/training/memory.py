"""Evaluation batches sized to the machine: from the model's activations per sample and the memory
available, so a full-resolution dataset cannot exhaust it (the kernel would kill the process
without a message).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

MAX_EVAL_BATCH = 1024
BUDGET_FRACTION = 0.25     # of the memory available now, for one evaluation batch's activations
# On a CPU a batch runs fastest while its activations stay near the caches: on 2 cores, cnn_fc and
# cnn_small at 32 px evaluate about twice as fast in batches of 128 (about 90 MB of activations) as in
# batches of 1,024, and batches of 32 to 128 run alike (bench/throughput.py). A GPU takes the largest
# batch that fits.
CPU_BATCH_BYTES = 96 << 20
CPU_MIN_BATCH = 32
SETTING = "eval_batch_size"

_PER_SAMPLE: dict[tuple, int] = {}
_MALLOC_TUNED = False
# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BELOW = 256 << 20  # bytes: freed blocks up to this size stay with the process for reuse


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to ``KEEP_BELOW`` bytes for reuse instead of handing them
    back to the kernel; returns whether the setting took effect (glibc only; once per process).

    A CPU training step allocates and frees activation tensors of a few MB. Under glibc's default
    thresholds each is mapped and unmapped again, or the heap trimmed, so every step pays tens of
    thousands of page faults: on 2 cores about a third of a small CNN's step went to the kernel.
    Freed memory then stays with the process, up to its peak use.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW) == 1
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl): its allocator's own defaults stay
    _MALLOC_TUNED = ok
    return ok


class EvalMemoryError(MemoryError):
    """An evaluation batch did not fit in memory; the message names the setting to change."""


def available_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device``: CUDA's free memory, or on the CPU the smaller of
    MemAvailable and what the process's cgroup still allows."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    available = _meminfo_available()
    limit = _cgroup_room()
    return min(v for v in (available, limit) if v is not None) if (available or limit) else 4 << 30


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


@torch.no_grad()
def activation_bytes_per_sample(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                                dtype: torch.dtype = torch.float32) -> int:
    """Bytes of every module output for one sample, summed: an upper bound on the activations an
    eval-mode forward pass holds at once (measured on a batch of two, cached per model and shape)."""
    key = (type(model).__name__, sum(p.numel() for p in model.parameters()), tuple(input_shape), device.type)
    if key not in _PER_SAMPLE:
        total = 0

        def hook(_module, _inputs, output):
            nonlocal total
            for t in output if isinstance(output, (tuple, list)) else (output,):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()

        was_training = model.training
        model.eval()
        handles = [m.register_forward_hook(hook) for m in model.modules()]
        try:
            model(torch.zeros((2, *input_shape), dtype=dtype, device=device))
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        input_bytes = int(torch.tensor(input_shape).prod()) * 4
        _PER_SAMPLE[key] = max(1, total // 2 + 2 * input_bytes)  # + the uint8 -> float input and its normalization
    return _PER_SAMPLE[key]


def eval_batch_size(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                    requested: int | None = None) -> int:
    """Samples per evaluation batch: ``requested`` when given, else what fits in
    ``BUDGET_FRACTION`` of the available memory (at least 1, at most ``MAX_EVAL_BATCH``); on a CPU also at
    most what keeps one batch's activations within ``CPU_BATCH_BYTES`` (but not below ``CPU_MIN_BATCH``)."""
    if requested is not None:
        return requested
    per_sample = activation_bytes_per_sample(model, input_shape, device)
    budget = BUDGET_FRACTION * available_bytes(device)
    fits = max(1, min(MAX_EVAL_BATCH, budget // per_sample))
    if device.type == "cpu":
        fits = min(fits, max(CPU_MIN_BATCH, CPU_BATCH_BYTES // per_sample))
    return int(fits)


def out_of_memory_message(batch: int, input_shape: tuple[int, ...], device: torch.device) -> str:
    return (f"evaluation ran out of memory on {device.type} with batches of {batch} inputs of shape "
            f"{tuple(input_shape)}; set {SETTING} smaller (e.g. --set {SETTING}={max(1, batch // 4)}), or use "
            "smaller images (--image-size N)")


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text or \
        "can't allocate memory" in text or "not enough memory" in text


__all__ = ["EvalMemoryError", "available_bytes", "activation_bytes_per_sample", "eval_batch_size",
           "MAX_EVAL_BATCH", "CPU_BATCH_BYTES", "SETTING"]
