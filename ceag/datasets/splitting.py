"""Splitting a dataset: fixed by a data seed that does not depend on the run's seed, so runs with different
seeds see the same samples; stratified validation carved from train; intersectional group indices."""

from __future__ import annotations

import numpy as np
import torch

from ceag.config.run_config import RunConfig
from ceag.datasets.base import Split

DATA_SEED = 20240505  # fixes every split; the run seed only changes init and batch order


TEST_FRACTION = 0.3


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


def splits_from(x, y, g, parts: dict[str, np.ndarray], mean, std, files: list[str] | None = None) -> dict[str, Split]:
    """Splits of uint8 images ``x`` (N, C, H, W; an array or a cache entry) by the index arrays
    ``parts``. No pixel is copied: each split views the block of ``x`` that spans its rows. ``files``
    (N,): each image's path relative to the data folder, kept per split (``Split.files``)."""
    from ceag.datasets.images.array import block

    splits: dict[str, Split] = {}
    for name in ("train", "val", "test"):
        if name not in parts:
            continue
        idx = np.asarray(parts[name], dtype=np.int64)
        first, last = (int(idx.min()), int(idx.max()) + 1) if len(idx) else (0, 0)
        contiguous = len(idx) == last - first and bool((np.diff(idx) == 1).all())
        rows = None if contiguous else torch.from_numpy(idx - first)
        splits[name] = Split(torch.from_numpy(block(x, first, last)), torch.as_tensor(y[idx], dtype=torch.int64),
                             torch.as_tensor(g[idx], dtype=torch.int64), mean, std, rows,
                             None if files is None else np.asarray(files, dtype=object)[idx])
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
