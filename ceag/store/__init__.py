"""The DuckDB results store. All SQL of the project lives in this package.

Importing it does not import torch, so the app starts fast.
"""

from ceag.store import queries
from ceag.store.db import StoreError, connect, db_path, migrate, verify
from ceag.store.ingest import import_runs, ingest_all, ingest_run, sync

__all__ = ["queries", "StoreError", "connect", "db_path", "migrate", "verify", "ingest_all", "ingest_run", "sync",
           "import_runs"]
