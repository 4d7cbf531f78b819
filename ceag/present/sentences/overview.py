"""The Overview's story, told as a teacher would: first the setting that shows the phenomenon and its repair,
then what happens on the test data, then where no run can meet its tolerance, each a short sentence with
the numbers behind it kept for a folded "details" list.

1. **Phenomenon and repair.** Among the sparsities where CEAG meets its tolerance ε on the training data
   (its worst group's ψ_g ≤ ε), the one where plain fine-tuning (NFT) leaves its worst group furthest
   behind; without such a sparsity, the one where NFT does.
2. **On the test data.** Under that CEAG run, the worst group on test against ε and against NFT's.
3. **Out of reach.** Each sparsity where CEAG ran and met none of its tolerances on train: the constraint
   cannot be met there (by these runs).
4. **The other sparsities**, one short sentence each.

Inputs are per-group rows as ``queries.story_groups`` returns them (method, criterion, tolerance, sparsity,
seed, split, group_name, acc_gap, excess_gap; fractions), of one dataset; values of several seeds are averaged
per group, and the sentences say how many. Values are written in percentage points.

Runs pruned by different criteria, or in different ways (the pruning kind), are never averaged together: the
story is told once per pruning criterion and kind of the NFT runs (magnitude first), each telling saying which
criterion it is about where the store holds several, or one other than magnitude (``words.names_criteria``),
and which kind where it holds several (``words.names_kinds``).

With ``bounds`` (``bounds_from`` on ``analysis.seed_cache.comparisons_frame`` rows), each claim about a
group's ψ_g says when the data cannot tell it from zero or from ε: the interval of its mean over
seeds, over seeds and samples, widened for the number of groups because the group named is the
worst one, chosen among all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ceag.analysis.bootstrap import MIN_INTERVAL_SAMPLES
from ceag.config.vocabulary import CRITERIA
from ceag.present.footprint import pruning_label
from ceag.present.sentences.compare import loss_clause, worst_group
from ceag.present.words import (
    BASELINE,
    DEFAULT_CRITERION,
    DEFAULT_PRUNING,
    DEFAULT_THRESHOLD,
    criteria_of,
    criterion_label,
    kinds_of,
    names_criteria,
    names_kinds,
    points,
    tolerance_text,
)

MITIGATION = "ceag"  # the method whose tolerance the story holds runs to


@dataclass
class StoryPoint:
    """One point of the story: a short sentence, what it is about (``topic``, e.g. "95 %, on test"), the
    numbers behind it (shown folded) and, where the story names criteria, the pruning criterion of its runs
    (``pruning``: their pruning kind, where the story names kinds)."""

    text: str
    topic: str = ""
    details: list[str] = field(default_factory=list)
    criterion: str | None = None
    pruning: str | None = None


Bounds = dict[tuple, tuple[float, float, int]]


def bounds_from(frame: pd.DataFrame) -> Bounds:
    """{(model, method, tolerance or None, criterion, pruning, sparsity, split, group_id): (low, high, seeds)} of
    each group's mean ψ_g, from ``comparisons_frame`` rows: the mitigations' own and NFT's of the same criterion
    and pruning kind (from the comparison with the most seeds)."""
    out: Bounds = {}
    if frame.empty:
        return out
    rows = frame[frame["metric"] == "excess_gap"].sort_values("seeds", kind="stable")
    rows = rows.assign(criterion=criteria_of(rows), pruning=kinds_of(rows))
    for r in rows.itertuples():
        tol = None if pd.isna(r.tolerance) else round(float(r.tolerance), 9)
        where = (r.criterion, r.pruning, round(float(r.sparsity), 9), r.split, int(r.group_id))
        out[(r.model, r.method, tol, *where)] = (r.mitigation_low, r.mitigation_high, int(r.seeds))
        out[(r.model, BASELINE, None, *where)] = (r.baseline_low, r.baseline_high, int(r.seeds))
    return out


def _bound(bounds: Bounds | None, st: _Setting, method: str, tolerance, split: str,
           row: pd.Series) -> tuple[float, float, int] | None:
    """The interval of ``row``'s group under ``method`` at ``st``'s model, criterion and sparsity, or None."""
    if not bounds:
        return None
    tol = None if tolerance is None or pd.isna(tolerance) else round(float(tolerance), 9)
    found = bounds.get((st.model, method, tol, st.criterion, st.pruning, round(float(st.sparsity), 9), split,
                        int(row.group_id)))
    if found is None or pd.isna(found[0]) or pd.isna(found[1]):
        return None
    return found


def _seeds_words(seeds: int) -> str:
    return "one seed" if seeds == 1 else f"{seeds} seeds"


def _zero_words(span: tuple[float, float, int] | None, row: pd.Series | None = None) -> str:
    """' — with 3 seeds and this data it cannot be told from zero (interval −0.4 to 3.1)' when it cannot; for a
    group with too few samples for an interval, that it is too few (with ``row``, its seed-mean row)."""
    n = None if row is None else row.get("n")
    if span is None and n is not None and not pd.isna(n) and 0 < n < MIN_INTERVAL_SAMPLES:
        return f"; it rests on {int(n)} samples, too few for an interval"
    if span is None or not span[0] <= 0 <= span[1]:
        return ""
    return (f"; with {_seeds_words(span[2])} and this data that gap cannot be told from zero (interval "
            f"{points(span[0])} to {points(span[1])})")


def _tolerance_words(span: tuple[float, float, int] | None, tolerance: float, row: pd.Series | None = None) -> str:
    """'; with 3 seeds and this data it cannot be told from ε (interval …)' when the interval contains ε; for a
    group with too few samples for an interval (with ``row``, its seed-mean row), that it is too few."""
    n = None if row is None else row.get("n")
    if span is None and n is not None and not pd.isna(n) and 0 < n < MIN_INTERVAL_SAMPLES:
        return f"; it rests on {int(n)} samples, too few for an interval"
    if span is None or not span[0] <= tolerance <= span[1]:
        return ""
    return (f"; with {_seeds_words(span[2])} and this data it cannot be told from ε (interval {points(span[0])} "
            f"to {points(span[1])})")


def _ceag_words(bounds: Bounds | None, st: _Setting, tolerance: float, split: str, row: pd.Series) -> str:
    """``_tolerance_words`` for CEAG's row of group ``row`` at ``st``'s sparsity (its interval from ``bounds``,
    if there is one)."""
    return _tolerance_words(_bound(bounds, st, MITIGATION, tolerance, split, row), tolerance, row)


def _seed_means(groups: pd.DataFrame) -> pd.DataFrame:
    keys = ["method", "tolerance", "sparsity", "split", "group_id", "group_name"]
    out = groups.groupby(keys, dropna=False, sort=True).agg(
        excess_gap=("excess_gap", "mean"), acc_gap=("acc_gap", "mean"), seeds=("seed", "nunique"),
        n=("n", "min")).reset_index()
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


def _pct(sparsity: float) -> str:
    return f"{100 * sparsity:g} %"


def _behind(row: pd.Series) -> str:
    """'digit 8 ends 33.2 points behind the model as a whole' (ψ_g > 0), or 'no further behind' wording."""
    if row.excess_gap > 0:
        return f"{row.group_name} ends {points(row.excess_gap)} points behind the model as a whole"
    return f"no group ends behind the model as a whole (worst: {row.group_name}, {points(row.excess_gap)})"


@dataclass
class _Setting:
    """What the runs at one sparsity show: NFT's worst group on train, and CEAG's worst per tolerance."""

    sparsity: float
    nft: pd.Series
    ceag: dict[float, pd.Series]
    model: str = ""
    criterion: str = DEFAULT_CRITERION
    pruning: str = DEFAULT_PRUNING

    @property
    def met(self) -> list[float]:
        return [t for t, w in self.ceag.items() if w.excess_gap <= t]

    @property
    def missed(self) -> list[float]:
        return [t for t, w in self.ceag.items() if w.excess_gap > t]


def overview_story(groups: pd.DataFrame, bounds: Bounds | None = None) -> list[StoryPoint]:
    """The Overview's story for one dataset and model (see the module docstring), once per pruning criterion and
    kind of the NFT runs (magnitude first); where the criteria are named, each point carries its ``criterion``,
    where the kinds are, its ``pruning``.

    ``groups``: ``queries.story_groups`` rows of one dataset (the first model in sorted order is told);
    ``bounds``: ``bounds_from`` rows, so the sentences say what the data cannot tell (None: point values only).
    Returns [] when there is nothing to tell, and one point saying what is missing without NFT runs.
    """
    if groups.empty:
        return []
    model = sorted(groups["model"].unique())[0]
    groups = groups[groups["model"] == model]
    groups = groups.assign(criterion=criteria_of(groups), pruning=kinds_of(groups))
    dataset = groups["dataset"].iloc[0]
    if BASELINE not in set(groups["method"]):
        return [StoryPoint(f"The store has no NFT runs of {dataset}/{model}, so there is nothing to measure the "
                           "other methods against; the demo grid has them.")]
    runs = groups.drop_duplicates("run_id") if "run_id" in groups else groups
    named, kinds = names_criteria(runs), names_kinds(runs)
    used = set(groups.loc[groups["method"] == BASELINE, "criterion"])
    story = []
    for criterion in [c for c in CRITERIA if c in used] + sorted(used - set(CRITERIA)):
        for kind in sorted(set(groups.loc[(groups["method"] == BASELINE) & (groups["criterion"] == criterion),
                                          "pruning"])):
            part = groups[(groups["criterion"] == criterion) & (groups["pruning"] == kind)]
            told = _criterion_story(part, bounds, dataset, model, (criterion, kind), (named, kinds))
            for point in told:
                point.criterion, point.pruning = (criterion if named else None), (kind if kinds else None)
                said = ([f"{criterion_label(criterion)} pruning"] if named else []) + (
                    [f"{pruning_label(kind)} pruning"] if kinds else [])
                point.topic = ", ".join([*said, point.topic]) if point.topic else point.topic
            story += told
    return story


def _criterion_story(groups: pd.DataFrame, bounds: Bounds | None, dataset: str, model: str,
                     pruned: tuple[str, str], named: tuple[bool, bool]) -> list[StoryPoint]:
    """The story of the runs of one model pruned by one criterion in one way (``pruned``: (criterion, kind));
    ``named``: whether the lead sentence says the criterion, the kind."""
    criterion, kind = pruned
    means = _seed_means(groups)
    settings = {}
    for s in sorted(means.loc[means.method == BASELINE, "sparsity"].unique()):
        nft = _worst_of(means, BASELINE, s, "train")
        if nft is None:
            continue
        tolerances = sorted(means.loc[(means.method == MITIGATION) & (means.sparsity == s), "tolerance"].dropna()
                            .unique())
        ceag = {float(t): w for t in tolerances if (w := _worst_of(means, MITIGATION, s, "train", t)) is not None}
        settings[s] = _Setting(float(s), nft, ceag, model, criterion, kind)
    if not settings:
        return []
    repaired = [st for st in settings.values() if st.met and st.nft.excess_gap > min(st.met)]
    lead = max(repaired or settings.values(), key=lambda st: st.nft.excess_gap)
    seeds = int(groups.loc[np.isclose(groups["sparsity"], lead.sparsity), "seed"].nunique())
    where = (f"On {dataset} with the {model} model" + (f" pruned by {criterion_label(criterion)}" if named[0] else "")
             + (f" ({pruning_label(kind)} pruning)" if named[1] else "")
             + (f", averaged over {seeds} seeds" if seeds > 1 else ""))
    story = [_lead_point(means, lead, where, repaired=bool(repaired), bounds=bounds)]
    if lead.met:
        story.append(_test_point(means, lead, bounds))
    story += [_out_of_reach_point(st, bounds) for st in settings.values() if st.ceag and not st.met]
    story += [_other_point(means, st, bounds) for st in settings.values()
              if st is not lead and (st.met or not st.ceag)]
    return story


def overview_sentences(groups: pd.DataFrame, bounds: Bounds | None = None) -> list[str]:
    """The story's short sentences, in order (``overview_story`` keeps the numbers behind each)."""
    return [p.text for p in overview_story(groups, bounds)]


def _lead_point(means: pd.DataFrame, st: _Setting, where: str, *, repaired: bool,
                bounds: Bounds | None = None) -> StoryPoint:
    s, w = st.sparsity, st.nft
    details = [f"With plain fine-tuning (NFT) at {_pct(s)}, {loss_clause(w, w.group_name, 'training accuracy')}: "
               f"ψ_g = {points(w.excess_gap)} points."]
    for t, c in st.ceag.items():
        verdict = "within" if c.excess_gap <= t else "above"
        details.append(f"CEAG with {tolerance_text(t)}: the worst group on train is {c.group_name} at "
                       f"{points(c.excess_gap)} points, {verdict} ε"
                       f"{_ceag_words(bounds, st, t, 'train', c)}.")
    nft_zero = _zero_words(_bound(bounds, st, BASELINE, None, "train", w), w)
    if repaired:
        t = min(st.met)
        c = st.ceag[t]
        text = (f"{where}, pruning to {_pct(s)} sparsity shows the problem and its repair: with plain fine-tuning "
                f"(NFT) {_behind(w)} on the training data (ψ_g){nft_zero}, and CEAG with {tolerance_text(t)} brings "
                f"every group within ε there (worst: {c.group_name}, {points(c.excess_gap)}"
                f"{_ceag_words(bounds, st, t, 'train', c)}).")
        return StoryPoint(text, f"{_pct(s)}, on train", details)
    if w.acc_gap > 0:
        text = (f"{where}, pruning hurts a group most at {_pct(s)} sparsity: with plain fine-tuning (NFT) "
                f"{_behind(w)} on the training data (ψ_g){nft_zero}")
    else:
        text = (f"{where}, at {_pct(s)} sparsity plain fine-tuning (NFT) leaves {w.group_name} furthest behind on "
                f"the training data, though it does not hurt it: {loss_clause(w, w.group_name, 'training accuracy')}"
                f" (ψ_g = {points(w.excess_gap)}){nft_zero}")
    if not st.ceag:
        text += f"; there are no CEAG runs at {_pct(s)} to show what the constraint does."
    elif st.met:
        text += f", within CEAG's smallest tolerance, {tolerance_text(min(st.met))}: there is little to repair."
    else:
        text += "; no CEAG run meets its tolerance there (below)."
    return StoryPoint(text, f"{_pct(s)}, on train", details)


def _test_point(means: pd.DataFrame, st: _Setting, bounds: Bounds | None = None) -> StoryPoint:
    s, t = st.sparsity, min(st.met)
    worst = _worst_of(means, MITIGATION, s, "test", t)
    nft = _worst_of(means, BASELINE, s, "test")
    if worst is None:
        return StoryPoint(f"There is no test data for CEAG at {_pct(s)}.", f"{_pct(s)}, on test")
    unsure = _ceag_words(bounds, st, t, "test", worst)
    if worst.excess_gap <= t:
        text = (f"On the test data the repair holds: under CEAG ({tolerance_text(t)}) the worst group, "
                f"{worst.group_name}, is {points(worst.excess_gap)} points behind, within ε{unsure}")
    else:
        text = (f"On the test data it does not hold: under CEAG ({tolerance_text(t)}) {worst.group_name} ends "
                f"{points(worst.excess_gap)} points behind, above ε{unsure}"
                + ("" if unsure else " — the constraint held on the data it trained on, not on new data"))
    if nft is not None:
        worse = ", so CEAG's worst is worse than NFT's" if worst.excess_gap > nft.excess_gap else ""
        text += f" (NFT's worst on test: {nft.group_name} at {points(nft.excess_gap)}{worse})"
    details = []
    hurt = st.nft.group_name
    for tol in st.ceag:
        own, w = _value_of(means, MITIGATION, s, "test", hurt, tol), _worst_of(means, MITIGATION, s, "test", tol)
        if own is not None and w is not None:
            details.append(f"CEAG with {tolerance_text(tol)} on test: {hurt} at ψ_g = {points(own.excess_gap)}, the "
                           f"worst group {w.group_name} at {points(w.excess_gap)}.")
    own_nft = _value_of(means, BASELINE, s, "test", hurt)
    if own_nft is not None:
        details.append(f"NFT on test: {hurt} at ψ_g = {points(own_nft.excess_gap)}.")
    return StoryPoint(text + ".", f"{_pct(s)}, on test", details)


def _out_of_reach_point(st: _Setting, bounds: Bounds | None = None) -> StoryPoint:
    t = min(st.ceag, key=lambda tol: st.ceag[tol].excess_gap - tol)
    w = st.ceag[t]
    unsure = _ceag_words(bounds, st, t, "train", w)
    seeds = int(w.get("seeds", 1))
    # The worst group of seed-averaged values: with several seeds some runs may meet ε on their own.
    opening = ("no CEAG run meets its tolerance on the training data" if seeds == 1 else
               f"CEAG does not meet its tolerance on the training data on average over {seeds} seeds")
    text = (f"At {_pct(st.sparsity)}, {opening}: the closest, with {tolerance_text(t)}, leaves {w.group_name} "
            f"{points(w.excess_gap)} points behind{' on average' if seeds > 1 else ''}, {points(w.excess_gap - t)} "
            f"above ε (NFT: {st.nft.group_name}, {points(st.nft.excess_gap)}){unsure}.")
    if w.excess_gap < st.nft.excess_gap and unsure:
        text += " CEAG narrows the gap at this sparsity; whether it closes it to ε, this data cannot tell."
    elif w.excess_gap < st.nft.excess_gap:
        text += " CEAG narrows the gap at this sparsity but does not close it to ε."
    else:
        text += " At this sparsity the constraint is out of these runs' reach."
    details = [f"CEAG with {tolerance_text(tol)}: {c.group_name} at ψ_g = {points(c.excess_gap)} points on train."
               for tol, c in st.ceag.items()]
    return StoryPoint(text, f"{_pct(st.sparsity)}, out of reach", details)


def _other_point(means: pd.DataFrame, st: _Setting, bounds: Bounds | None = None) -> StoryPoint:
    threshold = min(st.ceag) if st.ceag else DEFAULT_THRESHOLD
    if st.nft.excess_gap <= threshold:
        text = (f"At {_pct(st.sparsity)}, NFT leaves no group more than {points(threshold)} points behind on the "
                f"training data (worst: {st.nft.group_name}, {points(st.nft.excess_gap)})")
    else:
        text = f"At {_pct(st.sparsity)}, with NFT {_behind(st.nft)} on the training data"
        text += _zero_words(_bound(bounds, st, BASELINE, None, "train", st.nft), st.nft)
    if st.met:
        text += f"; CEAG meets {', '.join(tolerance_text(t) for t in st.met)} there"
    details = []
    nft_test = _worst_of(means, BASELINE, st.sparsity, "test")
    for t in st.ceag:
        test = _worst_of(means, MITIGATION, st.sparsity, "test", t)
        if test is not None:
            line = (f"CEAG with {tolerance_text(t)}: worst on test {test.group_name} at "
                    f"{points(test.excess_gap)} points")
            if nft_test is not None and test.excess_gap > nft_test.excess_gap:
                line += f", worse than NFT's {points(nft_test.excess_gap)}"
            details.append(line + ".")
    return StoryPoint(text + ".", _pct(st.sparsity), details)
