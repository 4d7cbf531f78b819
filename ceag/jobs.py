"""Background grid jobs for the app: launched as detached processes, observed through files.

A job is ``python -m ceag grid --spec ... --job-id ID`` started in its own session, so closing
the browser or stopping the app does not stop it. Its progress feed is
``<results>/jobs/<id>/progress.json`` (written by the executor), its output ``log.txt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError
from .executor import job_dir, request_cancel
from .grid import GridSpec
from .runs import pid_alive, read_status, run_dir, write_json

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LaunchLimits:
    """Limits for grids launched from the browser (settings: environment variables)."""

    max_cells: int = 200
    max_epochs: int = 500
    max_jobs: int = 2

    @classmethod
    def from_env(cls) -> LaunchLimits:
        def read(name: str, default: int) -> int:
            raw = os.environ.get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError as err:
                raise ConfigError(name, raw, "must be a positive integer") from err
            if value < 1:
                raise ConfigError(name, raw, "must be a positive integer")
            return value

        return cls(read("CEAG_MAX_GRID_CELLS", cls.max_cells), read("CEAG_MAX_EPOCHS", cls.max_epochs),
                   read("CEAG_MAX_JOBS", cls.max_jobs))


def check_limits(spec: GridSpec, limits: LaunchLimits, running_jobs: int) -> None:
    """Raise ConfigError when a browser-launched grid exceeds the limits."""
    if running_jobs >= limits.max_jobs:
        raise ConfigError("jobs", running_jobs, f"at most {limits.max_jobs} jobs may run at once; wait or cancel one")
    configs = spec.configs(max_cells=limits.max_cells)
    for cfg in configs:
        epochs = cfg.dense_epochs + cfg.total_epochs
        if epochs > limits.max_epochs:
            raise ConfigError("epochs", epochs, f"at most {limits.max_epochs} epochs per run (dense + pruning + "
                                                "fine-tuning) from the browser")


def launch(spec: GridSpec, results: str | os.PathLike, *, workers: int | None = None) -> str:
    """Start a grid in a detached process; returns its job id."""
    job_id = uuid.uuid4().hex[:12]
    jdir = job_dir(Path(results), job_id)
    jdir.mkdir(parents=True, exist_ok=True)
    write_json(jdir / "spec.json", spec.to_dict())
    write_json(jdir / "progress.json", {"job_id": job_id, "state": "starting", "total": spec.size(),
                                        "cached": 0, "finished": 0, "diverged": 0, "failed": 0, "cancelled": 0,
                                        "busy": 0, "runs": {}})
    cmd = [sys.executable, "-m", "ceag", "grid", "--spec", str(jdir / "spec.json"), "--job-id", job_id,
           "--results", str(results), "--json"]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(jdir / "log.txt", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, env=env, start_new_session=True)
    write_json(jdir / "launcher.json", {"pid": proc.pid})
    return job_id


def job_state(results: str | os.PathLike, job_id: str) -> dict[str, Any]:
    """The job's progress feed, with ``state`` 'lost' when its process died without finishing."""
    jdir = job_dir(Path(results), job_id)
    try:
        progress = json.loads((jdir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        progress = {"job_id": job_id, "state": "unknown", "runs": {}}
    if progress.get("state") in ("starting", "running"):
        try:
            pid = json.loads((jdir / "launcher.json").read_text()).get("pid")
        except (FileNotFoundError, json.JSONDecodeError):
            pid = progress.get("pid")
        if not pid_alive(pid) and not pid_alive(progress.get("pid")):
            progress["state"] = "lost"
    # Live epoch progress of the runs that are training now.
    for rid, entry in progress.get("runs", {}).items():
        if entry.get("status") == "running":
            status = read_status(run_dir(Path(results), rid))
            entry["epoch"], entry["total_epochs"] = status.get("epoch"), status.get("total")
    progress["job_id"] = job_id
    return progress


def list_jobs(results: str | os.PathLike) -> list[dict[str, Any]]:
    """Every job's state, newest first."""
    root = Path(results) / "jobs"
    if not root.is_dir():
        return []
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    return [job_state(results, d.name) for d in dirs]


def running_jobs(results: str | os.PathLike) -> list[dict[str, Any]]:
    return [j for j in list_jobs(results) if j.get("state") in ("starting", "running")]


def cancel(results: str | os.PathLike, job_id: str) -> None:
    request_cancel(results, job_id)


def log_tail(results: str | os.PathLike, job_id: str, lines: int = 20) -> str:
    path = job_dir(Path(results), job_id) / "log.txt"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
