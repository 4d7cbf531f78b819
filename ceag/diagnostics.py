"""Can a run's numbers be trusted? Two diagnostics, as pure functions on a run's records.

**Convergence.** Over the diagnostic window, the last ``WINDOW_FRACTION`` of fine-tuning epochs
(at least ``MIN_WINDOW``; the engine evaluates every epoch there whatever ``eval_every`` says),
the *spread* (max - min) of overall accuracy and of max_g psi_g on each split. A run has
*settled* when on every split the accuracy spread is at most ``ACCURACY_SPREAD`` plus one
sample of the split, and the max_g psi_g spread at most ``EXCESS_GAP_SPREAD`` plus one sample of
the split's smallest group (an accuracy over n samples moves in steps of 1/n: a 6-sample group
cannot resolve 2 points). A run that has not settled reports one draw of a moving quantity.

**Constraints** (CEAG, EL+RB). The primal objective weighs group g's samples by its share p_g
of the training split, plus lambda_g from the constraint term (CEAG: lambda_g psi~_g; EL+RB:
lambda_g |L_g - L|). So lambda_g / p_g is how much the constraint re-weighted the group: the
constraints *acted* when some group's largest multiplier reached ``ACTIVE_RATIO`` times its
share (its weight in the objective rose by at least half). ``ConstraintCounter`` tallies every
dual step (largest multiplier, steps with a violated constraint, sums over the window); the
report compares the buffered estimates with the evaluated train psi_g over the same window.

Everything here is numpy and pandas: no torch, so the store and the app can use it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

WINDOW_FRACTION = 0.2
MIN_WINDOW = 3
ACCURACY_SPREAD = 0.01       # fraction: 1 point of overall accuracy
EXCESS_GAP_SPREAD = 0.02     # fraction: 2 points of max_g psi_g (the default tolerance)
ACTIVE_RATIO = 0.5           # largest lambda_g / p_g for the constraints to count as acting
MOVING_RATIO = 0.1           # growth of lambda_g / p_g over the window that still moves the model
NOISE_Z = 2.0                # standard errors allowed for sampling noise in the agreement check


def window_length(finetune_epochs: int) -> int:
    """Epochs in the diagnostic window: 20 % of fine-tuning, at least 3, at most all of it."""
    if finetune_epochs <= 0:
        return 0
    return min(finetune_epochs, max(MIN_WINDOW, math.ceil(WINDOW_FRACTION * finetune_epochs)))


def window_first_epoch(total_epochs: int, finetune_epochs: int) -> int:
    """The first epoch count (1-based: the evaluation after that many epochs) in the window.

    Returns ``total_epochs + 1`` when there is no window (no fine-tuning).
    """
    return total_epochs - window_length(finetune_epochs) + 1


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
    worst = _worst_spread(conv)
    what = (f"{worst[1].replace('max_excess_gap', 'max_g ψ_g')} on {worst[0]} moved "
            f"{100 * worst[2]:.1f} points over epochs {conv['window'][0]}–{conv['window'][1]}") if worst else ""
    fixes = [f"lower lr (now {lr:g})"]
    if not lr_milestones:
        fixes.append("decay it over fine-tuning (lr_milestones, e.g. [0.7, 0.9])")
    fixes.append(f"fine-tune longer (now {finetune_epochs} epochs)")
    return f"not settled: {what}; " + ", or ".join(fixes) + "."


def _worst_spread(conv: dict[str, Any]) -> tuple[str, str, float] | None:
    """(split, metric, spread) with the largest spread relative to its limit."""
    best, ratio = None, -1.0
    for split, values in conv.get("spread", {}).items():
        for metric, v in values.items():
            lim = conv["limit"][split][metric]
            if v is not None and v / lim > ratio:
                best, ratio = (split, metric, v), v / lim
    return best


# -- constraints --------------------------------------------------------------------------
class ConstraintCounter:
    """Per-group tallies of a Lagrangian method's dual steps, updated in place every step.

    Arrays are (G,): ``max_multiplier`` (largest lambda_g so far), ``steps`` (dual steps in
    which the group had an estimate), ``violated`` (of those, steps with violation > 0),
    ``positive_sum`` (sum of max(violation, 0): lambda_g can never exceed dual_lr times it),
    ``last`` (the last violation), and over the window (``in_window`` set by the engine)
    ``window_steps`` and ``window_sum`` of the violations.
    """

    FIELDS = ("max_multiplier", "steps", "violated", "positive_sum", "last", "window_steps", "window_sum")

    def __init__(self, num_groups: int):
        self.num_groups = num_groups
        self.max_multiplier = np.zeros(num_groups)
        self.steps = np.zeros(num_groups, dtype=np.int64)
        self.violated = np.zeros(num_groups, dtype=np.int64)
        self.positive_sum = np.zeros(num_groups)
        self.last = np.full(num_groups, np.nan)
        self.window_steps = np.zeros(num_groups, dtype=np.int64)
        self.window_sum = np.zeros(num_groups)
        self.in_window = False

    def update_(self, multipliers: np.ndarray, violation: np.ndarray, ready: np.ndarray) -> None:
        """One dual step: ``multipliers`` (G,) after it; ``violation`` (G,), NaN where not ``ready``.

        A handful of numpy calls on (G,) arrays: it runs every training step.
        """
        # Both methods' multipliers stay >= 0 (CEAG projects; EL+RB adds non-negative |violations|).
        np.maximum(self.max_multiplier, multipliers, out=self.max_multiplier)
        self.steps += ready
        positive = np.fmax(violation, 0.0)  # fmax turns NaN into 0
        self.positive_sum += positive
        self.violated += positive > 0
        np.copyto(self.last, violation, where=ready)
        if self.in_window:
            self.window_steps += ready
            self.window_sum += np.where(ready, violation, 0.0)

    def state_dict(self) -> dict[str, list]:
        return {name: getattr(self, name).tolist() for name in self.FIELDS}

    def load_state_dict(self, state: dict[str, list]) -> None:
        for name in self.FIELDS:
            if name in state:
                current = getattr(self, name)
                setattr(self, name, np.asarray(state[name], dtype=current.dtype).reshape(current.shape))


def counter_from_trace(duals: pd.DataFrame, num_groups: int) -> dict[str, list]:
    """An approximate counter state from a subsampled trace (runs recorded before the counter).

    Shares and maxima are over the traced steps only; the window sums are left empty.
    """
    c = ConstraintCounter(num_groups)
    for _, step in duals.sort_values(["step", "group_id"]).groupby("step", sort=True):
        lam = np.zeros(num_groups)
        viol = np.full(num_groups, np.nan)
        lam[step["group_id"].to_numpy()] = step["multiplier"].to_numpy()
        viol[step["group_id"].to_numpy()] = step["violation"].to_numpy()
        c.update_(lam, viol, ~np.isnan(viol))
    return c.state_dict()


def constraint_report(counter: dict[str, list], *, method: str, tolerance: float | None, dual_lr: float,
                      group_share: np.ndarray, group_names: list[str], train_excess_gap: np.ndarray,
                      window_train_excess_gap: np.ndarray, train_count: np.ndarray,
                      window_epochs: int, buffer_size: int, split: str = "train") -> dict[str, Any]:
    """The constraint diagnostic of a CEAG or EL+RB run.

    ``split``: the split whose samples drive the multipliers ("train", or "val" for held-out
    multipliers); the group shares, counts and evaluated values are that split's, and the
    warnings name it.

    ``counter``: ``ConstraintCounter.state_dict()``; ``group_share`` (G,) each group's share of
    the training split; ``train_excess_gap`` (G,) the evaluated train value the constraint is
    about at the last epoch (CEAG: psi_g; EL+RB: |L_g - L|), ``window_train_excess_gap`` (G,) its
    mean over the window's evaluations; ``train_count`` (G,) training samples per group.

    Returns ``max_multiplier``, ``multiplier_ratio`` (max_g max lambda_g / p_g),
    ``constraints_active``, ``estimates_agree`` (None for EL+RB, which has no tolerance), per
    ``groups`` rows and ``warnings`` (generated sentences).
    """
    lam = np.asarray(counter["max_multiplier"], dtype=float)
    steps = np.asarray(counter["steps"], dtype=float)
    violated = np.asarray(counter["violated"], dtype=float)
    positive = np.asarray(counter["positive_sum"], dtype=float)
    offset = tolerance if (method == "ceag" and tolerance is not None) else 0.0
    last = np.asarray(counter["last"], dtype=float) + offset
    w_steps = np.asarray(counter["window_steps"], dtype=float)
    window_est = np.where(w_steps > 0, np.asarray(counter["window_sum"], dtype=float) / np.maximum(w_steps, 1),
                          np.nan) + offset
    share = np.asarray(group_share, dtype=float)
    ratio = np.where(share > 0, lam / np.maximum(share, 1e-12), 0.0)
    top = int(np.argmax(ratio)) if ratio.size else 0
    active = bool(ratio.size and ratio[top] >= ACTIVE_RATIO)

    # Agreement (CEAG): the window means of the buffered psi_hat_g and the evaluated train psi_g
    # may differ by the tolerance plus sampling noise of the buffered 0/1 predictions.
    allowance = np.full(len(lam), np.nan)
    disagree = np.zeros(len(lam), dtype=bool)
    if method == "ceag" and tolerance is not None:
        acc = np.clip(1.0 - np.nan_to_num(window_train_excess_gap, nan=0.0), 0.05, 0.95)
        seen = np.maximum(np.asarray(train_count, dtype=float) * max(window_epochs, 1), buffer_size)
        allowance = tolerance + NOISE_Z * np.sqrt(acc * (1 - acc) / seen)
        diff = np.abs(window_est - np.asarray(window_train_excess_gap, dtype=float))
        disagree = (w_steps > 0) & (diff > allowance)
    agree = None if method != "ceag" else bool(not disagree.any())

    groups = [
        {"group": i, "name": group_names[i], "max_multiplier": _num(lam[i]), "multiplier_ratio": _num(ratio[i]),
         "dual_steps": int(steps[i]), "violated_share": _num(violated[i] / steps[i]) if steps[i] else None,
         "last_estimate": _num(last[i]), "train_excess_gap": _num(train_excess_gap[i]),
         "window_estimate": _num(window_est[i]), "window_train_excess_gap": _num(window_train_excess_gap[i]),
         "allowance": _num(allowance[i]), "disagree": bool(disagree[i])}
        for i in range(len(lam))
    ]
    warnings = []
    if not active:
        warnings.append(_inactive_warning(method, tolerance, dual_lr, share, positive, steps, lam,
                                          window_train_excess_gap, group_names, split))
    if disagree.any():
        worst = int(np.nanargmax(np.where(disagree, np.abs(window_est - window_train_excess_gap), -np.inf)))
        warnings.append(
            f"buffered estimates disagree with the evaluation: for {group_names[worst]} the dual step saw "
            f"ψ̂_g {100 * window_est[worst]:.1f} points on average over the last {window_epochs} epochs, the "
            f"evaluated {split} ψ_g was {100 * window_train_excess_gap[worst]:.1f} (allowed difference "
            f"{100 * allowance[worst]:.1f}); "
            + ("the replay buffers hold train-mode predictions of a model that moves between batches — lower "
               "lr, or a larger buffer_size" if split == "train" else
               "the validation batches the dual step saw are a small sample of the split — a larger "
               "buffer_size, or more frequent validation batches (heldout_every)"))
    return {"max_multiplier": _num(float(lam.max()) if lam.size else 0.0),
            "multiplier_ratio": _num(float(ratio[top]) if ratio.size else 0.0),
            "multiplier_group": group_names[top] if lam.size else None,
            "constraints_active": active, "estimates_agree": agree,
            "dual_steps": int(steps.max()) if steps.size else 0, "split": split,
            "groups": groups, "warnings": [w for w in warnings if w]}


def _inactive_warning(method, tolerance, dual_lr, share, positive, steps, lam, window_gap, names,
                      split: str = "train") -> str | None:
    """Why the constraints never acted, with the dual step that would have let them."""
    whole = "training split" if split == "train" else "validation split"
    if method == "ceag" and tolerance is not None:
        over = np.nan_to_num(np.asarray(window_gap, dtype=float), nan=-np.inf) > tolerance
        if not over.any():
            return None  # nothing to act on: every group stayed within the tolerance
        g = int(np.argmax(np.where(over, np.asarray(window_gap, dtype=float), -np.inf)))
        state = (f"{names[g]} ended at {split} ψ_g {100 * window_gap[g]:.1f} points against ε = "
                 f"{100 * tolerance:g}")
    else:
        g = int(np.argmax(positive))
        state = f"the largest loss gap was {names[g]}'s"
    if positive[g] <= 0:
        return f"the constraints never acted: {state}, yet no dual step saw a violation"
    needed = ACTIVE_RATIO * share[g] / positive[g]
    return (f"the constraints never acted: {state}, but its multiplier reached only {lam[g]:.3g} "
            f"({lam[g] / max(share[g], 1e-12):.2f} of the group's share {share[g]:.3f} of the {whole}). "
            f"Over {int(steps[g])} dual steps the summed violation was {positive[g]:.3g}, so λ_g can reach at "
            f"most dual_lr × {positive[g]:.3g}; a dual step of about {needed:.2g} (now {dual_lr:g}) would let it "
            f"reach half the group's share")


def moving_multipliers(counter: dict[str, list], *, method: str, tolerance: float | None, dual_lr: float,
                       group_share: np.ndarray, group_names: list[str], window: list[int]) -> str | None:
    """Why a Lagrangian run may not settle: a multiplier still growing over the window (a sentence, or None).

    λ_g grows by ``dual_lr`` times each violation, so over the window it gained about
    ``dual_lr × window_sum`` (less where CEAG's projection at 0 held it). A gain of at least
    ``MOVING_RATIO`` of the group's share p_g still changes its weight in the objective, and the
    model follows: a constraint that stays violated does not let the run settle.
    """
    sums = np.asarray(counter.get("window_sum", []), dtype=float)
    steps = np.asarray(counter.get("window_steps", []), dtype=float)
    share = np.asarray(group_share, dtype=float)
    if not sums.size or not (steps > 0).any():
        return None
    gain = np.where(steps > 0, dual_lr * np.maximum(sums, 0.0), 0.0)
    ratio = np.where(share > 0, gain / np.maximum(share, 1e-12), 0.0)
    g = int(np.argmax(ratio))
    if ratio[g] < MOVING_RATIO:
        return None
    mean = sums[g] / steps[g]
    span = f"epochs {window[0]}–{window[1]}"
    if method in ("ceag", "ceag_vs") and tolerance is not None:
        what = (f"{group_names[g]}'s constraint stayed violated (ψ̂_g {100 * (mean + tolerance):.1f} points on "
                f"average against ε = {100 * tolerance:g} over {span})")
        fix = f"a looser ε (now {tolerance:g}), a lower sparsity, or a smaller dual_lr (now {dual_lr:g})"
    else:
        what = f"{group_names[g]}'s loss gap |L_g − L| stayed at {mean:.3g} on average over {span}"
        fix = (f"equal losses are out of reach when groups differ in difficulty; a smaller dual_lr (now "
               f"{dual_lr:g}) slows the growth")
    return (f"Its multipliers were still growing: {what}, which added about {gain[g]:.3g} to λ_g, "
            f"{ratio[g]:.2f} of the group's share, and the model follows them; {fix}.")


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# -- did the models learn anything? -----------------------------------------------------------
def learning_check(predictions: pd.DataFrame, class_names: list[str] | None = None) -> dict[str, Any]:
    """Whether the dense model learned anything and whether the pruned one collapsed, from a run's predictions.

    ``predictions``: the run's per-sample predictions (``split``, ``y_true``, ``y_pred``, ``dense_pred``).
    Per split: ``n``, ``majority_rate`` (the share of the most common class: what always predicting it
    scores), the dense and sparse ``accuracy`` and how many distinct classes each predicts. The dense
    model *learned nothing* when on the training split its accuracy is within ``NOISE_Z`` binomial
    standard errors of the majority rate; the pruned model *collapsed* when it predicts one class on a
    split that holds several. Returns ``{"splits": {...}, "dense_at_chance": bool | None,
    "sparse_collapsed": [splits], "warnings": [sentences]}`` (fractions).
    """
    out: dict[str, Any] = {"splits": {}, "dense_at_chance": None, "sparse_collapsed": [], "warnings": []}
    names = list(class_names or [])

    def name(c: int) -> str:
        return names[c] if 0 <= c < len(names) else f"class {c}"

    for split in [s for s in ("train", "val", "test") if s in set(predictions["split"])]:
        part = predictions[predictions["split"] == split]
        y = part["y_true"].to_numpy(dtype=np.int64)
        if not len(y):
            continue
        counts = np.bincount(y)
        majority = float(counts.max() / len(y))
        row: dict[str, Any] = {"n": int(len(y)), "classes": int((counts > 0).sum()), "majority_rate": majority,
                               "accuracy": float((part["y_pred"].to_numpy(dtype=np.int64) == y).mean()),
                               "predicted_classes": int(part["y_pred"].nunique())}
        dense = part["dense_pred"]
        if dense.notna().all():
            row["dense_accuracy"] = float((dense.to_numpy(dtype=np.int64) == y).mean())
            row["dense_predicted_classes"] = int(dense.nunique())
            noise = NOISE_Z * math.sqrt(majority * (1 - majority) / len(y))
            row["dense_at_chance"] = bool(row["dense_accuracy"] <= majority + noise)
        out["splits"][split] = row
        if row["classes"] > 1 and row["predicted_classes"] == 1:
            out["sparse_collapsed"].append(split)
    train = out["splits"].get("train", {})
    if "dense_at_chance" in train:
        out["dense_at_chance"] = train["dense_at_chance"]
    if out["dense_at_chance"]:
        train_y = predictions.loc[predictions["split"] == "train", "y_true"].to_numpy(np.int64)
        top = int(np.bincount(train_y).argmax())
        out["warnings"].append(
            f"the dense model learned nothing: its train accuracy {100 * train['dense_accuracy']:.1f} % is within "
            f"noise of always answering {name(top)} ({100 * train['majority_rate']:.1f} % of the {train['n']:,} "
            f"training samples), so every gap is measured against a model at chance. Check that the data is read "
            f"as it should be (the run's data notes and warnings), then the dense recipe (dense_epochs, dense_lr)")
    for split in out["sparse_collapsed"]:
        row = out["splits"][split]
        only = int(predictions.loc[predictions["split"] == split, "y_pred"].iloc[0])
        out["warnings"].append(
            f"the pruned model collapsed: it answers {name(only)} for every one of the {row['n']:,} {split} samples "
            f"({row['classes']} classes there), so its accuracy is {100 * row['accuracy']:.1f} % by construction; "
            "a lower sparsity, a lower lr or more fine-tuning epochs may keep it from collapsing")
    return out


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
        conv = {"converged": None, "window": [int(first), int(cfg.total_epochs)], "evaluations": {},
                "spread": {}, "limit": {}}
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


def summary_line(diag: dict[str, Any] | None) -> list[str]:
    """Sentences for a terminal or a page: settled or not, whether the models learned, the constraint warnings."""
    if not diag:
        return []
    lines = []
    conv = diag.get("converged")
    if conv is True:
        worst = _worst_spread({"spread": diag["spread"], "limit": diag["spread_limit"]})
        tail = (f" (largest spread: {worst[1].replace('max_excess_gap', 'max_g ψ_g')} on {worst[0]}, "
                f"{100 * worst[2]:.1f} points)") if worst else ""
        lines.append(f"settled over epochs {diag['window'][0]}–{diag['window'][1]}{tail}")
    elif conv is False:
        lines.append(diag.get("advice") or "not settled")
    else:
        lines.append("convergence unknown: too few evaluations at the end of fine-tuning")
    lines += [f"warning: {w}" for w in (diag.get("learning") or {}).get("warnings", [])]
    constraints = diag.get("constraints")
    if constraints:
        lines.append(f"constraints {'acted' if constraints['constraints_active'] else 'never acted'}: largest "
                     f"multiplier {constraints['max_multiplier']:.3g} ({constraints['multiplier_group']}, "
                     f"{constraints['multiplier_ratio']:.2f}× its share of the "
                     f"{'validation' if constraints.get('split') == 'val' else 'training'} split)")
        lines += [f"warning: {w}" for w in constraints["warnings"]]
    return lines


__all__ = ["ConstraintCounter", "constraint_report", "convergence", "convergence_advice", "counter_from_trace",
           "learning_check", "moving_multipliers", "run_diagnostics", "summary_line", "window_first_epoch",
           "window_length"]
