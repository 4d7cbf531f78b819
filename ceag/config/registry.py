"""The one registry of dataset names: what each offers and where its loader lives (no torch, no I/O).

``ceag.config`` validates settings against it, the command line and the app list it, and
``ceag.datasets.load_dataset`` dispatches through it, so a dataset is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its targets and protected attributes (None: the user's own column names)."""

    name: str
    loader: str                              # "module:function" inside ceag.datasets
    description: str
    targets: tuple[str, ...] | None
    group_attributes: tuple[str, ...] | None
    default_target: str | None
    default_groups: tuple[str, ...]
    default_rare_groups: tuple[int, ...] = ()
    from_folder: bool = False                # read from the data folder (its files are fingerprinted)


REGISTRY: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("digits", "builtin:load_digits_dataset", "scikit-learn's bundled 8x8 digits; groups = class",
                ("class",), ("class",), "class", ("class",), (8,)),
    DatasetInfo("synthetic", "builtin:load_synthetic_dataset", "generated grouped Gaussian data",
                ("class",), ("group",), "class", ("group",)),
    DatasetInfo("utkface", "faces:load_utkface", "UTKFace face crops (age_gender_race_datetime.jpg)",
                ("race", "gender", "age"), ("race", "gender", "age"), "race", ("race",), from_folder=True),
    DatasetInfo("fairface", "faces:load_fairface", "FairFace label CSVs and image folders",
                ("race", "gender", "age"), ("race", "gender", "age"), "race", ("race",), from_folder=True),
    DatasetInfo("cifar100", "cifar:load_cifar100", "CIFAR-100, python version; groups = class",
                ("class",), ("class",), "class", ("class",), from_folder=True),
    DatasetInfo("custom", "custom:load_custom", "your own images listed in labels.csv (file + attribute columns)",
                None, None, None, (), from_folder=True),
)}


DATASETS: tuple[str, ...] = tuple(REGISTRY)


# Attributes a dataset offers as target and as protected groups (custom: the user's columns).
TARGETS = {n: d.targets for n, d in REGISTRY.items()}


GROUP_ATTRIBUTES = {n: d.group_attributes for n, d in REGISTRY.items()}


DEFAULT_TARGET = {n: d.default_target for n, d in REGISTRY.items()}


DEFAULT_RARE_GROUPS = {n: d.default_rare_groups for n, d in REGISTRY.items() if d.default_rare_groups}


DEFAULT_GROUPS = {n: d.default_groups for n, d in REGISTRY.items()}
