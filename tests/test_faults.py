"""Kill points: a grid driver SIGKILLed at several moments, two grids on one folder, the app killed
while its job runs (docs/troubleshooting.md, "Kills, crashes and cancels").

After every kill the store opens, no finished run is lost or duplicated, and rerunning the same grid
finishes every run with exactly the numbers of a clean, uninterrupted grid. Results depend on the
CPU thread count, so every grid here runs in a child that sees one core (one worker, one thread):
``run_grid`` gives its single worker every core, which on a shared 2-core box is also ~8x slower.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ceag.config.grid_spec import GridSpec
from ceag.grid import jobs
from ceag.results.files import read_status
from ceag.store import queries
from tests.helpers import ROOT, subprocess_env

pytestmark = pytest.mark.slow

ENV = subprocess_env()
# ``python -m ceag`` on a machine that reports one CPU core: --workers 1 then trains with one thread.
ONE_CORE_CLI = "import os, sys; os.cpu_count = lambda: 1; from ceag.cli import main; sys.exit(main())"
SETTINGS = {"dense_epochs": 5, "prune_epochs": 4, "finetune_epochs": 30, "checkpoint_every": 1, "device": "cpu"}
# NFT and CEAG share each seed's dense model and end-of-pruning state; NFT+ES is derived from NFT.
SPEC = GridSpec(datasets=("synthetic",), models=("mlp",), methods=("nft", "nft_es", "ceag"), sparsities=(0.8,),
                tolerances=(0.02,), seeds=(0, 1), settings=SETTINGS)
CELLS = len(SPEC.configs())
FRAMES = ("run_metrics", "group_metrics", "duals")
TIMEOUT = 180.0


# -- driving a grid in a child process -----------------------------------------------------------------
def start_grid(results: Path, job_id: str) -> subprocess.Popen:
    args = [sys.executable, "-c", ONE_CORE_CLI, "grid", "--datasets", "synthetic", "--models", "mlp",
            "--methods", "nft,nft_es,ceag", "--sparsities", "0.8", "--tolerances", "0.02", "--seeds", "0,1",
            "--workers", "1", "--json", "--job-id", job_id, "--results", str(results)]
    for key, value in SETTINGS.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen) -> dict:
    """Wait for a grid child; its JSON report."""
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return json.loads(out)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_folders(results: Path) -> list[Path]:
    runs = results / "runs"
    return sorted(p for p in runs.iterdir() if (p / "config.json").exists()) if runs.is_dir() else []


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the grid ended before {what}: {proc.communicate()}")
        time.sleep(0.003)
    raise TimeoutError(what)


# -- kill conditions ---------------------------------------------------------------------------------------
def feed_done(results: Path, job_id: str) -> int:
    feed = read_json(results / "jobs" / job_id / "progress.json") or {}
    return sum(int(feed.get(k) or 0) for k in ("finished", "cached", "diverged", "failed"))


def feed_started(results: Path, job_id: str) -> bool:
    feed = read_json(results / "jobs" / job_id / "progress.json")
    return feed is not None and feed.get("state") == "running"


def training(results: Path, method: str, min_epoch: int) -> bool:
    """A run of ``method`` is training, past ``min_epoch``, with a checkpoint on disk."""
    for folder in run_folders(results):
        status = read_json(folder / "status.json") or {}
        config = read_json(folder / "config.json") or {}
        if (config.get("method") == method and status.get("status") == "running"
                and status.get("epoch", 0) >= min_epoch and (folder / "checkpoint.pt").exists()):
            return True
    return False


def pruning(results: Path, min_epoch: int) -> bool:
    """A shared pruning phase is training, past ``min_epoch``, with a checkpoint on disk."""
    for folder in sorted((results / "pruned").glob("*")) if (results / "pruned").is_dir() else []:
        status = read_json(folder / "status.json") or {}
        if status.get("status") == "running" and status.get("epoch", 0) >= min_epoch \
                and (folder / "checkpoint.pt").exists():
            return True
    return False


def summaries(results: Path) -> int:
    return sum((f / "summary.json").exists() for f in run_folders(results))


KILL_POINTS: dict[str, Callable[[Path, str], bool]] = {
    "feed-started": feed_started,                                          # the first dense model trains
    "mid-pruning": lambda r, j: pruning(r, 2),                              # the shared pruning, checkpointed
    "mid-first-run": lambda r, j: training(r, "nft", 3),                    # fine-tuning, checkpointed
    "one-done": lambda r, j: feed_done(r, j) >= 1,                          # ingested, feed updated
    "second-summary": lambda r, j: summaries(r) >= 2,                       # a run written, maybe not ingested
    "mid-ceag": lambda r, j: training(r, "ceag", 8),                        # fine-tuning from the pruned state
    "four-done": lambda r, j: feed_done(r, j) >= 4,                         # trainings done, NFT+ES next
}


# -- checks --------------------------------------------------------------------------------------------------
def rows_per_run(results: Path, table: str, run_ids: list[str]) -> dict[str, int]:
    df = queries.export_table(results, table, run_ids)
    return df.groupby("run_id").size().to_dict()


def check_store(results: Path) -> pd.DataFrame:
    """The store opens; each run once; each finished run's rows are exactly its own files' rows."""
    stored = queries.runs(results)
    assert stored["run_id"].is_unique
    ids = list(stored["run_id"])
    for table in FRAMES:
        counts = rows_per_run(results, table, ids)
        for rid, status in zip(stored["run_id"], stored["status"], strict=True):
            path = results / "runs" / rid / f"{table}.parquet"
            expected = len(pd.read_parquet(path)) if status == "finished" else 0
            assert counts.get(rid, 0) == expected, (table, rid, status)
    return stored


def ceag_ls(results: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "ceag", "ls", "--json", "--results", str(results)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_same_numbers(results: Path, clean: Path) -> None:
    clean_ids = sorted(p.name for p in run_folders(clean))
    assert sorted(p.name for p in run_folders(results)) == clean_ids and len(clean_ids) == CELLS
    for rid in clean_ids:
        a, b = results / "runs" / rid, clean / "runs" / rid
        for table in FRAMES:
            got, want = pd.read_parquet(a / f"{table}.parquet"), pd.read_parquet(b / f"{table}.parquet")
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{rid} {table}")
        sa, sb = read_json(a / "summary.json"), read_json(b / "summary.json")
        assert (sa["status"], sa["reported_epoch"], sa["achieved_sparsity"]) == (
            sb["status"], sb["reported_epoch"], sb["achieved_sparsity"])
    for split in ("train", "test"):
        cols = ["run_id", "accuracy", "max_excess_gap", "psi_pw", "reported_epoch"]
        got = queries.frontier(results, dataset="synthetic", split=split)[cols].sort_values("run_id")
        want = queries.frontier(clean, dataset="synthetic", split=split)[cols].sort_values("run_id")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    """The same grid, never interrupted, in its own folder."""
    results = tmp_path_factory.mktemp("clean")
    report = finish(start_grid(results, "clean"))
    assert report["finished"] == CELLS and report["failed"] == 0
    return results, report


# -- kill points ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_grid_killed_at_any_point_resumes_to_the_clean_numbers(clean, tmp_path, point):
    results = tmp_path / "results"
    proc = start_grid(results, "killed")
    try:
        wait_until(proc, lambda: KILL_POINTS[point](results, "killed"), point)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL

    # the store opens as the kill left it, with no run duplicated or half-ingested
    check_store(results)
    assert jobs.job_state(results, "killed")["state"] == "lost"
    interrupted = [f.name for f in run_folders(results) if not (f / "summary.json").exists()]
    resumable = [rid for rid in interrupted if (results / "runs" / rid / "checkpoint.pt").exists()]
    for rid in interrupted:
        assert read_status(results / "runs" / rid)["status"] == "interrupted"

    # `ls` picks up what the kill left unrecorded: no finished run is lost
    listed = {r["run_id"]: r["status"] for r in ceag_ls(results)}
    stored = check_store(results)
    assert dict(zip(stored["run_id"], stored["status"], strict=True)) == listed
    for folder in run_folders(results):
        summary = read_json(folder / "summary.json")
        assert listed[folder.name] == (summary["status"] if summary else "interrupted")

    # rerunning the same grid finishes everything, resuming killed runs from their checkpoints
    report = finish(start_grid(results, "rerun"))
    assert report["total"] == CELLS and report["failed"] == 0
    assert report["finished"] + report["cached"] == CELLS
    for rid in resumable:
        summary = read_json(results / "runs" / rid / "summary.json")
        assert summary["resumed_from"] == "checkpoint" and summary["epochs_trained"] < SETTINGS["prune_epochs"] + \
            SETTINGS["finetune_epochs"]
    stored = check_store(results)
    assert len(stored) == CELLS and set(stored["status"]) == {"finished"}
    assert_same_numbers(results, clean[0])
    if point in ("mid-first-run", "mid-ceag"):
        assert resumable, "the kill was meant to land mid-run, after a checkpoint"
    if point == "mid-pruning":  # the pruning phase went on from its checkpoint
        phases = [p for p in report["phases"] if p["kind"] == "pruning" and p["trained"]]
        trained = [read_json(results / "pruned" / p["task"].split(":")[1] / "phase.json")["epochs"] for p in phases]
        assert min(trained) < SETTINGS["prune_epochs"], trained


def test_two_grids_on_one_folder_train_every_run_once(clean, tmp_path):
    results = tmp_path / "results"
    first, second = start_grid(results, "first"), start_grid(results, "second")
    try:
        reports = [finish(first), finish(second)]
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                kill_group(proc)
    for report in reports:
        assert report["total"] == CELLS and report["failed"] == 0
        assert report["finished"] + report["cached"] == CELLS
    # every cell was produced by exactly one of the two grids; the other loaded it
    assert sum(r["finished"] for r in reports) == CELLS
    assert sum(r["epochs_trained"] for r in reports) == clean[1]["epochs_trained"]
    for folder in run_folders(results):
        summary = read_json(folder / "summary.json")
        clean_summary = read_json(clean[0] / "runs" / folder.name / "summary.json")
        assert summary["resumed_from"] == clean_summary["resumed_from"]  # none started over from a checkpoint
        assert summary["epochs_trained"] == clean_summary["epochs_trained"]
    stored = check_store(results)
    assert len(stored) == CELLS and set(stored["status"]) == {"finished"}
    assert_same_numbers(results, clean[0])


# -- the app killed while a job it launched runs ------------------------------------------------------------
APP_STAND_IN = """
import json, sys, time
from ceag.grid import jobs
from ceag.config.grid_spec import GridSpec
job_id = jobs.launch(GridSpec.from_dict(json.loads(sys.argv[1])), sys.argv[2], workers=2)
print(job_id, flush=True)
time.sleep(600)
"""


def test_a_job_outlives_the_app_that_launched_it(tmp_path):
    results = tmp_path / "results"
    spec = GridSpec(datasets=("synthetic",), models=("mlp",), methods=("nft", "ceag"), sparsities=(0.8,),
                    tolerances=(0.02,), seeds=(0,), settings=SETTINGS)
    app = subprocess.Popen([sys.executable, "-c", APP_STAND_IN, json.dumps(spec.to_dict()), str(results)], cwd=ROOT,
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    job_pid = None
    try:
        job_id = app.stdout.readline().strip()
        assert job_id, app.stderr.read() if app.poll() is not None else "no job id"
        job_pid = read_json(results / "jobs" / job_id / "launcher.json")["pid"]
        assert os.getsid(job_pid) == job_pid != app.pid  # the job leads its own session
        wait_until(app, lambda: any(read_status(f).get("status") == "running" and read_status(f).get("epoch", 0) >= 1
                                    for f in run_folders(results)), "a run of the job trains")
        kill_group(app)
        assert app.returncode == -signal.SIGKILL
        deadline = time.monotonic() + TIMEOUT
        state = jobs.job_state(results, job_id)
        while state["state"] in ("starting", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            state = jobs.job_state(results, job_id)
        assert state["state"] == "finished", (state, jobs.log_tail(results, job_id))
        assert state["finished"] == spec.size() and state["failed"] == 0
        stored = check_store(results)
        assert len(stored) == spec.size() and set(stored["status"]) == {"finished"}
    finally:
        if app.poll() is None:
            kill_group(app)
        if job_pid is not None:
            with contextlib.suppress(ProcessLookupError):  # only if the test failed with the job still running
                os.killpg(job_pid, signal.SIGKILL)
