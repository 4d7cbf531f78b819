"""Helpers shared by the pages: the confined results and data folders, cached store queries, labels.

The view (selection, split, filters, form fields, folders) lives in ``dashboard/_state.py``; the cached store queries
are ``dashboard/_store.py``'s.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st

from ceag.results.layout import resolve_results
from ceag.store import StoreError, db_path, sync, verify
from dashboard import _state

CHART_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


class FolderError(ValueError):
    """A folder typed in the sidebar cannot be used; the message names the problem."""


def confine(root: Path, typed: str | None, what: str) -> Path:
    """``typed`` (relative to ``root``, or absolute) resolved; it must be ``root`` or a folder inside it.

    Raises FolderError naming the folder and what is allowed. The folder need not exist yet.
    """
    typed = (typed or "").strip()
    resolved = (root / typed).resolve() if typed else root
    if not resolved.is_relative_to(root):
        raise FolderError(f"The {what} folder must be {root} or inside it.")
    return resolved


def check_results_folder(folder: Path) -> None:
    """Raise FolderError when ``folder`` cannot serve as a results folder (a missing one is an empty store)."""
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"The results folder {folder} is a file, not a folder: choose a folder.")
    if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
        raise FolderError(f"The results folder {folder} cannot be read (permission denied).")
    if folder.is_dir():
        try:
            _verified(str(folder), store_version(folder))
        except StoreError as err:
            raise FolderError(f"The results folder {folder} holds a store that cannot be used: {err}") from None


@st.cache_data(show_spinner=False, max_entries=32)
def _verified(results: str, version: tuple[int, int]) -> None:
    verify(results)


def results_root() -> Path:
    """The results folder the server was configured with ($CEAG_RESULTS, else ./results)."""
    return resolve_results().resolve()


def chosen_results() -> Path:
    """The results folder chosen in the view, confined and checked; FolderError says why it cannot be used."""
    folder = confine(results_root(), _state.get("results"), "results")
    check_results_folder(folder)
    return folder


def results_problem() -> str | None:
    """Why the results folder chosen in the view cannot be used, or None."""
    try:
        chosen_results()
    except FolderError as err:
        return str(err)
    return None


def results_dir() -> Path:
    """The results folder chosen in the view (the configured root or a folder inside it).

    A folder that cannot be used stops the page with an error box naming the problem.
    """
    try:
        return chosen_results()
    except FolderError as err:
        st.error(str(err))
        st.stop()


def data_root() -> Path:
    """The data folder the server was configured with ($CEAG_DATA, else ./data)."""
    return Path(os.environ.get("CEAG_DATA") or "data").resolve()


def data_dir() -> Path:
    """The data folder chosen in the view: the configured root or a folder inside it (else the root)."""
    try:
        return confine(data_root(), _state.get("data"), "data")
    except FolderError:
        return data_root()


def store_version(results: Path) -> tuple[int, int]:
    """Changes whenever the store file does, so cached queries refresh after an ingest."""
    try:
        stat = db_path(results).stat()
        wal = db_path(results).with_suffix(".duckdb.wal")
        return stat.st_mtime_ns + (wal.stat().st_mtime_ns if wal.exists() else 0), stat.st_size
    except OSError:
        return 0, 0


P = ParamSpec("P")
R = TypeVar("R")


@st.cache_data(show_spinner=False, max_entries=256)
def _cached(_query: Callable[..., Any], name: str, results: str, version: tuple[int, int], args: tuple,
            kwargs: tuple) -> Any:
    return _query(results, *args, **dict(kwargs))


def store_query(query: Callable[Concatenate[Any, P], R]) -> Callable[P, R]:
    """``query`` (a named query of ``ceag.store.queries``, whose first argument is the results folder) on the
    view's results folder: the store first takes in run folders it lacks (so every page sees every finished
    run), the result is cached until the store changes, and a store problem becomes an error box."""
    name = f"{query.__module__}.{query.__qualname__}"

    @functools.wraps(query)
    def read(*args: P.args, **kwargs: P.kwargs) -> R:
        sync_store()
        results = results_dir()
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
        try:
            out = _cached(query, name, str(results), store_version(results),
                          tuple(tuple(a) if isinstance(a, list) else a for a in args), frozen)
        except (StoreError, OSError) as err:
            st.error(f"The results store in {results} could not be read: {err}")
            st.stop()
        return out.copy() if hasattr(out, "copy") else out

    return read


@st.cache_data(show_spinner=False, ttl=5)
def _sync(results: str) -> list[tuple[str, str]]:
    """(run id, why) of the run folders that could not be read; the others are in the store."""
    problems: list[tuple[str, str]] = []
    try:
        sync(results, problems=problems)
    except (StoreError, OSError) as err:
        problems.append(("", str(err)))
    return problems


def sync_store() -> list[str]:
    """Pick up run folders the store lacks (runs from the command line, killed runs); what could not be read."""
    results = results_dir()
    if not ((results / "runs").is_dir() and os.access(results, os.W_OK)):
        return []
    return [f"Run folder {run_id} could not be read, so it is not shown: {why}" if run_id else
            f"New runs could not be added to the store: {why}" for run_id, why in _sync(str(results))]


def run_labels(runs) -> dict[str, str]:
    """run_id -> "CEAG ε=2% · digits/mlp · sparsity 0.9 · seed 0 · <run_id>" for every row of a runs table, with
    the pruning criterion after the method ("CEAG ε=2% · SNIP · …") where ``words.names_criteria`` says so.

    Vectorized: a store can hold thousands of runs, and the pages label all of them on every rerun.
    """
    from ceag.config.vocabulary import METHOD_LABELS
    from ceag.present.words import criteria_of, criterion_label, names_criteria, own_masks

    if runs.empty:
        return {}
    method = runs["method"].map(lambda m: METHOD_LABELS.get(m, m))
    tol = runs["tolerance"]
    eps = (" ε=" + (100 * tol).map(lambda t: f"{t:g}") + "%").where(tol.notna(), "")
    if names_criteria(runs):
        pruned = " · " + criteria_of(runs).map(criterion_label)
        eps = eps + pruned.where(~runs["method"].map(own_masks), "")
    text = (method + eps + " · " + runs["dataset"] + "/" + runs["model"] + " · sparsity "
            + runs["sparsity"].map(lambda s: f"{s:g}") + " · seed " + runs["seed"].astype(str) + " · "
            + runs["run_id"])
    return dict(zip(runs["run_id"], text, strict=True))


def empty_store_hint() -> None:
    st.info("No runs in this results folder yet. Start the demo on **Overview** or launch a grid on **Launch**.")
    st.page_link("dashboard/overview.py", label="Go to Overview", icon=":material/home:")
