"""Sentences about whom pruning hurt, generated from a run's casualty counts (``ceag.analysis.casualties``)."""

from __future__ import annotations

import pandas as pd

SPLIT_WORDS = {"train": "the training data", "val": "the validation data", "test": "the test data"}


def _share(count: int, n: int) -> str:
    return f"{100 * count / n:.1f} %" if n else "n/a"


def _images(n: int) -> str:
    return "sample" if n == 1 else "samples"


def casualty_sentences(label: str, split: str, counts: pd.DataFrame, top: int = 2) -> list[str]:
    """What pruning broke for one run on one split (``counts``: ``cell_counts``'s table), hardest-hit groups first.

    Groups are ranked by casualty rate; each sentence sets a group's rate against that of every other sample."""
    where = SPLIT_WORDS.get(split, split)
    counts = counts[counts["n"] > 0]
    total_cas, total_n = int(counts["casualty"].sum()), int(counts["n"].sum())
    if total_cas == 0:
        return [f"On {where}, {label}'s pruned model gets right every sample its dense model got right: "
                "pruning broke nothing here."]
    recovered = int(counts["recovered"].sum())
    out = [f"On {where}, {label}'s pruned model loses {total_cas:,} {_images(total_cas)} its dense model got right "
           f"({_share(total_cas, total_n)} of {total_n:,}) and gets {recovered:,} right that the dense model got "
           "wrong."]
    total_right = int((counts["kept"] + counts["casualty"]).sum())
    for row in counts.sort_values(["casualty_rate", "casualty"], ascending=False).head(top).itertuples():
        if row.casualty == 0:
            break
        right = int(row.kept + row.casualty)
        rest_cas, rest_right = total_cas - int(row.casualty), total_right - right
        verb = "is" if row.casualty == 1 else "are"
        out.append(f"{row.group_name}: {int(row.casualty):,} of the {right:,} {_images(right)} the dense model got "
                   f"right {verb} lost ({_share(int(row.casualty), right)}; the group has {int(row.n):,}), against "
                   f"{_share(rest_cas, rest_right)} for the other groups.")
    return out


def kept_sentence(mitigation: str, baseline: str, kept: pd.DataFrame, group_name: str, split: str,
                  seed: int | None = None, across: pd.DataFrame | None = None) -> str:
    """How many of the baseline's casualties in one group the mitigation's run got right: on ``seed`` (``kept``:
    ``kept_by`` for that seed), then over every seed both have (``across``: ``kept_by`` for all, when several)."""
    row = kept[kept["group_name"] == group_name].iloc[0]
    where = SPLIT_WORDS.get(split, split)
    on = f"On {where}" + (f", seed {seed}" if seed is not None else "")
    if int(row["casualties"]) == 0:
        text = f"{on}, {baseline} lost no sample of {group_name} that its dense model got right."
    else:
        text = (f"{on}, {mitigation} kept {int(row['kept']):,} of {baseline}'s {int(row['casualties']):,} "
                f"{'casualty' if int(row['casualties']) == 1 else 'casualties'} in {group_name}.")
    if across is not None and int(across["seeds"].iloc[0]) > 1:
        all_row = across[across["group_name"] == group_name].iloc[0]
        text += (f" Over the {int(all_row['seeds'])} seeds both methods have: {int(all_row['kept']):,} of "
                 f"{int(all_row['casualties']):,}.")
    return text


def consistency_sentence(consistent: pd.DataFrame, group_names: list[str], split: str) -> str | None:
    """How many samples most seeds' sparse models lost, and how many are pruning identified exemplars."""
    if consistent.empty:
        return None
    seeds = int(consistent["seeds"].iloc[0])
    if seeds < 2:
        return None
    need = seeds // 2 + 1
    most = consistent[consistent["lost"] >= need]
    pie = int(consistent["pie"].sum())
    where = SPLIT_WORDS.get(split, split)
    if most.empty:
        return (f"No sample of {where} was lost by at least {need} of the {seeds} seeds' pruned models; {pie:,} "
                "are pruning identified exemplars (the sparse models' most common answer differs from the dense "
                "models').")
    by_group = most["group_id"].value_counts()
    worst = ", ".join(f"{group_names[g]}: {n:,}" for g, n in by_group.head(3).items())
    return (f"{len(most):,} samples of {where} were lost by at least {need} of the {seeds} seeds' pruned models "
            f"({worst}); {pie:,} are pruning identified exemplars (the sparse models' most common answer "
            "differs from the dense models').")
