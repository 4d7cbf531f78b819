"""The error every setting check raises, and the number checks they share."""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names field, value and the rule."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.field = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {name}={value!r}: {allowed}")


class PredictionsFileError(ValueError):
    """A predictions file (or the options to audit it) cannot be audited; the message, written for the
    person who gave the file, names the column, the row (counted from 1, the header not included) and
    what is allowed (``ceag.analysis.predictions_file``)."""


class UnknownAudit(ValueError):
    """An audit id that is not a stored audit of the results folder; the message says which exist."""


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
