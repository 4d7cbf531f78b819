"""One run: its phases (dense, pruning, fine-tuning with its method) and its record, or the finished run loaded.

A run writes only inside ``<results>/runs/<run_id>/``, every file atomically: ``config.json``, ``status.json``,
``checkpoint.pt`` while it trains, and when it ends its metrics, traces, predictions and model (with structured
pruning also the model rebuilt without its pruned channels: ``ceag.run.measure``), then ``summary.json`` (written
last: its presence marks a finished run; its ``footprint`` holds what the dense and the pruned model cost).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ceag.config.keys import dense_key, prune_key
from ceag.config.run_config import RunConfig
from ceag.results.files import (
    ensure_writable,
    load_torch,
    now,
    read_status,
    run_lock,
    save_torch,
    write_json,
    write_parquet,
)
from ceag.results.layout import (
    BEST_MODEL,
    CHECKPOINT,
    CONFIG,
    DUALS,
    GROUP_METRICS,
    MODEL,
    PRUNED_STATE,
    RUN_METRICS,
    STATUS,
    SUMMARY,
    pruned_dir,
    resolve_results,
    run_dir,
)
from ceag.results.record import RunResult, load_result
from ceag.run.derived import derive_nft_es
from ceag.run.phases import dense_model, dense_outputs


def run(cfg: RunConfig, results: str | os.PathLike | None = None, *,
        progress: Callable[[str, int, int], None] | None = None, wait: bool = True) -> RunResult:
    """Run ``cfg``, or load it when a finished run with the same id is in ``results``.

    An unfinished run folder (a killed process) resumes from its last checkpoint. NFT+ES is
    NFT with a different reported iterate, so it is derived from the NFT run (run if needed);
    CEAG+VS selects among its CEAG runs (ceag.run.derived), run if needed.
    A run that raises is recorded as failed with its reason, then the error propagates.
    """
    from ceag.datasets.fingerprint import save_cache
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.run.data import resolve

    results = resolve_results(results)
    cfg = resolve(cfg, results)  # the data's fingerprint is part of the run id
    cached = load_result(results, cfg.run_id)
    if cached is not None:
        return cached
    # A missing or malformed dataset fails here, before anything is written.
    data = load_dataset(cfg, cache_dir(results))
    if cfg.dense_checkpoint:
        from ceag.training.checkpoints import dense_checkpoint_for

        dense_checkpoint_for(cfg, data)  # so does a checkpoint that cannot be used
    ensure_writable(results)
    save_cache()  # the data loaded: keep its files' content hashes for the next fingerprint
    folder = run_dir(results, cfg.run_id)
    with run_lock(folder, wait=wait):
        cached = load_result(results, cfg.run_id)  # finished while we waited for the lock
        if cached is not None:
            return cached
        if cfg.method == "nft_es":
            nft = run(cfg.replace(method="nft"), results, progress=progress, wait=wait)
            return derive_nft_es(cfg, nft, results)
        if cfg.method == "ceag_vs":  # derived: selects among its CEAG runs on validation
            from ceag.config.derived import candidate_configs
            from ceag.run.derived import derive_ceag_vs

            found = [run(c, results, progress=progress, wait=wait) for c in candidate_configs(cfg)]
            return derive_ceag_vs(cfg, found, results)
        try:
            return _train_run(cfg, results, folder, progress)
        except BaseException as err:
            if not (folder / CONFIG).exists():
                raise
            status = read_status(folder)
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
            with contextlib.suppress(OSError):  # best effort: the disk may be what failed
                write_json(folder / STATUS, {**status, "status": "interrupted" if isinstance(
                    err, KeyboardInterrupt) else "failed", "reason": reason, "finished_at": now()})
            raise


def _train_run(cfg: RunConfig, results: Path, folder: Path, progress) -> RunResult:
    import torch

    from ceag.config.keys import shares_pruning
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.run.phases import dense_ready, ensure_dense, ensure_pruned, pruned_ready
    from ceag.training.device import resolve_device
    from ceag.training.engine import train
    from ceag.training.methods.heldout import constraint_record

    elapsed = _stopwatch()
    device = resolve_device(cfg.device)
    write_json(folder / CONFIG, cfg.to_dict())
    started = now()
    base_status = {"status": "running", "started_at": started, "pid": os.getpid(),
                   "host": socket.gethostname()}
    # The phase it starts in: the first whose output is missing.
    if not dense_ready(results, cfg):
        first = {"phase": "dense", "epoch": 0, "total": cfg.dense_epochs, "run_epoch": 0}
    elif shares_pruning(cfg) and pruned_ready(results, cfg):
        first = {"phase": "fine-tuning", "epoch": 0, "total": cfg.finetune_epochs, "run_epoch": cfg.prune_epochs}
    else:
        first = _phase_epoch(cfg, 0)
    write_json(folder / STATUS, {**base_status, **first})

    def report(phase: str, done: int, total: int) -> None:
        # The engine counts the run's epochs from the start of pruning; the status names the phase
        # and counts within it ("pruning 3 of 15", "fine-tuning 2 of 45").
        where = _phase_epoch(cfg, done) if phase == "train" else {"phase": phase, "epoch": done, "total": total,
                                                                              "run_epoch": 0}
        write_json(folder / STATUS, {**base_status, **where}, durable=False)
        if progress:
            progress(where["phase"], where["epoch"], where["total"])

    # The shared phases first, each under its own lock (a grid may have run them already).
    dense_phase = ensure_dense(cfg, results, progress=report)
    pruned_phase = ensure_pruned(cfg, results, progress=report)
    tuning_started, tuning_clock = now(), _stopwatch()
    data = load_dataset(cfg, cache_dir(results)).to(device)
    dense = dense_model(cfg, data, results, device)

    resume, resumed_from = None, None
    if (folder / CHECKPOINT).exists():
        resume, resumed_from = load_torch(folder / CHECKPOINT), "checkpoint"
    shares = shares_pruning(cfg)
    pruned_path = pruned_dir(results, cfg) / PRUNED_STATE
    if resume is None and shares and pruned_path.exists():
        # No method is active while pruning, so the saved method state carries nothing; it may come
        # from a run with other method settings (buffer size, ablation), so it is not loaded.
        resume = {**load_torch(pruned_path), "method": None}
        # Pruned by this call: the run did all its phases itself, as if it never stopped.
        resumed_from = ("checkpoint" if pruned_phase.resumed else None) if pruned_phase.trained else "pruned"

    outcome = train(cfg, data, dense, device, resume=resume, dense_outputs=dense_outputs(cfg, data, results, dense),
                    save_checkpoint=lambda ckpt: save_torch(folder / CHECKPOINT, ckpt),
                    progress=report)
    state = outcome.state
    group_metrics = pd.DataFrame(state.group_rows)
    run_metrics = pd.DataFrame(state.run_rows)
    duals = _duals_frame(state)
    from ceag.diagnostics.learning import learning_check
    from ceag.diagnostics.run import run_diagnostics
    from ceag.results.predictions import write_run_predictions

    predictions = write_run_predictions(folder, outcome, data, best=cfg.method == "nft", amp=cfg.amp,
                                        batch_size=cfg.eval_batch_size)
    diagnostics = run_diagnostics(cfg, run_metrics, group_metrics, outcome.constraint_counter,
                                  last_epoch=-1 if outcome.diverged else state.epoch)
    diagnostics["learning"] = learning_check(predictions, data.class_names)
    tuning_seconds = tuning_clock()
    from ceag.run.measure import measure_phase

    footprint, measured = measure_phase(cfg, dense, outcome.model, outcome.masks, outcome.achieved_sparsity,
                                        data.input_shape, folder)
    summary = {
        "run_id": cfg.run_id, "status": "diverged" if outcome.diverged else "finished",
        "reason": str(outcome.diverged) if outcome.diverged else None,
        "diverged_step": outcome.diverged.step if outcome.diverged else None,
        "reported_epoch": outcome.reported_epoch, "best_epoch": state.best_epoch,
        "selection_split": outcome.selection_split,
        "achieved_sparsity": outcome.achieved_sparsity, "model_sparsity": outcome.model_sparsity,
        "channel_sparsity": footprint["channel_sparsity"],
        "group_names": data.group_names, "class_names": data.class_names,
        "dense_key": dense_key(cfg), "prune_key": prune_key(cfg),
        "dense_trained": dense_phase.trained, "resumed_from": resumed_from, "skipped_files": data.skipped or {},
        "data_fingerprint": cfg.data_fingerprint, "data_report": data.report or {},
        "epochs_trained": pruned_phase.epochs_trained + cfg.total_epochs - (resume["state"]["epoch"] if resume else 0),
        "phases": {"dense": dense_phase.to_json(), "pruning": pruned_phase.to_json(),
                   "fine-tuning": {"kind": "fine-tuning", "trained": True, "started_at": tuning_started,
                                   "seconds": tuning_seconds},
                   "footprint": measured},
        "constraint_data": constraint_record(cfg, data),
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "started_at": started, "finished_at": now(),
        "wall_seconds": elapsed(), "diagnostics": diagnostics, "footprint": footprint,
    }
    write_parquet(folder / GROUP_METRICS, group_metrics)
    write_parquet(folder / RUN_METRICS, run_metrics)
    write_parquet(folder / DUALS, duals)
    save_torch(folder / MODEL, {k: v.cpu() for k, v in outcome.model.state_dict().items()})
    if outcome.best_model is not None and cfg.method == "nft":  # NFT+ES is derived from it
        save_torch(folder / BEST_MODEL, outcome.best_model)
    write_json(folder / SUMMARY, summary)
    write_json(folder / STATUS, {"status": summary["status"], "started_at": started,
                                        "finished_at": summary["finished_at"], **_phase_epoch(cfg, state.epoch)})
    (folder / CHECKPOINT).unlink(missing_ok=True)
    return RunResult(cfg, summary, group_metrics, run_metrics, duals, cached=False)


def _phase_epoch(cfg: RunConfig, run_epoch: int) -> dict[str, Any]:
    """Where a run stands after ``run_epoch`` epochs of pruning + fine-tuning: phase, epoch in it, its length.

    ``run_epoch`` (the run's own count, what the store's ``progress_epoch`` holds) travels along.
    """
    E = cfg.prune_epochs
    if 0 < run_epoch <= E or (run_epoch == 0 and E > 0):
        return {"phase": "pruning", "epoch": run_epoch, "total": E, "run_epoch": run_epoch}
    return {"phase": "fine-tuning", "epoch": run_epoch - E, "total": cfg.total_epochs - E, "run_epoch": run_epoch}


def _duals_frame(state) -> pd.DataFrame:
    import numpy as np

    cols = ["step", "epoch", "group_id", "multiplier", "violation"]
    if not state.trace_steps:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    mult = np.asarray(state.trace_multipliers, dtype=np.float64)
    viol = np.asarray(state.trace_violations, dtype=np.float64)
    steps, groups = mult.shape
    return pd.DataFrame({
        "step": np.repeat(state.trace_steps, groups), "epoch": np.repeat(state.trace_epochs, groups),
        "group_id": np.tile(np.arange(groups), steps),
        "multiplier": mult.ravel(), "violation": viol.ravel(),
    })


def _stopwatch() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: round(time.perf_counter() - start, 3)
