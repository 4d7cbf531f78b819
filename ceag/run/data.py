"""Settling which data a run reads before it is planned: the data's fingerprint, which is part of its id.

The fingerprint comes from the data folder; when the folder is absent, finished runs in the results
folder with the same settings say which data they read (runs imported from another machine stay
loadable). No torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from ceag.config.run_config import RunConfig, from_dict
from ceag.datasets.fingerprint import fingerprint
from ceag.datasets.layouts import DatasetError, data_root
from ceag.results.layout import CONFIG, SUMMARY, cache_dir


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
        if not (folder / SUMMARY).exists():
            continue
        try:
            other = json.loads((folder / CONFIG).read_text())
            if other.get("data_fingerprint"):
                index.setdefault(_comparable(from_dict(other).to_dict()), set()).add(other["data_fingerprint"])
        except (OSError, ValueError):
            continue
    return index


def _comparable(d: dict) -> str:
    return json.dumps({k: v for k, v in d.items() if k not in ("data_fingerprint", "data_dir", "device",
                                                               "eval_batch_size")}, sort_keys=True)
