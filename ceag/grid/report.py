"""A grid's progress and outcome, and the progress feed it publishes (``<results>/jobs/<id>/progress.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceag.results.files import now

FEED_SECONDS = 1.0  # the feed is rewritten at least this often while the grid runs


CELL_STATES = ("pending", "running", "cached", "finished", "diverged", "failed", "cancelled")


FINAL_STATES = CELL_STATES[2:]


@dataclass
class GridReport:
    """A grid's progress and outcome; ``to_json`` is the progress feed (counts always add up to ``total``)."""

    job_id: str
    total: int
    workers: int = 1
    wall_seconds: float = 0.0
    epochs_trained: int = 0
    dense_trained: int = 0
    started_at: str = field(default_factory=now)
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)  # one record per task that ran
    error: str | None = None  # why the grid as a whole stopped, when it did

    def count(self, status: str) -> int:
        return sum(1 for e in self.runs.values() if e.get("status") == status)

    pending = property(lambda self: self.count("pending"))
    running = property(lambda self: self.count("running"))
    cached = property(lambda self: self.count("cached"))
    finished = property(lambda self: self.count("finished"))
    diverged = property(lambda self: self.count("diverged"))
    failed = property(lambda self: self.count("failed"))
    cancelled = property(lambda self: self.count("cancelled"))

    @property
    def state(self) -> str:
        return "cancelled" if self.cancelled else "finished"

    @property
    def worker_seconds(self) -> float:
        """Seconds the workers spent in tasks, summed over every task."""
        return sum(p["seconds"] for p in self.phases)

    @property
    def busy_fraction(self) -> float | None:
        """Summed task time / (wall time x workers): 1.0 when every worker was busy all along."""
        if not self.phases or self.wall_seconds <= 0:
            return None
        return self.worker_seconds / (self.wall_seconds * self.workers)

    def to_json(self, phases: bool = True) -> dict[str, Any]:
        """The report; ``phases=False`` leaves out the per-task records (the feed, rewritten every second)."""
        busy = self.busy_fraction
        return {"job_id": self.job_id, "state": self.state, "total": self.total,
                **{s: self.count(s) for s in CELL_STATES},
                "started_at": self.started_at, "wall_seconds": round(self.wall_seconds, 3),
                "datasets": self.datasets, "models": self.models, "methods": self.methods,
                "workers": self.workers, "epochs_trained": self.epochs_trained, "dense_trained": self.dense_trained,
                "worker_seconds": round(self.worker_seconds, 3),
                "busy_fraction": None if busy is None else round(busy, 3),
                **({"error": self.error} if self.error else {}), "runs": self.runs,
                **({"phases": self.phases} if phases else {})}
