"""Grids scheduled by dependency: a cell starts when the phases it needs exist, not after a stage;
a failed phase fails only its dependents; a phase killed midway resumes to the same numbers; two
grids on one folder never train a phase twice; the feed shows each running cell's phase and epoch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ceag.config.grid_spec import GridSpec
from ceag.config.keys import dense_key, prune_key
from ceag.config.run_config import RunConfig
from ceag.grid.driver import run_grid
from ceag.results.files import read_status
from ceag.results.layout import dense_dir, job_dir, pruned_dir, run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from ceag.store import queries
from tests.helpers import ROOT, subprocess_env

TINY = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 3, "device": "cpu"}
STATES = ("pending", "running", "cached", "finished", "diverged", "failed", "cancelled")


def cells(seeds=(0,), methods=("nft", "ceag"), **settings) -> list[RunConfig]:
    return GridSpec(datasets=("synthetic",), methods=methods, sparsities=(0.8,), tolerances=(0.02,), seeds=seeds,
                    settings={**TINY, **settings}).configs()


def assert_counts_add_up(feed: dict) -> None:
    statuses = [e["status"] for e in feed["runs"].values()]
    assert len(statuses) == feed["total"]
    for state in STATES:
        assert statuses.count(state) == feed[state], (state, feed)
    assert sum(feed[s] for s in STATES) == feed["total"]


def task_times(report) -> dict[str, dict]:
    return {p["task"]: p for p in report.phases}


@pytest.mark.slow
def test_a_dependent_cell_runs_while_an_unrelated_long_cell_still_trains(tmp_path):
    # Seed 0: one long NFT run. Seed 1: NFT and CEAG sharing a dense model and a pruned state.
    # In stages, seed 1's CEAG (third stage) would wait for the long run (first stage) to end.
    long_cell = cells(methods=("nft",), finetune_epochs=250)[0]
    short = cells(seeds=(1,))
    snapshots = []
    report = run_grid([long_cell, *short], tmp_path, workers=2, job_id="deps",
                      progress=lambda r: snapshots.append(json.loads(json.dumps(r.to_json()))))
    assert report.finished == 3 and report.failed == 0
    times = task_times(report)
    long_run = times[f"run:{long_cell.run_id}"]
    for cfg in short:
        assert times[f"run:{cfg.run_id}"]["ended"] < long_run["ended"]  # done while the long run trained
    ceag = next(c for c in short if c.method == "ceag")
    assert times[f"run:{ceag.run_id}"]["started"] > times[f"pruning:{prune_key(ceag)}"]["ended"]  # after its input
    assert {p["pid"] for p in report.phases if p["trained"]} and len({p["pid"] for p in report.phases}) == 2

    # The feed saw it: CEAG of seed 1 fine-tuning while the long cell was running, phases and epochs live.
    both = [s for s in snapshots if s["runs"][ceag.run_id].get("phase") == "fine-tuning"
            and s["runs"][long_cell.run_id]["status"] == "running"]
    assert both, "no snapshot shows the dependent cell fine-tuning beside the long one"
    long_epochs = {s["runs"][long_cell.run_id].get("epoch") for s in snapshots
                   if s["runs"][long_cell.run_id].get("phase") == "fine-tuning"} - {None}
    assert len(long_epochs) >= 2  # refreshed while no task ended
    assert all(s["runs"][long_cell.run_id].get("total_epochs") in (None, 2, 250) for s in snapshots)
    for s in snapshots:
        assert_counts_add_up(s)
        assert s["datasets"] == ["synthetic"] and s["methods"] == ["ceag", "nft"] and s["started_at"]
    feed = json.loads((job_dir(tmp_path, "deps") / "progress.json").read_text())
    assert feed["state"] == "finished" and feed["busy_fraction"] > 0
    timeline = json.loads((job_dir(tmp_path, "deps") / "phases.json").read_text())
    assert timeline == report.phases and "phases" not in feed
    assert feed["worker_seconds"] == pytest.approx(sum(p["seconds"] for p in timeline), abs=0.01)
    # each run folder records its phases' timing
    summary = load_result(tmp_path, ceag.run_id).summary
    assert set(summary["phases"]) == {"dense", "pruning", "fine-tuning", "footprint"}
    assert summary["phases"]["fine-tuning"]["seconds"] > 0 and summary["phases"]["pruning"]["trained"] is False
    assert json.loads((pruned_dir(tmp_path, ceag) / "phase.json").read_text())["seconds"] > 0


def test_a_failing_dense_phase_fails_only_its_dependents(tmp_path):
    good = cells(methods=("nft", "nft_es", "ceag"))
    bad = cells(seeds=(1,), methods=("nft", "nft_es", "ceag"), lr=100.0)  # its dense model diverges
    report = run_grid([*bad, *good], tmp_path, workers=1, job_id="dense-fails")
    assert report.finished == 3 and report.failed == 3
    stored = queries.runs(tmp_path).set_index("run_id")
    for cfg in good:
        assert report.runs[cfg.run_id]["status"] == "finished" and load_result(tmp_path, cfg.run_id) is not None
    for cfg in bad:
        reason = report.runs[cfg.run_id]["reason"]
        assert reason.startswith(f"not run: its dense phase ({dense_key(cfg)[:12]}) failed: DenseDiverged")
        assert "lower lr" in reason
        # recorded in its folder and the store, never trained
        assert read_status(run_dir(tmp_path, cfg.run_id))["reason"] == reason
        assert stored.loc[cfg.run_id, "status"] == "failed" and stored.loc[cfg.run_id, "reason"] == reason
        assert not (run_dir(tmp_path, cfg.run_id) / "checkpoint.pt").exists()
    assert read_status(dense_dir(tmp_path, bad[0]))["status"] == "failed"
    assert not pruned_dir(tmp_path, bad[0]).exists()  # nothing downstream ran
    kinds = [p["task"].split(":")[0] for p in report.phases]
    assert kinds.count("dense") == 2 and kinds.count("run") == 2  # the bad seed's runs never started
    feed = json.loads((job_dir(tmp_path, "dense-fails") / "progress.json").read_text())
    assert_counts_add_up(feed)


# -- a kill in the middle of a phase -------------------------------------------------------------
def kill_config() -> RunConfig:
    return RunConfig(dataset="synthetic", model="mlp", method="ceag", sparsity=0.8, tolerance=0.02, dense_epochs=40,
                     prune_epochs=30, finetune_epochs=3, checkpoint_every=1, device="cpu")


def wait_for_phase(folder: Path, proc: subprocess.Popen, epoch: int, checkpoint: bool) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
        try:
            status = json.loads((folder / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {}
        if status.get("status") == "running" and status.get("epoch", 0) >= epoch and (
                not checkpoint or (folder / "checkpoint.pt").exists()):
            return status
        time.sleep(0.005)
    raise TimeoutError(f"no epoch {epoch} in {folder}")


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["dense", "pruning"])
def test_a_kill_in_the_middle_of_a_phase_resumes_to_the_same_numbers(tmp_path, one_thread, phase):
    cfg = kill_config()
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = [sys.executable, "-m", "ceag", "run", "--results", str(killed), "--json"]
    for key, value in cfg.to_dict().items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    proc = subprocess.Popen(args, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    folder = (dense_dir if phase == "dense" else pruned_dir)(killed, cfg)
    try:
        status = wait_for_phase(folder, proc, 5, checkpoint=phase == "pruning")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status["phase"] == phase and status["pid"] == proc.pid
    assert read_status(folder)["status"] == "interrupted"  # its process is gone
    assert read_status(run_dir(killed, cfg.run_id))["status"] == "interrupted"
    assert read_status(run_dir(killed, cfg.run_id))["phase"] == phase  # the run said which phase it was in
    if phase == "pruning":
        saved = torch.load(folder / "checkpoint.pt", weights_only=True)["state"]["epoch"]
        assert 0 < saved < cfg.prune_epochs and not (folder / "state.pt").exists()

    resumed = run(cfg, killed)
    assert resumed.summary["phases"][phase]["trained"] is True
    if phase == "pruning":
        assert resumed.summary["phases"]["pruning"]["resumed"] is True
        assert resumed.summary["phases"]["pruning"]["epochs_trained"] == cfg.prune_epochs - saved
        assert not (folder / "checkpoint.pt").exists()
    fresh = run(cfg, clean)
    for name in ("run_metrics", "group_metrics", "duals"):
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(fresh, name), check_exact=True, obj=name)


@pytest.mark.slow
def test_two_grids_on_one_folder_never_train_a_phase_twice(tmp_path):
    grid = ["grid", "--datasets", "synthetic", "--methods", "nft,nft_es,ceag", "--sparsities", "0.7,0.8",
            "--seeds", "0", "--set", "dense_epochs=10", "--set", "prune_epochs=4", "--epochs", "3",
            "--set", "device=cpu", "--workers", "1", "--json", "--results", str(tmp_path)]
    procs = [subprocess.Popen([sys.executable, "-m", "ceag", *grid, "--job-id", f"g{i}"], cwd=ROOT,
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    trained = [p["task"] for r in reports for p in r["phases"] if p["trained"]]
    assert sorted(set(trained)) == sorted(trained)  # each phase trained by exactly one of the two grids
    assert sum(t.startswith("dense:") for t in trained) == 1 and sum(t.startswith("pruning:") for t in trained) == 2
    assert sum(t.startswith("run:") for t in trained) == 4
    assert sum(r["dense_trained"] for r in reports) == 1
    for r in reports:
        assert r["failed"] == 0 and r["finished"] + r["cached"] == r["total"] == 6
    assert set(queries.runs(tmp_path).status) == {"finished"}
