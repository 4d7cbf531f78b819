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
    for row in counts.sort_values(["casualty_rate", "casualty"], ascending=False).head(top).itertuples():
        if row.casualty == 0:
            break
        rest_cas, rest_n = total_cas - int(row.casualty), total_n - int(row.n)
        right = int(row.kept + row.casualty)
        out.append(f"{row.group_name}: {int(row.casualty):,} of the {right:,} {_images(right)} the dense model got "
                   f"right are lost ({_share(int(row.casualty), int(row.n))} of the group), against "
                   f"{_share(rest_cas, rest_n)} of the other groups' samples.")
    return out


def kept_sentence(mitigation: str, baseline: str, kept: pd.DataFrame, group_name: str, split: str) -> str:
    """How many of the baseline's casualties in one group the mitigation's runs on the same seeds got right."""
    row = kept[kept["group_name"] == group_name].iloc[0]
    seeds = int(row["seeds"])
    on = f"on {SPLIT_WORDS.get(split, split)}, {seeds} seed{'s' if seeds != 1 else ''}"
    if int(row["casualties"]) == 0:
        return f"{baseline} lost no sample of {group_name} that its dense model got right ({on})."
    return (f"{mitigation} kept {int(row['kept']):,} of {baseline}'s {int(row['casualties']):,} casualties in "
            f"{group_name} ({on}).")


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
