"""Both diagnostics and the learning check of one run, as the ``diagnostics`` object of its summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ceag.config.schedule import window_first_epoch
from ceag.diagnostics.constraints import constraint_report, moving_multipliers
from ceag.diagnostics.convergence import convergence, convergence_advice


# -- both, for one run --------------------------------------------------------------------
def run_diagnostics(cfg, run_metrics: pd.DataFrame, group_metrics: pd.DataFrame,
                    counter: dict[str, list] | None, *, last_epoch: int,
                    counter_source: str = "steps") -> dict[str, Any]:
    """The ``diagnostics`` object of one run (see the module docstring).

    ``cfg``: the RunConfig; ``run_metrics`` / ``group_metrics``: the run's per-epoch records;
    ``counter``: the constrained method's counter state (None for NFT); ``last_epoch``: the last
    epoch trained. ``counter_source`` says whether the counter saw every dual step ("steps") or
    was rebuilt from the subsampled trace ("trace").
    """
    first = window_first_epoch(cfg.total_epochs, cfg.finetune_epochs)
    start = group_metrics[group_metrics["epoch"] == group_metrics["epoch"].min()]
    sizes = {s: int(p.loc[p["n"] > 0, "n"].min()) if (p["n"] > 0).any() else 0 for s, p in start.groupby("split")}
    totals = {s: int(p["n"].sum()) for s, p in start.groupby("split")}
    if first > cfg.total_epochs or last_epoch < cfg.total_epochs:
        conv: dict[str, Any] = {"converged": None, "window": [int(first), int(cfg.total_epochs)],
                                "evaluations": {}, "spread": {}, "limit": {}}
    else:
        conv = convergence(run_metrics, totals, sizes, first_epoch=first, last_epoch=cfg.total_epochs)
    out: dict[str, Any] = {
        "converged": conv["converged"], "window": conv["window"], "evaluations": conv["evaluations"],
        "spread": conv["spread"], "spread_limit": conv["limit"],
        "advice": convergence_advice(conv, lr=cfg.lr, lr_milestones=cfg.lr_milestones,
                                     finetune_epochs=cfg.finetune_epochs),
        "max_multiplier": None, "constraints_active": None,
    }
    if counter is None:
        return out
    # The split whose samples drive the multipliers (held-out multipliers: validation).
    drive = "val" if getattr(cfg, "constraint_data", "train") == "val" else "train"
    train = group_metrics[group_metrics["split"] == drive]
    names = [str(n) for n in train[train["epoch"] == train["epoch"].min()].sort_values("group_id")["group_name"]]
    num_groups = len(names)
    counts = start[start["split"] == drive].sort_values("group_id")["n"].to_numpy(dtype=float)
    share = counts / max(counts.sum(), 1.0)
    value = _constraint_value(cfg.method, train, run_metrics[run_metrics["split"] == drive], num_groups)
    end = value.loc[value.index.max()].to_numpy() if not value.empty else np.full(num_groups, np.nan)
    in_window = value[(value.index >= first) & (value.index <= last_epoch)]
    window_mean = in_window.mean().to_numpy() if not in_window.empty else np.full(num_groups, np.nan)
    report = constraint_report(counter, method=cfg.method, tolerance=cfg.tolerance, dual_lr=cfg.dual_lr,
                               group_share=share, group_names=names, train_excess_gap=end,
                               window_train_excess_gap=window_mean, train_count=counts,
                               window_epochs=len(in_window), buffer_size=cfg.buffer_size, split=drive)
    report["source"] = counter_source
    if out["converged"] is False and out["advice"]:
        moving = moving_multipliers(counter, method=cfg.method, tolerance=cfg.tolerance, dual_lr=cfg.dual_lr,
                                    group_share=share, group_names=names, window=conv["window"])
        if moving:
            out["advice"] = f"{out['advice']} {moving}"
    out.update(max_multiplier=report["max_multiplier"], constraints_active=report["constraints_active"],
               constraints=report)
    return out


def _constraint_value(method: str, train_groups: pd.DataFrame, train_runs: pd.DataFrame,
                      num_groups: int) -> pd.DataFrame:
    """Per evaluated epoch (index) and group (columns) the train value a constraint is about."""
    after = train_groups[train_groups["epoch"] > 0]
    # Every group keeps its column, also one without samples in the split (its values are NaN).
    groups = range(num_groups)
    if method in ("ceag", "ceag_vs"):
        return after.pivot_table(index="epoch", columns="group_id", values="excess_gap", aggfunc="first",
                                 dropna=False).reindex(columns=groups)
    overall = train_runs.set_index("epoch")["loss"]
    losses = after.pivot_table(index="epoch", columns="group_id", values="loss", aggfunc="first",
                               dropna=False).reindex(columns=groups)
    return losses.sub(overall.reindex(losses.index), axis=0).abs()
