"""A minimal terminal progress bar (stderr, only when it is a terminal)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Call with (phase, done, total); draws ``phase [#####.....] done/total elapsed``."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_phase = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._last_phase not in (None, phase):
            self.stream.write("\n")
        self._last_phase = phase
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r{phase:<8} [{bar}] {done}/{total} {elapsed:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last_phase is not None:
            self.stream.write("\n")
            self.stream.flush()
