"""Your own labelled images: a folder with ``labels.csv`` whose first column is ``file`` (a path
relative to the folder) and whose other columns are attributes.

``target`` names the class column, ``groups`` the protected attribute column(s) (intersectional
when several). An optional ``split`` column (``train``/``val``/``test``) fixes the split;
otherwise a stratified split by class and group, seeded with the data seed, is used and recorded.
Class and group names are the columns' values, sorted (numerically when every value is a
number). Rows with an empty value in a used column, an unknown split, a file outside the folder
(an absolute path or a ``..`` component; links inside the folder are followed), or a missing,
undecodable or unsupported image are skipped and counted. Images of different sizes need
``image_size``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ceag.config.run_config import RunConfig
from ceag.datasets.base import GroupedDataset
from ceag.datasets.faces import IMAGENET_MEAN, IMAGENET_STD
from ceag.datasets.images.cache import load_images
from ceag.datasets.labels import outside_note, read_csv
from ceag.datasets.layouts import (
    CUSTOM_LABELS,
    DatasetError,
    data_root,
    locate,
    outside_folder,
    sample_files,
    shown,
)
from ceag.datasets.report import LoadReport, finish
from ceag.datasets.splitting import DATA_SEED, carve_val, group_index, splits_from, stratified_split

SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.2


def _sorted_values(values: set[str]) -> tuple[str, ...]:
    try:
        return tuple(sorted(values, key=float))
    except ValueError:
        return tuple(sorted(values))


def read_custom_labels(folder: Path, target: str, groups: tuple[str, ...]):
    """(columns, rows, notes) of ``labels.csv``; DatasetError when ``file`` is not the first column or
    a used column is missing (the message lists the columns found)."""
    columns, rows, notes = read_csv(folder / CUSTOM_LABELS, ("file", target, *groups), "custom dataset")
    where = shown(folder / CUSTOM_LABELS)
    if columns[0] != "file":
        raise DatasetError(f"custom dataset: the first column of {where} must be 'file' (a path "
                           f"relative to the folder); found {', '.join(map(repr, columns))}")
    return columns, rows, notes


def load_custom(cfg: RunConfig, cache_dir: Path | None = None) -> GroupedDataset:
    assert cfg.target is not None  # validation sets the target
    folder = locate("custom", data_root(cfg))
    where = shown(folder / CUSTOM_LABELS)
    used = tuple(dict.fromkeys((cfg.target, *cfg.groups)))
    columns, rows, notes = read_custom_labels(folder, cfg.target, cfg.groups)
    has_split = "split" in columns
    report = LoadReport(rows_read=len(rows), notes=notes)
    kept, outside = [], []
    for row in rows:
        empty = [c for c in used if not row[c]]
        if empty:
            group = None if any(not row[c] for c in cfg.groups) else " × ".join(row[c] for c in cfg.groups)
            report.skip(f"missing {empty[0]} value", group)
            continue
        if has_split and row["split"].lower() not in SPLITS:
            report.skip("unknown split value", " × ".join(row[c] for c in cfg.groups))
            report.unknown_values.setdefault("split", {}).setdefault(row["split"], 0)
            report.unknown_values["split"][row["split"]] += 1
            continue
        if outside_folder(row["file"]):
            report.skip("path outside the data folder", " × ".join(row[c] for c in cfg.groups))
            outside.append(row["file"])
            continue
        kept.append(row)
    if outside:
        report.notes.append(outside_note(outside, CUSTOM_LABELS))
    labels = {c: _sorted_values({r[c] for r in kept}) for c in used}
    if not kept and outside:
        raise DatasetError(f"custom dataset: every usable row of {where} names a file "
                           f"outside the data folder ({report.notes[-1]})")
    if not kept:
        raise DatasetError(f"custom dataset: no row of {where} has values in every used "
                           f"column ({', '.join(used)})")
    present = []
    for row in kept:
        path = folder / row["file"]
        if path.is_file():
            present.append(row)
        else:
            report.skip("missing image", " × ".join(row[c] for c in cfg.groups))
    if not present:
        raise DatasetError(f"custom dataset: none of the files listed in {where} exists "
                           f"(e.g. {shown(folder / kept[0]['file'])})")
    names = [r["file"] for r in present]
    got = load_images(folder, names, cfg.image_size, cache_dir=cache_dir, fingerprint=cfg.data_fingerprint)
    pixels, ok = got.pixels, got.ok
    index = {c: {v: i for i, v in enumerate(labels[c])} for c in used}
    attrs = {c: np.array([index[c][r[c]] for r in present], dtype=np.int64) for c in used}
    g, group_names = group_index({c: attrs[c] for c in cfg.groups}, labels, cfg.groups)
    report.images(got, lambda i: group_names[g[i]])
    y = attrs[cfg.target]
    rng = np.random.default_rng(DATA_SEED)
    good = np.flatnonzero(ok)
    if has_split:
        split = np.array([r["split"].lower() for r in present])
        parts = {s: good[split[good] == s] for s in SPLITS if (split[good] == s).any()}
        if "test" not in parts or "train" not in parts:
            raise DatasetError(f"custom dataset: the split column of {where} needs readable rows "
                               f"marked train and test (found {', '.join(sorted(parts)) or 'none'})")
        if "val" not in parts:
            parts.update(carve_val(parts["train"], y * len(group_names) + g, cfg, rng))
        report.split_rule = "the labels' split column" + (
            "" if "val" in set(split) else f"; validation: a stratified {cfg.val_fraction:g} of train "
            f"(seed {DATA_SEED})")
    else:
        strat = (y * len(group_names) + g)[good]
        pool, test = stratified_split(strat, TEST_FRACTION, rng)
        if len(test) == 0:
            raise DatasetError(f"custom dataset: too few readable rows in {where} for a test split "
                               f"({len(good)}); add rows or a split column")
        parts = {"test": good[test], **carve_val(good[pool], y * len(group_names) + g, cfg, rng)}
        report.split_rule = (f"stratified by class and group (seed {DATA_SEED}): test {TEST_FRACTION:g}, "
                             f"validation {cfg.val_fraction:g} of the rest")
    files = sample_files(data_root(cfg), folder, names)
    return finish("custom", labels[cfg.target], group_names,
                  splits_from(pixels, y, g, parts, IMAGENET_MEAN, IMAGENET_STD, files), report, flip=False)
