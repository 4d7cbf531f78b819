"""The local executor: a pool of worker processes, failures recorded while the grid goes on,
cancel through the job folder, and the progress feed the app polls."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ceag.config.grid_spec import GridSpec
from ceag.config.run_config import RunConfig
from ceag.grid.driver import run_grid
from ceag.grid.jobs import request_cancel
from ceag.grid.worker import execute_run
from ceag.results.files import read_status
from ceag.results.layout import job_dir, run_dir
from ceag.results.record import load_result
from ceag.store import queries
from tests.helpers import ROOT, subprocess_env

TINY = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 2, "device": "cpu"}
DONE_STATES = ("cached", "finished", "diverged", "failed", "cancelled")
STATES = ("pending", "running", *DONE_STATES)


def grid(**axes) -> list[RunConfig]:
    base = dict(datasets=("synthetic",), methods=("nft", "el_rb", "ceag"), sparsities=(0.8,), tolerances=(0.02,),
                seeds=(0,), settings=dict(TINY))
    base.update(axes)
    return GridSpec(**base).configs()


def image_model_on_vectors() -> RunConfig:
    """Valid as a config, but the CNN needs images and synthetic data are vectors: fails inside the run."""
    return RunConfig(dataset="synthetic", model="cnn", method="nft", sparsity=0.8, **TINY)


def read_progress(results, job_id) -> dict:
    return json.loads((job_dir(results, job_id) / "progress.json").read_text())


def assert_counts_add_up(feed: dict) -> None:
    statuses = [e["status"] for e in feed["runs"].values()]
    assert len(statuses) == feed["total"]
    for state in STATES:
        assert statuses.count(state) == feed[state], (state, feed)
    assert sum(feed[s] for s in STATES) == feed["total"]


# -- a pool of two workers ----------------------------------------------------------------
@pytest.mark.slow
def test_local_pool_of_two_workers_runs_and_ingests_every_run(tmp_path):
    configs = grid(seeds=(0, 1))
    bad = image_model_on_vectors()
    snapshots = []
    report = run_grid([*configs, bad], tmp_path, workers=2, job_id="pool",
                      progress=lambda r: snapshots.append(json.loads(json.dumps(r.to_json()))))
    assert report.total == 7 and report.finished == 6 and report.failed == 1
    assert report.dense_trained == 2
    df = queries.runs(tmp_path).set_index("run_id")
    assert sorted(df[df.status == "finished"].index) == sorted(c.run_id for c in configs)
    assert df.loc[bad.run_id, "status"] == "failed"
    assert "needs image inputs" in df.loc[bad.run_id, "reason"]
    for cfg in configs:
        assert len(queries.run_metrics(tmp_path, cfg.run_id)) > 0
        # each of two workers gets its share of the cores
        assert load_result(tmp_path, cfg.run_id).summary["threads"] == max(1, (os.cpu_count() or 1) // 2)
    feed = read_progress(tmp_path, "pool")
    assert feed["state"] == "finished" and feed["finished"] == 6 and feed["failed"] == 1
    assert_counts_add_up(feed)
    assert snapshots and all(s["total"] == 7 for s in snapshots)
    for s in snapshots:
        assert_counts_add_up(s)


# -- failures -----------------------------------------------------------------------------
def test_a_failed_run_is_recorded_and_the_grid_goes_on(tmp_path):
    good = grid(methods=("nft", "ceag"))
    bad = image_model_on_vectors()
    report = run_grid([bad, *good], tmp_path, workers=1, job_id="fail")
    assert report.failed == 1 and report.finished == 2
    assert report.runs[bad.run_id]["status"] == "failed"
    # the model cannot be built, so its dense phase fails first; the cell says so
    assert report.runs[bad.run_id]["reason"].startswith("not run: its dense phase")
    assert "ConfigError: invalid model='cnn': needs image inputs" in report.runs[bad.run_id]["reason"]
    status = read_status(run_dir(tmp_path, bad.run_id))
    assert status["status"] == "failed" and "needs image inputs" in status["reason"]
    assert load_result(tmp_path, bad.run_id) is None
    df = queries.runs(tmp_path).set_index("run_id")
    assert df.loc[bad.run_id, "status"] == "failed"
    assert "ConfigError: invalid model='cnn'" in df.loc[bad.run_id, "reason"]
    assert queries.run_metrics(tmp_path, bad.run_id).empty
    assert set(df.loc[[c.run_id for c in good], "status"]) == {"finished"}
    feed = read_progress(tmp_path, "fail")
    assert feed["state"] == "finished" and feed["failed"] == 1
    assert_counts_add_up(feed)


def test_execute_run_reports_failures_as_records(tmp_path):
    rec = execute_run(image_model_on_vectors().to_dict(), str(tmp_path))
    assert rec["status"] == "failed" and "ConfigError" in rec["reason"] and "traceback" in rec
    ok = execute_run(grid(methods=("nft",))[0].to_dict(), str(tmp_path))
    assert ok["status"] == "finished" and ok["cached"] is False and ok["epochs_trained"] == 4
    again = execute_run(grid(methods=("nft",))[0].to_dict(), str(tmp_path))
    assert again["cached"] is True and again["epochs_trained"] == 0


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        run_grid(grid(methods=("nft",)), tmp_path, executor="slurm")


# -- cancel -------------------------------------------------------------------------------
def wait_for(predicate, timeout=60.0, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def progress_or_none(results, job_id):
    try:
        return read_progress(results, job_id)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_cancel_after_the_first_run_stops_the_grid(tmp_path):
    configs = grid(sparsities=(0.7, 0.8, 0.9), settings={**TINY, "finetune_epochs": 30})
    assert len(configs) == 9
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("report", run_grid(configs, tmp_path, workers=1,
                                                                                job_id="stop")))
    worker.start()
    try:
        wait_for(lambda: (p := progress_or_none(tmp_path, "stop")) and p["finished"] >= 1)
        request_cancel(tmp_path, "stop")
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive()
    assert (job_dir(tmp_path, "stop") / "cancel").exists()
    report = out["report"]
    feed = read_progress(tmp_path, "stop")
    assert report.state == feed["state"] == "cancelled"
    assert feed["cancelled"] >= 1 and feed["finished"] >= 1
    assert feed["finished"] + feed["cancelled"] == len(configs)
    assert_counts_add_up(feed)
    cancelled = [rid for rid, e in feed["runs"].items() if e["status"] == "cancelled"]
    assert len(cancelled) == feed["cancelled"]
    for rid in cancelled:  # nothing of a cancelled run was finished or stored as finished
        assert load_result(tmp_path, rid) is None
    stored = queries.runs(tmp_path)
    assert set(stored[stored.status == "finished"].run_id).isdisjoint(cancelled)
    assert len(stored[stored.status == "finished"]) == feed["finished"]


@pytest.mark.slow
def test_cancel_stops_a_pool_from_the_command_line(tmp_path):
    env = subprocess_env(threads=None)
    cmd = [sys.executable, "-m", "ceag", "grid", "--datasets", "synthetic", "--methods", "nft,el_rb,ceag",
           "--sparsities", "0.7,0.8,0.9", "--set", "dense_epochs=2", "--set", "prune_epochs=2", "--epochs", "60",
           "--set", "device=cpu", "--workers", "2", "--job-id", "cli", "--results", str(tmp_path), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (p := progress_or_none(tmp_path, "cli")) and p["finished"] >= 1, timeout=120)
        request_cancel(tmp_path, "cli")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    out = json.loads(stdout)
    feed = read_progress(tmp_path, "cli")
    assert out["state"] == feed["state"] == "cancelled"
    assert feed["cancelled"] >= 1 and feed["finished"] + feed["cancelled"] == 9
    assert_counts_add_up(feed)
    stored = queries.runs(tmp_path).set_index("run_id")
    stopped = 0
    for rid, entry in feed["runs"].items():
        if entry["status"] == "cancelled":
            assert load_result(tmp_path, rid) is None
            folder = run_dir(tmp_path, rid)
            if (folder / "status.json").exists():  # a run stopped mid-way: cancelled everywhere, resumable
                stopped += 1
                assert read_status(folder)["status"] == "cancelled"
                assert stored.loc[rid, "status"] == "cancelled"
    assert stopped >= 1  # two workers were training when the cancel came
    assert set(stored.status) <= {"finished", "cancelled"}
