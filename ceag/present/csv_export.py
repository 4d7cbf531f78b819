"""CSV files for people: text cells that a spreadsheet would run as a formula are neutralised.

A spreadsheet that opens a CSV file treats a cell starting with ``=``, ``+``, ``-`` or ``@`` as a
formula, and a leading tab or carriage return can hide one; a group named
``=HYPERLINK("http://x","y")`` would run when the file is opened. As OWASP advises (CSV
injection), such a text cell is written with a single quote in front (``'=HYPERLINK(...)``), which
spreadsheets show as text. Only text cells (and column names) change: numeric columns, negative
numbers included, stay numbers, and Parquet files keep the raw values.

Every CSV written for people goes through ``write_csv``: ``export`` (every table and
``--predictions``, to a file or to standard output), ``report --out FILE.csv`` and the app's CSV
downloads.
"""

from __future__ import annotations

import os
from typing import IO, Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


PREFIX = "'"


def neutralise(value: Any) -> Any:
    """``value`` with a single quote in front when it is text that starts like a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return PREFIX + value
    return value


def for_spreadsheets(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are neutralised (``neutralise``).

    Columns of numbers, booleans and dates are returned as they are; so is ``frame`` itself.
    """
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series) or isinstance(
                series.dtype, pd.CategoricalDtype):
            out[col] = pd.Series([neutralise(v) for v in series.astype(object)], index=series.index, dtype=object)
    out.columns = [neutralise(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, target: str | os.PathLike | IO[str] | None = None) -> str | None:
    """Write ``frame`` as CSV without its index, text cells neutralised, to ``target`` (a path or an
    open text stream); with ``target`` None, return the CSV text (for a download button)."""
    return for_spreadsheets(frame).to_csv(target, index=False)
