"""Tallies of a Lagrangian method's dual steps, kept while it trains (the constraint diagnostic reads them)."""

from __future__ import annotations

import numpy as np


# -- constraints --------------------------------------------------------------------------
class ConstraintCounter:
    """Per-group tallies of a Lagrangian method's dual steps, updated in place every step.

    Arrays are (G,): ``max_multiplier`` (largest lambda_g so far), ``steps`` (dual steps in
    which the group had an estimate), ``violated`` (of those, steps with violation > 0),
    ``positive_sum`` (sum of max(violation, 0): lambda_g can never exceed dual_lr times it),
    ``last`` (the last violation), and over the window (``in_window`` set by the engine)
    ``window_steps`` and ``window_sum`` of the violations.
    """

    FIELDS = ("max_multiplier", "steps", "violated", "positive_sum", "last", "window_steps", "window_sum")

    def __init__(self, num_groups: int):
        self.num_groups = num_groups
        self.max_multiplier = np.zeros(num_groups)
        self.steps = np.zeros(num_groups, dtype=np.int64)
        self.violated = np.zeros(num_groups, dtype=np.int64)
        self.positive_sum = np.zeros(num_groups)
        self.last = np.full(num_groups, np.nan)
        self.window_steps = np.zeros(num_groups, dtype=np.int64)
        self.window_sum = np.zeros(num_groups)
        self.in_window = False

    def update_(self, multipliers: np.ndarray, violation: np.ndarray, ready: np.ndarray) -> None:
        """One dual step: ``multipliers`` (G,) after it; ``violation`` (G,), NaN where not ``ready``.

        A handful of numpy calls on (G,) arrays: it runs every training step.
        """
        # Both methods' multipliers stay >= 0 (CEAG projects; EL+RB adds non-negative |violations|).
        np.maximum(self.max_multiplier, multipliers, out=self.max_multiplier)
        self.steps += ready
        positive = np.fmax(violation, 0.0)  # fmax turns NaN into 0
        self.positive_sum += positive
        self.violated += positive > 0
        np.copyto(self.last, violation, where=ready)
        if self.in_window:
            self.window_steps += ready
            self.window_sum += np.where(ready, violation, 0.0)

    def state_dict(self) -> dict[str, list]:
        return {name: getattr(self, name).tolist() for name in self.FIELDS}

    def load_state_dict(self, state: dict[str, list]) -> None:
        for name in self.FIELDS:
            if name in state:
                current = getattr(self, name)
                setattr(self, name, np.asarray(state[name], dtype=current.dtype).reshape(current.shape))
