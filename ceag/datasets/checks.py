"""Checking label files up front, before anything is trained (no torch)."""

from __future__ import annotations

from pathlib import Path

from ceag.config.registry import REGISTRY
from ceag.config.run_config import RunConfig
from ceag.datasets.labels import ValueMap, read_csv, read_fairface_labels, unknown_message
from ceag.datasets.layouts import CUSTOM_LABELS, DatasetError, data_root, locate, utkface_files


def check_labels(cfg: RunConfig) -> None:
    """Raise DatasetError unless ``cfg``'s label files have the columns it needs and some row has
    known values in every column it uses (the message counts unknown values with examples)."""
    if not REGISTRY[cfg.dataset].from_folder:
        return
    assert cfg.target is not None  # validation sets the target
    folder = locate(cfg.dataset, data_root(cfg))
    used = tuple(dict.fromkeys((cfg.target, *cfg.groups)))
    if cfg.dataset == "utkface":
        from ceag.datasets.faces import parse_utkface_name

        if not any(parse_utkface_name(n) for n in utkface_files(folder)):
            raise DatasetError(f"UTKFace: no file in {folder} has a name of the form age_gender_race_datetime.jpg")
    elif cfg.dataset == "fairface":
        from ceag.datasets.faces import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES

        labels = {"race": FAIRFACE_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
        rows, _ = read_fairface_labels(folder)
        for split, split_rows in rows.items():
            maps = [ValueMap(a, labels[a]) for a in used]
            known = sum(all(m.code(r[m.column]) is not None for m in maps) for r in split_rows)
            if known == 0:
                raise DatasetError(f"FairFace: no row of the {split} labels under {folder} has known values in "
                                   f"{', '.join(used)}: {unknown_message(maps) or 'the file has no rows'}")
    elif cfg.dataset == "custom":
        from ceag.datasets.custom import read_custom_labels

        _, rows, _ = read_custom_labels(folder, cfg.target, cfg.groups)
        if not any(all(r[c] for c in used) for r in rows):
            raise DatasetError(f"custom dataset: no row of {folder / CUSTOM_LABELS} has values in every used "
                               f"column ({', '.join(used)})")
    elif cfg.dataset == "cifar100":
        pass  # its pickles are checked when read; the folder test already found them


def check_data(configs: list[RunConfig]) -> None:
    """Check every distinct dataset of a grid before anything is trained (DatasetError otherwise)."""
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, str(data_root(cfg)), cfg.target, cfg.groups)
        if key in seen:
            continue
        seen.add(key)
        check_labels(cfg)




def custom_columns(root: str | Path) -> list[str]:
    """The attribute columns of the custom dataset under ``root`` (``labels.csv`` minus file and split);
    DatasetError when there is none or it cannot be read."""
    folder = locate("custom", Path(root))
    columns, _, _ = read_csv(folder / CUSTOM_LABELS, ("file",), "custom dataset")
    return [c for c in columns if c not in ("file", "split") and c]


__all__ = ["check_labels", "check_data", "custom_columns"]
