"""The audit of predictions made anywhere: a file of per-sample predictions of a dense model and one or
more pruned ("sparse") models, read, checked and audited with the same intervals, verdicts, report and CSV
table as ceag's own runs (``ceag.analysis.audit.attach_intervals``).

The file (CSV with a header row, read as ``ceag.analysis.table_file`` says, or Parquet) has one row per sample:

    y_true        the true class (integers or text)
    <groups>      the protected attribute(s), the columns the user names; several give intersectional
                  groups, named "a × b" in the order the columns were given
    dense_pred    the class the dense model predicts
    <sparse>      one column per sparse model (default: ``sparse_pred`` if the file has it, else
                  ``y_pred``, which ``ceag export --predictions`` writes); each becomes one audited run
                  whose run id is the column's name
    split         optional: train, val or test (without it every row belongs to "test")

Every other column (``sample_id``, ``file``, scores, ...) is kept with the stored audit and ignored by
the numbers. Class labels are compared as written: a prediction must be one of the values ``y_true``
holds somewhere in the file (``1`` and ``1.0`` are two different labels in a CSV file; Parquet columns
of whole numbers read as integers). An empty cell is a missing value in the columns above (the text
``NA`` is a label like any other).

Groups get the ids 0..G-1 in sorted order of their values, numbers as numbers (2 before 10) and
before text; an intersectional group sorts by its first column's value, then its second's. A group
is named by its value as text. One exception: a single integer group column beside a ``group_name``
column that maps one-to-one onto it (what ``ceag export --predictions`` writes, as ``group`` and
``group_name``) takes its names from ``group_name``, so auditing a run's own export reproduces the
run's group ids and names (when every group of the run has a sample in the file).

An audit is stored under ``<results>/audits/<audit_id>/`` (``ceag.results.layout.AUDITS``): the
normalized predictions as Parquet and ``audit.json`` with the options, the file's name and SHA-256 and
when it was made; ``open_audit`` computes it again from there, with the same numbers.

This module holds the format, the options and the checking and encoding of a file's rows
(``load_predictions``, ``prepare``); ``ceag.analysis.table_file`` reads the file, and
``ceag.analysis.stored_audits`` builds the audit of a checked file and stores and reopens it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ceag.analysis.bootstrap import SPLIT_KEYS
from ceag.analysis.table_file import MAX_FILE_BYTES, listing, read_bytes, read_table
from ceag.config.errors import PredictionsFileError

MAX_GROUPS = 1000                     # more distinct groups: most likely a column of scores or ids
TRUE_COLUMN = "y_true"
DENSE_COLUMN = "dense_pred"
SPLIT_COLUMN = "split"
GROUP_NAME_COLUMN = "group_name"
DEFAULT_SPARSE = ("sparse_pred", "y_pred")  # the first the file has is the default sparse column
DEFAULT_SPLIT = "test"                      # the split of every row of a file without a split column
SPLITS = tuple(SPLIT_KEYS)                  # train, val, test
INTERSECTION = " × "
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class AuditOptions:
    """What to audit in a file: ``groups`` (column names, several for intersectional groups), ``sparse``
    (the columns of sparse predictions; empty: ``sparse_pred`` if present, else ``y_pred``) and
    ``tolerance`` (ε as a fraction in [0, 1), or None: no verdicts). Raises PredictionsFileError for an
    empty or repeated column name or a tolerance outside [0, 1)."""

    groups: tuple[str, ...]
    sparse: tuple[str, ...] = ()
    tolerance: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "sparse", tuple(self.sparse))
        if not self.groups:
            raise PredictionsFileError("no group column given: name the column(s) holding the protected "
                                       "attribute, e.g. --groups race or --groups race,gender")
        for what, names in (("group", self.groups), ("sparse", self.sparse)):
            for name in names:
                if not isinstance(name, str) or not name.strip():
                    raise PredictionsFileError(f"an empty {what} column name was given: {list(names)!r}")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise PredictionsFileError(f"{what} column {repeated[0]!r} is named twice; name each column once")
        if self.tolerance is not None:
            tol = self.tolerance
            if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) \
                    or not 0 <= tol < 1:
                shown = f"{tol:g}" if isinstance(tol, (int, float)) and not isinstance(tol, bool) else repr(tol)
                raise PredictionsFileError(f"invalid tolerance {shown}: ε is a fraction from 0 to below 1, e.g. "
                                           "0.02 for 2 percentage points")
            object.__setattr__(self, "tolerance", float(tol))

    def to_dict(self) -> dict[str, Any]:
        return {"groups": list(self.groups), "sparse": list(self.sparse), "tolerance": self.tolerance}


def parse_columns(text: str | None) -> tuple[str, ...]:
    """``"race, gender"`` -> ``("race", "gender")``: column names, comma-separated, spaces around them
    dropped (names are otherwise taken as written). None or blank -> ``()``."""
    if text is None:
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


@dataclass
class PredictionsFile:
    """A checked predictions file, ready to audit.

    ``frame``: the file's rows, its label, group and split columns as text (the normalized content a
    stored audit keeps); ``name``, ``sha256``: the file's name and the SHA-256 of its bytes; ``options``
    with the sparse columns resolved; ``split``: (N,) split of each row; ``group_id``: (N,) int64 in
    0..G-1; ``group_names``: G names; ``classes``: the labels of ``y_true`` in sorted order; ``codes``:
    column -> (N,) int64 index into ``classes`` for ``y_true``, ``dense_pred`` and each sparse column;
    ``group_names_from``: "values" or the column that named the groups; ``read_notes``: how the file was
    read (an encoding other than UTF-8, a separator other than the comma); ``notes``: those, then what else
    the reader should know (e.g. a ``group_name`` column that was not used).
    """

    frame: pd.DataFrame
    name: str
    sha256: str
    options: AuditOptions
    split: np.ndarray
    group_id: np.ndarray
    group_names: list[str]
    classes: list[str]
    codes: dict[str, np.ndarray]
    group_names_from: str = "values"
    notes: list[str] = field(default_factory=list)
    read_notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def sparse_columns(self) -> tuple[str, ...]:
        return self.options.sparse


# -- checking and encoding -----------------------------------------------------------------------------------
def load_predictions(source: str | os.PathLike | bytes, options: AuditOptions, *, name: str | None = None,
                     max_bytes: int = MAX_FILE_BYTES) -> PredictionsFile:
    """Read and check a predictions file (a path, or its bytes with ``name``) for ``options``.

    Raises PredictionsFileError with a message naming the column, the row and what is allowed: a file
    over ``max_bytes``, unreadable, empty or malformed, a missing column, an empty value, a split other
    than train/val/test, a prediction that is not one of ``y_true``'s labels, more than MAX_GROUPS groups.
    """
    data, name = read_bytes(source, name=name, max_bytes=max_bytes)
    frame, read_notes = read_table(data, name)
    return prepare(frame, options, name=name, sha256=hashlib.sha256(data).hexdigest(), read_notes=read_notes)


def resolve_sparse(columns, options: AuditOptions) -> tuple[str, ...]:
    """The sparse columns ``options`` audit in a file with ``columns``: those named, else the default
    (``sparse_pred`` if present, else ``y_pred``). Raises PredictionsFileError when there is none."""
    if options.sparse:
        return options.sparse
    columns = [str(c) for c in columns]
    for candidate in DEFAULT_SPARSE:
        if candidate in columns:
            return (candidate,)
    raise PredictionsFileError(f"no column of sparse predictions: the file has neither {DEFAULT_SPARSE[0]} nor "
                               f"{DEFAULT_SPARSE[1]}; name the column(s) with --sparse COL[,COL] (the file has "
                               f"{listing(columns)})")


def prepare(frame: pd.DataFrame, options: AuditOptions, *, name: str, sha256: str,
            read_notes: list[str] | tuple[str, ...] = ()) -> PredictionsFile:
    """Check a table of predictions (``read_table``'s, with its notes) for ``options`` and encode it; see
    ``load_predictions``."""
    if len(frame) == 0:
        raise PredictionsFileError(f"{name} has no rows: a header, but no predictions under it")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    if len(columns) == 1 and "|" in columns[0]:
        raise PredictionsFileError(f"{name} has a single column, {columns[0]!r}: it looks separated by '|', and "
                                   "CSV files are read separated by commas, semicolons or tabs; save it with commas "
                                   "(or as Parquet)")
    sparse = resolve_sparse(columns, options)
    options = AuditOptions(options.groups, sparse, options.tolerance)
    _check_roles(options)
    required = [TRUE_COLUMN, *options.groups, DENSE_COLUMN, *sparse]
    missing = [c for c in required if c not in columns]
    if missing:
        what = f"column {missing[0]!r} is" if len(missing) == 1 else f"columns {listing(map(repr, missing))} are"
        raise PredictionsFileError(f"{what} missing from {name}; it has {listing(columns)}. "
                                   f"An audit needs {TRUE_COLUMN}, the group column(s), {DENSE_COLUMN} and the "
                                   "sparse column(s)")
    text: dict[str, np.ndarray] = {}
    for col in [*required, *([SPLIT_COLUMN] if SPLIT_COLUMN in columns else [])]:
        if col not in text:
            text[col] = _text_column(frame[col], col)
    frame = frame.copy()
    for col, values in text.items():
        frame[col] = values
    if SPLIT_COLUMN in text:
        split = text[SPLIT_COLUMN]
        bad = ~np.isin(split, SPLITS)
        if bad.any():
            row = int(np.argmax(bad))
            others = pd.unique(split[bad])
            raise PredictionsFileError(f"column {SPLIT_COLUMN!r} has {split[row]!r} at row {row + 1}: a split is "
                                       f"train, val or test ({len(others)} other value(s): "
                                       f"{listing(map(repr, others))})")
    else:
        split = np.full(len(frame), DEFAULT_SPLIT, dtype=object)
    classes = _sorted_values(pd.unique(text[TRUE_COLUMN]))
    codes = {TRUE_COLUMN: _codes(text[TRUE_COLUMN], classes)}
    for col in (DENSE_COLUMN, *sparse):
        codes[col] = _codes(text[col], classes)
        bad = codes[col] < 0
        if bad.any():
            row = int(np.argmax(bad))
            raise PredictionsFileError(
                f"column {col!r} has {text[col][row]!r} at row {row + 1}, which is not a label of {TRUE_COLUMN} "
                f"({int(bad.sum())} row(s) like it); predictions must be among {TRUE_COLUMN}'s labels: "
                f"{listing(classes)}")
    group_id, group_names, named_by, notes = _groups(frame, text, options.groups, name)
    return PredictionsFile(frame=frame, name=name, sha256=sha256, options=options, split=np.asarray(split),
                           group_id=group_id, group_names=group_names, classes=classes, codes=codes,
                           group_names_from=named_by, notes=[*read_notes, *notes], read_notes=list(read_notes))


def _check_roles(options: AuditOptions) -> None:
    roles = [(TRUE_COLUMN, "the true class"), (DENSE_COLUMN, "the dense predictions"),
             (SPLIT_COLUMN, "the split")]
    for what, names in (("group", options.groups), ("sparse", options.sparse)):
        for col in names:
            for reserved, meaning in roles:
                if col == reserved:
                    raise PredictionsFileError(f"{col!r} cannot be a {what} column: it holds {meaning}")
    both = [c for c in options.groups if c in options.sparse]
    if both:
        raise PredictionsFileError(f"column {both[0]!r} is named both as a group column and as a sparse column")


def _text_column(series: pd.Series, col: str) -> np.ndarray:
    """(N,) object array of the column's values as text; raises PredictionsFileError at the first empty one."""
    if pd.api.types.is_bool_dtype(series.dtype):
        missing = series.isna().to_numpy()
        values = np.where(series.fillna(False).to_numpy(dtype=bool), "True", "False").astype(object)
    elif pd.api.types.is_integer_dtype(series.dtype):
        missing = series.isna().to_numpy()
        values = series.astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_float_dtype(series.dtype):
        floats = series.to_numpy(dtype=float, na_value=np.nan)
        missing = ~np.isfinite(floats)
        finite = floats[~missing]
        if finite.size and np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2 ** 53):
            values = np.where(missing, 0, floats).astype(np.int64).astype(str).astype(object)
        else:
            values = series.astype(str).to_numpy(dtype=object)
    else:
        raw = series.astype(object)
        absent = raw.isna().to_numpy()
        values = raw.where(~absent, "").astype(str).to_numpy(dtype=object)
        missing = absent | pd.Series(values, dtype=object).str.strip().eq("").to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        more = int(missing.sum()) - 1
        raise PredictionsFileError(f"column {col!r} is empty at row {row + 1}" + (f" (and {more} other row(s))"
                                   if more else "") + "; every row needs a value there")
    return values


def _sort_key(value: str) -> tuple:
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (1, 0.0, value) if math.isnan(number) else (0, number, value)


def _sorted_values(values) -> list[str]:
    """Distinct values in order: numbers as numbers first (``2`` before ``10``), then text; ties by text."""
    return sorted((str(v) for v in values), key=_sort_key)


def _codes(values: np.ndarray, categories: list[str]) -> np.ndarray:
    """(N,) int64 index of each value in ``categories``; -1 for a value not among them."""
    return pd.Index(categories, dtype=object).get_indexer(values).astype(np.int64)


def _groups(frame: pd.DataFrame, text: dict[str, np.ndarray], columns: tuple[str, ...], name: str
            ) -> tuple[np.ndarray, list[str], str, list[str]]:
    """(group id per row, group names, where the names came from, notes)."""
    per_column = []
    for col in columns:
        distinct = pd.unique(text[col])
        if len(distinct) > MAX_GROUPS:
            raise PredictionsFileError(f"group column {col!r} has {len(distinct)} distinct values; an audit takes at "
                                       f"most {MAX_GROUPS} groups (is it a column of ids or scores?)")
        order = _sorted_values(distinct)
        per_column.append((order, _codes(text[col], order)))
    combined = np.zeros(len(frame), dtype=np.int64)
    for order, codes in per_column:
        combined = combined * len(order) + codes
    present, group_id = np.unique(combined, return_inverse=True)
    if len(present) > MAX_GROUPS:
        raise PredictionsFileError(f"the group columns {listing(columns)} make {len(present)} groups; an audit "
                                   f"takes at most {MAX_GROUPS}")
    parts = []
    rest = present.copy()
    for order, _ in reversed(per_column):
        parts.append([order[i] for i in rest % len(order)])
        rest //= len(order)
    names = [INTERSECTION.join(p) for p in zip(*reversed(parts), strict=True)]
    notes: list[str] = []
    named_by = "values"
    if len(columns) == 1 and GROUP_NAME_COLUMN in frame.columns and columns[0] != GROUP_NAME_COLUMN \
            and all(_INTEGER.fullmatch(v) for v in names):
        labels = frame[GROUP_NAME_COLUMN].astype(object).where(frame[GROUP_NAME_COLUMN].notna(), "").astype(str)
        pairs = pd.DataFrame({"g": group_id, "name": labels.to_numpy()}).drop_duplicates()
        if len(pairs) == len(names) == pairs["name"].nunique() and not (pairs["name"].str.strip() == "").any():
            by_id = dict(zip(pairs["g"], pairs["name"], strict=True))
            names = [by_id[i] for i in range(len(names))]
            named_by = GROUP_NAME_COLUMN
        else:
            notes.append(f"{name}: the {GROUP_NAME_COLUMN} column does not name each value of {columns[0]!r} with "
                         f"one name of its own, so the groups are named by their {columns[0]!r} values")
    return group_id.astype(np.int64), names, named_by, notes
