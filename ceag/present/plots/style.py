"""What the charts share: colours, a fixed marker per sparsity, the Pareto front, a robust axis range."""

from __future__ import annotations

import hashlib

import numpy as np

SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


METHOD_COLORS = {"nft": "#7f7f7f", "nft_es": "#bcbd22", "el_rb": "#1f77b4", "ceag": "#d62728",
                 "ceag_vs": "#9467bd", "ceag_heldout": "#ff7f0e", "ceag_vs_heldout": "#8c564b",
                 "fairgrape": "#17becf"}


METRIC_LABELS = {"psi_pw": "Ψ_PW (points)", "max_excess_gap": "max_g ψ_g (points)"}


FIXED_SPARSITY_SYMBOLS = {0.9: "circle", 0.95: "square", 0.98: "diamond", 0.85: "triangle-up", 0.925: "pentagon",
                          0.99: "hexagon", 0.8: "triangle-down", 0.995: "star-square", 0.5: "triangle-left",
                          0.7: "triangle-right", 0.75: "hourglass", 0.6: "bowtie"}


SPARE_SYMBOLS = ["cross", "x", "star-diamond", "hexagram", "star-triangle-up", "diamond-wide", "square-x",
                 "circle-x"]


TOLERANCE_SIZES = [9, 12, 15, 18, 21]


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (lower x = disparity, higher y = accuracy), by x."""
    order = np.lexsort((-y, x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def sparsity_symbol(sparsity: float) -> str:
    """The marker symbol of a sparsity: fixed per value, so adding runs never changes what a symbol means.

    The sparsities of the presets and the paper have their own symbols; any other value gets one of
    the spare symbols by a stable hash of its rounded value (two such values may share one, and the
    legend names every symbol shown).
    """
    key = round(float(sparsity), 4)
    if key in FIXED_SPARSITY_SYMBOLS:
        return FIXED_SPARSITY_SYMBOLS[key]
    digest = int(hashlib.sha1(f"{key:.4f}".encode()).hexdigest(), 16)
    return SPARE_SYMBOLS[digest % len(SPARE_SYMBOLS)]


def robust_range(values: np.ndarray, k: float = 3.0) -> tuple[float, float] | None:
    """An axis range that keeps outliers from squashing the rest: Tukey's fences at ``k`` IQRs.

    Returns (low, high) padded by 5 %, or None when every finite value already lies within the fences.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 4:
        return None
    q1, q3 = np.percentile(v, [25, 75])
    spread = max(q3 - q1, 1e-9 * max(abs(q1), abs(q3), 1.0))
    lo, hi = q1 - k * spread, q3 + k * spread
    if v.min() >= lo and v.max() <= hi:
        return None
    inside = v[(v >= lo) & (v <= hi)]
    lo, hi = float(inside.min()), float(inside.max())
    pad = 0.05 * max(hi - lo, 1e-9)
    return lo - pad, hi + pad


def palette(i: int) -> str:
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf"]
    return colors[i % len(colors)]


# -- the audit view ---------------------------------------------------------------------------------
AUDIT_METRICS = {"excess_gap": "excess gap ψ_g (points)", "acc_gap": "accuracy lost Δ_g (points)",
                 "accuracy": "accuracy (%)"}


SPLIT_ORDER = ("train", "val", "test")
