"""A run whose dual step is far too large stops, is recorded as diverged, and stays off the frontiers.

docs/troubleshooting.md ("Diverged runs"): a multiplier beyond ``divergence_threshold`` stops that run, recorded
as ``diverged`` with the step and the reason; the rest of the grid goes on; ``run`` exits 3; the app keeps diverged
runs off the frontiers unless asked, and then draws them with open markers.
"""

import json
import subprocess
import sys

import pytest
import torch

from ceag.config.run_config import RunConfig
from ceag.grid import driver as executor
from ceag.grid import pool
from ceag.present.plots import frontier as plots
from ceag.results.files import read_status
from ceag.results.layout import run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from ceag.store import queries
from tests.helpers import ROOT, subprocess_env

TINY = dict(dataset="synthetic", model="mlp", sparsity=0.8, dense_epochs=2, prune_epochs=1, finetune_epochs=3,
            device="cpu")
# EL+RB's multipliers are unprojected and grow by dual_lr * |L_g - L| per step: with 1e3 they pass
# the default limit of 1e6 within the first fine-tuning epoch.
EXPLODING = RunConfig(method="el_rb", dual_lr=1e3, **TINY)
CALM = [RunConfig(method="nft", **TINY), RunConfig(method="ceag", tolerance=0.02, **TINY)]


def test_a_too_large_dual_step_stops_the_run_as_diverged(tmp_path, one_thread):
    result = run(EXPLODING, tmp_path)
    s = result.summary
    assert result.status == s["status"] == "diverged"
    assert isinstance(s["diverged_step"], int) and s["diverged_step"] >= 0
    assert "a multiplier reached" in s["reason"] and "(limit 1e+06)" in s["reason"] and "lower dual_lr" in s["reason"]
    assert f"diverged at step {s['diverged_step']}" in s["reason"]
    # it stopped: fewer epochs than scheduled, evaluated where it stopped
    assert EXPLODING.prune_epochs <= s["reported_epoch"] < EXPLODING.total_epochs
    assert result.run_metrics["epoch"].max() == s["reported_epoch"]
    # the multiplier trace ends at the step it diverged, beyond the limit
    assert result.duals["step"].max() <= s["diverged_step"]
    assert read_status(run_dir(tmp_path, EXPLODING.run_id))["status"] == "diverged"
    # a diverged run is final: asking again loads it, it is not trained again
    again = run(EXPLODING, tmp_path)
    assert again.cached and again.status == "diverged" and again.summary["diverged_step"] == s["diverged_step"]


def test_a_small_divergence_threshold_names_its_limit(tmp_path, one_thread):
    cfg = RunConfig(method="ceag", tolerance=0.0, dual_lr=1e3, divergence_threshold=10.0, **TINY)
    result = run(cfg, tmp_path)
    assert result.status == "diverged"
    assert "(limit 10)" in result.summary["reason"] and "multiplier" in result.summary["reason"]


def test_a_non_finite_objective_stops_the_run_as_diverged(tmp_path, one_thread):
    # the loss overflows at once (no dense epochs: the untrained model is the reference)
    cfg = RunConfig(method="nft", lr=100.0, **{**TINY, "dense_epochs": 0})
    result = run(cfg, tmp_path)
    assert result.status == "diverged"
    assert isinstance(result.summary["diverged_step"], int)
    assert "training objective is nan" in result.summary["reason"] or "training objective is inf" in \
        result.summary["reason"]
    assert result.summary["reported_epoch"] < cfg.total_epochs


def test_a_dense_model_that_diverges_stops_the_run_and_is_not_kept(tmp_path, one_thread):
    from ceag.training.engine import DenseDiverged

    cfg = RunConfig(method="nft", lr=100.0, **TINY)
    with pytest.raises(DenseDiverged, match=r"training the dense model diverged in epoch 1 of 2: .*lr 100.*lower lr"):
        run(cfg, tmp_path)
    assert not (tmp_path / "dense").exists() or not any((tmp_path / "dense").rglob("model.pt"))
    # in a grid it is one failed run with that reason, and the rest goes on
    report = executor.run_grid([cfg, *CALM], tmp_path, workers=1)
    assert report.failed == 1 and report.finished == len(CALM)
    assert "training the dense model diverged" in report.runs[cfg.run_id]["reason"]


def test_the_command_line_exits_3_for_a_diverged_run(tmp_path):
    args = [sys.executable, "-m", "ceag", "run", "--results", str(tmp_path)]
    for key, value in EXPLODING.to_dict().items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    env = subprocess_env()
    proc = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run_id"] == EXPLODING.run_id and out["status"] == "diverged"
    assert "multiplier" in out["reason"] and "limit" in out["reason"]
    # asked again, the cached run still exits 3, and the text output says why
    text = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert text.returncode == 3 and "diverged" in text.stdout and "reason: diverged at step" in text.stdout


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The exploding EL+RB run between two calm ones, through run_grid with one worker, one thread."""
    results = tmp_path_factory.mktemp("grid")
    threads = torch.get_num_threads()
    configs = [CALM[0], EXPLODING, CALM[1]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pool, "init_worker", lambda _threads: torch.set_num_threads(1))
        try:
            report = executor.run_grid(configs, results, workers=1, job_id="divergence")
        finally:
            torch.set_num_threads(threads)
    return results, report


def test_the_grid_records_the_diverged_run_and_finishes_the_others(grid):
    results, report = grid
    assert (report.total, report.diverged, report.finished, report.failed) == (3, 1, 2, 0)
    assert report.runs[EXPLODING.run_id]["status"] == "diverged"
    assert "multiplier" in report.runs[EXPLODING.run_id]["reason"]
    for cfg in CALM:
        assert report.runs[cfg.run_id]["status"] == "finished"
        assert load_result(results, cfg.run_id).summary["reported_epoch"] == cfg.total_epochs
    feed = json.loads((results / "jobs" / "divergence" / "progress.json").read_text())
    assert feed["state"] == "finished" and feed["diverged"] == 1 and feed["finished"] == 2
    stored = queries.runs(results).set_index("run_id")
    assert stored.loc[EXPLODING.run_id, "status"] == "diverged"
    summary = load_result(results, EXPLODING.run_id).summary
    assert stored.loc[EXPLODING.run_id, "diverged_step"] == summary["diverged_step"]
    assert "multiplier" in stored.loc[EXPLODING.run_id, "reason"]
    assert set(stored.loc[[c.run_id for c in CALM], "status"]) == {"finished"}


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_frontier_leaves_diverged_runs_out_unless_asked(grid, split):
    results, _ = grid
    default = queries.frontier(results, dataset="synthetic", split=split)
    assert set(default["run_id"]) == {c.run_id for c in CALM}
    assert set(default["status"]) == {"finished"}
    asked = queries.frontier(results, dataset="synthetic", split=split, include_diverged=True)
    assert set(asked["run_id"]) == {c.run_id for c in [*CALM, EXPLODING]}
    assert asked.set_index("run_id").loc[EXPLODING.run_id, "status"] == "diverged"


def test_frontier_summary_counts_diverged_runs(grid):
    results, _ = grid
    default = queries.frontier_summary(results, dataset="synthetic")
    assert "el_rb" not in set(default["method"])
    assert default["diverged"].sum() == 0
    asked = queries.frontier_summary(results, dataset="synthetic", include_diverged=True).set_index("method")
    assert asked.loc["el_rb", "diverged"] == 1 and asked.loc["el_rb", "seeds"] == 1
    assert list(asked.loc["el_rb", "run_ids"]) == [EXPLODING.run_id]
    assert asked.loc["nft", "diverged"] == 0 and asked.loc["ceag", "diverged"] == 0


def test_the_frontier_plot_draws_a_diverged_cell_open(grid):
    results, _ = grid
    fig = plots.frontier(queries.frontier_summary(results, dataset="synthetic", include_diverged=True))
    symbols = {t.name: list(t.marker.symbol) for t in fig.data
               if t.mode == "markers" and t.name != "dense model" and t.legendgroup != "sparsity"}  # symbol legend
    assert set(symbols) == {"NFT", "EL+RB", "CEAG"}
    assert all(s.endswith("-open") for s in symbols["EL+RB"])
    assert not any(s.endswith("-open") for s in symbols["NFT"] + symbols["CEAG"])
    # without diverged runs the method is not drawn at all
    calm = plots.frontier(queries.frontier_summary(results, dataset="synthetic"))
    assert "EL+RB" not in {t.name for t in calm.data}
