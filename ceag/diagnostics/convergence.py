"""Did a run settle? Over the diagnostic window, the last ``WINDOW_FRACTION`` of fine-tuning epochs
(at least ``MIN_WINDOW``; the engine evaluates every epoch there whatever ``eval_every`` says),
the *spread* (max - min) of overall accuracy and of max_g psi_g on each split. A run has
*settled* when on every split the accuracy spread is at most ``ACCURACY_SPREAD`` plus one
sample of the split, and the max_g psi_g spread at most ``EXCESS_GAP_SPREAD`` plus one sample of
the split's smallest group (an accuracy over n samples moves in steps of 1/n: a 6-sample group
cannot resolve 2 points). A run that has not settled reports one draw of a moving quantity.
No torch.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

ACCURACY_SPREAD = 0.01       # fraction: 1 point of overall accuracy


EXCESS_GAP_SPREAD = 0.02     # fraction: 2 points of max_g psi_g (the default tolerance)


# -- convergence --------------------------------------------------------------------------
def convergence(run_metrics: pd.DataFrame, split_size: dict[str, int], min_group_size: dict[str, int], *,
                first_epoch: int, last_epoch: int) -> dict[str, Any]:
    """The spread of accuracy and max_g psi_g per split over epochs ``first_epoch..last_epoch``.

    ``run_metrics``: rows (epoch, split, accuracy, max_excess_gap) as the engine records them;
    ``split_size``: samples per split; ``min_group_size``: per split, the size of its smallest
    non-empty group. Returns
    ``{"converged": bool | None, "window": [first, last], "evaluations": {split: k},
    "spread": {split: {"accuracy", "max_excess_gap"}}, "limit": {split: {...}}}`` with fractions;
    ``converged`` is None when a split has fewer than two evaluations in the window.
    """
    w = run_metrics[(run_metrics["epoch"] >= first_epoch) & (run_metrics["epoch"] <= last_epoch)]
    spread: dict[str, dict[str, float | None]] = {}
    limit: dict[str, dict[str, float]] = {}
    evaluations: dict[str, int] = {}
    verdicts: list[bool | None] = []
    for split in [s for s in ("train", "val", "test") if s in set(run_metrics["split"])]:
        part = w[w["split"] == split]
        evaluations[split] = int(part["epoch"].nunique())
        acc, gap = _range(part["accuracy"]), _range(part["max_excess_gap"])
        n_min, n = int(min_group_size.get(split) or 0), int(split_size.get(split) or 0)
        limit[split] = {"accuracy": ACCURACY_SPREAD + (1.0 / n if n > 0 else 0.0),
                        "max_excess_gap": EXCESS_GAP_SPREAD + (1.0 / n_min if n_min > 0 else 0.0)}
        spread[split] = {"accuracy": acc, "max_excess_gap": gap}
        if evaluations[split] < 2 or acc is None:
            verdicts.append(None)
        else:
            gap_ok = gap is None or gap <= limit[split]["max_excess_gap"] + 1e-12
            verdicts.append(bool(acc <= limit[split]["accuracy"] + 1e-12 and gap_ok))
    converged = None if (not verdicts or None in verdicts) else all(verdicts)
    return {"converged": converged, "window": [int(first_epoch), int(last_epoch)],
            "evaluations": evaluations, "spread": spread, "limit": limit}


def _range(values: pd.Series) -> float | None:
    v = values.dropna().to_numpy(dtype=float)
    return float(v.max() - v.min()) if v.size else None


def convergence_advice(conv: dict[str, Any], *, lr: float, lr_milestones: tuple[float, ...],
                       finetune_epochs: int) -> str | None:
    """What to change when a run has not settled (None when it has, or cannot tell)."""
    if conv.get("converged") is not False:
        return None
    worst = worst_spread(conv)
    what = (f"{worst[1].replace('max_excess_gap', 'max_g ψ_g')} on {worst[0]} moved "
            f"{100 * worst[2]:.1f} points over epochs {conv['window'][0]}–{conv['window'][1]}") if worst else ""
    fixes = [f"lower lr (now {lr:g})"]
    if not lr_milestones:
        fixes.append("decay it over fine-tuning (lr_milestones, e.g. [0.7, 0.9])")
    fixes.append(f"fine-tune longer (now {finetune_epochs} epochs)")
    return f"not settled: {what}; " + ", or ".join(fixes) + "."


def worst_spread(conv: dict[str, Any]) -> tuple[str, str, float] | None:
    """(split, metric, spread) with the largest spread relative to its limit."""
    best, ratio = None, -1.0
    for split, values in conv.get("spread", {}).items():
        for metric, v in values.items():
            lim = conv["limit"][split][metric]
            if v is not None and v / lim > ratio:
                best, ratio = (split, metric, v), v / lim
    return best
