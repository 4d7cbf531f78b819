"""Sentences about results, generated from query rows: every number in them comes from the store.

Three stories:
- ``headline_sentences``: the answer first, on test: which group NFT hurts most and what each
  other run does for it (the Compare page's headline).
- ``comparison_sentences``: for chosen runs, which group NFT hurts most on train and on test and
  by how much, what each mitigation leaves for that group, and which group is worst under the
  mitigation on test (with bootstrap intervals when the rows carry them).
- ``overview_sentences``: for a dataset and model, in plain words: which group pruning hurts,
  how much, what CEAG does on train and what happens on test, at each sparsity.

Inputs are per-group rows as ``queries.audit_groups`` / ``queries.story_groups`` return them
(method, tolerance, sparsity, seed, split, group_name, acc_gap, excess_gap; fractions). Values
are written in percentage points with one decimal. ``GLOSSARY`` defines the symbols they use.
"""

from __future__ import annotations

import math

import pandas as pd

METHOD_NAMES = {"nft": "NFT", "nft_es": "NFT+ES", "el_rb": "EL+RB", "ceag": "CEAG", "ceag_vs": "CEAG+VS"}
BASELINE = "nft"
DEFAULT_THRESHOLD = 0.01  # "hurts no group" when no tolerance says otherwise: 1 point

GLOSSARY: dict[str, str] = {
    "sparsity": "The fraction of the network's weights that pruning sets to zero: at 95 % sparsity one weight "
                "in twenty is left.",
    "ε (tolerance)": "How much more accuracy than the model as a whole CEAG lets any group lose: it asks for "
                     "ψ_g ≤ ε for every group g.",
    "Δ_g": "The accuracy group g lost to pruning: its accuracy with the dense model minus its accuracy with "
           "the pruned one, in percentage points. Δ (no index) is the same for the whole model.",
    "ψ_g": "The excess accuracy gap of group g: Δ_g − Δ, how much more group g lost than the model as a whole. "
           "Above zero, the group was hurt more than average; below zero, less.",
    "max_g ψ_g": "The largest ψ_g over all groups: how much more the worst-treated group lost. The headline "
                 "disparity number.",
    "Ψ_PW": "max_g Δ_g − min_g Δ_g: the largest difference between the accuracy two groups lost.",
    "λ_g": "CEAG's Lagrange multiplier for group g. It grows while the group's estimated ψ_g is above ε, and "
           "the larger it is, the more training weighs that group's loss.",
    "ψ̂_g": "The estimate of ψ_g CEAG uses while it trains, from the last few training predictions of each "
            "group (a replay buffer); λ_g follows it.",
    "interval": "A bootstrap confidence interval: the range the number would plausibly take on another draw of "
                "the same number of samples. A small group gives a wide interval.",
}


def points(x: float) -> str:
    """A fraction as percentage points with one decimal (``0.332`` -> ``"33.2"``), ``n/a`` for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text


def tolerance_text(tolerance: float) -> str:
    return f"ε = {100 * tolerance:g} %"


def run_label(method: str, tolerance: float | None) -> str:
    label = METHOD_NAMES.get(method, method)
    if tolerance is not None and not pd.isna(tolerance):
        label += f" ({tolerance_text(tolerance)})"
    return label


def _worst(part: pd.DataFrame) -> pd.Series | None:
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


def _loss_clause(row: pd.Series, subject: str = "it", what: str = "accuracy") -> str:
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
                worst = _worst(test)
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
            worst = _worst(base[base.split == split])
            if worst is None:
                continue
            hurt[split] = worst
            if worst.excess_gap <= thr:
                out.append(f"{prefix}On {split}, NFT hurts no group by more than {points(thr)} points beyond the model "
                           f"as a whole: the worst, {worst.group_name}, has ψ_g = {points(worst.excess_gap)} points"
                           f"{_interval(worst, confidence)}.")
            else:
                out.append(f"{prefix}On {split}, NFT hurts {worst.group_name} most: {_loss_clause(worst)}, "
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
                worst_train = _worst(mine[mine.split == "train"])
                if worst_train is not None:
                    verdict = ("keeps every group within" if worst_train.excess_gap <= tol
                               else "does not keep every group within")
                    out.append(f"{prefix}On train, {label} {verdict} its tolerance: the worst group, "
                               f"{worst_train.group_name}, has ψ_g = {points(worst_train.excess_gap)} points.")
            worst_test = _worst(mine[mine.split == "test"])
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
            hurt = _worst(base[base.split == "test"])
        if hurt is None:
            for row in others.itertuples():
                worst = _worst(groups[(groups.run_id == row.run_id) & (groups.split == "test")])
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
            own, worst = _group(mine, hurt.group_name), _worst(mine)
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


# -- the Overview's story ------------------------------------------------------------------------------------
def _seed_means(groups: pd.DataFrame) -> pd.DataFrame:
    keys = ["method", "tolerance", "sparsity", "split", "group_id", "group_name"]
    out = groups.groupby(keys, dropna=False, sort=True).agg(
        excess_gap=("excess_gap", "mean"), acc_gap=("acc_gap", "mean"), seeds=("seed", "nunique")).reset_index()
    return out


def _worst_of(means: pd.DataFrame, method: str, sparsity: float, split: str, tolerance=None) -> pd.Series | None:
    part = means[(means.method == method) & (means.sparsity == sparsity) & (means.split == split)]
    if tolerance is not None:
        part = part[part.tolerance == tolerance]
    return _worst(part)


def _value_of(means: pd.DataFrame, method: str, sparsity: float, split: str, name: str, tolerance=None):
    part = means[(means.method == method) & (means.sparsity == sparsity) & (means.split == split)
                 & (means.group_name == name)]
    if tolerance is not None:
        part = part[part.tolerance == tolerance]
    return None if part.empty else part.iloc[0]


def overview_sentences(groups: pd.DataFrame) -> list[str]:
    """The Overview's story for one dataset and model, in plain words (see the module docstring).

    ``groups``: ``queries.story_groups`` rows of one dataset (the first model in sorted order is
    told). Values of several seeds are averaged per group, and the sentences say so.
    """
    if groups.empty:
        return []
    model = sorted(groups["model"].unique())[0]
    groups = groups[groups["model"] == model]
    dataset = groups["dataset"].iloc[0]
    if BASELINE not in set(groups["method"]):
        return [f"The store has no NFT runs of {dataset}/{model}, so there is nothing to measure the other methods "
                "against; the demo grid has them."]
    means = _seed_means(groups)
    seeds = int(groups["seed"].nunique())
    average = f" (averaged over {seeds} seeds)" if seeds > 1 else ""
    sparsities = sorted(means.loc[means.method == BASELINE, "sparsity"].unique())
    nft_train = {s: _worst_of(means, BASELINE, s, "train") for s in sparsities}
    told = [s for s in sparsities if nft_train[s] is not None]
    if not told:
        return []
    head = max(told, key=lambda s: nft_train[s].excess_gap)
    out = [_hurt_sentence(means, head, dataset, model, average)]
    out += _ceag_sentences(means, head, nft_train[head])
    for s in told:
        if s != head:
            out.append(_short_sentence(means, s, nft_train[s]))
    return [t for t in out if t]


def _hurt_sentence(means: pd.DataFrame, s: float, dataset: str, model: str, average: str) -> str:
    w = _worst_of(means, BASELINE, s, "train")
    text = (f"On {dataset} with the {model} model{average}, pruning to {100 * s:g} % sparsity hurts {w.group_name} "
            f"most. With plain fine-tuning (NFT), {_loss_clause(w, w.group_name, 'training accuracy')}: "
            f"{points(w.excess_gap)} points more than average (its excess gap ψ_g).")
    test = _value_of(means, BASELINE, s, "test", w.group_name)
    worst_test = _worst_of(means, BASELINE, s, "test")
    if test is not None:
        text += f" On the test data its excess gap is {points(test.excess_gap)} points"
        if worst_test is not None and worst_test.group_name != w.group_name:
            text += f", and the group hurt most there is {worst_test.group_name} ({points(worst_test.excess_gap)})"
        text += "."
    return text


def _ceag_sentences(means: pd.DataFrame, s: float, hurt: pd.Series) -> list[str]:
    tolerances = sorted(means.loc[(means.method == "ceag") & (means.sparsity == s), "tolerance"].dropna().unique())
    if not tolerances:
        return [f"There are no CEAG runs at {100 * s:g} % to show what the constraint does."]
    met, missed = [], []
    for t in tolerances:
        w = _worst_of(means, "ceag", s, "train", t)
        if w is None:
            continue
        (met if w.excess_gap <= t else missed).append((t, w))
    train = []
    if met:
        train.append("keeps every group within its tolerance at " + ", ".join(
            f"{tolerance_text(t)} (worst: {w.group_name}, {points(w.excess_gap)} points)" for t, w in met))
    if missed:
        train.append("does not get there at " + ", ".join(
            f"{tolerance_text(t)}, where {w.group_name} is still {points(w.excess_gap)} points above average"
            for t, w in missed))
    out = ["On the training data, CEAG " + " but ".join(train) + f"; NFT left {hurt.group_name} at "
           f"{points(hurt.excess_gap)}."]
    nft_test = _worst_of(means, BASELINE, s, "test")
    for t in tolerances:
        own = _value_of(means, "ceag", s, "test", hurt.group_name, t)
        worst = _worst_of(means, "ceag", s, "test", t)
        if own is None or worst is None:
            continue
        if own.excess_gap < 0:
            text = (f"On the test data, CEAG with {tolerance_text(t)} turns {hurt.group_name} around: it now loses "
                    f"less than average (ψ_g = {points(own.excess_gap)})")
        else:
            text = (f"On the test data, CEAG with {tolerance_text(t)} leaves {hurt.group_name} at "
                    f"{points(own.excess_gap)} points")
        if worst.group_name != hurt.group_name:
            text += f", but {worst.group_name} is now the worst group at {points(worst.excess_gap)} points"
        else:
            text += ", still the worst group"
        train_worst = _worst_of(means, "ceag", s, "train", t)
        held = train_worst is not None and train_worst.excess_gap <= t
        if worst.excess_gap <= t:
            text += ", within the tolerance"
        elif held:
            text += ", above the tolerance: the constraint held on the data it trained on, not on new data"
        else:
            text += ", above the tolerance, as on the training data"
        if nft_test is not None and worst.excess_gap > nft_test.excess_gap:
            text += f"; that is worse than NFT's worst group on test ({points(nft_test.excess_gap)})"
        out.append(text + ".")
    return out


def _short_sentence(means: pd.DataFrame, s: float, nft: pd.Series) -> str:
    tolerances = sorted(means.loc[(means.method == "ceag") & (means.sparsity == s), "tolerance"].dropna().unique())
    threshold = tolerances[0] if tolerances else DEFAULT_THRESHOLD
    if nft.excess_gap <= threshold:
        text = (f"At {100 * s:g} %, NFT hurts no group by more than {points(threshold)} points beyond average "
                f"(worst: {nft.group_name}, {points(nft.excess_gap)})")
    else:
        text = f"At {100 * s:g} %, NFT hurts {nft.group_name} most ({points(nft.excess_gap)} points on train)"
    clauses = []
    nft_test = _worst_of(means, BASELINE, s, "test")
    for t in tolerances:
        train, test = _worst_of(means, "ceag", s, "train", t), _worst_of(means, "ceag", s, "test", t)
        if train is None:
            continue
        clause = (f"CEAG with {tolerance_text(t)} {'meets' if train.excess_gap <= t else 'misses'} its tolerance "
                  "on train "
                  f"(worst {points(train.excess_gap)})")
        if test is not None:
            clause += f" and its worst group on test is {test.group_name} at {points(test.excess_gap)}"
            if nft_test is not None and test.excess_gap > nft_test.excess_gap:
                clause += f", worse than NFT's {points(nft_test.excess_gap)}"
        clauses.append(clause)
    return text + ("; " + "; ".join(clauses) if clauses else "") + "."


def skip_lines(report: dict | None) -> list[str]:
    """What loading left out, as lines: by reason, then by group where the group is known.

    ``report`` is a run's ``data_report`` (ceag.datasets.base.LoadReport.to_dict), or the same
    keys (``skipped``, ``lost_by_group``, ``rows_read``) from ``run --json``. [] when nothing was
    left out.
    """
    report = report or {}
    by_reason = {k: int(v) for k, v in (report.get("skipped") or {}).items() if v}
    if not by_reason:
        return []
    total = sum(by_reason.values())
    of = f" of {report['rows_read']:,}" if report.get("rows_read") else ""
    lines = [f"{total:,}{of} rows left out while loading: "
             + ", ".join(f"{n:,} {reason}" for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))]
    lost = report.get("lost_by_group") or {}
    if lost:
        parts = [f"{group} {v['skipped']:,} of {v['of']:,} ({100 * v['share']:.1f} %)"
                 for group, v in sorted(lost.items(), key=lambda kv: -kv[1]["share"])]
        unknown = total - sum(v["skipped"] for v in lost.values())
        lines.append("by group: " + ", ".join(parts)
                     + (f"; {unknown:,} more whose group is unknown" if unknown > 0 else ""))
    return lines


def left_out_by_data(runs: pd.DataFrame) -> list[dict]:
    """What loading left out and how it read the data, once per data instance and load report among
    ``runs`` (columns run_id, dataset, data_fingerprint, data_report as JSON text, skipped_rows): a list
    of {dataset, fingerprint, run_ids, lines (``skip_lines``), notes (how the data was read: encodings,
    pixel formats, groups without samples, ...), warnings}, only where there is something to say."""
    import json

    runs = runs.drop_duplicates("run_id")
    out = []
    keys = [runs["dataset"], runs["data_fingerprint"].fillna("fingerprint unknown"), runs["data_report"].fillna("{}")]
    for (dataset, fingerprint, text), part in runs.groupby(keys, sort=False):
        report = json.loads(text)
        skipped = int(part["skipped_rows"].fillna(0).max())
        notes, warnings = list(report.get("notes") or []), list(report.get("warnings") or [])
        if not (skipped or notes or warnings):
            continue
        lines = skip_lines(report) or ([f"{skipped:,} rows left out while loading"] if skipped else [])
        out.append({"dataset": dataset, "fingerprint": fingerprint, "run_ids": list(part["run_id"]),
                    "lines": lines, "notes": notes, "warnings": warnings})
    return out
