"""Grids of runs: ``GridSpec`` expands its axes into RunConfigs; presets name useful grids.

Tolerance multiplies only the methods that use it (CEAG). Shared work is done once: ``plan``
makes a graph of phases (one dense model per dataset/model/seed, one end-of-pruning state per
sparsity, then each run's fine-tuning, then NFT+ES cells derived from their NFT runs), and the
executors start each phase as soon as its inputs exist.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import METHODS, TOLERANCE_METHODS, ConfigError, RunConfig, dense_key, from_dict, prune_key
from .selection import candidate_configs, grid_vs_tolerances

DEFAULT_MAX_CELLS = 5000
AXES = ("datasets", "models", "methods", "sparsities", "tolerances", "seeds")
# Default grids and presets: the paper's methods (CEAG+VS is asked for by name).
GRID_METHODS = tuple(m for m in METHODS if m != "ceag_vs")


# A derived cell reads runs of this method, so it takes that method's settings first.
BASE_METHOD = {"nft_es": "nft", "ceag_vs": "ceag"}
_AXIS_FIELDS = ("dataset", "model", "method", "sparsity", "tolerance", "seed")


def _check_no_axis(settings: dict[str, Any], where: str) -> None:
    bad = set(settings) & set(_AXIS_FIELDS)
    if bad:
        name = sorted(bad)[0]
        axis = {"sparsity": "sparsities"}.get(name, f"{name}s")
        raise ConfigError(f"{where}.{name}", settings[name], f"use the grid axis '{axis}' instead")


@dataclass(frozen=True)
class GridSpec:
    """Axes of a grid, ``settings`` shared by every cell (any RunConfig field) and
    ``method_settings``: settings for the cells of one method only, over the shared ones
    (``{"el_rb": {"dual_lr": 1e-4}}``). NFT+ES cells take NFT's and CEAG+VS cells CEAG's first,
    since they read those runs.
    """

    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("mlp",)
    methods: tuple[str, ...] = GRID_METHODS
    sparsities: tuple[float, ...] = (0.95,)
    tolerances: tuple[float, ...] = (0.02,)
    seeds: tuple[int, ...] = (0,)
    settings: dict[str, Any] = field(default_factory=dict)
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cell_settings(self, method: str) -> dict[str, Any]:
        """The settings of ``method``'s cells: shared ones, then its base method's, then its own."""
        base = BASE_METHOD.get(method)
        return {**self.settings, **(self.method_settings.get(base, {}) if base else {}),
                **self.method_settings.get(method, {})}

    def with_settings(self, settings: dict[str, Any]) -> GridSpec:
        """This grid with ``settings`` for every cell: each replaces the shared value and any
        method's own (a value typed for the whole grid holds in every cell)."""
        own = {m: {k: v for k, v in s.items() if k not in settings} for m, s in self.method_settings.items()}
        return GridSpec.from_dict({**self.to_dict(), "settings": {**self.settings, **settings},
                                   "method_settings": {m: s for m, s in own.items() if s}})

    def configs(self, max_cells: int = DEFAULT_MAX_CELLS) -> list[RunConfig]:
        """The grid's distinct RunConfigs, validated, in a stable order."""
        for axis in AXES:
            if len(getattr(self, axis)) == 0:
                raise ConfigError(axis, [], "a grid axis needs at least one value")
        _check_no_axis(self.settings, "settings")
        for method, own in self.method_settings.items():
            _check_no_axis(own, f"method_settings.{method}")
        n = self.size()
        if n > max_cells:
            raise ConfigError("grid", f"{n} cells", f"at most {max_cells} cells per grid; split it or raise the limit")
        seen: dict[str, RunConfig] = {}
        for dataset, model, method, sparsity, seed in itertools.product(
                self.datasets, self.models, self.methods, self.sparsities, self.seeds):
            tolerances = self.tolerances if method in TOLERANCE_METHODS else (None,)
            for tol in tolerances:
                shared = self.cell_settings(method)
                cell = {**shared, "dataset": dataset, "model": model, "method": method,
                        "sparsity": sparsity, "tolerance": tol, "seed": seed}
                if method == "ceag_vs" and shared.get("vs_tolerances") is None:
                    # CEAG+VS selects among the cell's tolerance and the grid's tolerances below it
                    cell["vs_tolerances"] = list(grid_vs_tolerances(tol, self.tolerances))
                try:
                    cfg = from_dict(cell)
                except ConfigError as err:  # name where a method's own value came from
                    where = next((m for m in (method, BASE_METHOD.get(method))
                                  if m and err.field in self.method_settings.get(m, {})), None)
                    if where is None:
                        raise
                    raise ConfigError(f"method_settings.{where}.{err.field}", err.value, err.allowed) from None
                seen.setdefault(cfg.run_id, cfg)
        return list(seen.values())

    def size(self) -> int:
        per_tol = sum(len(self.tolerances) if m in TOLERANCE_METHODS else 1 for m in self.methods)
        return len(self.datasets) * len(self.models) * per_tol * len(self.sparsities) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        out = {**{a: list(getattr(self, a)) for a in AXES}, "settings": dict(self.settings)}
        if self.method_settings:
            out["method_settings"] = {m: dict(s) for m, s in self.method_settings.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSpec:
        if not isinstance(data, dict):
            raise ConfigError("spec", type(data).__name__, "a grid spec is a JSON object")
        known = set(AXES) | {"settings", "method_settings"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], f"unknown grid key; known: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for axis in AXES:
            if axis in data:
                value = data[axis]
                if not isinstance(value, list):
                    value = [value]
                kwargs[axis] = tuple(value)
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError("settings", settings, "must be a JSON object of RunConfig settings")
        kwargs["settings"] = settings
        own = data.get("method_settings", {})
        if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
            raise ConfigError("method_settings", own, "must be a JSON object of {method: {setting: value}}, e.g. "
                              '{"el_rb": {"dual_lr": 0.0001}}')
        unknown = sorted(set(own) - set(METHODS))
        if unknown:
            raise ConfigError("method_settings", unknown[0], f"unknown method; known: {', '.join(METHODS)}")
        kwargs["method_settings"] = {m: dict(v) for m, v in own.items()}
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> GridSpec:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError("spec", str(path), f"cannot read the spec file: {err.strerror}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError("spec", str(path), f"not valid JSON (line {err.lineno}, column {err.colno}: "
                              f"{err.msg})") from err
        return cls.from_dict(data)


# -- presets ------------------------------------------------------------------------------
def _paper(dataset: str, model: str, sparsities, tolerances, settings: dict[str, Any]) -> GridSpec:
    return GridSpec(datasets=(dataset,), models=(model,), methods=GRID_METHODS, sparsities=tuple(sparsities),
                    tolerances=tuple(tolerances), seeds=(0, 1, 2, 3, 4),
                    settings={**PAPER_COMMON, **settings})


PRESETS: dict[str, GridSpec] = {
    # The teaching grid on the embedded digits data: 4 methods x 3 sparsities x 3 tolerances, three
    # seeds (error bars on the frontiers, several points per group on Generalization).
    "demo": GridSpec(datasets=("digits",), models=("mlp",), methods=GRID_METHODS,
                     sparsities=(0.9, 0.95, 0.98), tolerances=(0.01, 0.02, 0.05), seeds=(0, 1, 2)),
    # A CPU-sized run on the real UTKFace folder (data/README.md explains every setting): the small CNN
    # at half width (cnn_small) at 32 px, race as target and groups, NFT (+ES, derived) / EL+RB / CEAG
    # at two sparsities, one seed.
    # Dense 10 + pruning 5 + fine-tuning 10 epochs at batch 128: about 149 steps per epoch, so about 1,490
    # dual steps. Right after pruning a hurt group's psi_hat_g - eps is of the order of 0.1; its multiplier
    # starts to matter once it is comparable with the group's share p_g of the training split (0.07 for
    # "Others" to 0.43 for "White"): with dual_lr 0.01 a violation of 0.1 brings lambda_g to 0.15 within
    # one epoch (0.01 x 0.1 x 149), where the default 0.003 would need more than three of the ten.
    # EL+RB's violations are loss gaps |L_g - L|, never negative (the paper's abs_equality_constraint),
    # about 0.5 nats for the hardest group, so its multipliers only grow, for the whole run: by about
    # 1e-4 x 0.5 x 1,490 = 0.07 at its own dual step 1e-4 (the paper's UTKFace value), the smallest
    # group's share; at CEAG's 0.01 a hundred times that, and runs neither settled nor kept max_g psi_g
    # under 20 points (python -m bench.dual_step). The lr decays x0.1 at 60 % and 80 % of the run, so
    # that the diagnostic window (the last 3 of 15 epochs) runs at the final lr: with the default 70 % and
    # 90 %, CEAG and EL+RB at 90 % did not settle, their multipliers still growing against constraints
    # the pruned model could not meet (python -m bench --only utkface_cpu). Evaluating every 5 epochs
    # plus every epoch of the window keeps evaluation (a full pass over 23,704 images) from doubling
    # the run time.
    "utkface_cpu": GridSpec(
        datasets=("utkface",), models=("cnn_small",), methods=GRID_METHODS, sparsities=(0.9, 0.95),
        tolerances=(0.02,), seeds=(0,),
        settings={"target": "race", "groups": ["race"], "image_size": 32, "val_fraction": 0.0, "rare_groups": [],
                  "dense_last_layer": True, "dense_epochs": 10, "prune_epochs": 5, "finetune_epochs": 10,
                  "batch_size": 128, "lr": 0.05, "lr_milestones": [0.6, 0.8], "dual_lr": 0.01, "eval_every": 5},
        method_settings={"el_rb": {"dual_lr": 1e-4}}),
}

# Setups of Hashemizadeh et al. (ICLR 2024) as their code configures them (GitHub
# merajhashemi/balancing-act, src/configs/<dataset>/sparse_imp.py and dense.py); docs/presets.md
# lists every value with its source and each place where a preset differs, and why.
PAPER_COMMON: dict[str, Any] = dict(
    dense_first_conv=True, dense_last_layer=True,        # is_first_conv_dense / is_last_fc_dense
    val_fraction=0.0, rare_groups=[],                    # val_split_ratio 0.0; the datasets as published
    prune_epochs=15, pruning="unstructured",             # last_pruning_epoch 15, sparsity_type unstructured
    buffer_size=40, replay_buffer=True,                  # buffer_memory 40
    mitigation_start="after_pruning",                    # apply_mitigation_while_pruning False
    detach_overall=False,                                # detach_model_constraint_contribution False
    overall_estimate="buffer_mean",                      # GroupCyclicBuffer.query
    masked_bn=True, prune_rounding="ceil",               # MaskedBatchNorm2d; math.ceil in pruning.py
    weight_decay_scope="last_layer",                     # model_sq_l2_norm's overwrite
    momentum=0.9, nesterov=False, lr_gamma=0.1,
)
_UTKFACE = dict(target="race", groups=["race"], finetune_epochs=45, batch_size=128, lr=1e-2,
                weight_decay=1e-4, lr_milestones=[0.6, 0.8, 0.9], dual_lr=1e-4,
                # src/configs/utkface/dense.py: Adam 1e-3, 50 epochs, steps at 60/80/90 %, wd 1e-4
                dense_epochs=50, dense_optimizer="adam", dense_lr=1e-3, dense_weight_decay=1e-4,
                dense_batch_size=128, dense_lr_milestones=[0.6, 0.8, 0.9])
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "utkface": dict(dataset="utkface", model="mobilenet_v2", sparsities=(0.85, 0.9, 0.925, 0.95),
                    tolerances=(0.005, 0.01, 0.02), settings=_UTKFACE,
                    checkpoint=("mobilenet_v2_utkface_race.pt", "the paper's authors (their own dense MobileNet-V2, "
                                "torchvision key names)")),
    "utkface_intersectional": dict(dataset="utkface", model="mobilenet_v2", sparsities=(0.85, 0.9, 0.925, 0.95),
                                   tolerances=(0.005, 0.01, 0.02), settings={**_UTKFACE, "groups": ["race", "gender"]},
                                   checkpoint=("mobilenet_v2_utkface_race.pt", "the paper's authors (their own dense "
                                               "MobileNet-V2, torchvision key names)")),
    "fairface": dict(dataset="fairface", model="resnet34", sparsities=(0.99,), tolerances=(0.005, 0.01, 0.02),
                     settings=dict(target="race", groups=["race"], finetune_epochs=32, batch_size=256, lr=1e-3,
                                   momentum=0.95, nesterov=True, weight_decay=1e-2, lr_milestones=[0.9],
                                   dual_lr=1e-4,
                                   # no dense training in the paper (the released model); without it:
                                   # src/configs/fairface/dense.py's Adam 1e-3, batch 128, for 40 epochs
                                   dense_epochs=40, dense_optimizer="adam", dense_lr=1e-3, dense_weight_decay=0.0,
                                   dense_batch_size=128, dense_lr_milestones=[]),
                     checkpoint=("res34_fair_align_multi_7_20190809.pt", "FairFace (github.com/dchen236/FairFace): "
                                 "ResNet-34, 18 outputs")),
    "cifar100": dict(dataset="cifar100", model="resnet56", sparsities=(0.925, 0.95), tolerances=(0.05, 0.1),
                     settings=dict(finetune_epochs=35, batch_size=128, lr=1e-2, weight_decay=1e-4,
                                   lr_milestones=[0.6, 0.8, 0.9], dual_lr=1e-2,
                                   # no dense training in the paper (chenyaofo's model); without it, that
                                   # model's recipe: SGD 0.1, wd 5e-4, batch 256, 200 epochs (step decay here)
                                   dense_epochs=200, dense_lr=0.1, dense_weight_decay=5e-4, dense_batch_size=256,
                                   dense_lr_milestones=[0.5, 0.75]),
                     checkpoint=("cifar100_resnet56-f2eff4c8.pt", "chenyaofo/pytorch-cifar-models "
                                 "(cifar100_resnet56)")),
}


UTKFACE_TRAIN_IMAGES = 18_963  # the 80 % training split of the 23,704 usable UTKFace images
SMALLEST_SHARE = 0.07          # "Others", the smallest race in UTKFace (0.071 of the images)


def utkface_cpu_note(spec: GridSpec, violation: float = 0.1, loss_gap: float = 0.5) -> str:
    """Why the ``utkface_cpu`` preset's dual steps are what they are, computed from its settings (Markdown).

    ``violation``: a hurt group's psi_hat_g - eps after pruning (fraction); ``loss_gap``: EL+RB's
    loss gap |L_g - L| for the hardest group (nats; 0.51 averaged over fine-tuning in
    ``python -m bench --only utkface_cpu``).
    """
    s = spec.settings
    steps = math.ceil(UTKFACE_TRAIN_IMAGES / s["batch_size"])
    reach = s["dual_lr"] * violation * steps
    from .config import lr_at
    from .diagnostics import window_length

    el_dual = spec.cell_settings("el_rb").get("dual_lr", s["dual_lr"])
    total = s["prune_epochs"] + s["finetune_epochs"]
    window = window_length(s["finetune_epochs"])
    rates = {lr_at(e, total, s["lr"], tuple(s["lr_milestones"]), s.get("lr_gamma", 0.1))
             for e in range(total - window, total)}
    final = f"{min(rates):g}" if len(rates) == 1 else f"{max(rates):g} and {min(rates):g}"
    methods = ", ".join(spec.methods).upper().replace("_", "+")
    fine_tuning = steps * s["finetune_epochs"]
    milestones = " and ".join(f"{100 * m:g} %" for m in s["lr_milestones"])
    return (
        f"The half-width small CNN (`{spec.models[0]}`) at {s['image_size']} px on race, {methods} at sparsities "
        f"{', '.join(f'{x:g}' for x in spec.sparsities)}, ε = {spec.tolerances[0]:g}: dense {s['dense_epochs']} + "
        f"pruning {s['prune_epochs']} + fine-tuning {s['finetune_epochs']} epochs at batch {s['batch_size']}, so "
        f"about {steps} steps per epoch and {fine_tuning:,} dual steps. A hurt group's constraint is violated by "
        f"about {violation:g} after pruning; its multiplier acts once it is comparable with the group's share of "
        f"the training set ({SMALLEST_SHARE:g} to 0.43 on UTKFace). With CEAG's dual step {s['dual_lr']:g} it "
        f"gains about {reach:.2f} per epoch of that violation (the default 0.003: {0.003 * violation * steps:.2f}). "
        f"EL+RB's violations are loss gaps |L_g − L|, never negative and about {loss_gap:g} nats for the hardest "
        f"group, so its multipliers only grow, for the whole run: with its own dual step {el_dual:g} by about "
        f"{el_dual * loss_gap * fine_tuning:.2f} over fine-tuning, against {SMALLEST_SHARE:g} for the smallest "
        f"group's share (at CEAG's {s['dual_lr']:g} it would be {s['dual_lr'] * loss_gap * fine_tuning:.1f}). The "
        f"learning rate {s['lr']:g} drops ×0.1 at {milestones} of the run, so that the last {window} epochs, over "
        f"which each run's spread is measured, run at {final}. Every run reports whether it settled and whether "
        "its constraints acted (Curves, Multipliers).")


def preset(name: str) -> GridSpec:
    if name in PRESETS:
        return PRESETS[name]
    if name in PAPER_PRESETS:
        p = PAPER_PRESETS[name]
        return _paper(p["dataset"], p["model"], p["sparsities"], p["tolerances"], p["settings"])
    raise ConfigError("preset", name, f"must be one of {', '.join([*PRESETS, *PAPER_PRESETS])}")


def preset_checkpoint(name: str) -> tuple[str, str] | None:
    """(file name, publisher) of the dense model the paper's runs of preset ``name`` start from."""
    return PAPER_PRESETS.get(name, {}).get("checkpoint")


def preset_names() -> list[str]:
    return [*PRESETS, *PAPER_PRESETS]


# -- planning -----------------------------------------------------------------------------
def training_config(cfg: RunConfig) -> RunConfig:
    """The run that actually trains for ``cfg`` (NFT+ES reads its NFT run)."""
    return cfg.replace(method="nft") if cfg.method == "nft_es" else cfg


# Cells that train nothing themselves: they are derived from other runs of the same setting.
DERIVED_METHODS = ("nft_es", "ceag_vs")


def training_configs(cfg: RunConfig) -> list[RunConfig]:
    """The runs that train for ``cfg``: itself, NFT+ES's NFT run, or CEAG+VS's CEAG runs."""
    if cfg.method == "ceag_vs":
        return candidate_configs(cfg)
    return [training_config(cfg)]


@dataclass
class Task:
    """One node of a grid's phase graph.

    ``kind``: "dense" (train the dense model of ``dense_key``), "pruning" (the state at the end of
    pruning of ``prune_key``), "run" (a training run; fine-tuning when its pruning is shared) or
    "derive" (an NFT+ES cell from its NFT run, a CEAG+VS cell from its CEAG runs). ``deps``: ids of
    the tasks whose outputs it reads.
    ``cells``: the grid cells that need it (a failure fails exactly these). ``epochs``: epochs it
    trains; ``priority``: epochs on the longest chain from it to the end of the grid.
    """

    id: str
    kind: str
    cfg: RunConfig
    deps: tuple[str, ...] = ()
    cells: list[str] = field(default_factory=list)
    epochs: int = 0
    priority: int = 0

    @property
    def phase(self) -> str:
        """The phase it reports while it runs ("dense", "pruning", "fine-tuning")."""
        if self.kind == "run":
            return "fine-tuning"
        return "fine-tuning" if self.kind == "derive" else self.kind


def plan(configs: list[RunConfig]) -> dict[str, Task]:
    """The phase graph of a grid: dense -> pruning -> run (fine-tuning) -> derived cells.

    One dense task per ``dense_key`` (for a ``dense_checkpoint`` it only checks the file, or
    trains from a backbone), one pruning
    task per shared ``prune_key``, one run per distinct training (NFT+ES trains its NFT run, CEAG+VS
    its CEAG runs), one derive task per derived cell. Returned in a topological order (each task after its inputs);
    ``priority`` lets a scheduler start the task with the longest chain behind it first.
    """
    from .phases import shares_pruning

    tasks: dict[str, Task] = {}
    for cfg in configs:
        trained = []
        for t in training_configs(cfg):
            run_id = f"run:{t.run_id}"
            trained.append(run_id)
            if run_id in tasks:
                continue
            d = tasks.setdefault(f"dense:{dense_key(t)}", Task(f"dense:{dense_key(t)}", "dense", t,
                                                               epochs=t.dense_epochs))
            deps = [d.id]
            tuning = t.total_epochs
            if shares_pruning(t):
                p = tasks.setdefault(f"pruning:{prune_key(t)}", Task(f"pruning:{prune_key(t)}", "pruning", t,
                                                                     deps=tuple(deps), epochs=t.prune_epochs))
                deps.append(p.id)
                tuning = t.finetune_epochs
            tasks[run_id] = Task(run_id, "run", t, deps=tuple(deps), epochs=tuning)
        if cfg.method in DERIVED_METHODS:
            tasks[f"derive:{cfg.run_id}"] = Task(f"derive:{cfg.run_id}", "derive", cfg, deps=tuple(trained))
    # The cells each task serves, through its dependents.
    wanted = {c.run_id for c in configs}
    for task in reversed(list(tasks.values())):
        if task.kind in ("run", "derive") and task.cfg.run_id in wanted:
            task.cells.insert(0, task.cfg.run_id)
    for task in reversed(list(tasks.values())):
        for dep in task.deps:
            for cell in task.cells:
                if cell not in tasks[dep].cells:
                    tasks[dep].cells.append(cell)
    below: dict[str, int] = {}
    for task in reversed(list(tasks.values())):  # dependents come later: walk back from the end
        task.priority = task.epochs + below.get(task.id, 0)
        for dep in task.deps:
            below[dep] = max(below.get(dep, 0), task.priority)
    return tasks


def count_epochs(configs: list[RunConfig]) -> dict[str, int]:
    """Training epochs a grid executes with sharing, and without it (every cell from scratch)."""
    independent = shared = 0
    dense_seen, pruned_seen, runs_seen = set(), set(), set()
    for cfg in configs:
        trainings = training_configs(cfg)
        independent += cfg.dense_epochs + cfg.total_epochs * len(trainings)
        for t in trainings:
            shared += _shared_epochs(t, dense_seen, pruned_seen, runs_seen)
    return {"shared": shared, "independent": independent}


def _shared_epochs(t: RunConfig, dense_seen: set, pruned_seen: set, runs_seen: set) -> int:
    """Epochs training ``t`` adds once the dense models, pruned states and runs seen are shared."""
    if t.run_id in runs_seen:
        return 0
    runs_seen.add(t.run_id)
    shared = 0
    if dense_key(t) not in dense_seen:
        dense_seen.add(dense_key(t))
        shared += t.dense_epochs
    k = prune_key(t)
    if k == t.run_id or k not in pruned_seen:
        pruned_seen.add(k)
        shared += t.total_epochs
    else:
        shared += t.finetune_epochs
    return shared
