"""Where a run computes: the device it asked for, and mixed precision for forward passes."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision for the forward pass (bfloat16); losses and metrics stay float32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
