"""What a benchmark reports, and small timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    value: float | None
    unit: str
    target: str = ""
    holds: bool | None = None  # None: no target, or not measurable here
    note: str = ""

    def line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        verdict = {True: "holds", False: "MISSES", None: ""}[self.holds]
        extra = f"  ({self.note})" if self.note else ""
        return f"{self.name:<52} {value:>10} {self.unit:<8} {self.target:<14} {verdict}{extra}"

    def to_json(self) -> dict:
        return {"name": self.name, "value": self.value, "unit": self.unit, "target": self.target,
                "holds": self.holds, "note": self.note}


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in seconds over ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
