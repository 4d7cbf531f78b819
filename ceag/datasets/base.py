"""Grouped datasets held in memory as tensors: x, y (target) and g (protected group) per split.

Splits are fixed by a data seed that does not depend on the run's seed, so runs with different
seeds see the same samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import RunConfig

DATA_SEED = 20240505  # fixes every split; the run seed only changes init and batch order
TEST_FRACTION = 0.3


@dataclass
class Split:
    """One split: inputs, y (N,) int64 targets, g (N,) int64 group ids.

    Inputs are ``x`` (N, ...) itself, or, when ``rows`` (N,) int64 is given, the rows ``rows`` of
    ``x`` (M, ...): a split of a decoded image file is a view of the file (memory-mapped, shared
    by every process that reads it) and the rows it takes, so loading copies no pixels. Read
    inputs with ``inputs``. They are float32, or uint8 images (C, H, W) kept compact and turned into
    normalized float32 one batch at a time by ``prepare`` (per-channel ``mean`` / ``std`` of
    values in [0, 1]).
    """

    x: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rows: torch.Tensor | None = None

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
        return Split(x.to(device, non_blocking=pin), self.y.to(device), self.g.to(device), self.mean, self.std)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Model input for rows ``x`` of this split: float32, scaled and normalized."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean, device=x.device).view(shape)
            std = torch.tensor(self.std, device=x.device).view(shape)
            x = (x - mean) / std
        return x


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
    """Shuffled, prepared minibatches of one epoch; order and flips are drawn from ``generator`` only."""
    n = len(split)
    order = torch.randperm(n, generator=generator).to(split.y.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = split.prepare(split.inputs(idx))
        if flip:
            mirror = (torch.rand(len(idx), generator=generator) < 0.5).to(x.device)
            x = torch.where(mirror.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
        yield Split(x, split.y[idx], split.g[idx])


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Indices (keep, taken): ``fraction`` of each label value goes to ``taken``."""
    keep, taken = [], []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        n_take = int(round(fraction * len(idx)))
        taken.append(idx[:n_take])
        keep.append(idx[n_take:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(taken))


def splits_from(x, y, g, parts: dict[str, np.ndarray], mean, std) -> dict[str, Split]:
    """Splits of uint8 images ``x`` (N, C, H, W; an array or a cache entry) by the index arrays
    ``parts``. No pixel is copied: each split views the block of ``x`` that spans its rows."""
    from .images import block

    splits = {}
    for name in ("train", "val", "test"):
        if name not in parts:
            continue
        idx = np.asarray(parts[name], dtype=np.int64)
        first, last = (int(idx.min()), int(idx.max()) + 1) if len(idx) else (0, 0)
        contiguous = len(idx) == last - first and bool((np.diff(idx) == 1).all())
        rows = None if contiguous else torch.from_numpy(idx - first)
        splits[name] = Split(torch.from_numpy(block(x, first, last)), torch.as_tensor(y[idx], dtype=torch.int64),
                             torch.as_tensor(g[idx], dtype=torch.int64), mean, std, rows)
    return splits


def carve_val(train: np.ndarray, strat: np.ndarray, cfg: RunConfig, rng) -> dict[str, np.ndarray]:
    """{"train", "val"}: a stratified ``cfg.val_fraction`` of ``train`` (indices) becomes validation
    (no "val" when every stratum is too small to give it a sample)."""
    if cfg.val_fraction <= 0:
        return {"train": train}
    keep, val = stratified_split(strat[train], cfg.val_fraction, rng)
    if len(val) == 0:
        return {"train": train}
    return {"train": train[keep], "val": train[val]}


def group_index(attrs: dict[str, np.ndarray], names: dict[str, tuple[str, ...]], groups: tuple[str, ...]):
    """Mixed-radix index (N,) over the chosen protected attributes, and the names of its groups."""
    index = np.zeros(len(next(iter(attrs.values()))), dtype=np.int64)
    group_names = [""]
    for attr in groups:
        values = names[attr]
        index = index * len(values) + attrs[attr]
        group_names = [f"{a} × {v}" if a else v for a in group_names for v in values]
    return index, group_names


# A run that lost more than this share of one group's rows while loading says so prominently.
LOSS_WARNING = 0.03


@dataclass
class LoadReport:
    """What loading read, skipped (by reason, and by group where the group is known) and recognised.

    ``notes`` say what was done to the data (e.g. how a label file was decoded, which images were
    scaled or turned); ``warnings`` are the signs that the data may be misread (e.g. the images
    look alike), shown prominently next to the groups that lost rows.
    """

    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_by_group: dict[str, Counter] = field(default_factory=dict)
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    split_rule: str = ""
    image_source: str = ""

    def skip(self, reason: str, group: str | None = None, n: int = 1) -> None:
        self.skipped[reason] += n
        if group is not None:
            self.skipped_by_group.setdefault(group, Counter())[reason] += n

    def images(self, got, group_of) -> None:
        """Take in what decoding did (``images.Images``): its notes, warnings and source, and a skip
        per row it could not use, by group (``group_of(row)``: the row's group name, or None)."""
        self.image_source = got.how
        self.notes += got.notes
        self.warnings += got.warnings
        for i in np.flatnonzero(~got.ok):
            self.skip("unsupported pixel format" if got.refused[i] else "unreadable image", group_of(int(i)))

    def to_dict(self, group_names: list[str], kept: np.ndarray, empty_groups: dict[str, list[str]] | None = None
                ) -> dict:
        """JSON-ready report; ``kept`` (num_groups,) rows kept per group, across splits;
        ``empty_groups`` {group name: [splits where it has no sample]}."""
        lost = {}
        for i, name in enumerate(group_names):
            n_lost = sum(self.skipped_by_group.get(name, {}).values())
            total = n_lost + int(kept[i])
            if n_lost:
                lost[name] = {"skipped": n_lost, "of": total, "share": n_lost / total if total else 1.0}
        warnings = [f"{name} lost {v['skipped']} of {v['of']} rows ({100 * v['share']:.1f} %) while loading"
                    for name, v in lost.items() if v["share"] > LOSS_WARNING]
        return {"rows_read": self.rows_read, "skipped": dict(self.skipped),
                "skipped_by_group": {g: dict(c) for g, c in self.skipped_by_group.items()},
                "lost_by_group": lost, "warnings": warnings + list(self.warnings),
                "unknown_values": self.unknown_values, "notes": list(self.notes),
                "empty_groups": dict(empty_groups or {}), "split_rule": self.split_rule,
                "image_source": self.image_source}


SPLIT_ORDER = ("train", "val", "test")
EMPTY_LISTED = 12  # groups named in the note on empty groups (all are in ``empty_groups``)


def empty_groups(group_names: list[str], splits: dict[str, Split]) -> dict[str, list[str]]:
    """{group name: [splits, in train, val, test order, where the group has no sample]}."""
    empty: dict[str, list[str]] = {}
    for name in sorted(splits, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER)):
        counts = np.bincount(splits[name].g.numpy(), minlength=len(group_names))
        for i in np.flatnonzero(counts == 0):
            empty.setdefault(group_names[i], []).append(name)
    return {g: empty[g] for g in group_names if g in empty}


def empty_note(empty: dict[str, list[str]]) -> str:
    """One note naming the groups without samples and where (``empty_groups``)."""
    parts = [f"{g} in {', '.join(where)}" for g, where in list(empty.items())[:EMPTY_LISTED]]
    more = f"; and {len(empty) - EMPTY_LISTED} more groups" if len(empty) > EMPTY_LISTED else ""
    whose = "its" if len(empty) == 1 else "their"
    return f"no samples of {'; of '.join(parts)}{more}; {whose} metrics there are undefined"


def finish(name: str, class_names: list[str] | tuple[str, ...], group_names: list[str], splits: dict[str, Split],
           report: LoadReport, flip: bool) -> GroupedDataset:
    """The dataset with its load report filled in from the kept rows of every split, naming the
    groups that have no sample in a split (``empty_groups``)."""
    kept = np.zeros(len(group_names), dtype=np.int64)
    for s in splits.values():
        kept += np.bincount(s.g.numpy(), minlength=len(group_names))
    empty = empty_groups(group_names, splits)
    if empty:
        report.notes.append(empty_note(empty))
    return GroupedDataset(name, len(class_names), group_names, splits, flip=flip,
                          skipped={k: v for k, v in report.skipped.items() if v},
                          report=report.to_dict(group_names, kept, empty), class_names=[str(c) for c in class_names])
