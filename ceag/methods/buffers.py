"""Per-group replay buffers: a ring of the last k per-sample values of each group."""

from __future__ import annotations

import torch


class ReplayBuffer:
    """``values`` (G, k). A group's estimate is defined only once its ring is full.

    Pushing is vectorized: samples are sorted by group and each group's most recent k values
    are scattered into consecutive ring slots, so the result equals pushing one at a time.
    """

    def __init__(self, num_groups: int, size: int, device: torch.device | str = "cpu"):
        self.size = size
        self.values = torch.zeros(num_groups, size, device=device)
        self.position = torch.zeros(num_groups, dtype=torch.int64, device=device)
        self.count = torch.zeros(num_groups, dtype=torch.int64, device=device)

    @torch.no_grad()
    def push_(self, values: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        """Append per-sample ``values`` (B,) of groups ``groups`` (B,) in batch order.

        ``counts`` (G,), the batch's per-group counts, may be passed when already computed.
        """
        num_groups = self.values.shape[0]
        per_group = torch.bincount(groups, minlength=num_groups) if counts is None else counts
        order = torch.sort(groups, stable=True).indices
        g = groups[order]
        start = torch.cumsum(per_group, 0) - per_group
        rank = torch.arange(g.numel(), device=g.device) - start[g]
        keep = rank >= per_group[g] - self.size  # only the last k of a group survive
        slot = (self.position[g] + rank) % self.size
        self.values[g[keep], slot[keep]] = values[order][keep].to(self.values.dtype)
        self.position = (self.position + per_group) % self.size
        self.count = torch.clamp(self.count + per_group, max=self.size)

    @property
    def full(self) -> torch.Tensor:
        """(G,) bool: the group's ring holds k values."""
        return self.count >= self.size

    def mean(self) -> torch.Tensor:
        """(G,) mean of each full ring; NaN for groups whose ring is not full yet."""
        m = self.values.mean(dim=1)
        return torch.where(self.full, m, torch.full_like(m, float("nan")))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.cpu().clone(), "position": self.position.cpu().clone(),
                "count": self.count.cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.values.device
        self.values = state["values"].to(device)
        self.position = state["position"].to(device)
        self.count = state["count"].to(device)
