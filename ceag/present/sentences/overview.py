"""The Overview's story: for a dataset and model, in plain words, which group pruning hurts, how much, what
CEAG does on train and what happens on test, at each sparsity (means over seeds).

Inputs are per-group rows as ``queries.story_groups`` returns them (method, tolerance, sparsity, seed,
split, group_name, acc_gap, excess_gap; fractions). Values are written in percentage points.
"""

from __future__ import annotations

import pandas as pd

from ceag.present.sentences.compare import loss_clause, worst_group
from ceag.present.words import BASELINE, DEFAULT_THRESHOLD, points, tolerance_text


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
    return worst_group(part)


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
    worst_train = {s: _worst_of(means, BASELINE, s, "train") for s in sparsities}
    nft_train = {s: w for s, w in worst_train.items() if w is not None}
    told = list(nft_train)
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
    assert w is not None  # told only at a sparsity with a worst group
    text = (f"On {dataset} with the {model} model{average}, pruning to {100 * s:g} % sparsity hurts {w.group_name} "
            f"most. With plain fine-tuning (NFT), {loss_clause(w, w.group_name, 'training accuracy')}: "
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
    met: list[tuple[float, pd.Series]] = []
    missed: list[tuple[float, pd.Series]] = []
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
