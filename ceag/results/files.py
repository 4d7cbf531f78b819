"""Files of a results folder written so that a killed process never leaves a half-written one: atomic
writes (temp file, fsync, rename), JSON without NaN, checkpoints loaded weights-only, and folder locks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ceag.results.layout import LOCK, STATUS


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- atomic files -------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Path], object], *, durable: bool = True) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename over ``path``.

    ``durable=False`` skips the fsync (still atomic for a killed process): for progress files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=True)
    atomic_write(path, lambda p: p.write_text(text), durable=durable)


def read_status(folder: Path) -> dict[str, Any]:
    """The run's status; a 'running' run whose process is gone on this host is 'interrupted'."""
    try:
        status = json.loads((folder / STATUS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"status": "interrupted"}
    running_here = status.get("status") == "running" and status.get("host") == socket.gethostname()
    if running_here and not pid_alive(status.get("pid")):
        status["status"] = "interrupted"
    return status


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of this process stays a zombie until reaped; reap it if so.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class RunBusy(RuntimeError):
    """Another process is training this run right now."""


class ResultsNotWritable(OSError):
    """The results folder cannot be written; nothing was changed."""


def ensure_writable(results: Path) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ResultsNotWritable(f"cannot write to the results folder {results}: {err.strerror or err}; choose a "
                                 "writable folder with --results DIR or CEAG_RESULTS") from err


@contextlib.contextmanager
def run_lock(folder: Path, *, wait: bool = True):
    """An exclusive lock on a run folder, released when the process ends however it ends.

    ``wait``: block until another process training this run is done (then its result loads);
    otherwise raise RunBusy at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LOCK, "a+")  # noqa: SIM115
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            raise RunBusy(f"run {folder.name} is being trained by another process") from err
        yield
    finally:
        fh.close()


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda p: torch.save(obj, p))


def load_torch(path: Path) -> Any:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, no code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null so the files are valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
