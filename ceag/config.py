"""Run configuration: one frozen, validated dataclass whose canonical JSON names a run.

Importing this module does not import torch, so the store and the app can use it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .datasets.registry import DATASETS, REGISTRY

MODELS = ("mlp", "cnn", "cnn_small", "resnet18", "resnet34", "mobilenet_v2", "resnet20", "resnet56")
# Models without batch norm (ceag/models.py). Batch norm cannot normalize one sample in training
# mode, so every other model needs training batches of at least 2.
BATCH_NORM_FREE_MODELS = ("mlp",)
# Attributes a dataset offers as target and as protected groups (custom: the user's columns).
TARGETS = {n: d.targets for n, d in REGISTRY.items()}
GROUP_ATTRIBUTES = {n: d.group_attributes for n, d in REGISTRY.items()}
DEFAULT_TARGET = {n: d.default_target for n, d in REGISTRY.items()}
DEFAULT_RARE_GROUPS = {n: d.default_rare_groups for n, d in REGISTRY.items() if d.default_rare_groups}
DEFAULT_GROUPS = {n: d.default_groups for n, d in REGISTRY.items()}
METHODS = ("nft", "nft_es", "el_rb", "ceag", "ceag_vs")
# Methods whose results depend on the tolerance; for the others it is not part of the run.
TOLERANCE_METHODS = ("ceag", "ceag_vs")
# Methods whose dual step can read held-out data (constraint_data="val").
HELDOUT_METHODS = ("ceag", "ceag_vs")
CONSTRAINT_DATA = ("train", "val")
# Methods that change the training objective (the others are plain fine-tuning).
MITIGATING_METHODS = ("el_rb", "ceag")
PRUNING = ("unstructured", "global", "structured")
MITIGATION_START = ("after_pruning", "start")
DEVICES = ("auto", "cpu", "cuda")
DENSE_OPTIMIZERS = ("sgd", "adam")
OVERALL_ESTIMATES = ("train_share", "buffer_mean")
PRUNE_ROUNDING = ("round", "ceil")
WEIGHT_DECAY_SCOPES = ("all", "last_layer")

# Settings that change where or how fast a run happens, not what it computes.
NOT_IN_RUN_ID = ("device", "data_dir", "eval_batch_size")
# Settings of held-out multipliers: in the run id only when constraint_data is "val".
HELDOUT_FIELDS = ("constraint_data", "heldout_every")

DEFAULT_TOLERANCE = 0.02


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names field, value and the rule."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.field = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {name}={value!r}: {allowed}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one pruning experiment.

    Fractions (sparsity, tolerance, val_fraction) are in [0, 1]; epochs are counts.
    The schedule is ``prune_epochs`` epochs of gradual magnitude pruning (cubic schedule,
    target reached at the start of epoch ``prune_epochs``) followed by ``finetune_epochs``.
    """

    dataset: str = "digits"
    model: str = "mlp"
    method: str = "nft"
    sparsity: float = 0.95
    tolerance: float | None = None
    seed: int = 0
    # data: target and protected attributes (None / empty: the dataset's defaults)
    target: str | None = None
    groups: tuple[str, ...] = ()
    image_size: int | None = None
    data_dir: str | None = None
    # What the data was (ceag.datasets.fingerprint), so other data never shares a run id or a
    # shared phase. Datasets without a folder get theirs here; folder datasets when a run or
    # grid is planned (ceag.datasets.checks.resolve). None in configs written before
    # fingerprints existed: left out of their ids, which stay as they were.
    data_fingerprint: str | None = None
    dense_checkpoint: str | None = None  # a user's dense weights instead of training them
    val_fraction: float = 0.15
    rare_groups: tuple[int, ...] | None = None  # None: the dataset's default (digit 8 on digits)
    # The demo's rare digit keeps 5 training images: few enough that naive fine-tuning leaves it
    # behind on nearly every seed, not so few that CEAG cannot win it back (bench/demo_seeds.py).
    rare_train_count: int = 5
    num_groups: int = 4
    # schedule
    dense_epochs: int = 60
    prune_epochs: int = 20
    finetune_epochs: int = 40
    pruning: str = "unstructured"
    dense_first_conv: bool = True
    # The demo prunes the classifier too: with ten classes, losing classifier weights is what
    # hurts the rare class. The paper presets keep it dense, as the authors do.
    dense_last_layer: bool = False
    # primal optimizer (SGD); milestones are fractions of the run's epochs (pruning + fine-tuning).
    # By default lr drops x0.1 at 70 % and again at 90 % of the run, so fine-tuning settles: with a
    # constant lr the last epochs' metrics swing (README, "Fine-tuning defaults"; bench/settle.py).
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.7, 0.9)
    lr_gamma: float = 0.1
    # constrained methods
    dual_lr: float = 0.003
    buffer_size: int = 40
    replay_buffer: bool = True
    detach_overall: bool = True
    mitigation_start: str = "after_pruning"
    divergence_threshold: float = 1e6
    # Held-out multipliers (Cotter et al., ICML 2019; ceag/methods/heldout.py): "val" feeds the dual
    # step from validation batches, one every ``heldout_every`` steps. Both stay out of the run id
    # while ``constraint_data`` is "train", so runs made before they existed keep their ids.
    constraint_data: str = "train"
    heldout_every: int = 2
    # CEAG+VS (ceag/selection.py): the CEAG tolerances it selects among; None: eps, eps/2, eps/4.
    vs_tolerances: tuple[float, ...] | None = None
    # Settings that let a run follow the paper's code where it differs from the defaults
    # (docs/presets.md): the dense recipe (None: the fine-tuning value; milestones None: 0.5, 0.75),
    # the dual step's overall accuracy estimate, masked batch norm, the pruned-weight count per
    # layer, and which parameters weight decay reaches.
    dense_optimizer: str = "sgd"
    dense_lr: float | None = None
    dense_weight_decay: float | None = None
    dense_batch_size: int | None = None
    dense_lr_milestones: tuple[float, ...] | None = None
    overall_estimate: str = "train_share"
    masked_bn: bool = False
    prune_rounding: str = "round"
    weight_decay_scope: str = "all"
    # bookkeeping
    eval_every: int = 1
    checkpoint_every: int = 5
    max_trace_points: int = 400
    amp: bool = False
    device: str = "auto"
    eval_batch_size: int | None = None  # inputs per evaluation pass; None: sized to the memory available

    def __post_init__(self) -> None:
        _validate(self)

    # -- identity -----------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The settings that determine results, as plain JSON types."""
        out = {}
        for f in fields(self):
            if f.name in NOT_IN_RUN_ID or (f.name == "data_fingerprint" and self.data_fingerprint is None):
                continue
            if f.name in HELDOUT_FIELDS and self.constraint_data == "train":
                continue
            if f.name == "vs_tolerances" and self.vs_tolerances is None:
                continue
            v = getattr(self, f.name)
            if f.name == "dense_checkpoint" and v is not None:
                v = "sha256:" + file_sha256(v)  # the weights' content, not where they lie
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return _digest(self.canonical_json())

    def key(self, names: tuple[str, ...]) -> str:
        """Hash of a subset of the canonical settings (used for shared phases).

        A setting absent from the canonical form (an old config's missing fingerprint) is left
        out, so keys computed before it existed stay the same.
        """
        c = self.canonical()
        return _digest(json.dumps({n: c[n] for n in names if n in c}, sort_keys=True, separators=(",", ":")))

    @property
    def total_epochs(self) -> int:
        return self.prune_epochs + self.finetune_epochs

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; other data (dataset or folder) drops the fingerprint (resolved again)."""
        base = self.to_dict()
        if {"dataset", "data_dir"} & set(changes) and "data_fingerprint" not in changes:
            base["data_fingerprint"] = None
        return from_dict({**base, **changes})

    def to_dict(self) -> dict[str, Any]:
        d = self.canonical()
        d["device"] = self.device
        d["data_dir"] = self.data_dir
        d["dense_checkpoint"] = self.dense_checkpoint
        d["data_fingerprint"] = self.data_fingerprint
        d["eval_batch_size"] = self.eval_batch_size
        d["constraint_data"] = self.constraint_data
        d["heldout_every"] = self.heldout_every
        d["vs_tolerances"] = None if self.vs_tolerances is None else list(self.vs_tolerances)
        return d


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def file_sha256(path: str) -> str:
    st = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def from_dict(data: dict[str, Any], *, stored: bool = False) -> RunConfig:
    """Build a config from JSON-like data; unknown keys are an error that lists the known ones.

    ``stored``: ``data`` is a run folder's config.json. One written before data fingerprints
    existed (no ``data_fingerprint`` key) keeps none, so it hashes to its run id as before.
    """
    if not isinstance(data, dict):
        raise ConfigError("config", type(data).__name__, "expected a JSON object of settings")
    known = set(config_fields())
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(unknown[0], data[unknown[0]], f"unknown setting; known: {', '.join(sorted(known))}")
    clean = {}
    for k, v in data.items():
        clean[k] = tuple(v) if isinstance(v, list) else v
    cfg = RunConfig(**clean)
    if stored and "data_fingerprint" not in data:
        object.__setattr__(cfg, "data_fingerprint", None)
    return cfg


def _validate(c: RunConfig) -> None:
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
        if not _is_number(v):
            raise ConfigError(name, v, rule)
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            raise ConfigError(name, v, rule)

    def integer(name: str, lo: int, hi: int | None = None):
        v = getattr(c, name)
        rule = f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            raise ConfigError(name, v, rule)

    def boolean(name: str):
        v = getattr(c, name)
        if not isinstance(v, bool):
            raise ConfigError(name, v, "must be true or false")

    choice("dataset", DATASETS)
    _validate_attributes(c)
    if c.image_size is not None and (not _is_int(c.image_size) or not 8 <= c.image_size <= 1024):
        raise ConfigError("image_size", c.image_size, "must be an integer in [8, 1024] (pixels), or null")
    if c.data_dir is not None and not isinstance(c.data_dir, str):
        raise ConfigError("data_dir", c.data_dir, "must be a folder path")
    if c.data_fingerprint is None:
        from .datasets.fingerprint import builtin_fingerprint

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
        object.__setattr__(c, "tolerance", float(c.tolerance))
    else:
        # Validate a given tolerance even when it is unused, then drop it from the run.
        number("tolerance", 0.0, 1.0, allow_none=True)
        object.__setattr__(c, "tolerance", None)
    integer("seed", 0, 2**31 - 1)
    number("val_fraction", 0.0, 0.5, hi_open=True)
    if c.rare_groups is None:
        object.__setattr__(c, "rare_groups", DEFAULT_RARE_GROUPS.get(c.dataset, ()))
    if not isinstance(c.rare_groups, tuple) or not all(_is_int(g) and g >= 0 for g in c.rare_groups):
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
    if not isinstance(c.lr_milestones, tuple) or not all(_is_number(m) and 0 < m < 1 for m in c.lr_milestones):
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
    _validate_batch_sizes(c)
    if c.eval_batch_size is not None and (not _is_int(c.eval_batch_size) or c.eval_batch_size < 1):
        raise ConfigError("eval_batch_size", c.eval_batch_size, "must be an integer >= 1 (inputs per evaluation "
                          "pass), or null to size it to the memory available")
    _validate_heldout_settings(c, choice, integer)
    for f in ("sparsity", "val_fraction", "lr", "momentum", "weight_decay", "lr_gamma", "dual_lr",
              "divergence_threshold"):
        object.__setattr__(c, f, float(getattr(c, f)))
    object.__setattr__(c, "lr_milestones", tuple(float(m) for m in c.lr_milestones))


def _validate_paper_settings(c: RunConfig, choice, number, boolean) -> None:
    choice("dense_optimizer", DENSE_OPTIMIZERS)
    choice("overall_estimate", OVERALL_ESTIMATES)
    choice("prune_rounding", PRUNE_ROUNDING)
    choice("weight_decay_scope", WEIGHT_DECAY_SCOPES)
    boolean("masked_bn")
    number("dense_lr", 0.0, 100.0, lo_open=True, allow_none=True)
    number("dense_weight_decay", 0.0, 1.0, allow_none=True)
    if c.dense_batch_size is not None and (not _is_int(c.dense_batch_size)
                                           or not 1 <= c.dense_batch_size <= 1_000_000):
        raise ConfigError("dense_batch_size", c.dense_batch_size, "must be an integer in [1, 1000000], or null "
                          "(the fine-tuning batch_size)")
    m = c.dense_lr_milestones
    if m is not None:
        if not isinstance(m, tuple) or not all(_is_number(x) and 0 < x < 1 for x in m) or list(m) != sorted(m):
            raise ConfigError("dense_lr_milestones", m, "must be an increasing list of fractions of the dense "
                              "epochs in (0, 1), or null (0.5, 0.75)")
        object.__setattr__(c, "dense_lr_milestones", tuple(float(x) for x in m))
    for f in ("dense_lr", "dense_weight_decay"):
        if getattr(c, f) is not None:
            object.__setattr__(c, f, float(getattr(c, f)))


def _validate_batch_sizes(c: RunConfig) -> None:
    """A model with batch norm cannot train on one-sample batches: refuse them rather than train nothing."""
    if c.model in BATCH_NORM_FREE_MODELS:
        return
    for name in ("batch_size", "dense_batch_size"):
        value = getattr(c, name)
        if value is not None and value < 2:
            raise ConfigError(name, value, f"model {c.model} has batch norm, which needs at least 2 samples per "
                              f"training batch: use {name} >= 2 (of the models, only "
                              f"{', '.join(BATCH_NORM_FREE_MODELS)} trains on batches of 1)")


def _validate_attributes(c: RunConfig) -> None:
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
def _validate_heldout_settings(c: RunConfig, choice, integer) -> None:
    """constraint_data, heldout_every and vs_tolerances (see ceag/methods/heldout.py, ceag/selection.py)."""
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
        if v is not None and not (isinstance(v, tuple) and all(_is_number(t) for t in v)):
            raise ConfigError("vs_tolerances", v, "must be a list of tolerances (fractions in (0, 1])")
        object.__setattr__(c, "vs_tolerances", None)
        return
    if v is None:
        v = (c.tolerance, c.tolerance / 2, c.tolerance / 4)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (v,)
    rule = f"must be a non-empty list of CEAG tolerances in [0, {c.tolerance:g}] (at most the target tolerance)"
    if not isinstance(v, tuple) or not v or not all(_is_number(t) and 0 <= t <= c.tolerance for t in v):
        raise ConfigError("vs_tolerances", c.vs_tolerances, rule)
    object.__setattr__(c, "vs_tolerances", tuple(sorted({float(t) for t in v}, reverse=True)))


# Settings each shared phase depends on (everything else may differ between runs sharing it).
DATA_FIELDS = ("dataset", "data_fingerprint", "target", "groups", "image_size", "val_fraction", "rare_groups",
               "rare_train_count", "num_groups")
DENSE_FIELDS = DATA_FIELDS + (
    "model", "seed", "dense_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "amp",
    "dense_checkpoint",
    "dense_optimizer", "dense_lr", "dense_weight_decay", "dense_batch_size", "dense_lr_milestones",
    "weight_decay_scope",
)
PRUNE_FIELDS = DENSE_FIELDS + (
    "sparsity", "prune_epochs", "finetune_epochs", "pruning", "dense_first_conv",
    "dense_last_layer", "lr_milestones", "lr_gamma", "eval_every", "mitigation_start",
    "masked_bn", "prune_rounding",
)


def dense_key(c: RunConfig) -> str:
    return c.key(DENSE_FIELDS)


def prune_key(c: RunConfig) -> str:
    """Key of the state at the end of gradual pruning.

    When mitigation starts with pruning, the pruning phase depends on every setting.
    """
    if c.mitigation_start == "start" and c.method in MITIGATING_METHODS:
        return c.run_id
    return c.key(PRUNE_FIELDS)


def lr_at(epoch: int, total: int, base: float, milestones: tuple[float, ...], gamma: float) -> float:
    """Step schedule: multiply by ``gamma`` from epoch ``int(m * total)`` on, for each milestone fraction ``m``.

    ``int`` (not ceil) as in the paper's code (``int(milestone * epochs)`` into ``MultiStepLR``,
    src/utils/experiment_utils.py): 0.9 of 47 epochs decays from epoch 42.
    """
    return base * gamma ** sum(epoch >= int(m * total) for m in milestones)


__all__ = [
    "ConfigError", "RunConfig", "from_dict", "config_fields", "dense_key", "prune_key", "lr_at",
    "DATASETS", "MODELS", "BATCH_NORM_FREE_MODELS", "METHODS", "PRUNING", "TOLERANCE_METHODS", "HELDOUT_METHODS",
    "CONSTRAINT_DATA",
]
