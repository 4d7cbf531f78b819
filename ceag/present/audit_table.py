"""The per-group table of an audit as people read it (percent and points, verdicts in words): the one the
Compare page and the Audit predictions page show."""

from __future__ import annotations

import pandas as pd

from ceag.analysis.audit import Audit
from ceag.present.glossary import GLOSSARY
from ceag.present.words import audit_run_labels, confidence_label


def group_display_table(result: Audit) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """(table, {numeric column: help text}): one row per run, split and group.

    Columns: run, split, group, n, dense acc (%), acc (%), its interval, Δ_g and ψ_g with their
    intervals, the verdict against ε (constrained runs), the smallest gap the group's size lets one
    tell from zero, and whether the group is too few samples for an interval.
    """
    names = audit_run_labels(result.groups)
    ci = confidence_label(result.settings)
    g = result.groups
    table = {"run": g.run_id.map(names), "split": g.split, "group": g.group_name, "n": g.n,
             "dense acc (%)": 100 * g.dense_accuracy, "acc (%)": 100 * g.accuracy}
    for col, name in (("accuracy", "acc"), ("acc_gap", "Δ_g"), ("excess_gap", "ψ_g")):
        if col != "accuracy":
            table[name] = 100 * g[col]
        table[f"{name} {ci} low"], table[f"{name} {ci} high"] = 100 * g[f"{col}_low"], 100 * g[f"{col}_high"]
    table["verdict vs ε"] = g["verdict"].fillna("")
    table["min detectable gap"] = 100 * g["min_detectable_gap"]
    numbers = [k for k in table if k not in ("run", "split", "group", "n", "verdict vs ε")]
    table["too few samples for an interval"] = g.too_small
    terms = {"Δ_g": GLOSSARY["Δ_g"], "ψ_g": GLOSSARY["ψ_g"], "acc": None, "dense": None,
             "min": GLOSSARY["min detectable gap"]}
    return pd.DataFrame(table), {k: terms.get(k.split(" ")[0]) for k in numbers}
