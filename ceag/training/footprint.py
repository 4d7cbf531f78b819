"""What a model costs to keep and to run: parameters, multiply-accumulates, bytes on disk, measured latency.

Counts come from torch-pruning's ``utils.count_ops_and_params`` on one sample. Latency is wall time of eval-mode
forward passes under ``torch.inference_mode`` on random inputs, after warm-up calls, with the thread count and
the machine recorded next to it: latency figures compare only within one machine, thread count and torch
version, measured side by side.
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.utils import op_counter


@dataclass(frozen=True)
class ModelSize:
    """Per-sample counts at ``input_shape`` (one sample, without the batch dimension).

    ``params``: parameters (all of them, batch-norm scales and shifts included); ``macs``: multiply-accumulates
    of the conv and linear layers as torch-pruning counts them (one per weight use, plus one add per bias element);
    ``ops``: torch-pruning's total, which adds batch norm (2 per element), activations and pooling (1 per element);
    ``state_dict_bytes``: the size of ``torch.save(model.state_dict())``, buffers included.
    """

    input_shape: tuple[int, ...]
    params: int
    macs: int
    ops: int
    state_dict_bytes: int

    def to_json(self) -> dict:
        return {**asdict(self), "input_shape": list(self.input_shape)}


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass of a batch of ``batch`` samples, in milliseconds, over ``repeats`` timed calls
    after ``warmup`` untimed ones: median, minimum, maximum and interquartile range (q75 - q25).
    ``device``: "cpu" or the CUDA device's name; ``threads``: torch's intra-op threads during the timing."""

    batch: int
    device: str
    threads: int
    warmup: int
    repeats: int
    median_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Machine:
    """Where figures were measured: ``platform.platform()``, the processor's name, logical CPUs, torch's version,
    torch's intra-op threads, and the CUDA device's name (None on CPU)."""

    platform: str
    processor: str
    cpu_count: int | None
    torch_version: str
    threads: int
    cuda_device: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Footprint:
    """A model's size and its latencies at several batch sizes, with the machine they were measured on."""

    size: ModelSize
    latencies: tuple[Latency, ...] = field(default_factory=tuple)
    machine: Machine | None = None

    def to_json(self) -> dict:
        return {"size": self.size.to_json(), "latencies": [lat.to_json() for lat in self.latencies],
                "machine": None if self.machine is None else self.machine.to_json()}


def model_size(model: nn.Module, input_shape: tuple[int, ...]) -> ModelSize:
    """Parameters, MACs and ops per sample at ``input_shape``, and the state dict's bytes. The model is not
    changed (torch-pruning counts on a copy, in eval mode). Raises ValueError for a shape the model cannot take."""
    shape = _shape(input_shape)
    x = torch.zeros((1, *shape), **_placement(model))
    _count_subclasses(model)
    try:
        ops, params, layer_ops, _ = tp.utils.count_ops_and_params(model, x, layer_wise=True)
    except RuntimeError as e:
        raise ValueError(f"the model does not run on inputs of shape {shape}: {e}") from e
    macs = sum(int(layer_ops.get(m) or 0) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return ModelSize(shape, int(params), macs, int(ops), buffer.getbuffer().nbytes)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch: int, *, repeats: int = 20,
                    warmup: int = 3, threads: int | None = None) -> Latency:
    """Time ``repeats`` forward passes of a batch of ``batch`` random samples of ``input_shape`` on the model's
    device (CUDA: synchronised before and after each pass), after ``warmup`` passes, in eval mode; the model's
    mode and torch's thread count are restored. ``threads``: torch's intra-op threads while timing (default:
    as set). Raises ValueError for a batch or repeats below 1, or warmup below 0."""
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch and repeats must be >= 1 and warmup >= 0, not {batch}, {repeats}, {warmup}")
    shape = _shape(input_shape)
    place = _placement(model)
    cuda = place["device"].type == "cuda"
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0)).to(**place)
    before, was_training = torch.get_num_threads(), model.training
    if threads is not None:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    times = []
    try:
        model.eval()
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if cuda:
                    torch.cuda.synchronize(place["device"])
                start = time.perf_counter()
                model(x)
                if cuda:
                    torch.cuda.synchronize(place["device"])
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
        torch.set_num_threads(before)
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    device = torch.cuda.get_device_name(place["device"]) if cuda else "cpu"
    return Latency(batch, device, used, warmup, repeats, statistics.median(times), min(times), max(times),
                   q[2] - q[0])


def machine_info(threads: int | None = None) -> Machine:
    """This machine; ``threads``: the intra-op thread count to record (default: torch's current one)."""
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return Machine(platform.platform(), _processor(), os.cpu_count(), torch.__version__,
                   torch.get_num_threads() if threads is None else threads, cuda)


def footprint(model: nn.Module, input_shape: tuple[int, ...], *, batches: Iterable[int] = (1, 64),
              repeats: int = 20, warmup: int = 3, threads: int | None = None) -> Footprint:
    """``model_size`` and ``measure_latency`` at each batch size in ``batches``, with the machine."""
    lats = tuple(measure_latency(model, input_shape, b, repeats=repeats, warmup=warmup, threads=threads)
                 for b in batches)
    used = lats[0].threads if lats else threads
    return Footprint(model_size(model, input_shape), lats, machine_info(used))


def _count_subclasses(model: nn.Module) -> None:
    """Let torch-pruning's counter count a subclass of a layer type it knows (e.g. ``MaskedBatchNorm2d``) as that
    type; it looks types up exactly and would count such a layer as zero ops. The counter clears the table after
    each count."""
    known = op_counter.MODULES_MAPPING
    for module in model.modules():
        kind = type(module)
        if kind not in known:
            base = next((b for b in kind.__mro__[1:] if b in known), None)
            if base is not None:
                op_counter.CUSTOM_MODULES_MAPPING[kind] = known[base]


def _shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be one sample's shape, e.g. (3, 32, 32), not {input_shape!r}")
    return shape


def _placement(model: nn.Module) -> dict:
    ref = next(model.parameters(), None)
    return {"device": torch.device("cpu"), "dtype": torch.float32} if ref is None else \
        {"device": ref.device, "dtype": ref.dtype}


def _processor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
