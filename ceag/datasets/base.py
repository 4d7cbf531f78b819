"""Grouped datasets held in memory as tensors: x, y (target) and g (protected group) per split.

Splits are fixed by a data seed that does not depend on the run's seed, so runs with different
seeds see the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Split:
    """One split: inputs, y (N,) int64 targets, g (N,) int64 group ids.

    Inputs are ``x`` (N, ...) itself, or, when ``rows`` (N,) int64 is given, the rows ``rows`` of
    ``x`` (M, ...): a split of a decoded image file is a view of the file (memory-mapped, shared
    by every process that reads it) and the rows it takes, so loading copies no pixels. Read
    inputs with ``inputs``. They are float32, or uint8 images (C, H, W) kept compact and turned into
    normalized float32 one batch at a time by ``prepare`` (per-channel ``mean`` / ``std`` of
    values in [0, 1]).

    ``files`` (N,) str, for datasets read from image files: each sample's path relative to the data
    folder (``--data-dir``), posix separators, e.g. ``UTKFace/26_0_2_2017….jpg.chip.jpg``; None for
    built-in data, whose samples are named by their index within the split.
    """

    x: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rows: torch.Tensor | None = None
    files: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def inputs(self, idx: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """(len(idx), ...) the inputs of samples ``idx`` (a slice or an index tensor) of this split."""
        if self.rows is None:
            return self.x[idx]
        return self.x[self.rows[idx]]

    def to(self, device: torch.device) -> Split:
        device = torch.device(device)
        if device.type == "cpu" and self.x.device.type == "cpu":
            return self
        x = self.inputs()  # a device gets the split's own rows only
        pin = device.type == "cuda"
        x = x.pin_memory() if pin and not x.is_pinned() else x
        return Split(x.to(device, non_blocking=pin), self.y.to(device), self.g.to(device), self.mean, self.std,
                     files=self.files)

    def prepare(self, x: torch.Tensor, mirror: torch.Tensor | None = None) -> torch.Tensor:
        """Model input for rows ``x`` of this split: a new float32 tensor, scaled and normalized.

        ``mirror`` (len(x),) bool: rows flipped left to right (flipped before the conversion, on the
        compact rows). Images (N, C, H, W) come out in channels-last memory order: the same values, and
        convolutions run faster on it (on 2 CPU cores about 2x for evaluating ``cnn_fc`` and
        ``cnn_small``; ``bench/throughput.py``). The normalization is done in place on that one copy, as
        ``(x / 255 - mean) / std``: the same arithmetic, in the same order, as three separate tensors.
        """
        if mirror is not None:
            x = torch.where(mirror.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
        layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format
        out = x.to(dtype=torch.float32, memory_format=layout, copy=True)
        if x.dtype == torch.uint8:
            out.div_(255.0)
        if self.mean is not None:
            mean, std = self._constants(out.device, out.dim())
            out.sub_(mean).div_(std)
        return out

    def _constants(self, device: torch.device, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (1, C, 1, …) mean and std on ``device``, made once per device (a tensor made from a tuple
        on a GPU is a copy from the host that waits for the device)."""
        key = (str(device), dims)
        if key not in self._cache:
            shape = (1, -1) + (1,) * (dims - 2)
            self._cache[key] = (torch.tensor(self.mean, device=device).view(shape),
                                torch.tensor(self.std, device=device).view(shape))
        return self._cache[key]


@dataclass
class GroupedDataset:
    name: str
    num_classes: int
    group_names: list[str]
    splits: dict[str, Split]  # "train", "test" and, when carved, "val"
    flip: bool = False        # random horizontal flips of training batches
    skipped: dict[str, int] | None = None  # rows or files skipped while loading, by reason
    # What loading left out or recognised, for the run's summary: ``skipped_by_group``
    # {group name: {reason: count}} where the group is known, ``rows_read``, ``unknown_values``
    # {column: {value: count}}, ``notes`` (e.g. spreadsheet manglings recognised), ``split_rule``.
    report: dict | None = None
    class_names: list[str] | None = None  # the target's values in label order (None: unnamed classes)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.splits["train"].input_shape

    def group_counts(self, split: str) -> np.ndarray:
        """(num_groups,) number of samples of each group in ``split``."""
        return np.bincount(self.splits[split].g.cpu().numpy(), minlength=self.num_groups)

    def to(self, device: torch.device) -> GroupedDataset:
        return GroupedDataset(self.name, self.num_classes, self.group_names,
                              {k: s.to(device) for k, s in self.splits.items()}, self.flip, self.skipped,
                              self.report, self.class_names)


def batches(split: Split, batch_size: int, generator: torch.Generator, *, flip: bool = False) -> Iterator[Split]:
    """Shuffled, prepared minibatches of one epoch; order and flips are drawn from ``generator`` only.

    The epoch's order, then (with ``flip``) one uniform draw per sample in that order, are drawn at the
    start of the epoch and sent to the split's device once: the same numbers as drawing each batch's flips
    when it is made, without a copy from the host per batch (on a GPU, each would wait for the device).
    """
    n = len(split)
    order = torch.randperm(n, generator=generator)
    mirror = (torch.rand(n, generator=generator) < 0.5) if flip else None
    device = split.y.device
    if device.type == "cuda":
        order = order.pin_memory().to(device, non_blocking=True)
        mirror = None if mirror is None else mirror.pin_memory().to(device, non_blocking=True)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = split.prepare(split.inputs(idx), None if mirror is None else mirror[start:start + batch_size])
        yield Split(x, split.y[idx], split.g[idx])
