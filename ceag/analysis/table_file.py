"""Reading a file of rows: a CSV or Parquet file, given as a path or as its bytes, read into a DataFrame
under a size limit, with messages for the person who gave the file (``ceag.analysis.predictions_file``
checks the rows it returns).

``read_bytes`` gives (the file's bytes, its name) and refuses a missing or unreadable file, a folder and a
file over ``max_bytes`` (MAX_FILE_BYTES on the command line, MAX_UPLOAD_BYTES in the app; sizes in bytes,
shown in MB, 1 MB = 1024² bytes). ``read_table`` tells Parquet (leading ``PAR1``) from CSV and returns one
row per line of the file. A CSV is read as the label files of ``ceag.datasets.labels`` are, the way
spreadsheets save it: its text decoded by ``decode_text`` (UTF-8, UTF-16/32, Windows-1252 where that can
be told; a note says how when it was not UTF-8), its separator by ``delimiter_of`` (comma, semicolon or
tab), a header row, every cell read as text exactly as written. Each error is a PredictionsFileError
naming the file and, where there is one, the row, the line and the column. ``listing`` writes values for
such messages.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from ceag.config.errors import PredictionsFileError
from ceag.datasets.labels import decode_text, delimiter_of
from ceag.datasets.layouts import DatasetError

MAX_FILE_BYTES = 200 * 1024 * 1024    # the command line refuses larger files
MAX_UPLOAD_BYTES = 50 * 1024 * 1024   # the app refuses larger uploads
_LIST_LIMIT = 12                      # values listed in a message before "…"


def read_bytes(source: str | os.PathLike | bytes, *, name: str | None = None,
               max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, str]:
    """(the file's bytes, its name): ``source`` is a path or the bytes themselves (then ``name`` names them).

    Raises PredictionsFileError for a missing or unreadable file and for one over ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "predictions"
    else:
        path = Path(source)
        name = name or path.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise PredictionsFileError(f"no such file: {path}") from None
        except OSError as err:
            raise PredictionsFileError(f"cannot read {path}: {err.strerror or err}") from None
        if path.is_dir():
            raise PredictionsFileError(f"{path} is a folder; give a CSV or Parquet file of predictions")
        _check_size(size, name, max_bytes)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PredictionsFileError(f"cannot read {path}: {err.strerror or err}") from None
    _check_size(len(data), name, max_bytes)
    return data, name


def _check_size(size: int, name: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise PredictionsFileError(f"{name} is {_megabytes(size)}; files of predictions are audited up to "
                                   f"{_megabytes(max_bytes)} (keep the columns the audit needs, or save it as "
                                   "Parquet, which is smaller)")


def _megabytes(size: int) -> str:
    return f"{size / 1024 ** 2:.1f} MB" if size % (1024 ** 2) else f"{size // 1024 ** 2} MB"


def read_table(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    """(the rows, notes on how the file was read) of a CSV or Parquet file (told apart by Parquet's leading
    ``PAR1``, not by the name).

    CSV cells are read as text, exactly as written (empty cells are empty strings). Raises
    PredictionsFileError for an empty file, a file with no rows, text whose encoding cannot be told, a row
    whose number of fields differs from the header's, a repeated column name and a file that is neither.
    """
    notes: list[str] = []
    if data[:4] == b"PAR1":
        frame = _read_parquet(data, name)
    else:
        frame, notes = _read_csv(data, name)
    if len(frame) == 0:
        raise PredictionsFileError(f"{name} has no rows: a header, but no predictions under it")
    return frame, notes


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise PredictionsFileError(f"{name} starts like a Parquet file but cannot be read as one ({err})") from None
    names = [str(c) for c in table.column_names]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise PredictionsFileError(f"{name}: column {repeated[0]!r} appears twice; every column needs its own name")
    frame = table.to_pandas()
    frame.columns = names
    return frame.reset_index(drop=True)


def _read_csv(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    if not data.strip():
        raise PredictionsFileError(f"{name} is empty: a CSV file needs a header row naming its columns, then one "
                                   "row per sample")
    try:
        text, how = decode_text(data, name, "predictions file")
    except DatasetError as err:
        raise PredictionsFileError(f"{err} (or save it as Parquet)") from None
    text = text.lstrip("\ufeff")
    if "\0" in text:
        raise PredictionsFileError(f"{name} holds NUL characters: it is neither a text file nor a Parquet file; "
                                   "save it as CSV in UTF-8 or as Parquet")
    delimiter = delimiter_of(text)
    header = _check_fields(text, name, delimiter)
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise PredictionsFileError(f"{name}: column {repeated[0]!r} appears twice in the header; every column "
                                   "needs its own name")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        message = str(err).replace("Error tokenizing data. C error: ", "")
        raise PredictionsFileError(f"{name} cannot be read as CSV: {message}") from None
    notes = [how] if how else []
    if delimiter != ",":
        notes.append(f"{name} is separated by {'semicolons' if delimiter == ';' else 'tabs'}: read as such")
    return frame, notes


def _check_fields(text: str, name: str, delimiter: str = ",") -> list[str]:
    """The header's column names; raises PredictionsFileError at the first row with another number of fields."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader, [])
        width, row = len(header), 0
        for fields in reader:
            if not fields:  # a blank line: skipped, as the table reader does
                continue
            row += 1
            if len(fields) != width:
                raise PredictionsFileError(
                    f"{name}: row {row} (line {reader.line_num} of the file) has {len(fields)} fields but the "
                    f"header has {width} ({listing(header)}); every row needs one value per column")
    except csv.Error as err:
        raise PredictionsFileError(f"{name} cannot be read as CSV at line {reader.line_num}: {err}") from None
    return header


def listing(values, limit: int = _LIST_LIMIT) -> str:
    """``values`` as text for a message, comma-separated: the first ``limit``, then ``… (N in all)``."""
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f", … ({len(values)} in all)" if len(values) > limit else "")
