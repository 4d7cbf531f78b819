"""The paper's datasets, read from a local folder in their published layouts (nothing is downloaded).

- UTKFace: a folder of ``age_gender_race_datetime.jpg`` (or ``.jpg.chip.jpg``) face crops.
  Files whose names lack a field, or whose image cannot be decoded, are skipped and counted.
  A fixed, seeded 80/20 train/test split.
- FairFace: ``fairface_label_train.csv`` and ``fairface_label_val.csv`` (columns file, age,
  gender, race, ...) beside the ``train/`` and ``val/`` image folders; val serves as test.
- CIFAR-100: the ``cifar-100-python/`` folder (``train``, ``test``, ``meta`` pickles).

Images are held as uint8 (N, 3, H, W) and normalized per batch: ImageNet statistics and random
horizontal flips for the face datasets, CIFAR-100's own statistics and no augmentation for it.
The data folder is ``cfg.data_dir``, else $CEAG_DATA, else ./data.
"""

from __future__ import annotations

import csv
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig
from .data import DATA_SEED, GroupedDataset, Split, _stratified_split
from .layouts import DatasetError, data_root, locate

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
GENDERS_UTK = ("Male", "Female")  # UTKFace: 0 male, 1 female
AGE_BINS = (0, 20, 40, 60)  # age groups 0-19, 20-39, 40-59, 60+
AGE_NAMES = ("0-19", "20-39", "40-59", "60+")
FAIRFACE_RACES = ("East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian")
FAIRFACE_GENDERS = ("Male", "Female")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
def _load_images(paths: list[Path], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, S, S), ok mask (N,)): undecodable files are marked, not raised."""
    from PIL import Image

    def load(path: Path):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        arrays = list(pool.map(load, paths))
    ok = np.array([a is not None for a in arrays], dtype=bool)
    good = [a for a in arrays if a is not None]
    if not good:
        return np.zeros((0, 3, size or 1, size or 1), dtype=np.uint8), ok
    shapes = {a.shape for a in good}
    if len(shapes) > 1:
        raise DatasetError(f"images have different sizes {sorted(shapes)[:3]}...; set image_size (--image-size N) "
                           "to resize them to one size")
    return np.stack(good).transpose(0, 3, 1, 2).copy(), ok


def _group_index(attrs: dict[str, np.ndarray], names: dict[str, tuple[str, ...]], groups: tuple[str, ...]):
    """Mixed-radix index over the chosen protected attributes, and the names of its groups."""
    index = np.zeros(len(next(iter(attrs.values()))), dtype=np.int64)
    group_names = [""]
    for attr in groups:
        values = names[attr]
        index = index * len(values) + attrs[attr]
        group_names = [f"{a} × {v}" if a else v for a in group_names for v in values]
    return index, group_names


def _splits_from(x, y, g, parts: dict[str, np.ndarray], mean, std) -> dict[str, Split]:
    def make(idx):
        return Split(torch.from_numpy(x[idx]), torch.as_tensor(y[idx], dtype=torch.int64),
                     torch.as_tensor(g[idx], dtype=torch.int64), mean, std)

    return {name: make(parts[name]) for name in ("train", "val", "test") if name in parts}


def _carve_val(train: np.ndarray, strat: np.ndarray, cfg: RunConfig, rng) -> dict[str, np.ndarray]:
    if cfg.val_fraction <= 0:
        return {"train": train}
    keep, val = _stratified_split(strat[train], cfg.val_fraction, rng)
    return {"train": train[keep], "val": train[val]}


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


def load_utkface(cfg: RunConfig) -> GroupedDataset:
    folder = locate("utkface", data_root(cfg))
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(".jpg"))
    parsed = [(f, parse_utkface_name(f.name)) for f in files]
    skipped = {"malformed file name": sum(p is None for _, p in parsed)}
    parsed = [(f, p) for f, p in parsed if p is not None]
    if not parsed:
        raise DatasetError(f"UTKFace: no file in {folder} has a name of the form age_gender_race_datetime.jpg")
    images, ok = _load_images([f for f, _ in parsed], cfg.image_size)
    skipped["unreadable image"] = int((~ok).sum())
    meta = np.array([p for (_, p), good in zip(parsed, ok, strict=True) if good], dtype=np.int64)
    age, gender, race = meta[:, 0], meta[:, 1], meta[:, 2]
    attrs = {"race": race, "gender": gender, "age": np.digitize(age, AGE_BINS[1:])}
    names = {"race": UTK_RACES, "gender": GENDERS_UTK, "age": AGE_NAMES}
    g, group_names = _group_index(attrs, names, cfg.groups)
    y = attrs[cfg.target]
    rng = np.random.default_rng(DATA_SEED)
    perm = rng.permutation(len(y))  # the fixed 80/20 split of the paper's code
    n_train = int(round(0.8 * len(y)))
    parts = {"test": np.sort(perm[n_train:]), **_carve_val(np.sort(perm[:n_train]), y * len(group_names) + g, cfg, rng)}
    return GroupedDataset("utkface", len(names[cfg.target]), group_names,
                          _splits_from(images, y, g, parts, IMAGENET_MEAN, IMAGENET_STD), flip=True,
                          skipped=skipped)


# -- FairFace -----------------------------------------------------------------------------
def load_fairface(cfg: RunConfig) -> GroupedDataset:
    folder = locate("fairface", data_root(cfg))
    names = {"race": FAIRFACE_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
    frames, skipped = {}, {"unknown label": 0, "missing image": 0, "unreadable image": 0}
    for split, csv_name in (("train", "fairface_label_train.csv"), ("test", "fairface_label_val.csv")):
        rows = _read_fairface_csv(folder / csv_name)
        keep, attrs = [], {a: [] for a in names}
        for row in rows:
            try:
                codes = {a: names[a].index(row[a]) for a in names}
            except ValueError:
                skipped["unknown label"] += 1
                continue
            path = folder / row["file"]
            if not path.is_file():
                skipped["missing image"] += 1
                continue
            keep.append(path)
            for a in names:
                attrs[a].append(codes[a])
        images, ok = _load_images(keep, cfg.image_size)
        skipped["unreadable image"] += int((~ok).sum())
        frames[split] = (images, {a: np.asarray(v, dtype=np.int64)[ok] for a, v in attrs.items()})
    if len(frames["train"][0]) == 0 or len(frames["test"][0]) == 0:
        raise DatasetError(f"FairFace: no readable images listed in the label CSVs under {folder}")
    if frames["train"][0].shape[1:] != frames["test"][0].shape[1:]:
        raise DatasetError("FairFace: train and val images differ in size; set image_size (--image-size N)")
    x = np.concatenate([frames["train"][0], frames["test"][0]])
    attrs = {a: np.concatenate([frames["train"][1][a], frames["test"][1][a]]) for a in names}
    g, group_names = _group_index(attrs, names, cfg.groups)
    y = attrs[cfg.target]
    n_train = len(frames["train"][0])
    rng = np.random.default_rng(DATA_SEED)
    parts = {"test": np.arange(n_train, len(y)),
             **_carve_val(np.arange(n_train), y * len(group_names) + g, cfg, rng)}
    return GroupedDataset("fairface", len(names[cfg.target]), group_names,
                          _splits_from(x, y, g, parts, IMAGENET_MEAN, IMAGENET_STD), flip=True, skipped=skipped)


def _read_fairface_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "age", "gender", "race"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"FairFace: {path} lacks columns {', '.join(sorted(missing))} (expected file, age, "
                               "gender, race, service_test)")
        return list(reader)


# -- CIFAR-100 ----------------------------------------------------------------------------
def load_cifar100(cfg: RunConfig) -> GroupedDataset:
    folder = locate("cifar100", data_root(cfg))
    try:
        meta = _unpickle(folder / "meta")
        class_names = [n.decode() if isinstance(n, bytes) else n for n in meta[b"fine_label_names"]]
        data = {s: _unpickle(folder / s) for s in ("train", "test")}
        x = {s: np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for s, d in data.items()}
        y = {s: np.asarray(d[b"fine_labels"], dtype=np.int64) for s, d in data.items()}
        for s, labels in y.items():
            if len(labels) != len(x[s]) or (len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names)):
                raise ValueError(f"{s}: {len(x[s])} images but {len(labels)} labels, or labels outside "
                                 f"0..{len(class_names) - 1}")
    # Garbage bytes fail in many ways (a huge length field, a list where a dict belongs, ...).
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, MemoryError,
            pickle.UnpicklingError, EOFError) as err:
        raise DatasetError(f"CIFAR-100: the files in {folder} are not the python version of CIFAR-100 "
                           f"({type(err).__name__}: {err})") from err
    xs = np.concatenate([x["train"], x["test"]])
    if cfg.image_size is not None and cfg.image_size != 32:
        xs = torch.nn.functional.interpolate(torch.from_numpy(xs).float(), size=cfg.image_size, mode="bilinear",
                                             align_corners=False).round().clamp(0, 255).to(torch.uint8).numpy()
    ys = np.concatenate([y["train"], y["test"]])
    n_train = len(y["train"])
    rng = np.random.default_rng(DATA_SEED)
    parts = {"test": np.arange(n_train, len(ys)), **_carve_val(np.arange(n_train), ys, cfg, rng)}
    return GroupedDataset("cifar100", len(class_names), class_names,
                          _splits_from(xs, ys, ys.copy(), parts, CIFAR100_MEAN, CIFAR100_STD), flip=False, skipped={})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's pickles hold dicts, lists, bytes and numpy arrays: refuse anything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        obj = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"{path.name} holds a {type(obj).__name__}, not a dict")
    return obj


LOADERS = {"utkface": load_utkface, "fairface": load_fairface, "cifar100": load_cifar100}

