"""Did the constraints act (CEAG, EL+RB)? The primal objective weighs group g's samples by its share p_g
of the training split, plus lambda_g from the constraint term (CEAG: lambda_g psi~_g; EL+RB:
lambda_g |L_g - L|). So lambda_g / p_g is how much the constraint re-weighted the group: the
constraints *acted* when some group's largest multiplier reached ``ACTIVE_RATIO`` times its
share (its weight in the objective rose by at least half). ``ConstraintCounter``
(ceag.training.dual_counter) tallies every dual step (largest multiplier, steps with a violated
constraint, sums over the window); the report compares the buffered estimates with the evaluated
train psi_g over the same window. No torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ceag.training.dual_counter import ConstraintCounter

ACTIVE_RATIO = 0.5           # largest lambda_g / p_g for the constraints to count as acting


MOVING_RATIO = 0.1           # growth of lambda_g / p_g over the window that still moves the model


NOISE_Z = 2.0                # standard errors allowed for sampling noise in the agreement check


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
