"""What loading read, left out (by reason and group), recognised and noticed, for the run's summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ceag.datasets.base import GroupedDataset, Split

# A run that lost more than this share of one group's rows while loading says so prominently.
LOSS_WARNING = 0.03


@dataclass
class LoadReport:
    """What loading read, skipped (by reason, and by group where the group is known) and recognised.

    ``notes`` say what was done to the data (e.g. how a label file was decoded, which images were
    scaled or turned); ``warnings`` are the signs that the data may be misread (e.g. the images
    look alike), shown prominently next to the groups that lost rows.
    """

    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_by_group: dict[str, Counter] = field(default_factory=dict)
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    split_rule: str = ""
    image_source: str = ""

    def skip(self, reason: str, group: str | None = None, n: int = 1) -> None:
        self.skipped[reason] += n
        if group is not None:
            self.skipped_by_group.setdefault(group, Counter())[reason] += n

    def images(self, got, group_of) -> None:
        """Take in what decoding did (``images.Images``): its notes, warnings and source, and a skip
        per row it could not use, by group (``group_of(row)``: the row's group name, or None)."""
        self.image_source = got.how
        self.notes += got.notes
        self.warnings += got.warnings
        for i in np.flatnonzero(~got.ok):
            self.skip("unsupported pixel format" if got.refused[i] else "unreadable image", group_of(int(i)))

    def to_dict(self, group_names: list[str], kept: np.ndarray, empty_groups: dict[str, list[str]] | None = None
                ) -> dict:
        """JSON-ready report; ``kept`` (num_groups,) rows kept per group, across splits;
        ``empty_groups`` {group name: [splits where it has no sample]}."""
        lost = {}
        for i, name in enumerate(group_names):
            n_lost = sum(self.skipped_by_group.get(name, {}).values())
            total = n_lost + int(kept[i])
            if n_lost:
                lost[name] = {"skipped": n_lost, "of": total, "share": n_lost / total if total else 1.0}
        warnings = [f"{name} lost {v['skipped']} of {v['of']} rows ({100 * v['share']:.1f} %) while loading"
                    for name, v in lost.items() if v["share"] > LOSS_WARNING]
        return {"rows_read": self.rows_read, "skipped": dict(self.skipped),
                "skipped_by_group": {g: dict(c) for g, c in self.skipped_by_group.items()},
                "lost_by_group": lost, "warnings": warnings + list(self.warnings),
                "unknown_values": self.unknown_values, "notes": list(self.notes),
                "empty_groups": dict(empty_groups or {}), "split_rule": self.split_rule,
                "image_source": self.image_source}


SPLIT_ORDER = ("train", "val", "test")


EMPTY_LISTED = 12  # groups named in the note on empty groups (all are in ``empty_groups``)


def empty_groups(group_names: list[str], splits: dict[str, Split]) -> dict[str, list[str]]:
    """{group name: [splits, in train, val, test order, where the group has no sample]}."""
    empty: dict[str, list[str]] = {}
    for name in sorted(splits, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER)):
        counts = np.bincount(splits[name].g.numpy(), minlength=len(group_names))
        for i in np.flatnonzero(counts == 0):
            empty.setdefault(group_names[i], []).append(name)
    return {g: empty[g] for g in group_names if g in empty}


def empty_note(empty: dict[str, list[str]]) -> str:
    """One note naming the groups without samples and where (``empty_groups``)."""
    parts = [f"{g} in {', '.join(where)}" for g, where in list(empty.items())[:EMPTY_LISTED]]
    more = f"; and {len(empty) - EMPTY_LISTED} more groups" if len(empty) > EMPTY_LISTED else ""
    whose = "its" if len(empty) == 1 else "their"
    return f"no samples of {'; of '.join(parts)}{more}; {whose} metrics there are undefined"


def finish(name: str, class_names: list[str] | tuple[str, ...], group_names: list[str], splits: dict[str, Split],
           report: LoadReport, flip: bool) -> GroupedDataset:
    """The dataset with its load report filled in from the kept rows of every split, naming the
    groups that have no sample in a split (``empty_groups``)."""
    kept = np.zeros(len(group_names), dtype=np.int64)
    for s in splits.values():
        kept += np.bincount(s.g.numpy(), minlength=len(group_names))
    empty = empty_groups(group_names, splits)
    if empty:
        report.notes.append(empty_note(empty))
    return GroupedDataset(name, len(class_names), group_names, splits, flip=flip,
                          skipped={k: v for k, v in report.skipped.items() if v},
                          report=report.to_dict(group_names, kept, empty), class_names=[str(c) for c in class_names])
