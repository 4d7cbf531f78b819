"""The shared phases of a run as entry points of their own: dense training and gradual pruning.

A run is dense training -> gradual pruning -> fine-tuning with its method. The first two are
shared: one dense model per ``dense_key`` (``<results>/dense/<key>/``) and one state at the end
of pruning per ``prune_key`` (``<results>/pruned/<key>/``). ``ensure_dense`` and
``ensure_pruned`` produce them (or find them made), so a grid can schedule each phase as a task
of its own that starts as soon as its input exists; ``run.pipeline.run`` calls them itself, so a run
alone still does all its phases.

Each phase folder works like a run folder: an exclusive lock while it trains (a second process
waits and then finds the output), ``status.json`` with ``phase``, ``epoch`` and ``total`` while
it trains, every file written atomically, and ``phase.json`` with its timing once it is done.
The pruning phase checkpoints like a run (``checkpoint.pt``), so a killed pruning resumes to the
same state; the dense phase restarts from its seed, which also ends in the same model.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceag.config.keys import dense_key, prune_key, shares_pruning
from ceag.config.run_config import RunConfig
from ceag.results.files import load_torch, save_torch
from ceag.results.layout import (
    CHECKPOINT,
    DENSE_MODEL,
    DENSE_OUTPUTS,
    PHASE,
    PRUNED_STATE,
    PRUNING_DIVERGED,
    STATUS,
    dense_dir,
    pruned_dir,
)

if TYPE_CHECKING:
    from torch import nn

Progress = Callable[[str, int, int], None]  # (phase, epoch within the phase, epochs in the phase)


@dataclass(frozen=True)
class PhaseResult:
    """What a phase call did: ``trained`` False when the output existed (or is not needed)."""

    kind: str                 # "dense" | "pruning"
    key: str
    trained: bool
    epochs_trained: int = 0
    seconds: float = 0.0      # time this call spent (loading or training), wall clock
    diverged: str | None = None  # pruning only: why the shared pruning diverged (no state kept)
    resumed: bool = False     # continued from the phase's own checkpoint (a killed or stopped call)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "trained": self.trained, "epochs_trained": self.epochs_trained,
                "seconds": round(self.seconds, 3), "resumed": self.resumed,
                **({"diverged": self.diverged} if self.diverged else {})}


def dense_ready(results: Path, cfg: RunConfig) -> bool:
    """Whether the dense model exists (or is given: ``dense_checkpoint``, unless only a backbone)."""
    return bool(cfg.dense_checkpoint) or (dense_dir(results, cfg) / DENSE_MODEL).exists()


def pruned_ready(results: Path, cfg: RunConfig) -> bool:
    folder = pruned_dir(results, cfg)
    return not shares_pruning(cfg) or (folder / PRUNED_STATE).exists() or (folder / PRUNING_DIVERGED).exists()


def _status_writer(folder: Path, phase: str, total: int, progress: Progress | None) -> tuple[dict, Progress]:
    from ceag.results.files import now, write_json

    base = {"status": "running", "phase": phase, "total": total, "started_at": now(), "pid": os.getpid(),
            "host": socket.gethostname()}
    write_json(folder / STATUS, {**base, "epoch": 0}, durable=False)

    def report(_phase: str, done: int, total_: int) -> None:
        write_json(folder / STATUS, {**base, "epoch": done}, durable=False)
        if progress:
            progress(phase, done, total_)

    return base, report


def _finish(folder: Path, base: dict, status: str, started: float, **extra: Any) -> float:
    from ceag.results.files import now, write_json

    seconds = round(time.perf_counter() - started, 3)
    write_json(folder / PHASE, {"phase": base["phase"], "status": status, "started_at": base["started_at"],
                                       "finished_at": now(), "seconds": seconds, "pid": base["pid"],
                                       "host": base["host"], **extra})
    write_json(folder / STATUS, {**base, "status": status, "finished_at": now(), **extra})
    return seconds


def _fail(folder: Path, base: dict, err: BaseException) -> None:
    import contextlib

    from ceag.results.files import now, write_json

    status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    with contextlib.suppress(OSError):
        write_json(folder / STATUS, {**base, "status": status, "reason": f"{type(err).__name__}: {err}",
                                            "finished_at": now()})


def ensure_dense(cfg: RunConfig, results: str | os.PathLike, *, progress: Progress | None = None,
                 wait: bool = True) -> PhaseResult:
    """The dense model of ``cfg`` in ``<results>/dense/<dense_key>/model.pt``: trained unless it exists.

    With a ``dense_checkpoint`` that fits the model as it is, that file is the dense model and
    nothing is trained; one that gives only a backbone (ImageNet weights) is trained from, once.
    Raises what training raises (``DenseDiverged`` when the loss becomes non-finite: nothing is
    kept), ``RunBusy`` when ``wait`` is False and another process trains it.
    """
    from ceag.results.files import run_lock

    results = Path(results)
    key, start = dense_key(cfg), time.perf_counter()
    folder = dense_dir(results, cfg)
    if (folder / DENSE_MODEL).exists():
        return PhaseResult("dense", key, False, seconds=time.perf_counter() - start)
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.training.device import resolve_device
    from ceag.training.engine import train_dense

    initial = None
    if cfg.dense_checkpoint:
        from ceag.training.checkpoints import dense_checkpoint_for

        fitted = dense_checkpoint_for(cfg, load_dataset(cfg, cache_dir(results)))
        if not fitted.needs_training:  # the checkpoint is the dense model
            return PhaseResult("dense", key, False, seconds=time.perf_counter() - start)
        initial = fitted.state
    with run_lock(folder, wait=wait):
        if (folder / DENSE_MODEL).exists():  # trained by another process while we waited
            return PhaseResult("dense", key, False, seconds=time.perf_counter() - start)
        base, report = _status_writer(folder, "dense", cfg.dense_epochs, progress)
        try:
            device = resolve_device(cfg.device)
            data = load_dataset(cfg, cache_dir(results)).to(device)
            model = train_dense(cfg, data, device, report, **({"initial": initial} if initial is not None else {}))
            save_torch(folder / DENSE_MODEL, {k: v.cpu() for k, v in model.state_dict().items()})
        except BaseException as err:
            _fail(folder, base, err)
            raise
        seconds = _finish(folder, base, "finished", start, epochs=cfg.dense_epochs)
    return PhaseResult("dense", key, True, cfg.dense_epochs, seconds)


class _PruningDone(Exception):
    """Raised from the end-of-pruning callback: the pruning phase stops there."""


def ensure_pruned(cfg: RunConfig, results: str | os.PathLike, *, progress: Progress | None = None,
                  wait: bool = True) -> PhaseResult:
    """The state at the end of gradual pruning, ``<results>/pruned/<prune_key>/state.pt``, unless it exists.

    Trains the dense phase first when it is missing. The state is the checkpoint a run takes at
    the start of epoch ``prune_epochs`` (no method acts while pruning, so it serves every method
    and tolerance). A pruning that diverges keeps no state; it writes ``diverged.json`` with the
    reason, and each run then trains its own pruning (and diverges with its own record).
    A no-op when the run has no shared pruning phase (``shares_pruning``).
    """
    from ceag.results.files import run_lock, write_json

    results = Path(results)
    key, start = prune_key(cfg), time.perf_counter()
    folder = pruned_dir(results, cfg)

    def already() -> PhaseResult | None:
        if not shares_pruning(cfg) or (folder / PRUNED_STATE).exists():
            return PhaseResult("pruning", key, False, seconds=time.perf_counter() - start)
        if (folder / PRUNING_DIVERGED).exists():
            from json import loads

            reason = loads((folder / PRUNING_DIVERGED).read_text()).get("reason") or "diverged"
            return PhaseResult("pruning", key, False, seconds=time.perf_counter() - start, diverged=reason)
        return None

    done = already()
    if done is not None:
        return done
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.training.device import resolve_device
    from ceag.training.engine import train

    with run_lock(folder, wait=wait):
        done = already()
        if done is not None:
            return done
        ensure_dense(cfg, results, progress=progress, wait=wait)
        base, report = _status_writer(folder, "pruning", cfg.prune_epochs, progress)
        try:
            device = resolve_device(cfg.device)
            data = load_dataset(cfg, cache_dir(results)).to(device)
            dense = dense_model(cfg, data, results, device)
            resume = load_torch(folder / CHECKPOINT) if (folder / CHECKPOINT).exists() else None
            first = resume["state"]["epoch"] if resume else 0

            def save_pruned(ckpt: dict) -> None:
                save_torch(folder / PRUNED_STATE, ckpt)
                raise _PruningDone

            def pruning_progress(_phase: str, epoch: int, _total: int) -> None:
                report("pruning", epoch, cfg.prune_epochs)

            try:
                outcome = train(cfg, data, dense, device, resume=resume,
                                dense_outputs=dense_outputs(cfg, data, results, dense),
                                save_checkpoint=lambda ckpt: save_torch(folder / CHECKPOINT, ckpt),
                                save_pruned=save_pruned, progress=pruning_progress)
            except _PruningDone:
                outcome = None
        except BaseException as err:
            _fail(folder, base, err)
            raise
        (folder / CHECKPOINT).unlink(missing_ok=True)
        trained = cfg.prune_epochs - first
        if outcome is not None and outcome.diverged is not None:
            reason = f"the shared pruning phase diverged: {outcome.diverged}"
            write_json(folder / PRUNING_DIVERGED, {"reason": reason, "step": outcome.diverged.step})
            seconds = _finish(folder, base, "diverged", start, reason=reason, epochs=trained)
            return PhaseResult("pruning", key, True, trained, seconds, diverged=reason, resumed=first > 0)
        seconds = _finish(folder, base, "finished", start, epochs=trained)
    return PhaseResult("pruning", key, True, trained, seconds, resumed=first > 0)


def dense_model(cfg: RunConfig, data, results: str | os.PathLike, device) -> nn.Module:
    """The dense model of ``cfg`` on ``device``: the checkpoint itself when it fits the model as it is,
    else the model ``ensure_dense`` trained (it is the one function that trains a dense model, under its
    lock). Raises FileNotFoundError when the dense phase has not run."""
    from ceag.training.models import build_model

    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    if cfg.dense_checkpoint:
        from ceag.training.checkpoints import dense_checkpoint_for

        fitted = dense_checkpoint_for(cfg, data)
        if not fitted.needs_training:
            model.load_state_dict(fitted.state)
            return model.to(device)
    path = dense_dir(results, cfg) / DENSE_MODEL
    if not path.exists():
        raise FileNotFoundError(f"the dense model of this run is not in {path.parent}: its dense phase (ensure_dense) "
                                "runs first")
    model.load_state_dict(load_torch(path))
    return model.to(device)


def dense_outputs(cfg: RunConfig, data, results: str | os.PathLike, dense: nn.Module) -> dict:
    """The dense model's outputs on every split of ``data`` (``training.evaluation.Outputs`` by split), on the
    model's device: kept in the dense phase's folder once computed, so every run that shares the dense model
    (and the pruning phase) reads them instead of evaluating it again; computed now for a checkpoint used as
    it is (it has no folder)."""
    from ceag.training.evaluation import Outputs, model_outputs

    folder = dense_dir(results, cfg)
    device = next(dense.parameters()).device
    try:
        stored = load_torch(folder / DENSE_OUTPUTS)
        out = {s: Outputs(stored[s]["pred"], stored[s]["loss"], stored[s]["p_pred"]) for s in data.splits}
        if all(len(out[s].pred) == len(split) for s, split in data.splits.items()):
            return {s: Outputs(o.pred.to(device), o.loss.to(device), o.p_pred.to(device)) for s, o in out.items()}
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        pass  # none yet (or unreadable): computed below
    out = model_outputs(dense, data, cfg.amp, cfg.eval_batch_size)
    if (folder / DENSE_MODEL).exists():
        save_torch(folder / DENSE_OUTPUTS, {s: {"pred": o.pred.cpu(), "loss": o.loss.cpu(), "p_pred": o.p_pred.cpu()}
                                            for s, o in out.items()})
    return out
