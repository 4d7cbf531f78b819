"""Method registry: one lowercase key per method, used in code, the store and the UI."""

from __future__ import annotations

from ceag.training.methods.base import NFTES, DenseReference, Diverged, FairGRAPE, Method
from ceag.training.methods.lagrangian import CEAG, ELRB

REGISTRY: dict[str, type[Method]] = {cls.key: cls for cls in (Method, NFTES, ELRB, CEAG, FairGRAPE)}


def get_method(key: str) -> type[Method]:
    if key not in REGISTRY:
        raise KeyError(f"unknown method {key!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


__all__ = ["REGISTRY", "get_method", "Method", "DenseReference", "Diverged"]
