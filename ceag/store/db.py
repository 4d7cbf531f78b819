"""Connections to the DuckDB store: short-lived, migrated, retried on lock conflicts.

DuckDB lets one process open a database file for writing and blocks every other process
meanwhile, so no connection outlives one operation: open, work, close. A lock conflict is
retried with backoff for up to ``LOCK_TIMEOUT`` seconds before it becomes a ``StoreError``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ceag.results.layout import store_file
from ceag.store.migrations import MIGRATIONS

LOCK_TIMEOUT = 60.0
MARKER_TABLE = "schema_migrations"


class StoreError(RuntimeError):
    """Something is wrong with the results store; the message says what to do."""


class StoreNeedsMigration(StoreError):
    """The store has an older schema: a writer migrates it, a reader cannot."""


def db_path(results: str | os.PathLike) -> Path:
    return store_file(results)


def _is_lock_conflict(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text or "in use" in text)


@contextlib.contextmanager
def connect(results: str | os.PathLike, *, write: bool = False,
            timeout: float = LOCK_TIMEOUT) -> Iterator[duckdb.DuckDBPyConnection]:
    """A migrated connection to ``<results>/ceag.duckdb``, closed on exit."""
    path = db_path(results)
    if write:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the results folder {path.parent}: {err}") from err
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            if not write and not path.exists():
                con = duckdb.connect(":memory:")  # an empty store: nothing written to disk
                migrate(con)
            else:
                con = duckdb.connect(str(path), read_only=not write)
            break
        except duckdb.Error as err:
            if _is_lock_conflict(err) and time.monotonic() < deadline:
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
                continue
            if _is_lock_conflict(err):
                raise StoreError(f"{path} stayed locked by another process for {timeout:.0f}s; "
                                 "try again when it finishes") from err
            raise StoreError(f"cannot open {path} as a ceag store: {err}") from err
    try:
        try:
            _check_and_migrate(con, path, write)
        except duckdb.Error as err:  # e.g. a full disk while migrating
            raise StoreError(f"cannot prepare {path} as a ceag store: {err}") from err
        yield con
    finally:
        try:
            con.close()
        except duckdb.Error as err:  # closing writes the last changes back to the file
            raise StoreError(f"could not finish writing {path}: {err}") from err


def verify(results: str | os.PathLike) -> None:
    """Raise StoreError unless ``results`` holds no store or one this ceag can write (opened read-only)."""
    if not db_path(results).exists():
        return
    try:
        with connect(results):
            pass
    except StoreNeedsMigration:
        pass  # the first write migrates it


def migrate_if_needed(results: str | os.PathLike) -> bool:
    """Bring an existing store of an older schema up to date (one short write); True when migrated.

    Reading never migrates, so callers that may write (``sync``) call this first; otherwise an old
    store with nothing new to ingest would stay unreadable.
    """
    if not db_path(results).exists():
        return False
    try:
        with connect(results):
            return False
    except StoreNeedsMigration:
        with connect(results, write=True):
            return True


def _check_and_migrate(con: duckdb.DuckDBPyConnection, path: Path, write: bool) -> None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if tables and MARKER_TABLE not in tables:
        raise StoreError(f"{path} is a DuckDB file but not a ceag store (no {MARKER_TABLE} table); "
                         "point --results / CEAG_RESULTS at another folder")
    applied = set()
    if MARKER_TABLE in tables:
        applied = {r[0] for r in con.execute(f"SELECT version FROM {MARKER_TABLE}").fetchall()}
    known = {v for v, _, _ in MIGRATIONS}
    if applied - known:
        raise StoreError(f"{path} was written by a newer ceag (schema {max(applied)}; this one knows "
                         f"{max(known)}); upgrade ceag to read it")
    pending = [m for m in MIGRATIONS if m[0] not in applied]
    if not pending:
        return
    if not write:
        raise StoreNeedsMigration(f"{path} has an older schema; open it once for writing (any ceag command "
                         "that writes, e.g. `python -m ceag ls`) to migrate it")
    migrate(con)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations, each in its own transaction; returns the versions applied."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} "
                "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    applied = {r[0] for r in con.execute(f"SELECT version FROM {MARKER_TABLE}").fetchall()}
    done = []
    for version, name, sql in MIGRATIONS:
        if version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(f"INSERT INTO {MARKER_TABLE} VALUES (?, ?, now())", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        done.append(version)
    return done
