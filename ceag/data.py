"""Grouped datasets held in memory as tensors: x, y (target) and g (protected group) per split.

Nothing is downloaded: ``digits`` is scikit-learn's bundled 8x8 digits set and ``synthetic``
is generated. Splits are fixed by a data seed that does not depend on the run's seed, so runs
with different seeds see the same samples.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import RunConfig

DATA_SEED = 20240505  # fixes every split; the run seed only changes init and batch order
TEST_FRACTION = 0.3


@dataclass
class Split:
    """One split: x (N, ...), y (N,) int64 targets, g (N,) int64 group ids.

    x is float32, or uint8 images (N, C, H, W) kept compact and turned into normalized float32
    one batch at a time by ``prepare`` (per-channel ``mean`` / ``std`` of values in [0, 1]).
    """

    x: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> Split:
        pin = device.type == "cuda" if isinstance(device, torch.device) else False
        x = self.x.pin_memory() if pin and not self.x.is_pinned() else self.x
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
    skipped: dict[str, int] | None = None  # files skipped while loading, by reason

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"].x.shape[1:])

    def group_counts(self, split: str) -> np.ndarray:
        """(num_groups,) number of samples of each group in ``split``."""
        return np.bincount(self.splits[split].g.cpu().numpy(), minlength=self.num_groups)

    def to(self, device: torch.device) -> GroupedDataset:
        return GroupedDataset(self.name, self.num_classes, self.group_names,
                              {k: s.to(device) for k, s in self.splits.items()}, self.flip, self.skipped)


def batches(split: Split, batch_size: int, generator: torch.Generator, *, flip: bool = False) -> Iterator[Split]:
    """Shuffled, prepared minibatches of one epoch; order and flips are drawn from ``generator`` only."""
    n = len(split)
    order = torch.randperm(n, generator=generator).to(split.y.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = split.prepare(split.x[idx])
        if flip:
            mirror = (torch.rand(len(idx), generator=generator) < 0.5).to(x.device)
            x = torch.where(mirror.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
        yield Split(x, split.y[idx], split.g[idx])


def _stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Indices (keep, taken): ``fraction`` of each label value goes to ``taken``."""
    keep, taken = [], []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        n_take = int(round(fraction * len(idx)))
        taken.append(idx[:n_take])
        keep.append(idx[n_take:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(taken))


def _thin_groups(g: np.ndarray, rare: tuple[int, ...], count: int, rng: np.random.Generator):
    """Indices that keep at most ``count`` samples of each group in ``rare``."""
    drop = []
    for group in rare:
        idx = np.flatnonzero(g == group)
        if len(idx) > count:
            drop.append(rng.choice(idx, size=len(idx) - count, replace=False))
    mask = np.ones(len(g), dtype=bool)
    if drop:
        mask[np.concatenate(drop)] = False
    return np.flatnonzero(mask)


def _make_splits(x, y, g, cfg: RunConfig, num_groups: int) -> dict[str, Split]:
    """Stratified test split; validation carved from the training pool (before thinning, so it
    is balanced like the test split); then the rare groups are thinned in train only."""
    rng = np.random.default_rng(DATA_SEED)
    strat = y * num_groups + g
    pool, test = _stratified_split(strat, TEST_FRACTION, rng)
    parts = {"test": test}
    if cfg.val_fraction > 0:
        keep, val = _stratified_split(strat[pool], cfg.val_fraction, rng)
        parts["val"] = pool[val]
        pool = pool[keep]
    rare = tuple(r for r in cfg.rare_groups if r < num_groups)
    parts["train"] = pool[_thin_groups(g[pool], rare, cfg.rare_train_count, rng)]

    def make(idx):
        return Split(torch.as_tensor(x[idx], dtype=torch.float32),
                     torch.as_tensor(y[idx], dtype=torch.int64),
                     torch.as_tensor(g[idx], dtype=torch.int64))

    return {name: make(parts[name]) for name in ("train", "val", "test") if name in parts}


def load_digits_dataset(cfg: RunConfig) -> GroupedDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0 - 0.5)[:, None, :, :]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    names = [f"digit {d}" for d in range(10)]
    return GroupedDataset("digits", 10, names, _make_splits(x, y, y.copy(), cfg, 10))


def load_synthetic_dataset(cfg: RunConfig) -> GroupedDataset:
    """Three-class Gaussian data in 16 dimensions; each group shifts the classes differently."""
    rng = np.random.default_rng(DATA_SEED)
    num_groups, num_classes, dim, per_group = cfg.num_groups, 3, 16, 300
    centers = rng.normal(0, 1.0, size=(num_classes, dim))
    xs, ys, gs = [], [], []
    for group in range(num_groups):
        shift = rng.normal(0, 0.6, size=(num_classes, dim))
        y = rng.integers(0, num_classes, size=per_group)
        x = centers[y] + shift[y] + rng.normal(0, 1.0, size=(per_group, dim))
        xs.append(x)
        ys.append(y)
        gs.append(np.full(per_group, group))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(np.int64)
    g = np.concatenate(gs).astype(np.int64)
    names = [f"group {i}" for i in range(num_groups)]
    return GroupedDataset("synthetic", num_classes, names, _make_splits(x, y, g, cfg, num_groups))


LOADERS = {"digits": load_digits_dataset, "synthetic": load_synthetic_dataset}


def load_dataset(cfg: RunConfig) -> GroupedDataset:
    """The dataset of ``cfg`` (on the CPU). Kept in memory for the next run of a long-lived worker."""
    from .config import DATA_FIELDS

    key = (cfg.key(DATA_FIELDS), str(cfg.data_dir or os.environ.get("CEAG_DATA") or "data"))
    if key not in _CACHE:
        if cfg.dataset in LOADERS:
            dataset = LOADERS[cfg.dataset](cfg)
        else:
            from .real_data import LOADERS as REAL_LOADERS

            dataset = REAL_LOADERS[cfg.dataset](cfg)
        _CACHE[key] = dataset
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


_CACHE: OrderedDict[tuple[str, str], GroupedDataset] = OrderedDict()
_CACHE_SIZE = 2
