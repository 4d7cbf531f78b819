"""Background grid jobs for the app: launched as detached processes, observed through files.

A job is ``python -m ceag grid --spec ... --job-id ID`` started in its own session, so closing
the browser or stopping the app does not stop it. Its progress feed is
``<results>/jobs/<id>/progress.json`` (written by the executor), its output ``log.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.results.files import pid_alive, read_status, write_json
from ceag.results.layout import CANCEL, LAUNCHER, LOG, PROGRESS, job_dir, resolve_results, run_dir

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the ceag package


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
    write_json(jdir / PROGRESS, {"job_id": job_id, "state": "starting", "total": spec.size(),
                                        **dict.fromkeys(RUN_STATES, 0), "pending": spec.size(),
                                        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                        "datasets": list(spec.datasets), "models": list(spec.models),
                                        "methods": list(spec.methods), "runs": {}})
    cmd = [sys.executable, "-m", "ceag", "grid", "--spec", str(jdir / "spec.json"), "--job-id", job_id,
           "--results", str(results), "--json"]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(jdir / LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, env=env, start_new_session=True)
    write_json(jdir / LAUNCHER, {"pid": proc.pid})
    return job_id


RUN_STATES = ("pending", "running", "cached", "finished", "diverged", "failed", "cancelled")


ACTIVE = ("starting", "running")


ENDED = ("finished", "cancelled", "failed", "lost")


_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def job_counts(feed: dict[str, Any]) -> dict[str, int]:
    """Runs per status (``RUN_STATES``), adding up to ``total``.

    Counted from the feed's per-run entries when it has them (a status outside ``RUN_STATES``,
    such as a run another process was training, counts as failed); runs the feed does not list yet
    are pending. Without entries, the feed's own counts are used and the rest is pending.
    """
    runs = feed.get("runs") if isinstance(feed.get("runs"), dict) else {}
    counts = dict.fromkeys(RUN_STATES, 0)
    if runs:
        for entry in runs.values():
            status = entry.get("status") if isinstance(entry, dict) else None
            counts[status if status in RUN_STATES else "failed"] += 1
    else:
        for status in RUN_STATES:
            value = feed.get(status)
            counts[status] = value if isinstance(value, int) and value > 0 else 0
    total = feed.get("total")
    total = total if isinstance(total, int) and total >= 0 else 0
    total = max(total, sum(counts.values()))
    counts["pending"] += total - sum(counts.values())
    counts["total"] = total
    return counts


def job_state(results: str | os.PathLike, job_id: str) -> dict[str, Any]:
    """The job's progress feed, normalized for display; never raises for a bad id or a bad feed.

    ``state`` is the feed's (starting, running, finished, cancelled, failed), or ``unknown`` when
    there is no readable feed for ``job_id`` in ``results``, or ``lost`` when the feed says it
    runs but its process is gone. The counts (``RUN_STATES`` and ``total``) always add up; the
    feed's ``datasets``, ``models``, ``methods`` and ``started_at`` are filled in from the job's
    spec and files when the feed lacks them; ``seconds``: its duration so far (s), or in all.
    A running run's ``epoch``/``total_epochs`` come from its run folder when the feed has none.
    """
    unknown = {"job_id": job_id, "state": "unknown", "runs": {}, **dict.fromkeys(RUN_STATES, 0), "total": 0}
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        return unknown
    jdir = job_dir(Path(results), job_id)
    progress = _read_json(jdir / PROGRESS)
    if not isinstance(progress, dict):
        return unknown
    if not isinstance(progress.get("runs"), dict):
        progress["runs"] = {}
    launcher = _read_json(jdir / LAUNCHER)
    if progress.get("state") in ACTIVE:
        pid = launcher.get("pid") if isinstance(launcher, dict) else None
        if not pid_alive(pid) and not pid_alive(progress.get("pid")):
            progress["state"] = "lost"
    if progress.get("state") not in (*ACTIVE, *ENDED):
        progress["state"] = "unknown"
    progress.update(job_counts(progress))
    spec = _read_json(jdir / "spec.json")
    entries = [e for e in progress["runs"].values() if isinstance(e, dict)]
    for key, singular in (("datasets", "dataset"), ("models", "model"), ("methods", "method")):
        if not isinstance(progress.get(key), list):
            from_spec = spec.get(key) if isinstance(spec, dict) else None
            progress[key] = list(from_spec) if isinstance(from_spec, list) else sorted(
                {str(e[singular]) for e in entries if e.get(singular) is not None})
    if not progress.get("started_at"):
        for name in ("launcher.json", "spec.json", "progress.json"):
            with contextlib.suppress(OSError):
                progress["started_at"] = _iso((jdir / name).stat().st_mtime)
                break
    progress["seconds"] = _duration(progress)
    # Live epoch progress of the runs that are training now, from their folders when the feed has none.
    for rid, entry in progress["runs"].items():
        if isinstance(entry, dict) and entry.get("status") == "running" and entry.get("epoch") is None:
            status = read_status(run_dir(Path(results), rid))
            if status.get("status") == "running":
                entry["epoch"], entry["total_epochs"] = status.get("epoch"), status.get("total")
    progress["job_id"] = job_id
    return progress


def _duration(progress: dict[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(str(progress.get("started_at")))
    except ValueError:
        return progress.get("wall_seconds")
    if progress.get("state") in ACTIVE:
        end = datetime.now(UTC)
    else:
        try:
            end = datetime.fromisoformat(str(progress.get("updated_at")))
        except ValueError:
            return progress.get("wall_seconds")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max((end - start).total_seconds(), 0.0)


def list_jobs(results: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """Every job's state (the ``limit`` most recently updated), newest first."""
    root = Path(results) / "jobs"
    try:
        dirs = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []

    def mtime(d: Path) -> float:
        try:
            return max(d.stat().st_mtime, (d / PROGRESS).stat().st_mtime)
        except OSError:
            return 0.0

    dirs.sort(key=mtime, reverse=True)
    return [job_state(results, d.name) for d in dirs[:limit]]


def running_jobs(results: str | os.PathLike) -> list[dict[str, Any]]:
    return [j for j in list_jobs(results) if j.get("state") in ACTIVE]


def job_run_ids(job: dict[str, Any]) -> list[str]:
    """The run ids of the job's cells, in the feed's order."""
    return [str(rid) for rid in job.get("runs", {})]


def cancel(results: str | os.PathLike, job_id: str) -> None:
    request_cancel(results, job_id)


def log_tail(results: str | os.PathLike, job_id: str, lines: int = 20) -> str:
    path = job_dir(Path(results), job_id) / LOG
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def request_cancel(results: str | os.PathLike, job_id: str) -> None:
    path = job_dir(resolve_results(results), job_id) / CANCEL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
