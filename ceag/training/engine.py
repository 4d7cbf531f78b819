"""The training loop: the dense model, then gradual pruning and fine-tuning with a method, with per-epoch
metrics.

The loop is one flat function (``train``) with small helpers beside it. Everything a run needs to
continue is in ``TrainState``; it is saved at the start of an epoch, so a run resumed from a
checkpoint ends with the same numbers as one that never stopped (CPU, same thread count).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ceag.config.run_config import RunConfig
from ceag.config.schedule import lr_at, window_first_epoch
from ceag.config.vocabulary import CHANNEL_PRUNING
from ceag.datasets.base import GroupedDataset, Split, batches
from ceag.training.criteria import criterion_masks
from ceag.training.device import autocast
from ceag.training.evaluation import Outputs, dense_reference, metric_rows, model_outputs, stats_of
from ceag.training.fairgrape import fairgrape_masks
from ceag.training.methods import Diverged, Method, get_method
from ceag.training.metrics import GroupStats
from ceag.training.models import build_model
from ceag.training.optim import LastLayerDecay, make_optimizer
from ceag.training.pruning import CHANNEL_KINDS, MagnitudePruner, cubic_sparsity, model_sparsity
from ceag.training.structured import channel_groups, channel_masks

Progress = Callable[[str, int, int], None]  # (phase, done, total)


def _train_batches(split: Split, batch_size: int, generator: torch.Generator, flip: bool = False):
    """Shuffled training batches of one epoch (see ``batches``).

    A last batch of a single sample after larger ones is dropped (batch norm cannot normalize one
    sample in training mode; dropped for every model, so runs keep their numbers). With
    ``batch_size`` 1, which the config allows only for models without batch norm
    (``config.BATCH_NORM_FREE_MODELS``), every sample is a batch and every one trains.
    """
    for batch in batches(split, batch_size, generator, flip=flip):
        if len(batch) > 1 or batch_size == 1:
            yield batch


# Tells the pruning events' batch stream apart from every other stream drawn from the run's seed.
EVENT_STREAM = 0x5EED_E7E7


def _event_batches(cfg: RunConfig, data: GroupedDataset, epoch: int):
    """Training batches for the pruning event at the start of ``epoch`` (SNIP, FairGRAPE), drawn from a
    generator of their own seeded by (seed, epoch): the run's training order is untouched, and a resumed run
    reads the same batches again. Lazy: only the batches a criterion reads are prepared."""
    seed = int(np.random.SeedSequence([cfg.seed, epoch, EVENT_STREAM]).generate_state(1)[0])
    return _train_batches(data.splits["train"], cfg.batch_size, torch.Generator().manual_seed(seed), data.flip)


def _prune_event(cfg: RunConfig, data: GroupedDataset, model: nn.Module, pruner: MagnitudePruner, method: Method,
                 epoch: int) -> None:
    """The masks of the pruning event at the start of ``epoch`` (0..prune_epochs), at the cubic schedule's sparsity.

    Magnitude: ``prune_to_``, the smallest weights of the pruner's kind. A method that selects masks (FairGRAPE)
    chooses them by ``fairgrape_masks``; SNIP and SynFlow by ``criterion_masks`` for the run's kind of pruning;
    those masks are installed by ``set_masks_``. Pruned weights stay pruned.
    """
    sparsity = cubic_sparsity(epoch, cfg.sparsity, cfg.prune_epochs)
    if not method.selects_masks and cfg.criterion == "magnitude":
        pruner.prune_to_(sparsity)
        return
    if sparsity <= 0.0:  # nothing to prune: every mask stays as it is
        return
    if method.selects_masks:
        masks = fairgrape_masks(model, pruner.masks, _event_batches(cfg, data, epoch), data.num_groups, sparsity,
                                rounding=cfg.prune_rounding, num_batches=cfg.fairgrape_batches,
                                para_batch=cfg.fairgrape_para_batch, order=cfg.fairgrape_order)
    else:
        masks = criterion_masks(cfg.criterion, model, pruner.masks, sparsity, kind=cfg.pruning,
                                rounding=cfg.prune_rounding, batches=_event_batches(cfg, data, epoch),
                                num_batches=cfg.criterion_batches, input_shape=data.input_shape,
                                iterations=cfg.synflow_iterations)
    pruner.set_masks_(masks)


def make_pruner(cfg: RunConfig, model: nn.Module, input_shape: tuple[int, ...]) -> MagnitudePruner:
    """The run's pruner for ``model`` (its layers, masks, masked batch norm). Channel kinds ("channels",
    "channels_global") choose masks by ``channel_masks`` of the model's channel groups, traced once here at
    ``input_shape`` (one sample's, e.g. ``data.input_shape``): layerwise or global, with the run's rounding."""
    pruner = MagnitudePruner(model, cfg.pruning, dense_first_conv=cfg.dense_first_conv,
                             dense_last_layer=cfg.dense_last_layer, rounding=cfg.prune_rounding,
                             masked_bn=cfg.masked_bn)
    if cfg.pruning in CHANNEL_KINDS:
        groups = channel_groups(model, pruner.layers, tuple(input_shape))
        mode = CHANNEL_PRUNING[cfg.pruning]

        def choose(masks, sparsity: float):
            return channel_masks(model, groups, sparsity, mode=mode, rounding=cfg.prune_rounding, masks=masks)

        pruner.choose = choose
    return pruner


class DenseDiverged(ValueError):
    """The dense model's training loss became non-finite (the settings, lr first, are to blame); nothing is kept."""


def train_dense(cfg: RunConfig, data: GroupedDataset, device: torch.device,
                progress: Progress | None = None, initial: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Train the dense model for ``cfg.dense_epochs`` with the dense recipe.

    Optimizer ``dense_optimizer`` (SGD with the run's momentum and Nesterov setting, or Adam),
    learning rate ``dense_lr``, weight decay ``dense_weight_decay`` and batch ``dense_batch_size``
    (each None: the fine-tuning value), step decay x0.1 at ``dense_lr_milestones`` (None: 50 % and
    75 %). ``initial``: weights to start from (an ImageNet backbone) instead of a fresh model.
    """
    from ceag.training.memory import keep_freed_memory

    keep_freed_memory()
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    if initial is not None:
        model.load_state_dict(initial)
    model = model.to(device)
    optimizer = make_optimizer(model, cfg, dense=True)
    base_lr = cfg.dense_lr if cfg.dense_lr is not None else cfg.lr
    milestones = cfg.dense_lr_milestones if cfg.dense_lr_milestones is not None else (0.5, 0.75)
    batch_size = cfg.dense_batch_size or cfg.batch_size
    generator = torch.Generator().manual_seed(cfg.seed)
    train_split = data.splits["train"]
    model.train()
    for epoch in range(cfg.dense_epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, cfg.dense_epochs, base_lr, milestones, 0.1)
        finite = torch.ones((), dtype=torch.bool, device=device)  # checked once per epoch: no sync per step
        for batch in _train_batches(train_split, batch_size, generator, data.flip):
            with autocast(device, cfg.amp):
                logits = model(batch.x)
            loss = F.cross_entropy(logits.float(), batch.y)
            finite &= torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not bool(finite):
            raise DenseDiverged(f"training the dense model diverged in epoch {epoch + 1} of {cfg.dense_epochs}: "
                                f"its loss became non-finite (lr {base_lr:g}); lower lr. Nothing was saved.")
        if progress:
            progress("dense", epoch + 1, cfg.dense_epochs)
    return model


@dataclass
class TrainState:
    """Everything needed to continue a run from the start of ``epoch``."""

    epoch: int = 0
    step: int = 0
    group_rows: list[dict[str, Any]] = field(default_factory=list)
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    trace_steps: list[int] = field(default_factory=list)
    trace_epochs: list[int] = field(default_factory=list)
    trace_multipliers: list[list[float]] = field(default_factory=list)
    trace_violations: list[list[float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float = -math.inf
    best_model: dict[str, torch.Tensor] | None = None


@dataclass
class TrainOutcome:
    state: TrainState
    model: nn.Module            # the model the run reports (best iterate for NFT+ES)
    reported_epoch: int
    selection_split: str
    achieved_sparsity: float
    model_sparsity: float
    diverged: Diverged | None
    dense_stats: dict[str, GroupStats]
    best_model: dict[str, torch.Tensor] | None  # weights of the best iterate (NFT+ES reports it)
    constraint_counter: dict | None = None  # the constrained method's dual-step tallies (diagnostics)
    # Per split, from the evaluation passes the run made anyway (so predictions need no pass of their own):
    # the reported model's outputs, the best iterate's (None when it was found before a resume) and the
    # dense model's.
    outputs: dict[str, Outputs] | None = None
    best_outputs: dict[str, Outputs] | None = None
    dense_outputs: dict[str, Outputs] | None = None
    # The pruner's masks at the end (the reported model's: the best iterate is chosen after pruning ends), on the
    # CPU; ``model`` keeps its masked batch norms, so it can be rebuilt without its pruned channels.
    masks: dict[str, torch.Tensor] | None = None


def train(cfg: RunConfig, data: GroupedDataset, dense_model: nn.Module, device: torch.device, *,
          resume: dict | None = None,
          save_checkpoint: Callable[[dict], None] | None = None,
          save_pruned: Callable[[dict], None] | None = None,
          progress: Progress | None = None,
          dense_outputs: dict[str, Outputs] | None = None) -> TrainOutcome:
    """Prune and fine-tune a copy of ``dense_model``; ``resume`` is a checkpoint dict.

    ``dense_outputs``: the dense model's outputs on every split, when already known (the dense phase keeps
    them); otherwise they are computed here, once.
    """
    from ceag.training.memory import keep_freed_memory

    keep_freed_memory()
    G, E, total = data.num_groups, cfg.prune_epochs, cfg.total_epochs
    splits = list(data.splits)
    selection_split = "val" if "val" in data.splits else "test"
    if dense_outputs is None:
        dense_outputs = model_outputs(dense_model, data, cfg.amp, cfg.eval_batch_size)
    dense_stats = {s: stats_of(dense_outputs[s], data.splits[s], G) for s in splits}
    last_outputs: dict[str, Outputs] | None = None
    best_outputs: dict[str, Outputs] | None = None

    model = copy.deepcopy(dense_model).to(device)
    pruner = make_pruner(cfg, model, data.input_shape)
    optimizer = make_optimizer(model, cfg)
    decay_last = LastLayerDecay(model, optimizer, cfg) if cfg.weight_decay_scope == "last_layer" else None
    method = get_method(cfg.method)(cfg, G, dense_reference(dense_stats["train"], device), device)
    if cfg.constraint_data == "val":  # held-out multipliers: the dual step reads validation batches
        from ceag.training.methods.heldout import attach_heldout

        attach_heldout(method, model, data, dense_stats, cfg)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    state = TrainState()

    if resume is not None:
        model.load_state_dict(resume["model"])
        pruner.load_state_dict(resume["masks"])
        optimizer.load_state_dict(resume["optimizer"])
        if resume.get("method"):
            method.load_state_dict(resume["method"])
        generator.set_state(resume["generator"])
        state = TrainState(**resume["state"])
    else:
        for s in splits:
            rows, run_row = metric_rows(0, s, dense_stats[s], dense_stats[s], 0.0, data.group_names)
            state.group_rows += rows
            state.run_rows.append(run_row)

    def checkpoint() -> dict:
        return {"model": model.state_dict(), "masks": pruner.state_dict(),
                "optimizer": optimizer.state_dict(), "method": method.state_dict(),
                "generator": generator.get_state(), "state": copy.deepcopy(state.__dict__)}

    train_split = data.splits["train"]
    steps_per_epoch = sum(1 for _ in range(0, len(train_split), cfg.batch_size))
    first_active = 0 if cfg.mitigation_start == "start" else E
    active_steps = max(1, steps_per_epoch * (total - first_active))
    trace_every = max(1, math.ceil(active_steps / cfg.max_trace_points))
    # The convergence diagnostic needs every epoch of its window evaluated, whatever eval_every says.
    first_window = window_first_epoch(total, cfg.finetune_epochs)
    diverged = None

    model.train()
    for epoch in range(state.epoch, total):
        if epoch == E and epoch > 0 and save_pruned is not None:
            save_pruned(checkpoint())
        if epoch <= E:
            _prune_event(cfg, data, model, pruner, method, epoch)
        lr = lr_at(epoch, total, cfg.lr, cfg.lr_milestones, cfg.lr_gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr
        active = method.mitigates and epoch >= first_active
        if method.counter is not None:
            method.counter.in_window = epoch + 1 >= first_window
        try:
            for batch in _train_batches(train_split, cfg.batch_size, generator, data.flip):
                with autocast(device, cfg.amp):
                    logits = model(batch.x).float()
                loss = F.cross_entropy(logits, batch.y, reduction="none")
                correct = logits.detach().argmax(1) == batch.y
                if decay_last is not None:
                    decay_last.before_objective(method, active)
                objective = method.objective(loss, correct, batch.g, active)
                method.check_finite(state.step, objective)
                if decay_last is not None:
                    decay_last.before_step(method, active)
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                pruner.apply_()
                if active and method.multipliers is not None and state.step % trace_every == 0:
                    state.trace_steps.append(state.step)
                    state.trace_epochs.append(epoch)
                    state.trace_multipliers.append(method.multipliers.tolist())
                    violations = method.violations
                    assert violations is not None  # a method with multipliers has violations
                    state.trace_violations.append(violations.tolist())
                state.step += 1
        except Diverged as err:
            diverged = err
        done = epoch + 1
        last = done == total or diverged is not None
        if last or done % cfg.eval_every == 0 or done == E or done >= first_window:
            sparsity = pruner.achieved_sparsity()
            last_outputs = model_outputs(model, data, cfg.amp, cfg.eval_batch_size)
            for s in splits:
                stats = stats_of(last_outputs[s], data.splits[s], G)
                rows, run_row = metric_rows(done, s, stats, dense_stats[s], sparsity, data.group_names)
                state.group_rows += rows
                state.run_rows.append(run_row)
                if s == selection_split and epoch >= E and stats.overall_accuracy > state.best_score:
                    state.best_score = stats.overall_accuracy
                    state.best_epoch = done
                    state.best_model = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    best_outputs = last_outputs
        state.epoch = done
        if progress:
            progress("train", done, total)
        if diverged is not None:
            break
        if save_checkpoint is not None and done % cfg.checkpoint_every == 0 and done < total:
            save_checkpoint(checkpoint())

    reported, reported_outputs = state.epoch, last_outputs
    if method.selects_best and state.best_model is not None and diverged is None:
        model.load_state_dict(state.best_model)
        assert state.best_epoch is not None  # set with best_model
        reported, reported_outputs = state.best_epoch, best_outputs
    return TrainOutcome(state=state, model=model, reported_epoch=reported,
                        selection_split=selection_split,
                        achieved_sparsity=pruner.achieved_sparsity(),
                        model_sparsity=model_sparsity(model), diverged=diverged,
                        dense_stats=dense_stats, best_model=state.best_model, outputs=reported_outputs,
                        best_outputs=best_outputs, dense_outputs=dense_outputs, masks=pruner.state_dict(),
                        constraint_counter=method.counter.state_dict() if method.counter is not None else None)
