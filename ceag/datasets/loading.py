"""Loading a dataset by name through the registry, kept in memory for a long-lived worker."""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

from ceag.config.keys import DATA_FIELDS
from ceag.config.registry import REGISTRY
from ceag.config.run_config import RunConfig
from ceag.datasets.base import GroupedDataset
from ceag.datasets.layouts import data_root

_CACHE: OrderedDict[tuple[str, str], GroupedDataset] = OrderedDict()
_CACHE_SIZE = 2


def load_dataset(cfg: RunConfig, cache_dir: str | Path | None = None) -> GroupedDataset:
    """The dataset of ``cfg`` on the CPU.

    ``cache_dir``: where decoded images are cached (``<results>/cache``); used only when
    ``cfg.data_fingerprint`` is set. Raises DatasetError for a missing or malformed folder.
    """
    key = (cfg.key(DATA_FIELDS), str(data_root(cfg)))
    if key not in _CACHE:
        module, func = REGISTRY[cfg.dataset].loader.split(":")
        loader = getattr(importlib.import_module(f"{__package__}.{module}"), func)
        if REGISTRY[cfg.dataset].from_folder:
            dataset = loader(cfg, Path(cache_dir) if cache_dir is not None else None)
        else:
            dataset = loader(cfg)
        _CACHE[key] = dataset
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]
