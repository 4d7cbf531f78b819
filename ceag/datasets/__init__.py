"""Datasets: one registry of names, one module per family, the fingerprint and the decode cache.

- ``registry``: names, targets and protected attributes of every dataset (no torch).
- ``layouts``: where a folder dataset may lie and which files it holds (no torch).
- ``labels``: reading label CSVs as spreadsheets save them (no torch).
- ``fingerprint``: what a dataset instance read, as 16 hex digits (no torch).
- ``checks``: fingerprints settled and label files checked before a run or grid is planned.
- ``base``: ``Split``, ``GroupedDataset``, minibatches, split helpers, the load report.
- ``builtin`` (digits, synthetic), ``faces`` (UTKFace, FairFace), ``cifar`` (CIFAR-100),
  ``custom`` (your labelled images): the loaders.
- ``images``: decoding into one uint8 array, cached on disk.

Importing this package does not import torch; the names that need it load on first use.
"""

from __future__ import annotations

from importlib import import_module

from .layouts import DatasetError, available, data_root, locate
from .registry import DATASETS, REGISTRY, DatasetInfo

_LAZY = {
    "GroupedDataset": "base", "Split": "base", "batches": "base", "DATA_SEED": "base",
    "load_dataset": "loading",
    "resolve": "checks", "resolve_all": "checks", "check_data": "checks", "check_labels": "checks",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASETS", "REGISTRY", "DatasetError", "DatasetInfo", "available", "data_root", "locate", *_LAZY]
