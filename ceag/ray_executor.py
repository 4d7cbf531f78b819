"""Run grid stages as Ray tasks on an existing cluster (optional: ``pip install -r requirements-ray.txt``).

A task gets the config and the shared files it needs (dense model, end-of-pruning state) as
bytes, trains in a scratch folder on whichever node Ray picks, and returns the files it wrote.
Only the driver writes into the results folder and ingests, so the cluster's nodes need no
shared file system.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .config import dense_key, prune_key
from .runs import atomic_write


def _shared_files(results: Path, cfg) -> dict[str, bytes]:
    files = {}
    for rel in (f"dense/{dense_key(cfg)}/model.pt", f"pruned/{prune_key(cfg)}/state.pt"):
        path = results / rel
        if path.exists():
            files[rel] = path.read_bytes()
    if cfg.method == "nft_es":  # derived from its NFT run, which must travel too
        nft = cfg.replace(method="nft")
        folder = results / "runs" / nft.run_id
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and not f.name.startswith("."):
                    files[f"runs/{nft.run_id}/{f.name}"] = f.read_bytes()
    return files


def remote_run(cfg_dict: dict[str, Any], shared: dict[str, bytes]) -> dict[str, Any]:
    """Body of a Ray task: run in a scratch results folder, return the record and new files."""
    from .executor import execute_run

    with tempfile.TemporaryDirectory(prefix="ceag-ray-") as tmp:
        root = Path(tmp)
        for rel, data in shared.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        rec = execute_run(cfg_dict, str(root))
        files = {}
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            keep = path.is_file() and rel not in shared and not path.name.startswith(".")
            if keep and not rel.endswith("checkpoint.pt"):
                files[rel] = path.read_bytes()
        return {"record": rec, "files": files}


def run_stages(stages, results, address: str | None, record, cancel_file: Path, wanted: set[str]) -> None:
    try:
        import ray
    except ImportError as err:
        raise RuntimeError("the Ray executor needs Ray: pip install -r requirements-ray.txt") from err
    results = Path(results)
    started_here = not ray.is_initialized()
    if started_here:
        # Ship this package to the cluster's workers so their nodes need no ceag checkout.
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]})
    task = ray.remote(num_cpus=1)(remote_run)
    try:
        for stage in stages:
            refs = {task.remote(cfg.to_dict(), _shared_files(results, cfg)): cfg for cfg in stage}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in done:
                    try:
                        out = ray.get(ref)
                    except Exception as err:  # the task failed outside the run (node lost, disk full)
                        cause = getattr(err, "cause", None) or err
                        rid = refs[ref].run_id
                        record({"run_id": rid, "status": "failed",
                                "reason": f"Ray task failed: {type(cause).__name__}: {cause}"},
                               counted=rid in wanted)
                        continue
                    # Run folders first, summary.json last within each: a crash leaves no half run.
                    items = sorted(out["files"].items(), key=lambda kv: kv[0].endswith("summary.json"))
                    for rel, data in items:
                        atomic_write(results / rel, lambda p, data=data: p.write_bytes(data))
                    rec = out["record"]
                    record(rec, counted=rec["run_id"] in wanted)
                if cancel_file.exists():
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    return
    finally:
        if started_here:
            ray.shutdown()

