"""Sentences comparing chosen runs, generated from query rows: every number in them comes from the store.

- ``headline_sentences``: the answer first, on test: which group NFT hurts most and what each
  other run does for it (the Compare page's headline).
- ``comparison_sentences``: for chosen runs, which group NFT hurts most on train and on test and
  by how much, what each mitigation leaves for that group, and which group is worst under the
  mitigation on test (with bootstrap intervals when the rows carry them).

Inputs are per-group rows as ``queries.audit_groups`` returns them (method, criterion, tolerance, sparsity, seed,
split, group_name, acc_gap, excess_gap; fractions). A setting is a dataset, model, sparsity, seed, pruning
criterion and pruning kind: each run is compared with the NFT run pruned by its own criterion (FairGRAPE, recorded
with the default, with NFT pruned by magnitude) in its own way, and the criterion is named where
``words.names_criteria`` says so, the kind where ``words.names_kinds`` does.
Values are written in percentage points with one decimal; ``ceag.present.glossary`` defines the symbols they
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ceag.analysis.verdicts import CANNOT_TELL, EXCEEDS, MEETS, counts_text
from ceag.config.vocabulary import METHODS
from ceag.present.footprint import pruning_label
from ceag.present.words import (
    BASELINE,
    DEFAULT_THRESHOLD,
    criteria_of,
    criterion_label,
    kinds_of,
    names_criteria,
    names_kinds,
    points,
    run_label,
)

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


def corrected_span(row: pd.Series) -> tuple[float, float] | None:
    """The ψ_g interval widened for the number of groups (``bootstrap``'s corrected one), or None."""
    lo, hi = row.get("excess_gap_corrected_low"), row.get("excess_gap_corrected_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return None
    return float(lo), float(hi)


def widened(row: pd.Series) -> str:
    """'its interval, widened for the 5 groups,' (or 'its interval' where it was not widened)."""
    m = row.get("corrected_for")
    if m is None or pd.isna(m) or int(m) <= 1:
        return "its interval"
    return f"its interval, widened for the {int(m)} groups,"


def zero_clause(row: pd.Series) -> str:
    """'; with this data it cannot be told from zero (...)' when the group's corrected interval contains 0."""
    span = corrected_span(row)
    if span is None or not span[0] <= 0 <= span[1]:
        return ""
    return (f"; with this data a gap this size cannot be told from zero ({widened(row)} runs from "
            f"{points(span[0])} to {points(span[1])})")


def hurts_most(row: pd.Series, method: str = "NFT") -> str:
    """'NFT hurts digit 8 most' when the group lost accuracy; 'under NFT, White gains less than average' when it
    gained (a group whose accuracy rose is never called hurt)."""
    if row["acc_gap"] > 0:
        return f"{method} hurts {row['group_name']} most"
    return f"under {method}, {row['group_name']} gains less than average"


def loss_clause(row: pd.Series, subject: str = "it", what: str = "accuracy") -> str:
    """'it loses 40.0 points of accuracy while the model as a whole loses 6.8'."""
    overall = row["acc_gap"] - row["excess_gap"]
    own = f"loses {points(row['acc_gap'])}" if row["acc_gap"] >= 0 else f"gains {points(-row['acc_gap'])}"
    whole = f"loses {points(overall)}" if overall >= 0 else f"gains {points(-overall)}"
    return f"{subject} {own} points of {what} while the model as a whole {whole}"


def _tolerance_verdict(row: pd.Series, tolerance: float) -> str:
    side = "within" if row["excess_gap"] <= tolerance else "above"
    text = f"{side} its tolerance of {points(tolerance)} points"
    return text + _verdict_words(row, tolerance)


def _verdict_words(row: pd.Series, tolerance: float) -> str:
    """What the data can tell about ψ_g against ε, from the row's ``verdict`` ('' without one)."""
    verdict, span = row.get("verdict"), corrected_span(row)
    if verdict == MEETS:
        return f", and the data shows it: {widened(row)} stays at or below ε"
    if verdict == EXCEEDS:
        return f", and the data shows it: {widened(row).replace('its', 'its whole', 1)} lies above ε"
    if verdict == CANNOT_TELL:
        if span is None:
            return f", but with n = {int(row['n'])} samples it cannot be told from ε"
        return (f", but with this data it cannot be told from ε ({widened(row)} runs from {points(span[0])} to "
                f"{points(span[1])})")
    return ""


def _external(setting: pd.DataFrame) -> bool:
    """Whether a setting's runs are models audited from a file (``ceag audit --predictions``): none of them is
    a method of ceag's, so there is no NFT baseline, sparsity or seed to speak of."""
    return not set(setting["method"]) & set(METHODS)


def _group(part: pd.DataFrame, name: str) -> pd.Series | None:
    rows = part[part["group_name"] == name]
    return None if rows.empty else rows.iloc[0]


SETTING_KEYS = ["dataset", "model", "sparsity", "seed", "criterion", "pruning"]


def _settings(groups: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """(groups with each row's criterion and pruning kind, one row per run, whether the criteria are named)."""
    groups = groups.assign(criterion=criteria_of(groups), pruning=kinds_of(groups))
    runs = groups.drop_duplicates("run_id")
    return groups, runs, names_criteria(runs)


def comparison_sentences(groups: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """Sentences comparing each mitigation with the NFT run of the same dataset, model, sparsity, seed, pruning
    criterion and pruning kind (named where the runs were pruned in several ways).

    ``groups``: per (run, split, group) rows with run_id, dataset, model, method, sparsity,
    tolerance, seed, split, group_name, acc_gap, excess_gap and optionally criterion (absent: magnitude),
    excess_gap_low / excess_gap_high (bootstrap intervals at ``confidence``).
    """
    if groups.empty:
        return []
    out: list[str] = []
    keys = SETTING_KEYS
    groups, runs, by_criterion = _settings(groups)
    kinds = names_kinds(runs)
    several = runs[keys].drop_duplicates().shape[0] > 1
    for key, setting in runs.groupby(keys, sort=False, dropna=False):
        pruned = (f", {criterion_label(key[4])} pruning" if by_criterion else "") + (
            f", {pruning_label(key[5])} pruning" if kinds else "")
        prefix = (f"At sparsity {100 * key[2]:g} % ({key[0]}/{key[1]}, seed {key[3]}{pruned}): "
                  if several and not pd.isna(key[2]) else "")
        crit = key[4] if by_criterion and not prefix else None  # named once: in the prefix, else in each run's label
        base_ids = setting.loc[setting["method"] == BASELINE, "run_id"]
        others = setting[setting["method"] != BASELINE].sort_values(["method", "tolerance"], na_position="first")
        if base_ids.empty:
            for row in others.itertuples():
                test = groups[(groups.run_id == row.run_id) & (groups.split == "test")]
                worst = worst_group(test)
                label = run_label(row.method, row.tolerance, crit)
                if worst is not None and _external(setting):
                    out.append(f"Under {label}, the worst group on test is {worst.group_name} (ψ_g = "
                               f"{points(worst.excess_gap)} points{_interval(worst, confidence, inner=True)})"
                               + (f", {_tolerance_verdict(worst, row.tolerance)}" if not pd.isna(row.tolerance)
                                  else zero_clause(worst)) + ".")
                elif worst is not None:
                    lead = f"{prefix}there" if prefix else "There"
                    out.append(f"{lead} is no NFT run to compare with; under {label}"
                               f" the worst group on test is {worst.group_name} (ψ_g = {points(worst.excess_gap)} "
                               f"points{_interval(worst, confidence, inner=True)}).")
                if not pd.isna(row.tolerance):
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
                out.append(f"{prefix}On {split}, {run_label(BASELINE, None, crit)} hurts no group by more than "
                           f"{points(thr)} points beyond the model as a whole: the worst, {worst.group_name}, has "
                           f"ψ_g = {points(worst.excess_gap)} points{_interval(worst, confidence)}.")
            else:
                out.append(f"{prefix}On {split}, {hurts_most(worst, run_label(BASELINE, None, crit))}: "
                           f"{loss_clause(worst)}, "
                           f"{points(worst.excess_gap)} points {'more' if worst.acc_gap > 0 else 'less'} "
                           f"(ψ_g{_interval(worst, confidence, inner=True)}){zero_clause(worst)}.")
        for row in others.itertuples():
            label = run_label(row.method, row.tolerance, crit)
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
            tol = None if pd.isna(row.tolerance) else row.tolerance
            if tol is not None:
                worst_train = worst_group(mine[mine.split == "train"])
                if worst_train is not None:
                    verdict = ("keeps every group within" if worst_train.excess_gap <= tol
                               else "does not keep every group within")
                    out.append(f"{prefix}On train, {label} {verdict} its tolerance: the worst group, "
                               f"{worst_train.group_name}, has ψ_g = {points(worst_train.excess_gap)} points"
                               f"{_verdict_words(worst_train, tol)}.")
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


def _against_tolerance(row: pd.Series, tolerance: float) -> str:
    """Where a ψ_g lies against ε, in words, with what the data can tell (its verdict)."""
    side = "within" if row["excess_gap"] <= tolerance else "above"
    return f"{side} ε = {points(tolerance)}" + _verdict_words(row, tolerance)


def headline_sentences(groups: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """The answer first: which group NFT hurts most on test, and what each other run does for it on test.

    ``groups`` as for ``comparison_sentences``. Per setting (dataset, model, sparsity, seed, criterion, kind): one
    sentence on NFT's worst group on test (with its train value), then one per other run: that
    group's ψ_g on test under it, against ε for CEAG, and the worst group on test under it. Every
    ψ_g carries its interval when the rows have one. A setting without NFT names each run's worst
    group on test.
    """
    if groups.empty:
        return []
    out: list[str] = []
    keys = SETTING_KEYS
    groups, runs, named = _settings(groups)
    varies = {k: runs[k].nunique() > 1 for k in keys}
    for key, setting in runs.groupby(keys, sort=False, dropna=False):
        extra = [f"{key[0]}/{key[1]}"] if varies["dataset"] or varies["model"] else []
        extra += [f"{criterion_label(key[4])} pruning"] if named else []
        extra += [f"{pruning_label(key[5])} pruning"] if varies["pruning"] else []
        extra += [f"seed {key[3]}, one run per method"]
        where = f"At {100 * key[2]:g} % sparsity" + (f" ({', '.join(extra)})" if extra else "")
        if _external(setting):  # models audited from a file: no sparsity, seed or NFT to speak of
            for row in setting.itertuples():
                worst = worst_group(groups[(groups.run_id == row.run_id) & (groups.split == "test")])
                if worst is not None:
                    text = (f"Under {run_label(row.method, row.tolerance)}, the worst group on test is "
                            f"{worst.group_name}: {loss_clause(worst)}, ψ_g = {points(worst.excess_gap)}"
                            f"{_interval(worst, confidence)}")
                    text += (f", {_against_tolerance(worst, row.tolerance)}" if not pd.isna(row.tolerance)
                             else zero_clause(worst))
                    out.append(text + ".")
            continue
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
        more = "more accuracy than" if hurt.acc_gap > 0 else "less accuracy than"
        verb = "loses" if hurt.acc_gap > 0 else "gains"
        text = (f"{where}, {hurts_most(hurt)} on test: it {verb} {points(hurt.excess_gap)} points {more} the model "
                f"as a whole (ψ_g{_interval(hurt, confidence, inner=True)}){zero_clause(hurt)}")
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
            tol = None if pd.isna(row.tolerance) else row.tolerance
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
    """Per split, how many groups meet ε, exceed it or cannot tell, and the groups too small to audit at ε."""
    if "verdict" not in rows:
        return []
    out = []
    for split in ("train", "test"):
        part = rows[(rows.split == split) & rows["verdict"].notna()]
        if part.empty:
            continue
        m = part["corrected_for"].max() if "corrected_for" in part else None
        how = (f" (intervals widened for the {int(m)} groups, Bonferroni)" if m is not None and not pd.isna(m)
               and int(m) > 1 else " (intervals not widened for the number of groups)")
        out.append(f"{prefix}On {split}, under {label}: {counts_text(part['verdict'])}{how}.")
        small = part[part["small_for_tolerance"].fillna(False).astype(bool)] if "small_for_tolerance" in part \
            else part.iloc[:0]
        for row in small.head(3).itertuples():
            out.append(f"{prefix}{row.group_name} on {split}: {row.n} samples; gaps under "
                       f"{points(row.min_detectable_gap)} points cannot be told from zero, so it is too small to "
                       f"audit at ε = {points(tolerance)}.")
        if len(small) > 3:
            more = len(small) - 3
            out.append(f"{prefix}{more} more group{'s' if more > 1 else ''} on {split} "
                       f"{'are' if more > 1 else 'is'} too small to audit at ε.")
    return out


def audit_sentences(result: Audit) -> list[str]:
    """The comparison sentences of an audit, with its intervals."""
    return comparison_sentences(result.groups, confidence=result.settings.confidence)
