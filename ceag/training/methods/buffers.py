"""Per-group replay buffers: a ring of the last k per-sample values of each group.

The rings are small (groups x k) and touched once per step with a batch's worth of values, so
they live in host memory as numpy arrays: a push is a handful of numpy calls (a few
microseconds), where the same work as torch ops costs several times more in dispatch alone.
``values``, ``position`` and ``count`` are also exposed as torch tensors sharing that memory.
"""

from __future__ import annotations

import numpy as np
import torch


def as_array(x) -> np.ndarray:
    """A numpy view of a CPU tensor (no copy), or the array itself."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReplayBuffer:
    """A (G, k) ring per group. A group's estimate is defined only once its ring is full.

    Pushing is vectorized: each sample's rank among its group's samples in the batch gives its
    ring slot, and only a group's last k samples are written, so the result equals pushing one
    sample at a time.
    """

    def __init__(self, num_groups: int, size: int, device: torch.device | str | None = None):
        # ``device`` is accepted for symmetry with the methods; the rings always live on the host.
        self.num_groups, self.size = num_groups, size
        # One spare cell at the end takes the writes of samples that do not survive the batch.
        self._flat = np.zeros(num_groups * size + 1, dtype=np.float64)
        self._values = self._flat[:-1].reshape(num_groups, size)
        self._position = np.zeros(num_groups, dtype=np.int64)
        self._count = np.zeros(num_groups, dtype=np.int64)
        self._order = np.arange(0)

    # torch views of the state (shared memory), for checkpoints and inspection
    @property
    def values(self) -> torch.Tensor:
        return torch.from_numpy(self._values)

    @property
    def position(self) -> torch.Tensor:
        return torch.from_numpy(self._position)

    @property
    def count(self) -> torch.Tensor:
        return torch.from_numpy(self._count)

    def push_(self, values, groups, counts=None) -> None:
        """Append per-sample ``values`` (B,) of groups ``groups`` (B,) in batch order.

        Tensors (on the CPU) or arrays; ``counts`` (G,), the batch's per-group counts, may be
        passed when already computed.
        """
        values, groups = as_array(values), as_array(groups)
        counts = np.bincount(groups, minlength=self.num_groups) if counts is None else as_array(counts)
        k = self.size
        n = groups.shape[0]
        if self._order.shape[0] != n:
            self._order = np.arange(n)
        # Work in group-sorted order (stable, so batch order within a group): a sample's rank
        # among its group's samples is its sorted position minus where its group starts.
        order = groups.argsort(kind="stable")
        g = groups[order]
        rank = self._order - (counts.cumsum() - counts)[g]
        slot = g * k + (self._position[g] + rank) % k
        if counts.max(initial=0) > k:  # only a group's last k samples survive the batch
            slot[rank < counts[g] - k] = self._flat.shape[0] - 1
        self._flat[slot] = values[order]
        self._position += counts
        self._position %= k
        np.minimum(self._count + counts, k, out=self._count)

    def full_array(self) -> np.ndarray:
        return self._count >= self.size

    def mean_array(self) -> np.ndarray:
        """(G,) mean of each full ring; NaN for groups whose ring is not full yet."""
        return np.where(self.full_array(), self._values.sum(axis=1) / self.size, np.nan)

    @property
    def full(self) -> torch.Tensor:
        """(G,) bool: the group's ring holds k values."""
        return torch.from_numpy(self.full_array())

    def mean(self) -> torch.Tensor:
        return torch.from_numpy(self.mean_array())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": torch.from_numpy(self._values.copy()), "position": torch.from_numpy(self._position.copy()),
                "count": torch.from_numpy(self._count.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._values[...] = as_array(state["values"])
        self._position[:] = as_array(state["position"])
        self._count[:] = as_array(state["count"])
