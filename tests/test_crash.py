"""A worker killed mid-run leaves a resumable folder whose rerun ends with exactly the numbers of an
uninterrupted run; a second process asking for a run in training is told it is busy."""

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

import ceag.training.engine
from ceag.config.run_config import RunConfig
from ceag.grid.driver import run_grid
from ceag.grid.worker import execute_run
from ceag.results.files import RunBusy, read_status, run_lock
from ceag.results.layout import run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from tests.helpers import ROOT, subprocess_env

pytestmark = pytest.mark.slow

FRAMES = ("run_metrics", "group_metrics", "duals")


def crash_config(finetune_epochs: int) -> RunConfig:
    return RunConfig(dataset="synthetic", model="mlp", method="ceag", sparsity=0.8, tolerance=0.02,
                     dense_epochs=2, prune_epochs=2, finetune_epochs=finetune_epochs, checkpoint_every=1,
                     device="cpu")


def start_cli_run(cfg: RunConfig, results: Path) -> subprocess.Popen:
    """``python -m ceag run`` with every setting of ``cfg``, one torch thread."""
    args = [sys.executable, "-m", "ceag", "run", "--results", str(results), "--json"]
    for key, value in cfg.to_dict().items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    env = subprocess_env()
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(folder: Path, proc: subprocess.Popen, epoch: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before epoch {epoch}: {proc.communicate()}"
        try:
            status = json.loads((folder / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {}
        if status.get("status") == "running" and status.get("epoch", 0) >= epoch \
                and (folder / "checkpoint.pt").exists():
            return status
        time.sleep(0.005)
    raise TimeoutError(f"no epoch {epoch} within {timeout}s")


def test_sigkill_mid_run_then_rerun_resumes_to_identical_results(tmp_path, one_thread):
    cfg = crash_config(finetune_epochs=60)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    folder = run_dir(killed_dir, cfg.run_id)
    proc = start_cli_run(cfg, killed_dir)
    try:
        status = wait_for_epoch(folder, proc, epoch=5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert status["pid"] == proc.pid
    assert [p.name for p in (killed_dir / "runs").iterdir()] == [cfg.run_id]  # the CLI ran this very config
    # a recognisably unfinished, resumable folder
    assert (folder / "checkpoint.pt").exists() and (folder / "config.json").exists()
    assert not (folder / "summary.json").exists()
    assert read_status(folder)["status"] == "interrupted"
    assert load_result(killed_dir, cfg.run_id) is None
    checkpoint_epoch = torch.load(folder / "checkpoint.pt", weights_only=True)["state"]["epoch"]
    assert cfg.prune_epochs < checkpoint_epoch < cfg.total_epochs  # mid fine-tuning, CEAG active

    resumed = run(cfg, killed_dir)
    assert resumed.summary["resumed_from"] == "checkpoint"
    assert resumed.summary["dense_trained"] is False
    assert resumed.summary["epochs_trained"] == cfg.total_epochs - checkpoint_epoch
    assert resumed.summary["threads"] == 1
    assert not (folder / "checkpoint.pt").exists()
    assert read_status(folder)["status"] == "finished"

    clean = run(cfg, clean_dir)
    assert clean.summary["resumed_from"] is None and clean.summary["threads"] == 1
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(clean, name), check_exact=True, obj=name)
    # and the weights it reports
    a = torch.load(folder / "model.pt", weights_only=True)
    b = torch.load(run_dir(clean_dir, cfg.run_id) / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_in_training_elsewhere_is_not_trained_twice(tmp_path, monkeypatch):
    cfg = crash_config(finetune_epochs=120)
    folder = run_dir(tmp_path, cfg.run_id)
    proc = start_cli_run(cfg, tmp_path)
    try:
        wait_for_epoch(folder, proc, epoch=1)
        # without waiting: told at once that another process trains it
        with pytest.raises(RunBusy, match=f"run {cfg.run_id} is being trained by another process"):
            run(cfg, tmp_path, wait=False)
        assert read_status(folder)["status"] == "running" and read_status(folder)["pid"] == proc.pid

        # waiting (the default, and what grid workers do): blocks, then loads what the other process trained
        def refuse(*args, **kwargs):
            raise AssertionError("the run was trained a second time")

        monkeypatch.setattr(ceag.training.engine, "train", refuse)
        monkeypatch.setattr(ceag.training.engine, "train_dense", refuse)
        assert not (folder / "summary.json").exists()
        result = run(cfg, tmp_path)
        rec = execute_run(cfg.to_dict(), str(tmp_path))
        report = run_grid([cfg], tmp_path, workers=1, job_id="twice")
    finally:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, stderr
    assert result.cached is True and result.status == "finished"
    assert result.summary["wall_seconds"] == json.loads(stdout)["wall_seconds"]  # the other process's run
    assert rec["status"] == "finished" and rec["cached"] is True and rec["epochs_trained"] == 0
    assert report.cached == 1 and report.epochs_trained == 0 and report.failed == 0


def test_the_run_lock_dies_with_a_killed_process(tmp_path):
    cfg = crash_config(finetune_epochs=5000)  # runs until killed
    folder = run_dir(tmp_path, cfg.run_id)
    proc = start_cli_run(cfg, tmp_path)
    try:
        wait_for_epoch(folder, proc, epoch=1)
        with pytest.raises(RunBusy):
            run(cfg, tmp_path, wait=False)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (folder / "summary.json").exists()
    with run_lock(folder, wait=False):  # this process may now take the run over
        assert read_status(folder)["status"] == "interrupted"
