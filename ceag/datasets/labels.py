"""Label files as people save them, and the values in them (no torch).

A CSV is read the way spreadsheets write it: a UTF-8 byte-order mark, Windows line endings,
cells padded with spaces, a semicolon or tab as separator, or (failing UTF-8) Windows-1252
text. Values are matched to a dataset's published values ignoring case and surrounding spaces,
and the known ways spreadsheets rewrite FairFace's values (the age ranges ``3-9`` and ``10-19``
turned into dates, ``True``/``False`` into ``TRUE``/``FALSE``) are recognised and reported;
nothing else is guessed.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .layouts import FAIRFACE_COLUMNS, FAIRFACE_CSVS, DatasetError

# Spreadsheet renderings of published values (as dates), lowercase -> published value.
SPREADSHEET_DATES = {
    "3-9": ("03-sep", "3-sep", "sep-03", "sep-3", "9-mar", "09-mar", "mar-09", "mar-9"),
    "10-19": ("oct-19", "19-oct", "10-oct", "oct-10"),
}
EXAMPLES = 3  # unknown values listed per column


def read_csv(path: Path, required: tuple[str, ...], what: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """(columns, rows, notes) of a label CSV; each row maps column -> value with spaces stripped.

    Raises DatasetError naming the file when it cannot be read, or when a ``required`` column
    is missing (listing the columns found).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"{what}: cannot read {path}: {err.strerror or err}") from err
    notes = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        notes.append(f"{Path(path).name} is not UTF-8; read as Windows-1252 text")
    sample = text[:4096]
    first = sample.splitlines()[0] if sample else ""
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{what}: {path} is empty; expected a header row with columns "
                           f"{', '.join(required)}") from None
    except csv.Error as err:
        raise DatasetError(f"{what}: {path} is not a readable CSV ({err})") from err
    columns = [c.strip().lstrip("\ufeff").strip() for c in header]
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise DatasetError(f"{what}: {path} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                           f"(needs {', '.join(required)}; found {found})")
    rows = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line (spreadsheets add them at the end)
            rows.append({col: (cells[i].strip() if i < len(cells) else "") for i, col in enumerate(columns)})
    except csv.Error as err:
        raise DatasetError(f"{what}: {path} line {reader.line_num} is not valid CSV ({err})") from err
    return columns, rows, notes


@dataclass
class ValueMap:
    """Codes of one column's published values, with what was recognised or unknown on the way."""

    column: str
    values: tuple[str, ...]
    unknown: Counter = field(default_factory=Counter)
    recognised: Counter = field(default_factory=Counter)  # (written, published) -> rows

    def __post_init__(self) -> None:
        self._exact = {v: i for i, v in enumerate(self.values)}
        self._folded = {v.casefold(): i for i, v in enumerate(self.values)}
        self._dates = {m: self._exact[v] for v, ms in SPREADSHEET_DATES.items() if v in self._exact for m in ms}

    def code(self, value: str) -> int | None:
        """The index of ``value`` among the published values, or None (counted as unknown)."""
        if value in self._exact:
            return self._exact[value]
        folded = value.strip().casefold()
        i = self._folded.get(folded)
        if i is None:
            i = self._dates.get(folded)
        if i is None:
            self.unknown[value] += 1
            return None
        self.recognised[(value, self.values[i])] += 1
        return i

    def notes(self) -> list[str]:
        out = []
        if self.recognised:
            n = sum(self.recognised.values())
            examples = ", ".join(f"{w!r} as {p!r}" for (w, p), _ in self.recognised.most_common(EXAMPLES))
            out.append(f"{self.column}: read {n} value(s) as spreadsheets write them ({examples})")
        return out

    def unknown_report(self) -> dict[str, int]:
        return dict(self.unknown.most_common())


def unknown_message(maps: list[ValueMap]) -> str:
    """One line per column with unknown values: counts and a few examples."""
    parts = []
    for m in maps:
        if m.unknown:
            examples = ", ".join(f"{v!r} ({n})" for v, n in m.unknown.most_common(EXAMPLES))
            parts.append(f"{m.column}: {sum(m.unknown.values())} unknown ({examples}; allowed: "
                         f"{', '.join(m.values)})")
    return "; ".join(parts)


def read_fairface_labels(folder: Path) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    """{split: rows} of both FairFace label CSVs and notes on how they were read (DatasetError on bad files)."""
    rows, notes = {}, []
    for split, name in FAIRFACE_CSVS:
        _, rows[split], more = read_csv(folder / name, FAIRFACE_COLUMNS, "FairFace")
        notes += more
    return rows, notes
