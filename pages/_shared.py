"""Helpers shared by the pages: the results folder, cached store queries, the selection in the URL."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ceag.runs import resolve_results
from ceag.store import StoreError, db_path, queries, sync

RESULTS_KEY = "results_dir"
DATA_KEY = "data_dir"
CHART_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def results_dir() -> Path:
    if RESULTS_KEY not in st.session_state:
        st.session_state[RESULTS_KEY] = str(resolve_results())
    return Path(st.session_state[RESULTS_KEY])


def data_root() -> Path:
    """The data folder the server was configured with ($CEAG_DATA, else ./data)."""
    return Path(os.environ.get("CEAG_DATA") or "data").resolve()


def data_dir() -> Path:
    """The data folder chosen in the sidebar: the configured root or a folder inside it."""
    return Path(st.session_state.get(DATA_KEY) or data_root())


def store_version(results: Path) -> tuple[int, int]:
    """Changes whenever the store file does, so cached queries refresh after an ingest."""
    try:
        stat = db_path(results).stat()
        wal = db_path(results).with_suffix(".duckdb.wal")
        return stat.st_mtime_ns + (wal.stat().st_mtime_ns if wal.exists() else 0), stat.st_size
    except FileNotFoundError:
        return 0, 0


@st.cache_data(show_spinner=False, max_entries=256)
def _cached(name: str, results: str, version: tuple[int, int], kwargs: tuple) -> object:
    return getattr(queries, name)(results, **dict(kwargs))


def query(name: str, **kwargs):
    """A named store query, cached until the store changes; a store problem becomes an error box."""
    results = results_dir()
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    try:
        out = _cached(name, str(results), store_version(results), frozen)
    except StoreError as err:
        st.error(f"The results store could not be read: {err}")
        st.stop()
    return out.copy() if hasattr(out, "copy") else out


@st.cache_data(show_spinner=False, ttl=5)
def _sync(results: str) -> int:
    try:
        return sync(results)
    except (StoreError, OSError):
        return 0


def sync_store() -> None:
    """Pick up run folders the store lacks (e.g. runs killed before they were ingested)."""
    results = results_dir()
    if (results / "runs").is_dir() and os.access(results, os.W_OK):
        _sync(str(results))


def selected_runs() -> list[str]:
    raw = st.query_params.get("runs", "")
    return [r for r in raw.split(",") if r]


def select_runs(run_ids: list[str]) -> None:
    if run_ids:
        st.query_params["runs"] = ",".join(dict.fromkeys(run_ids))
    elif "runs" in st.query_params:
        del st.query_params["runs"]


def param(key: str, options: list, default=None):
    """A URL query parameter restricted to ``options`` (the first option when absent or unknown)."""
    value = st.query_params.get(key)
    if value is not None:
        for option in options:
            if str(option) == value:
                return option
    return default if default in options else (options[0] if options else None)


def seeded(key: str, options: list, default=None) -> str:
    """Session-state key for a widget whose value lives in the URL parameter ``key``.

    The widget keeps a stable identity (so every edit sticks); its value is taken from the URL
    when the page opens, or when the remembered value is no longer among ``options``.
    """
    wkey = f"url_{key}"
    if wkey not in st.session_state or st.session_state[wkey] not in options:
        st.session_state[wkey] = param(key, options, default)
    return wkey


def seeded_list(wkey: str, options: list, default: list) -> str:
    """Like ``seeded`` for a multiselect: the remembered list when still valid, else ``default``."""
    current = st.session_state.get(wkey)
    if current is None or not set(current) <= set(options):
        st.session_state[wkey] = [d for d in default if d in options]
    return wkey


def set_param(key: str, value) -> None:
    if value is None:
        st.query_params.pop(key, None)
    elif st.query_params.get(key) != str(value):
        st.query_params[key] = str(value)


def run_labels(runs) -> dict[str, str]:
    """run_id -> "CEAG ε=2% · digits/mlp · sparsity 0.9 · seed 0 · <run_id>" for every row of a runs table.

    Vectorized: a store can hold thousands of runs, and the pages label all of them on every rerun.
    """
    from ceag.plots import METHOD_LABELS

    if runs.empty:
        return {}
    method = runs["method"].map(lambda m: METHOD_LABELS.get(m, m))
    tol = runs["tolerance"]
    eps = (" ε=" + (100 * tol).map(lambda t: f"{t:g}") + "%").where(tol.notna(), "")
    text = (method + eps + " · " + runs["dataset"] + "/" + runs["model"] + " · sparsity "
            + runs["sparsity"].map(lambda s: f"{s:g}") + " · seed " + runs["seed"].astype(str) + " · "
            + runs["run_id"])
    return dict(zip(runs["run_id"], text, strict=True))


def empty_store_hint() -> None:
    st.info("No runs in this results folder yet. Start the demo on **Overview** or launch a grid on **Launch**.")
    st.page_link("pages/overview.py", label="Go to Overview", icon=":material/home:")
