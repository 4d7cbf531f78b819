"""The datasets that need no folder: ``digits`` (scikit-learn's bundled 8x8 digits, nothing is
downloaded) and ``synthetic`` (generated)."""

from __future__ import annotations

import numpy as np
import torch

from ceag.config.run_config import RunConfig
from ceag.datasets.base import GroupedDataset, Split
from ceag.datasets.splitting import DATA_SEED, TEST_FRACTION, stratified_split


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
    pool, test = stratified_split(strat, TEST_FRACTION, rng)
    parts = {"test": test}
    if cfg.val_fraction > 0:
        keep, val = stratified_split(strat[pool], cfg.val_fraction, rng)
        parts["val"] = pool[val]
        pool = pool[keep]
    assert cfg.rare_groups is not None  # validation sets the dataset's default
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
    return GroupedDataset("digits", 10, names, _make_splits(x, y, y.copy(), cfg, 10), class_names=list(names))


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
    return GroupedDataset("synthetic", num_classes, names, _make_splits(x, y, g, cfg, num_groups),
                          class_names=[f"class {c}" for c in range(num_classes)])


