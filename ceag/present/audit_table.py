"""The per-group table of an audit as people read it (percent and points, verdicts in words): the one the
Compare page and the Audit predictions page show."""

from __future__ import annotations

import pandas as pd

from ceag.analysis.audit import Audit
from ceag.analysis.verdicts import correction_text, counts_text
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


def verdict_lines(result: Audit) -> list[str]:
    """'CEAG ε=2%, test: 1 meets ε, 1 exceeds ε, 3 cannot tell (95 % for the 5 groups together (Bonferroni: each
    interval at 99 %))', one per run held to ε and split; [] when no run has verdicts."""
    g = result.groups[result.groups["verdict"].notna()] if "verdict" in result.groups else result.groups.iloc[:0]
    if g.empty:
        return []
    labels = audit_run_labels(result.groups)
    runs = result.runs
    m = runs.set_index(["run_id", "split"])["verdict_groups"].to_dict() if "verdict_groups" in runs else {}
    lines = []
    for (rid, split), part in g.groupby(["run_id", "split"], sort=False):
        how = correction_text(result.settings.correction, result.settings.confidence, int(m.get((rid, split), 0)))
        lines.append(f"{labels[rid]}, {split}: {counts_text(part['verdict'])} ({how})")
    return lines
