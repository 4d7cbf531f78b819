"""Verdicts against the tolerance ε: for each group of a constrained run, whether its ψ_g *meets ε*,
*exceeds ε* or the data *cannot tell*, read from intervals that hold together for all the groups of
the split (``bootstrap``'s corrected intervals: Bonferroni unless the settings say ``none``).

- **meets ε**: the whole corrected interval of ψ_g lies at or below ε;
- **exceeds ε**: the whole corrected interval lies above ε;
- **cannot tell**: the interval contains ε, or the group has too few samples for an interval.

With the correction, the chance that any group truly at ε is called "exceeds ε" is at most
(1 − confidence) / 2 per split (one side of a family of two-sided intervals), which bench/verdicts.py
checks by simulation. A group *too small to audit at ε* is one whose ``min_detectable_gap`` exceeds
ε: a gap as large as the tolerance could not be told from zero with its samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MEETS = "meets ε"
EXCEEDS = "exceeds ε"
CANNOT_TELL = "cannot tell"
VERDICTS = (MEETS, EXCEEDS, CANNOT_TELL)


def tolerance_verdicts(low, high, n, tolerance: float | None) -> np.ndarray:
    """One verdict per group (object array of VERDICTS; None where there is no tolerance or no sample).

    ``low``, ``high``: corrected ψ_g intervals (fractions, NaN where there is none); ``n``: samples of
    each group; ``tolerance``: ε as a fraction, or None for a run without one.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    n = np.asarray(n)
    out = np.full(low.shape, None, dtype=object)
    if tolerance is None or pd.isna(tolerance):
        return out
    out[n > 0] = CANNOT_TELL
    known = (n > 0) & ~np.isnan(low) & ~np.isnan(high)
    out[known & (high <= tolerance)] = MEETS
    out[known & (low > tolerance)] = EXCEEDS
    return out


def verdict_counts(verdicts) -> dict[str, int]:
    """{verdict: number of groups} for the verdicts given, every verdict present (zero where none)."""
    values = [v for v in verdicts if v in VERDICTS]
    return {v: values.count(v) for v in VERDICTS}


def counts_text(verdicts) -> str:
    """'3 meet ε, 1 exceeds ε, 2 cannot tell' (only the non-zero counts; '' for none)."""
    counts = verdict_counts(verdicts)
    words = {MEETS: ("meets ε", "meet ε"), EXCEEDS: ("exceeds ε", "exceed ε"), CANNOT_TELL: ("cannot tell",) * 2}
    return ", ".join(f"{k} {words[v][k != 1]}" for v, k in counts.items() if k)


def correction_text(correction: str, confidence: float, groups: int) -> str:
    """How the verdicts' intervals were widened, in words, for ``groups`` groups with an interval."""
    if correction == "none" or groups <= 1:
        return f"{100 * confidence:g} % intervals, not widened for the number of groups"
    each = 100 * (1 - (1 - confidence) / groups)
    return (f"{100 * confidence:g} % for the {groups} groups together (Bonferroni: each interval at "
            f"{each:.4g} %)")


def detectable_gaps(predictions: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per split and group of one run's predictions: ``split``, ``group_id``, ``n`` and ``min_detectable_gap``
    (a fraction; ``bootstrap.min_detectable_gap`` at ``confidence``, from the split's share of samples on which
    exactly one of the sparse and the dense model is right). ``predictions``: PREDICTION_COLUMNS rows with
    dense predictions; a split without them gets NaN."""
    from statistics import NormalDist

    from ceag.analysis.bootstrap import min_detectable_gap

    z = NormalDist().inv_cdf((1 + confidence) / 2)
    rows = []
    for split, part in predictions.groupby("split", sort=False):
        groups = part["group_id"].to_numpy(np.int64)
        counts = np.bincount(groups) if len(groups) else np.zeros(0, np.int64)
        if part["dense_pred"].isna().any():
            gaps = np.full(len(counts), np.nan)
        else:
            y = part["y_true"].to_numpy(np.int64)
            changed = (part["y_pred"].to_numpy(np.int64) == y) != (part["dense_pred"].to_numpy(np.int64) == y)
            gaps = min_detectable_gap(counts, len(part), float(changed.mean()), z)
        rows += [{"split": split, "group_id": g, "n": int(counts[g]), "min_detectable_gap": float(gaps[g])}
                 for g in range(len(counts))]
    return pd.DataFrame(rows, columns=["split", "group_id", "n", "min_detectable_gap"])
