"""The Ray executor against a local ``ray.init()``: same runs, same numbers as the local executor,
with every run folder written by the driver."""

import json
import sys
import types

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402

import ceag.grid.pool  # noqa: E402
import ceag.grid.ray_cluster  # noqa: E402
from ceag.config.grid_spec import GridSpec  # noqa: E402
from ceag.grid.driver import run_grid  # noqa: E402
from ceag.results.layout import job_dir, run_dir  # noqa: E402
from ceag.results.record import load_result  # noqa: E402
from ceag.store import queries  # noqa: E402

pytestmark = pytest.mark.slow

TINY = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_grid_matches_the_local_executor(local_ray, tmp_path, monkeypatch):
    configs = GridSpec(datasets=("synthetic",), methods=("nft", "nft_es", "el_rb", "ceag"), sparsities=(0.8,),
                       tolerances=(0.01, 0.05), seeds=(0,), settings=TINY).configs()
    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    report = run_grid(configs, ray_dir, executor="ray", job_id="onray")
    assert ray.is_initialized()  # the executor leaves a Ray it did not start running
    assert report.total == report.finished == len(configs) == 5
    assert report.failed == 0
    assert report.dense_trained == 1 and report.epochs_trained == 5 + 3 * 3  # pruning phase shared
    # the same graph as locally: one dense and one pruning task, four fine-tunings, one derived cell
    assert sorted(p["kind"] for p in report.phases) == ["dense", "derive", "pruning", "run", "run", "run", "run"]
    times = {p["task"]: p for p in report.phases}
    for task, p in times.items():
        if task.startswith("run:"):
            assert p["started"] >= max(q["ended"] for q in report.phases if q["kind"] == "pruning")
    assert report.workers == 2  # the cluster's CPUs

    # Ray tasks run with one thread each; train the local reference with one thread too.
    threads = torch.get_num_threads()
    monkeypatch.setattr(ceag.grid.pool, "init_worker", lambda n: torch.set_num_threads(1))
    try:
        local = run_grid(configs, local_dir, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert local.finished == len(configs)

    stored = queries.runs(ray_dir).set_index("run_id")
    assert sorted(stored.index) == sorted(c.run_id for c in configs)
    assert set(stored.status) == {"finished"}
    for cfg in configs:
        folder = run_dir(ray_dir, cfg.run_id)
        on_ray = load_result(ray_dir, cfg.run_id)
        assert on_ray is not None and on_ray.status == "finished"
        # written by the driver from the files the task returned: no lock or checkpoint of a local run
        assert not (folder / ".lock").exists() and not (folder / "checkpoint.pt").exists()
        assert (folder / "model.pt").exists()
        assert on_ray.summary["threads"] == 1
        here = load_result(local_dir, cfg.run_id)
        assert on_ray.final("test")[0]["accuracy"] == here.final("test")[0]["accuracy"]
        assert on_ray.summary["reported_epoch"] == here.summary["reported_epoch"]
        assert len(queries.run_metrics(ray_dir, cfg.run_id)) == len(here.run_metrics)
    es = next(c for c in configs if c.method == "nft_es")
    assert load_result(ray_dir, es.run_id).summary["derived_from"] == es.replace(method="nft").run_id
    assert len(list((ray_dir / "dense").iterdir())) == 1 and len(list((ray_dir / "pruned").iterdir())) == 1
    front = queries.frontier(ray_dir, dataset="synthetic").set_index("run_id")
    for cfg in configs:
        assert front.loc[cfg.run_id, "accuracy"] == load_result(local_dir, cfg.run_id).final("test")[0]["accuracy"]

    # a second Ray grid is all cached
    again = run_grid(configs, ray_dir, executor="ray")
    assert again.cached == len(configs) and again.epochs_trained == 0


def test_ray_feed_shows_the_running_phase_and_epoch(local_ray, tmp_path):
    configs = GridSpec(datasets=("synthetic",), methods=("nft", "ceag"), sparsities=(0.8,), tolerances=(0.02,),
                       seeds=(0,), settings={**TINY, "dense_epochs": 300}).configs()
    snapshots = []
    report = run_grid(configs, tmp_path, executor="ray", job_id="live",
                      progress=lambda r: snapshots.append(json.loads(json.dumps(r.to_json(phases=False)))))
    assert report.finished == 2
    dense = [(e["epoch"], e["total_epochs"]) for s in snapshots for e in s["runs"].values()
             if e.get("phase") == "dense" and e.get("epoch")]
    assert dense and all(total == 300 and 0 < epoch <= 300 for epoch, total in dense)
    for s in snapshots:
        assert sum(s[k] for k in ("pending", "running", "cached", "finished", "diverged", "failed",
                                  "cancelled")) == s["total"] == 2


FAILING_TASK = """
def remote_run(*args):
    raise OSError(28, "No space left on device")
"""


def test_a_failing_ray_task_is_recorded_and_the_grid_goes_on(local_ray, tmp_path, monkeypatch):
    # A task body that fails on the node, shipped by value so Ray's workers can run it.
    module = types.ModuleType("ceag_test_failing_task")
    exec(FAILING_TASK, module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ray.cloudpickle.register_pickle_by_value(module)
    monkeypatch.setattr(ceag.grid.ray_cluster, "remote_run", module.remote_run)
    configs = GridSpec(datasets=("synthetic",), methods=("nft", "ceag"), sparsities=(0.8,), tolerances=(0.02,),
                       seeds=(0,), settings=TINY).configs()
    try:
        report = run_grid(configs, tmp_path, executor="ray", job_id="broken")
    finally:
        feed = json.loads((job_dir(tmp_path, "broken") / "progress.json").read_text())
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert report.failed == len(configs)
    assert all("No space left on device" in e["reason"] for e in report.runs.values())
    assert feed["state"] == "finished" and feed["failed"] == len(configs)
