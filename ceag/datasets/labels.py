"""Label files as people save them, and the values in them (no torch).

A CSV is read the way spreadsheets write it: a UTF-8 byte-order mark, Windows line endings,
cells padded with spaces, a semicolon or tab as separator, UTF-16 or UTF-32 text (Excel's
"Unicode Text"), or Windows-1252 text where that reading can be told from the East-Asian ones
(``decode_text``); text is never decoded with replacement characters, so two different names
never become one. Values are matched to a dataset's published values ignoring case and surrounding spaces,
and the known ways spreadsheets rewrite FairFace's values (the age ranges ``3-9`` and ``10-19``
turned into dates, ``True``/``False`` into ``TRUE``/``FALSE``) are recognised and reported;
nothing else is guessed.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ceag.datasets.layouts import FAIRFACE_COLUMNS, FAIRFACE_CSVS, DatasetError, outside_folder, shown

# Spreadsheet renderings of published values (as dates), lowercase -> published value.
SPREADSHEET_DATES = {
    "3-9": ("03-sep", "3-sep", "sep-03", "sep-3", "9-mar", "09-mar", "mar-09", "mar-9"),
    "10-19": ("oct-19", "19-oct", "10-oct", "oct-10"),
}
EXAMPLES = 3  # unknown values listed per column


# Encodings that read many Windows-1252 files without error, and differently.
EAST_ASIAN = ("shift_jis", "gbk", "big5", "euc_kr")
SAVE_AS_UTF8 = ("save it as UTF-8 (Excel: Save As, 'CSV UTF-8 (Comma delimited)'; LibreOffice: Save As, "
                "character set 'Unicode (UTF-8)')")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
         (codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))


def _strict(raw: bytes, codec: str) -> str | None:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        return None


def _utf16_by_nul_bytes(raw: bytes) -> str | None:
    """"utf-16-le" / "utf-16-be" when the NUL bytes of ``raw`` fall on odd / even positions (mostly
    ASCII text in UTF-16 without a byte-order mark), else None."""
    if len(raw) < 4 or len(raw) % 2 or b"\0" not in raw:
        return None
    even, odd, half = raw[0::2].count(0), raw[1::2].count(0), len(raw) // 2
    if odd >= half / 4 and even * 4 <= odd:
        return "utf-16-le"
    if even >= half / 4 and odd * 4 <= even:
        return "utf-16-be"
    return None


def _latin_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L") and unicodedata.name(char, "").startswith("LATIN")


def _sample(raw: bytes, codec: str) -> str:
    """The first cell of ``raw`` with a non-ASCII byte, as ``codec`` reads it."""
    first = next(i for i, b in enumerate(raw) if b > 127)
    start = max(raw.rfind(sep, 0, first) for sep in (b",", b";", b"\t", b"\n")) + 1
    ends = [i for i in (raw.find(sep, first) for sep in (b",", b";", b"\t", b"\r", b"\n")) if i >= 0]
    cell = raw[start:min(ends) if ends else len(raw)]
    return (_strict(cell, codec) or "?").strip()[:40]


def decode_text(raw: bytes, name: str, what: str) -> tuple[str, str | None]:
    """(text, note) of a label file's bytes; the note says how it was read when it was not UTF-8.

    Read are: UTF-8, with or without a byte-order mark; UTF-16 and UTF-32 with a byte-order mark;
    UTF-16 without one when its NUL bytes fall on every other byte; Windows-1252 when no common
    East-Asian encoding (``EAST_ASIAN``) reads the bytes, or when every non-ASCII character it
    gives is a Latin letter. Decoding is strict: no replacement characters. Raises DatasetError
    naming the file (``name``), the readings that differ and what to do, for anything else.
    """
    for bom, codec, family in _BOMS:
        if raw.startswith(bom):
            text = _strict(raw[len(bom):], codec)
            if text is None:
                raise DatasetError(f"{what}: {name} starts with a {family} byte-order mark but is not {family} "
                                   f"text; {SAVE_AS_UTF8}")
            note = f"{name} is {family} text (with a byte-order mark): read as such"
            return text, None if family == "UTF-8" else note
    utf16 = _utf16_by_nul_bytes(raw)
    text = _strict(raw, utf16) if utf16 else None
    if text is not None:
        return text, f"{name} is UTF-16 text (without a byte-order mark): read as such"
    text = _strict(raw, "utf-8")
    if text is not None:
        return text, None
    latin = _strict(raw, "cp1252")
    others = [codec for codec in EAST_ASIAN if _strict(raw, codec) is not None]
    if latin is not None and (not others or all(_latin_letter(c) for c in set(latin) if ord(c) > 127)):
        return latin, f"{name} is Windows-1252 text (not UTF-8): read as such"
    readings = ([f"as Windows-1252 ({_sample(raw, 'cp1252')!r})"] if latin is not None else []) + [
        f"as {codec} ({_sample(raw, codec)!r})" for codec in others]
    if len(readings) > 1:
        why = "it reads differently " + ", ".join(readings)
    elif readings:
        why = f"it is not Windows-1252 text, and reads {readings[0]}, an encoding that is not guessed"
    else:
        why = "it is not Windows-1252 or a common East-Asian encoding either"
    raise DatasetError(f"{what}: {name} is not UTF-8, and its encoding cannot be told: {why}; {SAVE_AS_UTF8}")


def delimiter_of(text: str) -> str:
    """The separator of a CSV's text as spreadsheets write it: whichever of comma, semicolon and tab its first line
    holds most of (a comma when it holds none)."""
    sample = text[:4096]
    first = sample.splitlines()[0] if sample else ""
    return max(",;\t", key=first.count) if first else ","


def read_csv(path: Path, required: tuple[str, ...], what: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """(columns, rows, notes) of a label CSV; each row maps column -> value with spaces stripped.

    The text is decoded by ``decode_text`` (the notes say how, when it was not UTF-8). Raises
    DatasetError naming the file when it cannot be read or decoded, when a column name appears
    more than once (naming it and its positions), or when a ``required`` column is missing
    (listing the columns found).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"{what}: cannot read {shown(path)}: {err.strerror or err}") from err
    notes = []
    text, how = decode_text(raw, Path(path).name, what)
    if how:
        notes.append(how)
    if "\0" in text:
        raise DatasetError(f"{what}: {shown(path)} holds NUL characters: it is not a text file, or is UTF-32 "
                           f"without a byte-order mark; {SAVE_AS_UTF8}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(text))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{what}: {shown(path)} is empty; expected a header row with columns "
                           f"{', '.join(required)}") from None
    except csv.Error as err:
        raise DatasetError(f"{what}: {shown(path)} is not a readable CSV ({err})") from err
    columns = [c.strip().lstrip("\ufeff").strip() for c in header]
    positions: dict[str, list[int]] = {}
    for i, c in enumerate(columns, start=1):
        if c:
            positions.setdefault(c, []).append(i)
    for c, at in positions.items():
        if len(at) > 1:
            times = "twice" if len(at) == 2 else f"{len(at)} times"
            raise DatasetError(f"{what}: {shown(path)} names the column {c!r} {times} (columns "
                               f"{', '.join(map(str, at[:-1]))} and {at[-1]}); each column needs its own name: "
                               "rename or remove the others")
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise DatasetError(f"{what}: {shown(path)} lacks column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (needs {', '.join(required)}; found {found})")
    rows = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line (spreadsheets add them at the end)
            rows.append({col: (cells[i].strip() if i < len(cells) else "") for i, col in enumerate(columns)})
    except csv.Error as err:
        raise DatasetError(f"{what}: {shown(path)} line {reader.line_num} is not valid CSV ({err})") from err
    return columns, rows, notes


def outside_note(files: list[str], where: str) -> str:
    """The note for label rows whose ``files`` lie outside the data folder (``outside_folder``);
    ``where`` names the label file(s)."""
    examples = ", ".join(shown(f) for f in list(dict.fromkeys(files))[:EXAMPLES])
    what = (f"{len(files)} rows of {where} name files outside the data folder and were skipped" if len(files) > 1
            else f"1 row of {where} names a file outside the data folder and was skipped")
    return (f"{what} (e.g. {examples}): a file must be a path relative to the folder, with no '..' component "
            "(links inside the folder are followed)")


def inside(files) -> list[str]:
    """The names among ``files`` that are non-empty and lie inside the data folder, in order."""
    return [f for f in files if f and not outside_folder(f)]


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
