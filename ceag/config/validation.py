"""Validation of a ``RunConfig``: every setting checked, with a message naming the setting, the value and
what is allowed; defaults that depend on other settings (the dataset's target and groups, the tolerance of
CEAG) filled in."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from ceag.config.errors import ConfigError, is_int, is_number
from ceag.config.identity import builtin_fingerprint
from ceag.config.registry import (
    DATASETS,
    DEFAULT_GROUPS,
    DEFAULT_RARE_GROUPS,
    DEFAULT_TARGET,
    GROUP_ATTRIBUTES,
    TARGETS,
)
from ceag.config.vocabulary import (
    BATCH_NORM_FREE_MODELS,
    CHANNEL_PRUNING,
    CONSTRAINT_DATA,
    CRITERIA,
    DEFAULT_TOLERANCE,
    DENSE_OPTIMIZERS,
    DEVICES,
    FAIRGRAPE_ORDERS,
    HELDOUT_METHODS,
    MASK_METHODS,
    METHODS,
    MITIGATING_METHODS,
    MITIGATION_START,
    MODELS,
    OVERALL_ESTIMATES,
    PRUNE_ROUNDING,
    PRUNING,
    TOLERANCE_METHODS,
    WEIGHT_DECAY_SCOPES,
)

if TYPE_CHECKING:
    from ceag.config.settings import RunSettings


def validate(c: RunSettings) -> None:
    def choice(name: str, options: tuple[str, ...]) -> None:
        v = getattr(c, name)
        if v not in options:
            raise ConfigError(name, v, f"must be one of {', '.join(options)}")

    def number(name: str, lo: float, hi: float, *, lo_open=False, hi_open=False, allow_none=False):
        v = getattr(c, name)
        if v is None and allow_none:
            return
        lo_s, hi_s = ("(" if lo_open else "["), (")" if hi_open else "]")
        rule = f"must be a number in {lo_s}{lo}, {hi}{hi_s}"
        if not is_number(v):
            raise ConfigError(name, v, rule)
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            raise ConfigError(name, v, rule)

    def integer(name: str, lo: int, hi: int | None = None):
        v = getattr(c, name)
        rule = f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        if not is_int(v) or v < lo or (hi is not None and v > hi):
            raise ConfigError(name, v, rule)

    def boolean(name: str):
        v = getattr(c, name)
        if not isinstance(v, bool):
            raise ConfigError(name, v, "must be true or false")

    choice("dataset", DATASETS)
    _validate_attributes(c)
    if c.image_size is not None and (not is_int(c.image_size) or not 8 <= c.image_size <= 1024):
        raise ConfigError("image_size", c.image_size, "must be an integer in [8, 1024] (pixels), or null")
    if c.data_dir is not None and not isinstance(c.data_dir, str):
        raise ConfigError("data_dir", c.data_dir, "must be a folder path")
    if c.data_fingerprint is None:
        object.__setattr__(c, "data_fingerprint", builtin_fingerprint(c.dataset))
    if c.data_fingerprint is not None and not (isinstance(c.data_fingerprint, str)
                                               and re.fullmatch(r"[0-9a-f]{16}", c.data_fingerprint)):
        raise ConfigError("data_fingerprint", c.data_fingerprint, "must be 16 hexadecimal digits (set from the "
                          "data by ceag.datasets.fingerprint), or null")
    if c.dense_checkpoint is not None and not (isinstance(c.dense_checkpoint, str)
                                               and Path(c.dense_checkpoint).is_file()):
        raise ConfigError("dense_checkpoint", c.dense_checkpoint, "must be the path of an existing file of "
                          "model weights (a state dict saved with torch.save)")
    choice("model", MODELS)
    choice("method", METHODS)
    choice("pruning", PRUNING)
    choice("mitigation_start", MITIGATION_START)
    choice("device", DEVICES)
    number("sparsity", 0.0, 1.0, hi_open=True)
    if c.method in TOLERANCE_METHODS:
        if c.tolerance is None:
            object.__setattr__(c, "tolerance", DEFAULT_TOLERANCE)
        number("tolerance", 0.0, 1.0)
        assert c.tolerance is not None  # number() refuses None here
        object.__setattr__(c, "tolerance", float(c.tolerance))
    else:
        # Validate a given tolerance even when it is unused, then drop it from the run.
        number("tolerance", 0.0, 1.0, allow_none=True)
        object.__setattr__(c, "tolerance", None)
    integer("seed", 0, 2**31 - 1)
    number("val_fraction", 0.0, 0.5, hi_open=True)
    if c.rare_groups is None:
        object.__setattr__(c, "rare_groups", DEFAULT_RARE_GROUPS.get(c.dataset, ()))
    if not isinstance(c.rare_groups, tuple) or not all(is_int(g) and g >= 0 for g in c.rare_groups):
        raise ConfigError("rare_groups", c.rare_groups, "must be a list of group ids (integers >= 0)")
    object.__setattr__(c, "rare_groups", tuple(sorted(set(c.rare_groups))))
    integer("rare_train_count", 1)
    integer("num_groups", 2, 1000)
    integer("dense_epochs", 0, 10_000)
    integer("prune_epochs", 0, 10_000)
    integer("finetune_epochs", 0, 10_000)
    if c.total_epochs < 1:
        raise ConfigError("finetune_epochs", c.finetune_epochs, "prune_epochs + finetune_epochs must be >= 1")
    boolean("dense_first_conv")
    boolean("dense_last_layer")
    integer("batch_size", 1, 1_000_000)
    number("lr", 0.0, 100.0, lo_open=True)
    number("momentum", 0.0, 1.0, hi_open=True)
    boolean("nesterov")
    if c.nesterov and c.momentum == 0:
        raise ConfigError("nesterov", True, "Nesterov momentum needs momentum > 0")
    number("weight_decay", 0.0, 1.0)
    if not isinstance(c.lr_milestones, tuple) or not all(is_number(m) and 0 < m < 1 for m in c.lr_milestones):
        raise ConfigError("lr_milestones", c.lr_milestones, "must be a list of fractions of the run in (0, 1)")
    if list(c.lr_milestones) != sorted(c.lr_milestones):
        raise ConfigError("lr_milestones", c.lr_milestones, "must be increasing")
    number("lr_gamma", 0.0, 1.0, lo_open=True)
    number("dual_lr", 0.0, 1e3, lo_open=True)
    integer("buffer_size", 1, 1_000_000)
    boolean("replay_buffer")
    boolean("detach_overall")
    number("divergence_threshold", 1.0, 1e30)
    integer("eval_every", 1)
    integer("checkpoint_every", 1)
    integer("max_trace_points", 10, 1_000_000)
    boolean("amp")
    _validate_paper_settings(c, choice, number, boolean)
    _validate_mask_choice(c, choice, integer)
    _validate_channel_pruning(c)
    _validate_batch_sizes(c)
    if c.eval_batch_size is not None and (not is_int(c.eval_batch_size) or c.eval_batch_size < 1):
        raise ConfigError("eval_batch_size", c.eval_batch_size, "must be an integer >= 1 (inputs per evaluation "
                          "pass), or null to size it to the memory available")
    _validate_heldout_settings(c, choice, integer)
    for f in ("sparsity", "val_fraction", "lr", "momentum", "weight_decay", "lr_gamma", "dual_lr",
              "divergence_threshold"):
        object.__setattr__(c, f, float(getattr(c, f)))
    object.__setattr__(c, "lr_milestones", tuple(float(m) for m in c.lr_milestones))


def _validate_paper_settings(c: RunSettings, choice, number, boolean) -> None:
    choice("dense_optimizer", DENSE_OPTIMIZERS)
    choice("overall_estimate", OVERALL_ESTIMATES)
    choice("prune_rounding", PRUNE_ROUNDING)
    choice("weight_decay_scope", WEIGHT_DECAY_SCOPES)
    boolean("masked_bn")
    number("dense_lr", 0.0, 100.0, lo_open=True, allow_none=True)
    number("dense_weight_decay", 0.0, 1.0, allow_none=True)
    if c.dense_batch_size is not None and (not is_int(c.dense_batch_size)
                                           or not 1 <= c.dense_batch_size <= 1_000_000):
        raise ConfigError("dense_batch_size", c.dense_batch_size, "must be an integer in [1, 1000000], or null "
                          "(the fine-tuning batch_size)")
    m = c.dense_lr_milestones
    if m is not None:
        if not isinstance(m, tuple) or not all(is_number(x) and 0 < x < 1 for x in m) or list(m) != sorted(m):
            raise ConfigError("dense_lr_milestones", m, "must be an increasing list of fractions of the dense "
                              "epochs in (0, 1), or null (0.5, 0.75)")
        object.__setattr__(c, "dense_lr_milestones", tuple(float(x) for x in m))
    for f in ("dense_lr", "dense_weight_decay"):
        if getattr(c, f) is not None:
            object.__setattr__(c, f, float(getattr(c, f)))


def _validate_mask_choice(c: RunSettings, choice, integer) -> None:
    """The pruning criterion and FairGRAPE's settings. An option of a criterion or method the run does not use
    is checked, then set to its default: it changes nothing, so it is not part of the run (as a tolerance)."""
    choice("criterion", CRITERIA)
    integer("criterion_batches", 1, 1_000_000)
    integer("synflow_iterations", 1, 1_000_000)
    integer("fairgrape_batches", 1, 1_000_000)
    integer("fairgrape_para_batch", 0, 1_000_000)
    choice("fairgrape_order", FAIRGRAPE_ORDERS)
    if c.method in MASK_METHODS:
        if c.pruning != "unstructured":
            raise ConfigError("pruning", c.pruning, f"method {c.method} keeps weights layer by layer, each layer to "
                              "its groups' shares of its importance, as its authors' code does: it needs "
                              "pruning='unstructured'")
        if c.criterion != "magnitude":
            raise ConfigError("criterion", c.criterion, f"method {c.method} chooses the weights it keeps by its own "
                              "group importance, so no pruning criterion applies: leave criterion at 'magnitude' "
                              "(the default)")
    unused = [*(("criterion_batches",) if c.criterion != "snip" else ()),
              *(("synflow_iterations",) if c.criterion != "synflow" else ()),
              *(("fairgrape_batches", "fairgrape_para_batch", "fairgrape_order") if c.method != "fairgrape" else ())]
    defaults = {f.name: f.default for f in fields(c)}
    for name in unused:
        object.__setattr__(c, name, defaults[name])


def _validate_channel_pruning(c: RunSettings) -> None:
    """Channel-group pruning (``CHANNEL_PRUNING``): the run's end removes the pruned channels from its model, which
    is exact only when a pruned channel outputs zero. The last layer's outputs are the classes, never removed (its
    input columns follow the channels pruned before it), so ``dense_last_layer`` is set: either value computes
    the same, and the run is named once."""
    if c.pruning not in CHANNEL_PRUNING:
        return
    if not c.masked_bn and c.model not in BATCH_NORM_FREE_MODELS:
        raise ConfigError("masked_bn", c.masked_bn, f"pruning {c.pruning} needs masked batch norm (masked_bn=true): "
                          "without it a channel whose filters are all pruned still outputs its batch norm's shift, "
                          "so removing the channel would change the model's predictions")
    if c.criterion != "magnitude":
        raise ConfigError("criterion", c.criterion, f"pruning {c.pruning} ranks each channel by the norm of its "
                          "weights over its channel group; SNIP and SynFlow score single weights (pruning "
                          "unstructured, global or structured): use criterion 'magnitude'")
    object.__setattr__(c, "dense_last_layer", True)


def _validate_batch_sizes(c: RunSettings) -> None:
    """A model with batch norm cannot train on one-sample batches: refuse them rather than train nothing."""
    if c.model in BATCH_NORM_FREE_MODELS:
        return
    for name in ("batch_size", "dense_batch_size"):
        value = getattr(c, name)
        if value is not None and value < 2:
            raise ConfigError(name, value, f"model {c.model} has batch norm, which needs at least 2 samples per "
                              f"training batch: use {name} >= 2 (of the models, only "
                              f"{', '.join(BATCH_NORM_FREE_MODELS)} trains on batches of 1)")


def _validate_attributes(c: RunSettings) -> None:
    """Target and protected attributes: one of the dataset's, or any column name for ``custom``."""
    attrs, targets = GROUP_ATTRIBUTES[c.dataset], TARGETS[c.dataset]
    groups = c.groups
    if isinstance(groups, str):
        groups = tuple(g.strip() for g in groups.split(",") if g.strip())
    if not isinstance(groups, tuple) or not all(isinstance(g, str) for g in groups):
        raise ConfigError("groups", c.groups, "must be a list of attribute names")
    if targets is None:  # the user's own columns: names are checked against labels.csv when it is read
        if not isinstance(c.target, str) or not c.target.strip():
            raise ConfigError("target", c.target, f"dataset {c.dataset} needs the name of the label column that "
                              "holds the class (--target COLUMN)")
        if not groups:
            raise ConfigError("groups", [], f"dataset {c.dataset} needs the protected attribute column(s) "
                              "(--groups COLUMN[,COLUMN])")
        groups = tuple(g.strip() for g in groups)
        if len(set(groups)) != len(groups) or not all(groups) or "file" in groups or c.target.strip() == "file":
            raise ConfigError("groups", list(groups), "must be distinct, non-empty label column names other than "
                              "'file'")
        object.__setattr__(c, "target", c.target.strip())
        object.__setattr__(c, "groups", groups)
        return
    assert attrs is not None  # the registry gives a dataset both or neither
    target = DEFAULT_TARGET[c.dataset] if c.target is None else c.target
    if target not in targets:
        raise ConfigError("target", c.target, f"dataset {c.dataset} offers targets {', '.join(targets)}")
    object.__setattr__(c, "target", target)
    groups = groups or DEFAULT_GROUPS[c.dataset]
    if len(set(groups)) != len(groups) or not set(groups) <= set(attrs):
        unknown = [g for g in groups if g not in attrs]
        what = f"unknown attribute {', '.join(map(repr, unknown))}; " if unknown else "an attribute is repeated; "
        raise ConfigError("groups", list(groups), f"{what}dataset {c.dataset} offers distinct attributes among "
                          f"{', '.join(attrs)}")
    object.__setattr__(c, "groups", groups)


def _validate_heldout_settings(c: RunSettings, choice, integer) -> None:
    """constraint_data, heldout_every and vs_tolerances (see ceag/training/methods/heldout.py, ceag/run/derived.py)."""
    choice("constraint_data", CONSTRAINT_DATA)
    integer("heldout_every", 1, 1_000_000)
    if c.constraint_data == "val" and c.method not in HELDOUT_METHODS:
        if c.method in MITIGATING_METHODS:
            raise ConfigError("constraint_data", "val", f"held-out multipliers apply to {', '.join(HELDOUT_METHODS)}; "
                              f"method {c.method} reads its constraints from the training data")
        # Methods without a dual step: nothing reads it, so it is not part of the run (as tolerance).
        object.__setattr__(c, "constraint_data", "train")
    needs_val = c.constraint_data == "val" or c.method == "ceag_vs"
    if needs_val and c.val_fraction <= 0:
        what = "held-out multipliers (constraint_data='val')" if c.constraint_data == "val" else "ceag_vs"
        raise ConfigError("val_fraction", c.val_fraction, f"{what} need a validation split carved from train "
                          "before the dense model trains: a fraction in (0, 0.5), e.g. 0.15")
    v = tuple(c.vs_tolerances) if isinstance(c.vs_tolerances, list) else c.vs_tolerances
    if c.method != "ceag_vs":
        if v is not None and not (isinstance(v, tuple) and all(is_number(t) for t in v)):
            raise ConfigError("vs_tolerances", v, "must be a list of tolerances (fractions in (0, 1])")
        object.__setattr__(c, "vs_tolerances", None)
        return
    assert c.tolerance is not None  # set above for the methods that use it
    if v is None:
        v = (c.tolerance, c.tolerance / 2, c.tolerance / 4)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (v,)
    rule = f"must be a non-empty list of CEAG tolerances in [0, {c.tolerance:g}] (at most the target tolerance)"
    if not isinstance(v, tuple) or not v or not all(is_number(t) and 0 <= t <= c.tolerance for t in v):
        raise ConfigError("vs_tolerances", c.vs_tolerances, rule)
    object.__setattr__(c, "vs_tolerances", tuple(sorted({float(t) for t in v}, reverse=True)))
