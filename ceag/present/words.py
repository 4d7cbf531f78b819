"""How numbers and runs are written for people: points, tolerances, run labels, confidence levels."""

from __future__ import annotations

import math

import pandas as pd

from ceag.analysis.bootstrap import BootstrapSettings
from ceag.config.vocabulary import METHOD_LABELS, method_label

BASELINE = "nft"


DEFAULT_THRESHOLD = 0.01  # "hurts no group" when no tolerance says otherwise: 1 point


def points(x: float) -> str:
    """A fraction as percentage points with one decimal (``0.332`` -> ``"33.2"``), ``n/a`` for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text


def tolerance_text(tolerance: float) -> str:
    return f"ε = {100 * tolerance:g} %"


def run_label(method: str, tolerance: float | None) -> str:
    label = METHOD_LABELS.get(method, method)
    if tolerance is not None and not pd.isna(tolerance):
        label += f" ({tolerance_text(tolerance)})"
    return label


def audit_run_labels(groups: pd.DataFrame) -> dict[str, str]:
    """run_id -> "CEAG ε=2%" (plus sparsity / seed / model when they differ between the runs)."""
    runs = groups.drop_duplicates("run_id")
    varying = [c for c in ("dataset", "model", "sparsity", "seed") if c in runs and runs[c].nunique() > 1]
    labels = {}
    for row in runs.itertuples():
        label = method_label(row.method, row.tolerance)
        extra = [f"{c} {getattr(row, c):g}" if c == "sparsity" else f"{c} {getattr(row, c)}" for c in varying]
        labels[row.run_id] = label + (f" ({', '.join(extra)})" if extra else "")
    if len(set(labels.values())) < len(labels):  # still ambiguous: add the run id
        labels = {rid: f"{label} · {rid[:8]}" for rid, label in labels.items()}
    return labels


CORRECTION_LABELS = {"bonferroni": "Bonferroni", "none": "not widened"}
CORRECTION_HELP = ("How the ψ_g intervals behind the verdicts against ε are read: widened so that all the groups "
                   "of a split hold together at the chosen confidence (Bonferroni: a group truly at ε is rarely "
                   "called 'exceeds ε'), or each at the chosen confidence on its own.")


def confidence_label(settings: BootstrapSettings) -> str:
    value = 100 * settings.confidence
    return f"{value:g} %" if math.isclose(value, round(value, 1)) else f"{value:.2f} %"


def sentence(text: str) -> str:
    """``text`` with its first letter made upper case and nothing else changed (``str.capitalize`` would lower
    every other letter: "L_g" and "CEAG" stay as they are)."""
    return text[:1].upper() + text[1:]
