"""Settling which data a run reads before it is planned, and checking label files up front (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import RunConfig, from_dict
from .fingerprint import fingerprint
from .labels import ValueMap, read_csv, read_fairface_labels, unknown_message
from .layouts import CUSTOM_LABELS, DatasetError, data_root, locate, utkface_files
from .registry import REGISTRY


def cache_dir(results: str | Path | None) -> Path | None:
    return Path(results) / "cache" if results is not None else None


def resolve(cfg: RunConfig, results: str | Path | None = None, *, _memo: dict | None = None) -> RunConfig:
    """``cfg`` with ``data_fingerprint`` set from its data (unchanged when already set).

    When the data folder is absent, finished runs in ``results`` with the same settings say
    which data they read (runs imported from another machine stay loadable); with none, or
    with several different data, the DatasetError stands.
    """
    if cfg.data_fingerprint is not None:
        return cfg
    memo = {} if _memo is None else _memo
    key = (cfg.dataset, str(data_root(cfg)))
    if key not in memo:
        try:
            memo[key] = fingerprint(cfg, cache_dir(results))
        except DatasetError as err:
            memo[key] = err
    fp = memo[key]
    if isinstance(fp, DatasetError):
        if "finished" not in memo:
            memo["finished"] = _finished_fingerprints(results)
        found = memo["finished"].get(_comparable(cfg.to_dict()), set())
        if len(found) != 1:
            raise fp
        fp = next(iter(found))
    return cfg.replace(data_fingerprint=fp)


def resolve_all(configs: list[RunConfig], results: str | Path | None = None) -> list[RunConfig]:
    """Every config resolved; each dataset folder is fingerprinted once."""
    memo: dict = {}
    return [resolve(c, results, _memo=memo) for c in configs]


def _finished_fingerprints(results: str | Path | None) -> dict[str, set[str]]:
    """{settings other than the data (canonical JSON): fingerprints of finished runs with them}."""
    index: dict[str, set[str]] = {}
    if results is None or not (Path(results) / "runs").is_dir():
        return index
    for folder in (Path(results) / "runs").iterdir():
        if not (folder / "summary.json").exists():
            continue
        try:
            other = json.loads((folder / "config.json").read_text())
            if other.get("data_fingerprint"):
                index.setdefault(_comparable(from_dict(other).to_dict()), set()).add(other["data_fingerprint"])
        except (OSError, ValueError):
            continue
    return index


def _comparable(d: dict) -> str:
    return json.dumps({k: v for k, v in d.items() if k not in ("data_fingerprint", "data_dir", "device",
                                                               "eval_batch_size")}, sort_keys=True)


def check_labels(cfg: RunConfig) -> None:
    """Raise DatasetError unless ``cfg``'s label files have the columns it needs and some row has
    known values in every column it uses (the message counts unknown values with examples)."""
    if not REGISTRY[cfg.dataset].from_folder:
        return
    folder = locate(cfg.dataset, data_root(cfg))
    used = tuple(dict.fromkeys((cfg.target, *cfg.groups)))
    if cfg.dataset == "utkface":
        from .faces import parse_utkface_name

        if not any(parse_utkface_name(n) for n in utkface_files(folder)):
            raise DatasetError(f"UTKFace: no file in {folder} has a name of the form age_gender_race_datetime.jpg")
    elif cfg.dataset == "fairface":
        from .faces import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES

        labels = {"race": FAIRFACE_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
        rows, _ = read_fairface_labels(folder)
        for split, split_rows in rows.items():
            maps = [ValueMap(a, labels[a]) for a in used]
            known = sum(all(m.code(r[m.column]) is not None for m in maps) for r in split_rows)
            if known == 0:
                raise DatasetError(f"FairFace: no row of the {split} labels under {folder} has known values in "
                                   f"{', '.join(used)}: {unknown_message(maps) or 'the file has no rows'}")
    elif cfg.dataset == "custom":
        from .custom import read_custom_labels

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


__all__ = ["resolve", "resolve_all", "check_labels", "check_data", "cache_dir", "custom_columns"]
