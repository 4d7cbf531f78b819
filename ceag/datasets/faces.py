"""The face datasets of the paper, read from a local folder in their published layouts.

- UTKFace: a folder of ``age_gender_race_datetime.jpg`` (or ``.jpg.chip.jpg``) face crops. The
  authors' split (merajhashemi/balancing-act, ``src/datasets/utkface.py``): the ``*.jpg`` names
  sorted, files whose names lack a label dropped (three in the published folder),
  ``numpy.random.RandomState(1357).permutation(N)``, the first ``int(0.2 * N)`` test and the rest
  train. Images that cannot be decoded are then dropped from whichever split holds them.
  Ages are bucketed as the authors do: edges 10, 15, 20, 25, 30, 40, 50, 60.
- FairFace: ``fairface_label_train.csv`` and ``fairface_label_val.csv`` (columns file, age,
  gender, race, ...); the ``file`` paths (``train/1.jpg``) are read beside the CSVs, or inside
  ``fairface-img-margin025-trainval/`` (the authors' layout). val serves as test.

Only the attributes a run uses (target and groups) decide whether a row is kept; unknown values,
files outside the folder (an absolute path or a ``..`` component in a CSV), missing, unreadable
and unsupported images are counted by reason and by group. Images are uint8
(N, 3, H, W), normalized per batch with ImageNet statistics, flipped at random in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ceag.config.run_config import RunConfig
from ceag.datasets.base import GroupedDataset
from ceag.datasets.images.cache import load_images
from ceag.datasets.labels import ValueMap, inside, outside_note, read_fairface_labels, unknown_message
from ceag.datasets.layouts import (
    FAIRFACE_CSVS,
    DatasetError,
    data_root,
    fairface_image_root,
    locate,
    outside_folder,
    sample_files,
    shown,
    utkface_files,
)
from ceag.datasets.report import LoadReport, finish
from ceag.datasets.splitting import DATA_SEED, carve_val, group_index, splits_from

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
GENDERS_UTK = ("Male", "Female")  # UTKFace: 0 male, 1 female
UTK_AGE_EDGES = (10, 15, 20, 25, 30, 40, 50, 60)  # the authors' age_buckets
UTK_AGES = ("0-9", "10-14", "15-19", "20-24", "25-29", "30-39", "40-49", "50-59", "60+")
UTK_SPLIT_SEED, UTK_TEST_RATIO = 1357, 0.2
FAIRFACE_RACES = ("East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian")
FAIRFACE_GENDERS = ("Male", "Female")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")


def _group_name(codes: dict[str, int | None], names: dict[str, tuple[str, ...]], groups: tuple[str, ...]):
    """The name of a row's group, or None when one of its protected attributes is unknown."""
    known = [(a, c) for a in groups if (c := codes.get(a)) is not None]
    if len(known) < len(groups):
        return None
    return " × ".join(names[a][c] for a, c in known)


# -- UTKFace ------------------------------------------------------------------------------
def parse_utkface_name(name: str) -> tuple[int, int, int] | None:
    """(age, gender, race) from ``age_gender_race_datetime.jpg[.chip.jpg]``; None when malformed."""
    parts = name.split(".")[0].split("_")
    if len(parts) < 4:
        return None
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (0 <= age <= 130 and gender in (0, 1) and 0 <= race < len(UTK_RACES)):
        return None
    return age, gender, race


def utkface_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions among ``n`` labelled files in name order: the authors' rule."""
    perm = np.random.RandomState(seed=UTK_SPLIT_SEED).permutation(n)
    n_test = int(UTK_TEST_RATIO * n)
    return perm[n_test:], perm[:n_test]


def load_utkface(cfg: RunConfig, cache_dir: Path | None = None) -> GroupedDataset:
    assert cfg.target is not None  # validation sets the target
    folder = locate("utkface", data_root(cfg))
    report = LoadReport()
    names_all = utkface_files(folder)
    report.rows_read = len(names_all)
    parsed = [(n, parse_utkface_name(n)) for n in names_all]
    report.skip("malformed file name", n=sum(p is None for _, p in parsed))
    parsed = [(n, p) for n, p in parsed if p is not None]
    if not parsed:
        raise DatasetError(f"UTKFace: no file in {shown(folder)} has a name of the form "
                           "age_gender_race_datetime.jpg")
    names = [n for n, _ in parsed]
    meta = np.array([p for _, p in parsed], dtype=np.int64)
    train_pos, test_pos = utkface_split(len(names))
    got = load_images(folder, names, cfg.image_size, cache_dir=cache_dir, fingerprint=cfg.data_fingerprint)
    pixels, ok = got.pixels, got.ok
    attrs = {"race": meta[:, 2], "gender": meta[:, 1], "age": np.digitize(meta[:, 0], UTK_AGE_EDGES)}
    labels = {"race": UTK_RACES, "gender": GENDERS_UTK, "age": UTK_AGES}
    g, group_names = group_index(attrs, labels, cfg.groups)
    report.images(got, lambda i: group_names[g[i]])
    y = attrs[cfg.target]
    report.split_rule = (f"the authors' UTKFace split: names sorted, RandomState({UTK_SPLIT_SEED}) permutation, "
                         f"first {UTK_TEST_RATIO:g} test; validation: a stratified {cfg.val_fraction:g} of train "
                         f"(seed {DATA_SEED})")
    rng = np.random.default_rng(DATA_SEED)
    train = np.sort(train_pos[ok[train_pos]])
    parts = {"test": np.sort(test_pos[ok[test_pos]]), **carve_val(train, y * len(group_names) + g, cfg, rng)}
    files = sample_files(data_root(cfg), folder, names)
    return finish("utkface", labels[cfg.target], group_names,
                  splits_from(pixels, y, g, parts, IMAGENET_MEAN, IMAGENET_STD, files), report, flip=True)


# -- FairFace -----------------------------------------------------------------------------
def load_fairface(cfg: RunConfig, cache_dir: Path | None = None) -> GroupedDataset:
    assert cfg.target is not None  # validation sets the target
    folder = locate("fairface", data_root(cfg))
    labels = {"race": FAIRFACE_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
    used = tuple(dict.fromkeys((cfg.target, *cfg.groups)))
    maps = {a: ValueMap(a, v) for a, v in labels.items()}
    rows, notes = read_fairface_labels(folder)
    report = LoadReport(notes=notes)
    first = next(iter(inside(r["file"] for split_rows in rows.values() for r in split_rows)), None)
    root = fairface_image_root(folder, first)
    # Every listed image that exists is decoded (and cached) whatever the run's attributes, so
    # runs with other targets or groups share the cache.
    names, split_of, codes = [], [], []
    outside: dict[str, list[str]] = {}
    for split, split_rows in rows.items():
        for row in split_rows:
            report.rows_read += 1
            c = {a: maps[a].code(row[a]) for a in labels}
            group = _group_name(c, labels, cfg.groups)
            bad = [a for a in used if c[a] is None]
            if bad:
                report.skip(f"unknown {bad[0]} value", group)
                continue
            if outside_folder(row["file"]):
                report.skip("path outside the data folder", group)
                outside.setdefault(split, []).append(row["file"])
                continue
            if not row["file"] or not (root / row["file"]).is_file():
                report.skip("missing image", group)
                continue
            names.append(row["file"])
            split_of.append(split == "test")
            codes.append([-1 if c[a] is None else c[a] for a in labels])
    if outside:
        csvs = dict(FAIRFACE_CSVS)
        report.notes.append(outside_note([f for files in outside.values() for f in files],
                                         ", ".join(csvs[split] for split in outside)))
    report.unknown_values = {a: m.unknown_report() for a, m in maps.items() if m.unknown and a in used}
    for m in maps.values():
        report.notes += m.notes()
    ignored = [m for a, m in maps.items() if m.unknown and a not in used]
    if ignored:
        report.notes.append("values not used by this run and left as they are: " + unknown_message(ignored))
    if not names:
        why = unknown_message([maps[a] for a in used])
        raise DatasetError(f"FairFace: no row of the label CSVs under {shown(folder)} has known values and an existing "
                           f"image{': ' + why if why else ''}")
    got = load_images(root, names, cfg.image_size, cache_dir=cache_dir, fingerprint=cfg.data_fingerprint)
    pixels, ok = got.pixels, got.ok
    code = np.asarray(codes, dtype=np.int64).reshape(-1, len(labels))
    attrs = {a: code[:, i] for i, a in enumerate(labels)}
    g, group_names = group_index({a: attrs[a] for a in cfg.groups}, labels, cfg.groups)
    report.images(got, lambda i: group_names[g[i]])
    y = attrs[cfg.target]
    is_test = np.asarray(split_of, dtype=bool)
    test, train = np.flatnonzero(is_test & ok), np.flatnonzero(~is_test & ok)
    if len(train) == 0 or len(test) == 0:
        csv_name = "fairface_label_train.csv" if len(train) == 0 else "fairface_label_val.csv"
        raise DatasetError(f"FairFace: no readable images listed in {csv_name} under {shown(folder)}")
    report.split_rule = (f"the published train/val files (val as test); validation: a stratified "
                         f"{cfg.val_fraction:g} of train (seed {DATA_SEED})")
    rng = np.random.default_rng(DATA_SEED)
    parts = {"test": test, **carve_val(train, y * len(group_names) + g, cfg, rng)}
    files = sample_files(data_root(cfg), root, names)
    return finish("fairface", labels[cfg.target], group_names,
                  splits_from(pixels, y, g, parts, IMAGENET_MEAN, IMAGENET_STD, files), report, flip=True)
