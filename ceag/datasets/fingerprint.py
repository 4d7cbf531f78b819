"""The data fingerprint: 16 hex digits naming what a dataset instance read, and its split rule.

It is the SHA-256 of the dataset's rule version and, for a folder dataset, of every file it
reads: path relative to the dataset folder (its bytes, as the file system holds them: a name
that is not UTF-8 is hashed like any other), size and content hash. Where the folder lies and
the files' modification times are not part of it, so the same data copied or moved keeps its
fingerprint; a changed, added or removed file changes it. Content hashes are cached per file by
(path, size, modification time), in memory and, given a cache folder, on disk (written by
``save_cache`` once the data has loaded), so only new or changed files are read again.
No torch: planning a grid computes fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ceag.config.identity import CONTENT_DIGITS, RULES, builtin_fingerprint, files_fingerprint, sha256_file
from ceag.config.registry import REGISTRY
from ceag.datasets.labels import inside, read_csv, read_fairface_labels
from ceag.datasets.layouts import (
    CUSTOM_LABELS,
    FAIRFACE_CSVS,
    DatasetError,
    data_root,
    fairface_image_root,
    locate,
    shown,
    utkface_files,
)

_MEMO: dict[tuple[str, int, int], str] = {}
_PENDING: dict[tuple[str, str], dict] = {}  # (cache folder, data folder) -> entries not yet on disk


def files_read(dataset: str, folder: Path) -> list[str]:
    """Paths, relative to ``folder``, of every file ``dataset`` reads there (listed, maybe missing).
    Files a label file names outside the folder (``layouts.outside_folder``) are not read, so not listed."""
    if dataset == "utkface":
        return utkface_files(folder)
    if dataset == "fairface":
        by_split, _ = read_fairface_labels(folder)
        files = inside(r["file"] for split_rows in by_split.values() for r in split_rows)
        root = fairface_image_root(folder, files[0] if files else None)
        prefix = "" if root == folder else root.name + "/"
        return [name for _, name in FAIRFACE_CSVS] + [prefix + f for f in files]
    if dataset == "cifar100":
        return ["meta", "train", "test"]
    if dataset == "custom":
        _, rows, _ = read_csv(folder / CUSTOM_LABELS, ("file",), "custom dataset")
        return [CUSTOM_LABELS] + inside(r["file"] for r in rows)
    raise ValueError(f"{dataset} is not a folder dataset")


def folder_fingerprint(folder: Path, names: list[str], rule: str, cache_dir: Path | None = None) -> str:
    """Fingerprint of the files ``names`` (relative to ``folder``; a missing one counts as missing)."""
    folder = Path(folder)
    disk = _load_disk(cache_dir, folder)
    base = os.path.join(str(folder), "")  # plain strings: a Path per file costs more than its stat
    stats: dict[str, tuple[int, int] | None] = {}
    todo = []
    for name in dict.fromkeys(names):
        try:
            st = os.stat(base + name)
        except OSError:
            stats[name] = None
            continue
        stats[name] = (st.st_size, st.st_mtime_ns)
        key = (base + name, st.st_size, st.st_mtime_ns)
        cached = _MEMO.get(key)
        if cached is None:
            known = disk.get(name)
            if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                cached = _MEMO[key] = known[2]
        if cached is None:
            todo.append((name, key))
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for (_name, key), digest in zip(todo, pool.map(lambda t: sha256_file(t[1][0])[:CONTENT_DIGITS], todo),
                                           strict=True):
                _MEMO[key] = digest
    fresh = {}
    files: list[tuple[str, tuple[int, str] | None]] = []
    for name, size_mtime in stats.items():
        if size_mtime is None:
            files.append((name, None))
            continue
        size, mtime_ns = size_mtime
        digest = _MEMO[(base + name, size, mtime_ns)]
        fresh[name] = [size, mtime_ns, digest]
        files.append((name, (size, digest)))
    if todo and cache_dir is not None:
        _PENDING[(str(cache_dir), str(folder))] = fresh
    return files_fingerprint(rule, files)


def save_cache() -> None:
    """Write the content hashes computed since the last call to their cache folders. Called once a
    run's data has loaded, so a run refused for bad data leaves the results folder as it was."""
    while _PENDING:
        (cache_dir, folder), entries = _PENDING.popitem()
        _save_disk(Path(cache_dir), Path(folder), entries)


def _disk_file(cache_dir: Path, folder: Path) -> Path:
    where = hashlib.sha256(os.fsencode(folder.resolve())).hexdigest()[:16]
    return Path(cache_dir) / "fingerprints" / f"{where}.json"


def _load_disk(cache_dir: Path | None, folder: Path) -> dict:
    if cache_dir is None:
        return {}
    try:
        return json.loads(_disk_file(cache_dir, folder).read_text())
    except (OSError, ValueError):
        return {}


def _save_disk(cache_dir: Path | None, folder: Path, entries: dict) -> None:
    if cache_dir is None:
        return
    path = _disk_file(cache_dir, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: the next call reads the files again


def fingerprint(cfg, cache_dir: Path | None = None) -> str:
    """The fingerprint of ``cfg``'s data (16 hex digits). DatasetError when a folder dataset is
    missing or its label files cannot be read."""
    if not REGISTRY[cfg.dataset].from_folder:
        builtin = builtin_fingerprint(cfg.dataset)
        assert builtin is not None  # every dataset without a folder has one
        return builtin
    rule = RULES[cfg.dataset]
    folder = locate(cfg.dataset, data_root(cfg))
    try:
        names = files_read(cfg.dataset, folder)
    except OSError as err:
        raise DatasetError(f"{cfg.dataset}: cannot list the files of {shown(folder)}: {err.strerror or err}") from err
    return folder_fingerprint(folder, names, rule, cache_dir)
