"""Sentences comparing chosen runs, generated from query rows: every number in them comes from the store.

- ``headline_sentences``: the answer first, on test: which group NFT hurts most and what each
  other run does for it (the Compare page's headline).
- ``comparison_sentences``: for chosen runs, which group NFT hurts most on train and on test and
  by how much, what each mitigation leaves for that group, and which group is worst under the
  mitigation on test (with bootstrap intervals when the rows carry them).

Inputs are per-group rows as ``queries.audit_groups`` returns them (method, tolerance, sparsity, seed,
split, group_name, acc_gap, excess_gap; fractions). Values are written in percentage points with one
decimal; ``ceag.present.glossary`` defines the symbols they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ceag.present.words import BASELINE, DEFAULT_THRESHOLD, points, run_label

if TYPE_CHECKING:
    from ceag.analysis.audit import Audit


def worst_group(part: pd.DataFrame) -> pd.Series | None:
    """The row of the group with the largest excess gap (None if no group has samples)."""
    valid = part.dropna(subset=["excess_gap"])
    if valid.empty:
        return None
    return valid.loc[valid["excess_gap"].idxmax()]


def _interval(row: pd.Series, confidence: float, inner: bool = False) -> str:
    """' (95 % interval 1.2 to 7.2)', or '; 95 % interval ...' inside parentheses; '' without one."""
    lo, hi = row.get("excess_gap_low"), row.get("excess_gap_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        if not _too_small(row):
            return ""
        text = f"n = {int(row['n'])}: too few samples for an interval"
    else:
        text = f"{100 * confidence:g} % interval {points(lo)} to {points(hi)}"
    return f"; {text}" if inner else f" ({text})"


def _too_small(row: pd.Series) -> bool:
    """Whether the row is a group with samples but too few for an interval (``bootstrap.MIN_INTERVAL_SAMPLES``)."""
    flag = row.get("too_small")
    return flag is not None and not pd.isna(flag) and bool(flag)


def loss_clause(row: pd.Series, subject: str = "it", what: str = "accuracy") -> str:
    """'it loses 40.0 points of accuracy while the model as a whole loses 6.8'."""
    overall = row["acc_gap"] - row["excess_gap"]
    own = f"loses {points(row['acc_gap'])}" if row["acc_gap"] >= 0 else f"gains {points(-row['acc_gap'])}"
    whole = f"loses {points(overall)}" if overall >= 0 else f"gains {points(-overall)}"
    return f"{subject} {own} points of {what} while the model as a whole {whole}"


def _tolerance_verdict(row: pd.Series, tolerance: float) -> str:
    lo, hi = row.get("excess_gap_low"), row.get("excess_gap_high")
    side = "within" if row["excess_gap"] <= tolerance else "above"
    text = f"{side} its tolerance of {points(tolerance)} points"
    if lo is not None and hi is not None and not pd.isna(lo) and lo <= tolerance <= hi:
        text += ", though its interval contains the tolerance, so the two cannot be told apart"
    return text


def _group(part: pd.DataFrame, name: str) -> pd.Series | None:
    rows = part[part["group_name"] == name]
    return None if rows.empty else rows.iloc[0]


def comparison_sentences(groups: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """Sentences comparing each mitigation with the NFT run of the same dataset, model, sparsity and seed.

    ``groups``: per (run, split, group) rows with run_id, dataset, model, method, sparsity,
    tolerance, seed, split, group_name, acc_gap, excess_gap and optionally excess_gap_low /
    excess_gap_high (bootstrap intervals at ``confidence``).
    """
    if groups.empty:
        return []
    out: list[str] = []
    keys = ["dataset", "model", "sparsity", "seed"]
    runs = groups.drop_duplicates("run_id")
    several = runs[keys].drop_duplicates().shape[0] > 1
    for key, setting in runs.groupby(keys, sort=False):
        prefix = (f"At sparsity {100 * key[2]:g} % ({key[0]}/{key[1]}, seed {key[3]}): " if several else "")
        base_ids = setting.loc[setting["method"] == BASELINE, "run_id"]
        others = setting[setting["method"] != BASELINE].sort_values(["method", "tolerance"], na_position="first")
        if base_ids.empty:
            for row in others.itertuples():
                test = groups[(groups.run_id == row.run_id) & (groups.split == "test")]
                worst = worst_group(test)
                label = run_label(row.method, row.tolerance)
                if worst is not None:
                    lead = f"{prefix}there" if prefix else "There"
                    out.append(f"{lead} is no NFT run to compare with; under {label}"
                               f" the worst group on test is {worst.group_name} (ψ_g = {points(worst.excess_gap)} "
                               f"points{_interval(worst, confidence, inner=True)}).")
                if row.method == "ceag" and not pd.isna(row.tolerance):
                    out.extend(_indistinguishable(groups[groups.run_id == row.run_id], row.tolerance, label, prefix))
            continue
        base = groups[groups.run_id == base_ids.iloc[0]]
        thr = others["tolerance"].dropna().min() if others["tolerance"].notna().any() else DEFAULT_THRESHOLD
        hurt = {}
        for split in ("train", "test"):
            worst = worst_group(base[base.split == split])
            if worst is None:
                continue
            hurt[split] = worst
            if worst.excess_gap <= thr:
                out.append(f"{prefix}On {split}, NFT hurts no group by more than {points(thr)} points beyond the model "
                           f"as a whole: the worst, {worst.group_name}, has ψ_g = {points(worst.excess_gap)} points"
                           f"{_interval(worst, confidence)}.")
            else:
                out.append(f"{prefix}On {split}, NFT hurts {worst.group_name} most: {loss_clause(worst)}, "
                           f"{points(worst.excess_gap)} points more (ψ_g{_interval(worst, confidence, inner=True)}).")
        for row in others.itertuples():
            label = run_label(row.method, row.tolerance)
            mine = groups[groups.run_id == row.run_id]
            named = list(dict.fromkeys(w.group_name for w in hurt.values()))
            parts = []
            for name in named:
                values = []
                for split in ("train", "test"):
                    now, before = _group(mine[mine.split == split], name), _group(base[base.split == split], name)
                    if now is not None and before is not None:
                        values.append(f"{points(now.excess_gap)} on {split} (NFT: {points(before.excess_gap)})")
                if values:
                    parts.append(f"{name} at ψ_g = " + " and ".join(values))
            if parts:
                out.append(f"{prefix}{label} leaves " + "; ".join(parts) + " points.")
            tol = row.tolerance if row.method == "ceag" and not pd.isna(row.tolerance) else None
            if tol is not None:
                worst_train = worst_group(mine[mine.split == "train"])
                if worst_train is not None:
                    verdict = ("keeps every group within" if worst_train.excess_gap <= tol
                               else "does not keep every group within")
                    out.append(f"{prefix}On train, {label} {verdict} its tolerance: the worst group, "
                               f"{worst_train.group_name}, has ψ_g = {points(worst_train.excess_gap)} points.")
            worst_test = worst_group(mine[mine.split == "test"])
            if worst_test is not None:
                text = (f"{prefix}Under {label}, the worst group on test is {worst_test.group_name} at ψ_g = "
                        f"{points(worst_test.excess_gap)} points{_interval(worst_test, confidence)}")
                if tol is not None:
                    text += ", " + _tolerance_verdict(worst_test, tol)
                if "test" in hurt:
                    diff = worst_test.excess_gap - hurt["test"].excess_gap
                    relation = "above" if diff > 0 else "below" if diff < 0 else "equal to"
                    text += f"; {relation} NFT's worst on test ({points(hurt['test'].excess_gap)} points)"
                out.append(text + ".")
            if tol is not None:
                out.extend(_indistinguishable(mine, tol, label, prefix))
    return out


def _span(row: pd.Series) -> tuple[float, float] | None:
    lo, hi = row.get("excess_gap_low"), row.get("excess_gap_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return None
    return float(lo), float(hi)


def _against_tolerance(row: pd.Series, tolerance: float) -> str:
    """Where a ψ_g and its interval lie against ε, in words."""
    span, eps = _span(row), points(tolerance)
    if row["excess_gap"] <= tolerance:
        if span is None:
            return f"within ε = {eps}"
        if span[1] <= tolerance:
            return f"within ε = {eps}, even at the top of its interval"
        return f"within ε = {eps}, though its interval reaches {points(span[1])}"
    if span is not None and span[0] <= tolerance:
        return f"above ε = {eps}, though its interval contains ε"
    return f"above ε = {eps}" + (", even at the bottom of its interval" if span is not None else "")


def headline_sentences(groups: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """The answer first: which group NFT hurts most on test, and what each other run does for it on test.

    ``groups`` as for ``comparison_sentences``. Per setting (dataset, model, sparsity, seed): one
    sentence on NFT's worst group on test (with its train value), then one per other run: that
    group's ψ_g on test under it, against ε for CEAG, and the worst group on test under it. Every
    ψ_g carries its interval when the rows have one. A setting without NFT names each run's worst
    group on test.
    """
    if groups.empty:
        return []
    out: list[str] = []
    keys = ["dataset", "model", "sparsity", "seed"]
    runs = groups.drop_duplicates("run_id")
    varies = {k: runs[k].nunique() > 1 for k in keys}
    for key, setting in runs.groupby(keys, sort=False):
        extra = [f"{key[0]}/{key[1]}"] if varies["dataset"] or varies["model"] else []
        extra += [f"seed {key[3]}"] if varies["seed"] else []
        where = f"At {100 * key[2]:g} % sparsity" + (f" ({', '.join(extra)})" if extra else "")
        base_ids = setting.loc[setting["method"] == BASELINE, "run_id"]
        others = setting[setting["method"] != BASELINE].sort_values(["method", "tolerance"], na_position="first")
        hurt = None
        if not base_ids.empty:
            base = groups[groups.run_id == base_ids.iloc[0]]
            hurt = worst_group(base[base.split == "test"])
        if hurt is None:
            for row in others.itertuples():
                worst = worst_group(groups[(groups.run_id == row.run_id) & (groups.split == "test")])
                if worst is not None:
                    label = run_label(row.method, row.tolerance)
                    out.append(f"{where} there is no NFT run to compare with; under {label}"
                               f" the worst group on test is {worst.group_name} at ψ_g = {points(worst.excess_gap)}"
                               f"{_interval(worst, confidence)}.")
            continue
        train = _group(base[base.split == "train"], hurt.group_name)
        text = (f"{where}, NFT hurts {hurt.group_name} most on test: it loses {points(hurt.excess_gap)} points more "
                f"accuracy than the model as a whole (ψ_g{_interval(hurt, confidence, inner=True)})")
        if train is not None:
            text += f"; on train, {points(train.excess_gap)}"
        out.append(text + ".")
        for row in others.itertuples():
            label = run_label(row.method, row.tolerance)
            mine = groups[(groups.run_id == row.run_id) & (groups.split == "test")]
            own, worst = _group(mine, hurt.group_name), worst_group(mine)
            if own is None or worst is None:
                continue
            text = (f"{label} brings {hurt.group_name} to ψ_g = {points(own.excess_gap)} on test"
                    f"{_interval(own, confidence)}")
            tol = row.tolerance if row.method == "ceag" and not pd.isna(row.tolerance) else None
            if tol is not None:
                text += f", {_against_tolerance(own, tol)}"
            if worst.group_name == hurt.group_name:
                text += "; it is still the worst group on test"
            else:
                text += (f"; the worst group on test is now {worst.group_name} at {points(worst.excess_gap)}"
                         f"{_interval(worst, confidence)}")
                if tol is not None:
                    text += f", {_against_tolerance(worst, tol)}"
            out.append(text + ".")
    return out


def _indistinguishable(rows: pd.DataFrame, tolerance: float, label: str, prefix: str) -> list[str]:
    if "excess_gap_low" not in rows:
        return []
    out = []
    for split in ("train", "test"):
        part = rows[rows.split == split]
        flagged = part[(part["excess_gap_low"] <= tolerance) & (tolerance <= part["excess_gap_high"])]
        if len(flagged) > 3:  # name a few; count the rest
            out.append(f"{prefix}On {split}, the ψ_g intervals of {len(flagged)} of {len(part)} groups under {label} "
                       "contain the tolerance: with this many samples they cannot be told apart from it.")
        elif not flagged.empty:
            names = ", ".join(flagged["group_name"])
            verb = "interval of {} contains" if len(flagged) == 1 else "intervals of {} contain"
            out.append(f"{prefix}On {split}, the ψ_g {verb.format(names)} the tolerance under {label}: with this "
                       "many samples they cannot be told apart from it.")
    return out


def audit_sentences(result: Audit) -> list[str]:
    """The comparison sentences of an audit, with its intervals."""
    return comparison_sentences(result.groups, confidence=result.settings.confidence)
