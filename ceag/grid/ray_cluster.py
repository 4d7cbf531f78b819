"""Run a grid's phase graph as Ray tasks on a cluster (optional: ``pip install -r requirements-ray.txt``).

Each task of ``grid.plan`` becomes one Ray task whose arguments include the ObjectRefs of the
tasks it depends on, so Ray itself starts it once they are done, on whichever node it picks.
A task gets its inputs' files (dense model, end-of-pruning state, the NFT run behind an NFT+ES
cell) as bytes, from its dependencies' results or, when they were made earlier, from the
driver's results folder; it trains in a scratch folder and returns the files it wrote. Only the
driver writes into the results folder and ingests, so the nodes need no shared file system.
Running tasks report their phase and epoch to a small progress actor the driver polls.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

from ceag.config.derived import training_configs
from ceag.grid.plan import Task
from ceag.results.files import atomic_write
from ceag.results.layout import SUMMARY, run_dir

REPORT_SECONDS = 0.5  # a task sends its epoch at most this often (and at the end of each phase)


class ProgressBoard:
    """A Ray actor: the latest phase and epoch of every running task, by task id."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}

    def update(self, task_id: str, phase: str, epoch: int, total: int) -> None:
        self.tasks[task_id] = {"status": "running", "phase": phase, "epoch": epoch, "total": total}

    def done(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.tasks)


def _files_on_disk(results: Path, task: Task) -> dict[str, bytes]:
    """Inputs made before this grid (or by another process): what the task's dependencies will not send."""
    from ceag.config.keys import dense_key, prune_key

    cfg, files = task.cfg, {}
    wanted = [f"dense/{dense_key(cfg)}/model.pt", f"pruned/{prune_key(cfg)}/state.pt",
              f"pruned/{prune_key(cfg)}/diverged.json"]
    for rel in wanted:
        path = results / rel
        if path.exists():
            files[rel] = path.read_bytes()
    if task.kind == "derive":  # derived from its trained runs (NFT; CEAG+VS's CEAG runs), which must travel too
        for source in training_configs(cfg):
            folder = run_dir(results, source.run_id)
            if (folder / SUMMARY).exists():
                for f in folder.iterdir():
                    if f.is_file() and not f.name.startswith("."):
                        files[f"runs/{source.run_id}/{f.name}"] = f.read_bytes()
    return files


def remote_run(task_id: str, kind: str, cfg_dict: dict[str, Any], shared: dict[str, bytes], board,
               *inputs: dict[str, Any]) -> dict[str, Any]:
    """Body of a Ray task: ``inputs`` are the results of the tasks it depends on (Ray resolves the refs)."""
    from ceag.grid.worker import execute_task

    for dep in inputs:
        if dep["record"]["status"] == "failed":  # the driver has recorded why; nothing to do here
            return {"record": {"status": "failed", "reason": "an input failed", "skipped": True}, "files": {}}
    last = [0.0]

    def progress(phase: str, epoch: int, total: int) -> None:
        now = time.monotonic()
        if epoch >= total or now - last[0] >= REPORT_SECONDS:
            last[0] = now
            board.update.remote(task_id, phase, epoch, total)

    with tempfile.TemporaryDirectory(prefix="ceag-ray-") as tmp:
        root = Path(tmp)
        given = dict(shared)
        for dep in inputs:
            given.update(dep["files"])
        for rel, data in given.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        board.update.remote(task_id, {"run": "fine-tuning", "derive": "fine-tuning"}.get(kind, kind), 0, 0)
        try:
            rec = execute_task(task_id, kind, cfg_dict, str(root), progress)
        finally:
            board.done.remote(task_id)
        files = {}
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            keep = path.is_file() and rel not in given and not path.name.startswith(".")
            if keep and not rel.endswith("checkpoint.pt"):
                files[rel] = path.read_bytes()
        return {"record": rec, "files": files}


def run_graph(graph, results, address: str | None, cancel_file: Path) -> int:
    """Submit every task of ``graph`` at once, each after its inputs; record them as they end.

    Returns the cluster's CPU count (the workers a busy fraction is measured against).
    """
    try:
        import ray
    except ImportError as err:
        raise RuntimeError("the Ray executor needs Ray: pip install -r requirements-ray.txt") from err
    from ceag.grid.scheduler import CANCELLED

    results = Path(results)
    started_here = not ray.is_initialized()
    if started_here:
        # Ship this package to the cluster's workers so their nodes need no ceag checkout.
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"py_modules": [str(Path(__file__).resolve().parents[1])]})
    task_fn = ray.remote(num_cpus=1, max_retries=0)(remote_run)
    # ray types an actor handle's methods without .remote (unless decorated with @ray.method) and
    # is absent where the optional requirements are not installed: the handle is typed loosely.
    board: Any = ray.remote(num_cpus=0)(ProgressBoard).remote()
    latest: dict[str, dict[str, Any]] = {}
    try:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        refs: dict[str, Any] = {}
        tasks_by_ref: dict[Any, Task] = {}
        for task in graph.submission_order():
            ref = task_fn.remote(task.id, task.kind, task.cfg.to_dict(), _files_on_disk(results, task), board,
                                 *[refs[d] for d in task.deps])
            refs[task.id] = ref
            tasks_by_ref[ref] = task
        pending = list(tasks_by_ref)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            latest.clear()
            latest.update(ray.get(board.snapshot.remote()))
            for tid in latest:
                if graph.state.get(tid) == "pending":
                    graph.start(graph.tasks[tid], lambda tid=tid: latest.get(tid))
            for ref in done:
                task = tasks_by_ref[ref]
                if graph.state[task.id] == "skipped":  # an input failed; the driver recorded why
                    continue
                try:
                    out = ray.get(ref)
                except Exception as err:  # the task failed outside the run (node lost, disk full)
                    cause = getattr(err, "cause", None) or err
                    graph.end(task, {"status": "failed", "reason": f"Ray task failed: {type(cause).__name__}: {cause}"})
                    continue
                # Run folders first, summary.json last within each: a crash leaves no half run.
                items = sorted(out["files"].items(), key=lambda kv: kv[0].endswith("summary.json"))
                for rel, data in items:
                    atomic_write(results / rel, functools.partial(Path.write_bytes, data=data))
                graph.end(task, out["record"])
            if cancel_file.exists():
                running = [graph.tasks[t] for t, s in graph.state.items() if s == "running"]
                for ref in pending:
                    ray.cancel(ref, force=True)
                graph.stop(CANCELLED, running)
                return workers
        return workers
    finally:
        ray.kill(board)
        if started_here:
            ray.shutdown()
