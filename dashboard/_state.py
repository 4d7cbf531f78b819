"""The view: what the user chose, kept in the session and mirrored into the URL on every page.

The view holds the selected runs, the runs Multipliers and Compare show, the split, dataset and
model, the Frontiers and Runs filters, the fields of the Launch and Run-one forms, the results and
data folders and the job being watched (``FIELDS`` lists them all with their URL names).
Streamlit clears the URL's query parameters when ``st.navigation`` changes page, so no page reads
the URL itself:

- every page calls ``restore()`` first (app.py too; calling it twice in a run costs nothing).
  A new session (a first visit, a reload, a copied link) takes the view from the URL; later, an
  empty URL means a sidebar click or a page link, so the session's view is written back; a URL
  with parameters the session did not write (a page link with ``query_params``, back/forward)
  sets those fields and keeps the rest.
- pages read fields with ``get`` and change them with ``put``; ``put`` writes the URL at once.
- ``widget(...)`` binds a widget to a field: the widget starts from the view, the user's edit
  goes into the view, and a change made by code (``put``, a link) reaches the widget.

This is the only module that touches ``st.query_params``. ``encode``/``decode`` are pure
(the URL format: lists comma-separated, booleans ``1``/``0``, an empty list as an empty value).
A field absent from the view means "the page's default"; only fields a user or a link set are
written, so a copied link carries exactly what differs from the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

# field -> kind ("str", "list" or "bool"); the field's name is its URL parameter.
FIELDS: dict[str, str] = {
    "runs": "list",  # the selection: run ids that every page shows first
    "run": "str",  # the run Multipliers shows (not necessarily selected)
    "compare": "list",  # the runs Compare shows (not necessarily selected; absent: its default comparison)
    "dataset": "str", "model": "str", "split": "str", "diverged": "bool",
    "methods": "list", "sparsities": "list", "tolerances": "list", "criteria": "list", "clip": "bool",  # Frontiers
    "speed_x": "str", "speed_timing": "str",  # Frontiers: the speed–fairness frontier's x axis and timing group
    "runs_dataset": "list", "runs_method": "list", "runs_criterion": "list", "runs_status": "list",  # Runs filters
    "launch_dataset": "str", "launch_models": "list", "launch_methods": "list", "launch_sparsities": "str",
    "launch_tolerances": "str", "launch_seeds": "str", "launch_dense_epochs": "str", "launch_prune_epochs": "str",
    "launch_finetune_epochs": "str", "launch_image_size": "str", "launch_target": "str", "launch_groups": "list",
    "launch_constraint_data": "str", "launch_criteria": "list", "launch_pruning": "str",
    "one_method": "str", "one_criterion": "str", "one_pruning": "str", "one_sparsity": "str", "one_tolerance": "str",
    "one_seed": "str",
    "results": "str", "data": "str",  # folders, as typed (each confined to its configured root)
    "job": "str",  # the job the Overview follows
    "gallery": "str", "gallery_vs": "str", "gallery_split": "str", "gallery_group": "str",  # What pruning broke
    "gallery_show": "str", "gallery_pictures": "str",
    "audit": "str",  # the stored audit of a predictions file that Audit predictions shows
}
VIEW_KEY = "_view"
WRITTEN_KEY = "_view_url"
WIDGET_PREFIX = "view."


# -- pure: the URL format ----------------------------------------------------------------------------
def decode(params: Mapping[str, str]) -> dict[str, Any]:
    """URL query parameters -> view fields (unknown parameters are ignored)."""
    view: dict[str, Any] = {}
    for name, raw in params.items():
        kind = FIELDS.get(name)
        if kind is None or raw is None:
            continue
        raw = str(raw)
        if kind == "list":
            view[name] = [v for v in raw.split(",") if v]
        elif kind == "bool":
            if raw in ("1", "true", "True", "0", "false", "False"):
                view[name] = raw in ("1", "true", "True")
        else:
            view[name] = raw
    return view


def encode(view: Mapping[str, Any]) -> dict[str, str]:
    """View fields -> URL query parameters; ``decode(encode(v)) == v`` for every valid view."""
    params: dict[str, str] = {}
    for name, value in view.items():
        kind = FIELDS.get(name)
        if kind is None or value is None:
            continue
        if kind == "list":
            params[name] = ",".join(dict.fromkeys(str(v) for v in value))
        elif kind == "bool":
            params[name] = "1" if value else "0"
        else:
            params[name] = str(value)
    return params


def merge(session: Mapping[str, Any] | None, url: Mapping[str, str], written: Mapping[str, str] | None
          ) -> tuple[dict[str, Any], set[str]]:
    """The view after a rerun: (view, fields the URL changed).

    ``session``: the session's view (None in a new session); ``url``: the URL's parameters now;
    ``written``: what this session last wrote into the URL.
    """
    url = {k: v for k, v in url.items() if k in FIELDS}
    if session is None:
        return decode(url), set()
    view = dict(session)
    if not url or url == written:  # navigation cleared the URL, or nothing changed
        return view, set()
    changed = set()
    for name, value in decode(url).items():
        if view.get(name) != value:
            view[name] = value
            changed.add(name)
    return view, changed


# -- the session and the URL ----------------------------------------------------------------------------
def _view() -> dict[str, Any]:
    if VIEW_KEY not in st.session_state:
        restore()
    return st.session_state[VIEW_KEY]


def _write_url() -> None:
    target = encode(st.session_state[VIEW_KEY])
    current = {k: st.query_params.get(k) for k in st.query_params.keys() if k in FIELDS}  # noqa: SIM118
    if current != target:
        others = {k: st.query_params.get(k) for k in st.query_params.keys() if k not in FIELDS}  # noqa: SIM118
        st.query_params.from_dict({**others, **target})
    st.session_state[WRITTEN_KEY] = target


def restore() -> dict[str, Any]:
    """Bring the session's view and the URL together (see the module's docstring); returns the view.

    app.py calls it after ``st.navigation``, and every page again (harmless: nothing changed between).
    """
    url = {k: st.query_params.get(k) for k in st.query_params.keys()}  # noqa: SIM118
    view, changed = merge(st.session_state.get(VIEW_KEY), url, st.session_state.get(WRITTEN_KEY))
    for name in changed:  # a widget bound to a field a link changed starts again from the view
        st.session_state.pop(WIDGET_PREFIX + name, None)
    st.session_state[VIEW_KEY] = view
    _write_url()
    return view


def get(name: str, default: Any = None) -> Any:
    if name not in FIELDS:
        raise KeyError(f"unknown view field {name!r}")
    return _view().get(name, default)


def put(name: str, value: Any) -> None:
    """Set a field (None removes it: the page's default applies) and write the URL."""
    if name not in FIELDS:
        raise KeyError(f"unknown view field {name!r}")
    view = _view()
    if value is None:
        view.pop(name, None)
    else:
        view[name] = list(dict.fromkeys(value)) if FIELDS[name] == "list" else value
    _write_url()


def selected_runs() -> list[str]:
    return list(get("runs", []))


def select_runs(run_ids: list[str]) -> None:
    put("runs", list(run_ids) or None)


def _fit(value: Any, default: Any, options: list | None, kind: str) -> Any:
    """``value`` (as stored: strings) mapped onto ``options``; ``default`` when it does not fit."""
    if options is None:
        return value
    by_text = {str(o): o for o in options}
    if kind == "list":
        return [by_text[str(v)] for v in value if str(v) in by_text] if isinstance(value, list) else default
    if str(value) in by_text:
        return by_text[str(value)]
    return default if default in options else (options[0] if options else None)


def widget(factory: Callable, name: str, label: str, *, default: Any, options: list | None = None,
           **kwargs: Any) -> Any:
    """Render ``factory(label, [options,] key=..., **kwargs)`` bound to the view field ``name``.

    ``factory`` is a Streamlit widget function (``st.selectbox``, ``col.text_input``, ...);
    ``default`` is what the widget shows when the view has no value. Returns the widget's value.
    """
    kind = FIELDS[name]
    key, synced_key = WIDGET_PREFIX + name, WIDGET_PREFIX + name + "#"
    want = _fit(_view().get(name, default), default, options, kind)
    synced = st.session_state.get(synced_key)
    have = st.session_state.get(key, None)
    stale = key not in st.session_state or (have == synced and want != synced)
    if options is not None and not stale:  # the options changed under the widget
        stale = not (set(map(str, have)) <= set(map(str, options)) if kind == "list" else have in options)
    if stale:
        st.session_state[key] = want
    value = factory(label, options, key=key, **kwargs) if options is not None else factory(label, key=key, **kwargs)
    st.session_state[synced_key] = value
    stored = [str(v) for v in value] if kind == "list" else (value if kind == "bool" else str(value))
    if (name in _view() or value != default) and _view().get(name) != stored:
        put(name, stored)
    return value
