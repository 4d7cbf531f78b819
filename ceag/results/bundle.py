"""Run bundles: a tar.gz of finished run folders with a manifest of SHA-256 hashes.

Import validates everything before writing anything: the manifest's format and version, every
file's hash, each config (valid, and hashing to its folder's run id), the summary and the
metric tables' columns, and the model weights (loaded weights-only). Only then are the run
folders moved into ``<results>/runs/`` and ingested. A bundle holds plain files and folders only,
and so must a run folder imported as it is: a symbolic link or any other special entry is refused
before anything is copied.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ceag.config.errors import ConfigError
from ceag.config.identity import sha256_file
from ceag.config.vocabulary import PREDICTION_COLUMNS
from ceag.results.files import load_torch
from ceag.results.layout import (
    CONFIG,
    DUALS,
    GROUP_METRICS,
    MODEL,
    PREDICTIONS,
    RUN_METRICS,
    SHRINK_PLAN,
    SMALL_MODEL,
    STATUS,
    SUMMARY,
    resolve_results,
    run_dir,
    runs_dir,
)
from ceag.results.record import read_config

FORMAT = "ceag-bundle"
VERSION = 1
RUN_FILES = (CONFIG, SUMMARY, STATUS, RUN_METRICS, GROUP_METRICS, DUALS, MODEL)
COLUMNS = {
    RUN_METRICS: {"epoch", "split", "accuracy", "loss", "dense_accuracy", "acc_gap", "max_excess_gap",
                            "psi_pw", "sparsity"},
    GROUP_METRICS: {"epoch", "split", "group_id", "group_name", "n", "accuracy", "loss",
                              "dense_accuracy", "acc_gap", "excess_gap"},
    DUALS: {"step", "epoch", "group_id", "multiplier", "violation"},
}
# Carried when present (runs made before per-sample predictions were kept have none).
OPTIONAL_FILES = (PREDICTIONS, SMALL_MODEL, SHRINK_PLAN)
MAX_BUNDLE_BYTES = 2 * 1024**3


class BundleError(ValueError):
    """The bundle or run folder cannot be imported; nothing was written."""


def _data_of(folder: Path) -> dict:
    """Which data a bundled run read and what loading left out (the files hold it; listed for readers)."""
    config = json.loads((folder / CONFIG).read_text())
    summary = json.loads((folder / SUMMARY).read_text())
    report = summary.get("data_report") or {}
    return {"dataset": config.get("dataset"), "data_fingerprint": config.get("data_fingerprint"),
            "skipped": report.get("skipped", summary.get("skipped_files") or {}),
            "skipped_by_group": report.get("lost_by_group", {}), "rows_read": report.get("rows_read"),
            "warnings": report.get("warnings", [])}


def export_bundle(results: str | os.PathLike | None, run_ids: list[str], out: str | os.PathLike) -> Path:
    """Write finished runs into one tar.gz with a manifest."""
    results = resolve_results(results)
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "runs": [], "sha256": {}, "data": {}}
    members = []
    for rid in run_ids:
        folder = run_dir(results, rid)
        if not (folder / SUMMARY).exists():
            raise BundleError(f"run {rid} is not finished in {results}; only finished runs can be bundled")
        manifest["runs"].append(rid)
        manifest["data"][rid] = _data_of(folder)
        for name in RUN_FILES + OPTIONAL_FILES:
            if (folder / name).exists():
                rel = f"runs/{rid}/{name}"
                manifest["sha256"][rel] = sha256_file(folder / name)
                members.append((folder / name, rel))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        data = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for path, rel in members:
            tar.add(path, arcname=rel)
    os.replace(tmp, out)
    return out


def _validate_run(folder: Path) -> str:
    """Check one run folder; return its run id or raise BundleError naming the problem."""
    name = folder.name
    for required in (CONFIG, SUMMARY, RUN_METRICS, GROUP_METRICS, DUALS, MODEL):
        if not (folder / required).is_file():
            raise BundleError(f"run {name}: {required} is missing (a run folder needs {', '.join(RUN_FILES[:-1])} "
                              "and model.pt)")
    try:
        cfg = read_config(folder)
    except (json.JSONDecodeError, ConfigError, TypeError) as err:
        raise BundleError(f"run {name}: config.json is not a valid ceag config: {err}") from err
    if cfg.run_id != name:
        raise BundleError(f"run {name}: config.json hashes to {cfg.run_id}, not to its folder name; "
                          "the config was changed after the run")
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"run {name}: summary.json is not valid JSON") from err
    if summary.get("run_id") != name or summary.get("status") not in ("finished", "diverged"):
        raise BundleError(f"run {name}: summary.json does not describe a finished run {name}")
    # "file" is absent from runs made before predictions named their files
    optional = {PREDICTIONS: set(PREDICTION_COLUMNS) - {"file"}} if (folder / PREDICTIONS).exists() else {}
    for fname, cols in {**COLUMNS, **optional}.items():
        try:
            have = set(pd.read_parquet(folder / fname).columns)
        except Exception as err:
            raise BundleError(f"run {name}: {fname} is not a readable Parquet file") from err
        if not cols <= have:
            raise BundleError(f"run {name}: {fname} lacks columns {', '.join(sorted(cols - have))}")
    try:
        state = load_torch(folder / MODEL)
    except Exception as err:
        raise BundleError(f"run {name}: model.pt is not a weights-only PyTorch state dict ({err})") from err
    if not isinstance(state, dict):
        raise BundleError(f"run {name}: model.pt is not a state dict")
    return name


def _safe_extract(bundle: Path, dest: Path) -> None:
    try:
        tar = tarfile.open(bundle, "r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{bundle} is not a readable tar archive: {err}") from err
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise BundleError(f"{bundle} is truncated or corrupt: {err}") from err
        total = 0
        for m in members:
            if not (m.isfile() or m.isdir()):
                raise BundleError(f"{bundle}: member {m.name!r} is not a plain file or folder")
            if m.name.startswith("/") or ".." in Path(m.name).parts:
                raise BundleError(f"{bundle}: member {m.name!r} would be written outside the bundle")
            total += m.size
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(f"{bundle}: unpacks to {total} bytes, more than the {MAX_BUNDLE_BYTES} allowed")
        # Members were checked above; the "data" filter (Python >= 3.11.4) checks again where it exists.
        extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        if not extra:  # no filter to drop modes from the archive: plain ones
            for m in members:
                m.mode = 0o755 if m.isdir() else 0o644
        try:
            tar.extractall(dest, **extra)
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise BundleError(f"{bundle} is truncated or corrupt: {err}") from err


def _entries(folder: Path) -> list[tuple[Path, bool]]:
    """Every entry below a run folder as (relative path, is a folder), folders before their contents.

    Raises BundleError naming the first entry that is a symbolic link or anything other than a
    regular file or folder (a pipe, a socket, a device): links are never followed, so a link to a
    system folder or a link loop cannot bring anything in.
    """
    out: list[tuple[Path, bool]] = []
    stack = [Path()]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(folder / rel) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise BundleError(f"{folder}: cannot list {rel.as_posix() or '.'}: {err.strerror or err}") from None
        for entry in entries:
            path = rel / entry.name
            if entry.is_symlink():
                raise BundleError(f"{folder}: {path.as_posix()} is a symbolic link (to {os.readlink(entry.path)}); a "
                                  "run folder is imported from regular files only: replace the link by the file "
                                  "itself or remove it, then import again")
            if entry.is_dir(follow_symlinks=False):
                out.append((path, True))
                stack.append(path)
            elif entry.is_file(follow_symlinks=False):
                out.append((path, False))
            else:
                raise BundleError(f"{folder}: {path.as_posix()} is not a regular file or folder (a pipe, socket or "
                                  "device); a run folder is imported from regular files only: remove it, then "
                                  "import again")
    return out


def _copy_regular(source: Path, dest: Path, entries: list[tuple[Path, bool]]) -> None:
    """Copy the checked ``entries`` of ``source`` into a new folder ``dest``, never following a link."""
    dest.mkdir(parents=True)
    for rel, is_dir in entries:
        if is_dir:
            (dest / rel).mkdir()
        else:
            shutil.copy2(source / rel, dest / rel, follow_symlinks=False)
            if (dest / rel).is_symlink():  # replaced by a link since it was checked
                raise BundleError(f"{source}: {rel.as_posix()} became a symbolic link while it was copied; a run "
                                  "folder is imported from regular files only")


def unpack_runs(source: str | os.PathLike, results: str | os.PathLike | None = None, *,
                check_store: Callable[[], None] | None = None) -> dict[str, list[str]]:
    """Validate a bundle (.tar.gz) or a run folder, then move its runs into ``<results>/runs/``; returns
    {'imported': [...], 'present': [...]} (run ids). ``check_store`` runs before anything is unpacked
    (``ceag.store.import_runs`` refuses a foreign or newer store there, then ingests what came in).

    Raises BundleError, naming the problem, for anything that cannot be imported (a run folder
    holding a symbolic link or another entry that is not a regular file or folder included);
    then the results folder is left as it was.
    """
    from ceag.results.files import ensure_writable

    source, results = Path(source), resolve_results(results)
    if not source.exists():
        raise BundleError(f"{source} does not exist; give a run folder or a .tar.gz bundle")
    entries: list[tuple[Path, bool]] = []
    if source.is_dir():  # a run folder: checked before anything is created or copied
        entries = _entries(source)
        if (Path(CONFIG), False) not in entries:
            raise BundleError(f"{source} is not a run folder (no config.json)")
    if check_store is not None:
        check_store()
    ensure_writable(results)
    runs_dir(results).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=results) as tmp:
        staging = Path(tmp)
        if source.is_dir():
            _copy_regular(source, runs_dir(staging) / source.name, entries)
            folders = [runs_dir(staging) / source.name]
        else:
            _safe_extract(source, staging)
            manifest_path = staging / "manifest.json"
            if not manifest_path.exists():
                raise BundleError(f"{source}: no manifest.json; not a ceag bundle")
            try:
                manifest = json.loads(manifest_path.read_text())
            except json.JSONDecodeError as err:
                raise BundleError(f"{source}: manifest.json is not valid JSON") from err
            if manifest.get("format") != FORMAT:
                raise BundleError(f"{source}: manifest format is {manifest.get('format')!r}, expected {FORMAT!r}")
            if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
                raise BundleError(f"{source}: bundle version {manifest.get('version')!r} is newer than this ceag "
                                  f"reads ({VERSION}); upgrade ceag")
            for rel, digest in manifest.get("sha256", {}).items():
                path = staging / rel
                if not path.is_file() or sha256_file(path) != digest:
                    raise BundleError(f"{source}: {rel} does not match its manifest hash (tampered or truncated)")
            listed = set(manifest.get("sha256", {}))
            for path in (runs_dir(staging)).rglob("*") if (runs_dir(staging)).exists() else []:
                if path.is_file() and path.relative_to(staging).as_posix() not in listed:
                    raise BundleError(f"{source}: {path.relative_to(staging)} is not in the manifest")
            folders = [runs_dir(staging) / rid for rid in manifest.get("runs", [])]
            if not folders:
                raise BundleError(f"{source}: the bundle lists no runs")
        ids = [_validate_run(f) for f in folders]
        imported, present = [], []
        for folder, rid in zip(folders, ids, strict=True):
            target = run_dir(results, rid)
            if (target / SUMMARY).exists():
                present.append(rid)
                continue
            if target.exists():
                shutil.rmtree(target)  # an unfinished local attempt: the finished import replaces it
            os.replace(folder, target)
            imported.append(rid)
    return {"imported": sorted(imported), "present": sorted(present)}
