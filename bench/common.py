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


def median_time(fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``fn`` in seconds over ``repeat`` calls (after one warm-up call): wall time, or with
    ``clock=time.process_time`` this process's CPU time (what a one-thread computation does on a shared machine)."""
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def interleaved_rounds(steppers: dict[str, Callable[[], None]], rounds: int, steps: int, *,
                       baseline: str = "nft", seed: int = 0) -> tuple[dict[str, float], dict[str, list[float]],
                                                                      list[float]]:
    """Time every stepper back to back for ``rounds`` rounds, in a shuffled order each round.

    Other load on a shared machine only ever adds time, so callers compare each stepper's fastest
    round. Returns (fastest seconds per step by name, per-round ratios to ``baseline`` by name,
    the baseline's seconds per step in each round).
    """
    import random

    rng = random.Random(seed)
    best = dict.fromkeys(steppers, float("inf"))
    ratios: dict[str, list[float]] = {m: [] for m in steppers if m != baseline}
    base_times: list[float] = []
    for _ in range(rounds):
        order = list(steppers)
        rng.shuffle(order)
        took = {}
        for m in order:
            start = time.perf_counter()
            for _ in range(steps):
                steppers[m]()
            took[m] = (time.perf_counter() - start) / steps
            best[m] = min(best[m], took[m])
        base_times.append(took[baseline])
        for m in ratios:
            ratios[m].append(took[m] / took[baseline])
    return best, ratios, base_times


def page_build_times(page: str, params: dict[str, str] | None = None, timeout: float = 120) -> tuple[float, float]:
    """(first build, rebuild) seconds of ``dashboard/<page>.py`` through Streamlit's AppTest, on the results
    folder of ``$CEAG_RESULTS``: the first build with every Streamlit cache cleared (what the pages cached
    before counts for nothing), the second in a new session with the caches kept. ``params``: the URL's.
    Raises RuntimeError when the page raises."""
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[1] / "app.py")
    measured = []
    for first in (True, False):
        at = AppTest.from_file(app, default_timeout=timeout)
        for key, value in (params or {}).items():
            at.query_params[key] = value
        at.run()
        if first:
            st.cache_data.clear()
        start = time.perf_counter()
        at.switch_page(f"dashboard/{page}.py").run()
        measured.append(time.perf_counter() - start)
        if at.exception:
            raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    return measured[0], measured[1]
