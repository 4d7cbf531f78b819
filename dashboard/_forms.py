"""Numeric form fields that never silently replace a typed value.

Streamlit's number_input reverts an out-of-range entry to the last valid value without a word,
so numbers are typed as text (kept in the view as typed) and checked here: an invalid value
names the field, the value and what is allowed, and the page blocks its action.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ceag.config.errors import ConfigError
from dashboard import _state


def parse_number(label: str, text: str, *, kind: type, lo: float, hi: float, hi_open: bool = False) -> int | float:
    """``text`` as an int or float within [lo, hi] (or [lo, hi) with ``hi_open``); ConfigError otherwise."""
    interval = f"[{lo:g}, {hi:g}{')' if hi_open else ']'}"
    allowed = (f"a whole number from {lo:g} to {hi:g}" if kind is int
               else f"a number in {interval}")
    raw = (text or "").strip()
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        raise ConfigError(label, text, f"must be {allowed}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(label, text, f"must be {allowed}")
    if value < lo or value > hi or (hi_open and value >= hi):
        raise ConfigError(label, text, f"must be {allowed}")
    return value


class NumberFields:
    """Collects the problems of several numeric fields of one form; ``errors`` lists their messages."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def field(self, factory: Callable, name: str, label: str, *, default: int | float, kind: type, lo: float,
              hi: float, hi_open: bool = False, help: str | None = None) -> int | float | None:  # noqa: A002
        """A text field bound to the view field ``name``; its number, or None (and an error) when invalid."""
        allowed = f"{lo:g}–{hi:g}" if kind is int else f"{lo:g} to {hi:g}" + (" (excluded)" if hi_open else "")
        text = _state.widget(factory, name, label, default=str(default),
                             help=(help + " " if help else "") + f"Allowed: {allowed}.")
        try:
            return parse_number(label, text, kind=kind, lo=lo, hi=hi, hi_open=hi_open)
        except ConfigError as err:
            self.errors.append(str(err))
            return None
