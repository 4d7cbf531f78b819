"""Datasets: reading data into grouped splits (x, y, g per split), with what was read and left out.

- ``layouts``: where a folder dataset may lie and which files it holds (no torch).
- ``labels``: reading label CSVs as spreadsheets save them, in an encoding that can be told (no torch).
- ``fingerprint``: what a dataset instance read, as 16 hex digits (no torch).
- ``checks``: label files checked before a run or grid is planned (no torch).
- ``base``: ``Split``, ``GroupedDataset`` and minibatches; ``splitting``: splits fixed by the data seed;
  ``report``: the load report (what was read, left out, recognised, noticed).
- ``builtin`` (digits, synthetic), ``faces`` (UTKFace, FairFace), ``cifar`` (CIFAR-100),
  ``custom`` (your labelled images): the loaders, found by name through ``ceag.config.registry``.
- ``images/``: image files decoded into one uint8 array, cached on disk.
- ``loading``: ``load_dataset``, kept in memory for a long-lived worker.

Importing this package does not import torch; the names that need it load on first use.
"""

from __future__ import annotations

from importlib import import_module

from ceag.datasets.layouts import DatasetError, available, data_root, locate

_LAZY = {
    "GroupedDataset": "base", "Split": "base", "batches": "base", "DATA_SEED": "splitting",
    "load_dataset": "loading",
    "check_data": "checks", "check_labels": "checks",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DatasetError", "available", "data_root", "locate", *_LAZY]
