"""CIFAR-100 from the ``cifar-100-python/`` folder (``train``, ``test``, ``meta`` pickles); groups = class.

Images are held as uint8 (N, 3, 32, 32), normalized per batch with CIFAR-100's own statistics;
no augmentation. The published train/test split is kept; validation is carved from train.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ceag.config.run_config import RunConfig
from ceag.datasets.base import GroupedDataset
from ceag.datasets.layouts import DatasetError, data_root, locate
from ceag.datasets.report import LoadReport, finish
from ceag.datasets.splitting import DATA_SEED, carve_val, splits_from

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def load_cifar100(cfg: RunConfig, cache_dir: Path | None = None) -> GroupedDataset:
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
    parts = {"test": np.arange(n_train, len(ys)), **carve_val(np.arange(n_train), ys, cfg, rng)}
    report = LoadReport(rows_read=len(ys), split_rule="the published train/test files; validation: a stratified "
                        f"{cfg.val_fraction:g} of train (seed {DATA_SEED})")
    return finish("cifar100", class_names, class_names,
                  splits_from(xs, ys, ys.copy(), parts, CIFAR100_MEAN, CIFAR100_STD), report, flip=False)


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


