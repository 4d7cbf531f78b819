"""How numbers and runs are written for people: points, tolerances, pruning criteria, run labels, confidence
levels.

A run's pruning criterion is named where the runs shown were pruned by more than one, or by one other than
magnitude (``names_criteria``); a method that chooses its own masks (FairGRAPE) is never given one: it prunes
by its group importance whatever the criterion setting says. A run's pruning kind (unstructured, channels, …)
is named only where the runs shown were pruned in more than one way (``names_kinds``).
"""

from __future__ import annotations

import math

import pandas as pd

from ceag.analysis.bootstrap import BootstrapSettings
from ceag.config.vocabulary import CRITERION_LABELS, MASK_METHODS, METHOD_LABELS, method_label
from ceag.present.footprint import pruning_label

BASELINE = "nft"
DEFAULT_CRITERION = "magnitude"
DEFAULT_PRUNING = "unstructured"  # the pruning kind of a run (or frame) that names none
OWN_MASKS = "group importance"  # what a method that chooses its own masks prunes by (criterion columns)
CRITERION_HELP = ("Which weights each pruning event keeps. Magnitude: the largest |w|. SNIP: the largest connection "
                  "sensitivity |∂L/∂w · w| on training batches (Lee et al., ICLR 2019). SynFlow: the largest "
                  "synaptic flow, without data, over rounds of scoring and pruning (Tanaka et al., NeurIPS 2020).")
PRUNING_HELP = ("What each pruning event removes: weights layer by layer (unstructured), weights ranked over all "
                "layers at once (global), or whole output channels: each layer's on its own (structured; mostly "
                "not removable), or those of coupled layers together, per channel group (channels) or ranked over "
                "all groups (channels_global), which the run removes at its end so the model shrinks (on a model "
                "with batch norm they need masked_bn). FairGRAPE needs unstructured.")
FAIRGRAPE_HELP = ("FairGRAPE (Lin et al., ECCV 2022): at every pruning event each layer keeps the weights that "
                  "leave every protected group its share of the layer's importance, then fine-tunes as NFT. It "
                  "chooses its own masks, so the pruning criterion does not apply to it; NFT pruned by magnitude "
                  "is what it is measured against.")


DEFAULT_THRESHOLD = 0.01  # "hurts no group" when no tolerance says otherwise: 1 point


def points(x: float) -> str:
    """A fraction as percentage points with one decimal (``0.332`` -> ``"33.2"``), ``n/a`` for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text


def tolerance_text(tolerance: float) -> str:
    return f"ε = {100 * tolerance:g} %"


def own_masks(method: str) -> bool:
    """Whether ``method`` (a store method, ``*_heldout`` included) chooses its masks itself (FairGRAPE)."""
    return method in MASK_METHODS


def criterion_label(criterion: str | None, method: str | None = None) -> str:
    """How a run's pruning criterion is written: "magnitude", "SNIP", "SynFlow"; for a method that chooses its
    own masks, ``OWN_MASKS``."""
    if method is not None and own_masks(method):
        return OWN_MASKS
    criterion = DEFAULT_CRITERION if criterion is None or pd.isna(criterion) else criterion
    return CRITERION_LABELS.get(criterion, criterion)


def criteria_of(runs: pd.DataFrame) -> pd.Series:
    """Each row's pruning criterion (magnitude where the frame has no criterion column or a row none)."""
    if "criterion" not in runs:
        return pd.Series(DEFAULT_CRITERION, index=runs.index, dtype=object)
    return runs["criterion"].fillna(DEFAULT_CRITERION)


def names_criteria(runs: pd.DataFrame) -> bool:
    """Whether labels of ``runs`` (rows with method and, optionally, criterion) name the pruning criterion: when
    the runs pruned by a criterion (not by their own masks) used more than one, or one other than magnitude."""
    if runs.empty or "criterion" not in runs:
        return False
    used = set(criteria_of(runs)[~runs["method"].map(own_masks)])
    return len(used) > 1 or bool(used - {DEFAULT_CRITERION})


def kinds_of(runs: pd.DataFrame) -> pd.Series:
    """Each row's pruning kind (unstructured where the frame has no pruning column or a row none)."""
    if "pruning" not in runs:
        return pd.Series(DEFAULT_PRUNING, index=runs.index, dtype=object)
    return runs["pruning"].fillna(DEFAULT_PRUNING)


def names_kinds(runs: pd.DataFrame) -> bool:
    """Whether labels of ``runs`` (rows with, optionally, pruning) name the pruning kind: when the runs were pruned
    in more than one way."""
    return not runs.empty and "pruning" in runs and kinds_of(runs).nunique() > 1


def series_label(method: str, tolerance: float | None = None, criterion: str | None = None, *,
                 named: bool = False, pruning: str | None = None) -> str:
    """A method as charts, legends and tables write it: ``"CEAG ε=2%"``, with ``named`` ``"CEAG ε=2% · SNIP"``
    (never for a method that chooses its own masks), with a ``pruning`` kind (pass one only where
    ``names_kinds``) ``"CEAG ε=2% · channels"``."""
    label = method_label(method, tolerance)
    if named and not own_masks(method):
        label += f" · {criterion_label(criterion)}"
    if pruning is not None and not pd.isna(pruning):
        label += f" · {pruning_label(pruning)}"
    return label


def run_label(method: str, tolerance: float | None, criterion: str | None = None, pruning: str | None = None) -> str:
    """A method as sentences write it: "CEAG (ε = 2 %)", with a ``criterion`` "CEAG (ε = 2 %) with SNIP pruning"
    (never for a method that chooses its own masks), with a ``pruning`` kind "CEAG (ε = 2 %), channels pruning"."""
    label = METHOD_LABELS.get(method, method)
    if tolerance is not None and not pd.isna(tolerance):
        label += f" ({tolerance_text(tolerance)})"
    if criterion is not None and not pd.isna(criterion) and not own_masks(method):
        label += f" with {criterion_label(criterion)} pruning"
    if pruning is not None and not pd.isna(pruning):
        label += f", {pruning_label(pruning)} pruning"
    return label


def audit_run_labels(groups: pd.DataFrame) -> dict[str, str]:
    """run_id -> "CEAG ε=2%" (plus the pruning criterion as ``names_criteria`` says, the pruning kind as
    ``names_kinds`` says, and sparsity / seed / model when they differ between the runs)."""
    runs = groups.drop_duplicates("run_id")
    varying = [c for c in ("dataset", "model", "sparsity", "seed") if c in runs and runs[c].nunique() > 1]
    named, kinds = names_criteria(runs), names_kinds(runs)
    labels = {}
    for row, criterion, kind in zip(runs.itertuples(), criteria_of(runs), kinds_of(runs), strict=True):
        label = series_label(row.method, row.tolerance, criterion, named=named, pruning=kind if kinds else None)
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
