"""A grid's phase graph: one dense model per dense key, one end-of-pruning state per prune key, each run's
fine-tuning, then the derived cells (NFT+ES, CEAG+VS) from their runs. Shared work is done once, and
executors start each phase as soon as its inputs exist, the longest chain of epochs first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ceag.config.derived import training_configs
from ceag.config.keys import dense_key, prune_key
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import DERIVED_METHODS


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
    from ceag.config.keys import shares_pruning

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
    dense_seen: set[str] = set()
    pruned_seen: set[str] = set()
    runs_seen: set[str] = set()
    for cfg in configs:
        trainings = training_configs(cfg)
        independent += cfg.dense_epochs + cfg.total_epochs * len(trainings)
        for t in trainings:
            shared += _shared_epochs(t, dense_seen, pruned_seen, runs_seen)
    return {"shared": shared, "independent": independent}


def _shared_epochs(t: RunConfig, dense_seen: set[str], pruned_seen: set[str], runs_seen: set[str]) -> int:
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
