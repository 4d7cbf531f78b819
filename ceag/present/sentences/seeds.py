"""Verdicts across seeds in words: does a mitigation change max_g ψ_g (or Ψ_PW, accuracy) against NFT beyond
what chance in the seeds and the samples explains?

Input rows are ``ceag.analysis.seed_cache.comparisons_frame`` rows (fractions). A difference is *distinguishable*
when its interval excludes zero. With one seed, the sentence says that seed-to-seed variation is unknown. Each
mitigation is measured against NFT pruned by the same criterion (FairGRAPE: by magnitude) and the same pruning
kind; where the rows hold several criteria, or one other than magnitude, the sentences name it, and where they
hold several kinds, the kind.
"""

from __future__ import annotations

import pandas as pd

from ceag.present.words import BASELINE, names_criteria, names_kinds, own_masks, points, run_label

METRIC_WORDS = {"max_excess_gap": "max_g ψ_g", "psi_pw": "Ψ_PW", "accuracy": "accuracy", "excess_gap": "ψ_g"}
LOWER, HIGHER, NO_CHANGE = "lower", "higher", "not distinguishable"


def seed_verdict(row) -> str:
    """LOWER / HIGHER when the interval of the difference (mitigation − NFT) excludes zero, else NO_CHANGE."""
    if pd.isna(row["diff_low"]) or pd.isna(row["diff_high"]):
        return NO_CHANGE
    if row["diff_high"] < 0:
        return LOWER
    if row["diff_low"] > 0:
        return HIGHER
    return NO_CHANGE


def verdict_label(row) -> str:
    """Short words for a table cell: 'lower (3 seeds)', 'not distinguishable (1 seed: samples only)'."""
    seeds = int(row["seeds"])
    return f"{seed_verdict(row)} ({seeds} seed{'s' if seeds != 1 else ''}{': samples only' if seeds == 1 else ''})"


def seed_subject(row, named: bool = False, kinds: bool = False) -> str:
    """The mitigation of a comparisons_frame row in words: "CEAG (ε = 2 %)"; with ``named``, its pruning criterion
    too ("CEAG (ε = 2 %) with SNIP pruning"), and for a method that chooses its own masks the NFT it is measured
    against ("FairGRAPE (against NFT with magnitude pruning)"); with ``kinds``, its pruning kind
    ("CEAG (ε = 2 %), channels pruning")."""
    criterion = row.get("criterion") if named else None
    subject = run_label(row["method"], row["tolerance"], criterion, row.get("pruning") if kinds else None)
    if named and own_masks(row["method"]) and criterion is not None:
        subject += f" (against {run_label(BASELINE, None, criterion)})"
    return subject


def seed_sentence(row, *, confidence: float = 0.95, subject: str | None = None) -> str:
    """'CEAG (ε = 2 %) lowers test max_g ψ_g by 0.4 points (95 % interval −1.2 to 2.0): not distinguishable
    from no change, with 3 seeds.'

    ``row``: a comparisons_frame row (method, tolerance, split, metric, group name optional as ``group_name``,
    diff, diff_low, diff_high, seeds); ``subject``: the words for the mitigation (default its label,
    ``seed_subject``).
    """
    subject = subject or seed_subject(row)
    what = METRIC_WORDS.get(row["metric"], row["metric"])
    if row["metric"] == "excess_gap" and isinstance(row.get("group_name"), str):
        what = f"{row['group_name']}'s ψ_g"
    lowers = row["diff"] <= 0
    size, lo, hi = (-row["diff"], -row["diff_high"], -row["diff_low"]) if lowers else (
        row["diff"], row["diff_low"], row["diff_high"])
    text = (f"{subject} {'lowers' if lowers else 'raises'} {row['split']} {what} by {points(size)} points "
            f"({100 * confidence:g} % interval {points(lo)} to {points(hi)})")
    seeds = int(row["seeds"])
    verdict = seed_verdict(row)
    if verdict == NO_CHANGE:
        text += ": not distinguishable from no change"
    else:
        text += ": more than chance in the seeds and the samples explains"
    if seeds == 1:
        return text + ", with 1 seed: seed-to-seed variation is unknown, so the interval counts only the samples."
    return text + f", with {seeds} seeds."


def vs_nft_text(diff, low, high, seeds, *, confidence: float = 0.95) -> str:
    """'−15.5 points vs NFT (95 % interval −26.8 to −2.1): lower, 3 seeds' for a frontier cell; '' without a
    comparison (NFT itself, or no NFT run on the same seeds)."""
    if diff is None or pd.isna(diff):
        return ""
    row = {"diff_low": low, "diff_high": high, "seeds": seeds}
    return (f"{points(diff)} points vs NFT ({100 * confidence:g} % interval {points(low)} to {points(high)}): "
            f"{verdict_label(row)}")


def verdict_sentences(frame: pd.DataFrame, run_ids, *, splits=("test",), metrics=("max_excess_gap",),
                      confidence: float = 0.95) -> list[str]:
    """One ``seed_sentence`` per cell that holds one of ``run_ids`` (as a mitigation), split and metric, in
    the order of the cells' first run in ``run_ids``; ``frame``: ``comparisons_frame`` rows. The criterion is named
    where the frame's cells were pruned by several, or by one other than magnitude; the pruning kind where they were
    pruned in several ways."""
    if frame.empty:
        return []
    wanted = list(run_ids)
    named, kinds = names_criteria(frame), names_kinds(frame)
    position = {rid: i for i, rid in enumerate(wanted)}
    cells = frame.assign(order=[min((position[r] for r in ids.split(",") if r in position), default=-1)
                                for ids in frame["run_ids"]])
    cells = cells[cells["order"] >= 0]
    out = []
    for _, row in cells.sort_values("order", kind="stable").iterrows():
        if row["split"] in splits and row["metric"] in metrics:
            out.append((splits.index(row["split"]), metrics.index(row["metric"]), row["order"],
                        seed_sentence(row, confidence=confidence, subject=seed_subject(row, named, kinds))))
    return [text for *_, text in sorted(out, key=lambda t: t[:3])]
