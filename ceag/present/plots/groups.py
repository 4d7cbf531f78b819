"""Per-group charts: excess gaps with ε, intervals of chosen runs, train against test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ceag.present.plots.series import series_color
from ceag.present.plots.style import AUDIT_METRICS, METHOD_COLORS, SPLIT_COLORS, SPLIT_ORDER, palette
from ceag.present.words import (
    audit_run_labels,
    criteria_of,
    kinds_of,
    names_criteria,
    names_kinds,
    series_label,
)


def excess_gap_bars(groups: pd.DataFrame, tolerance: float | None = None) -> go.Figure:
    """Grouped bars of psi_g (points) per group and split.

    ``groups``: one row per (split, group) with columns split, group_name, n, excess_gap.
    """
    fig = go.Figure()
    for split, part in groups.groupby("split", sort=False):
        fig.add_bar(
            name=split, x=part["group_name"], y=100 * part["excess_gap"],
            marker_color=SPLIT_COLORS.get(split), customdata=part[["n"]].to_numpy(),
            hovertemplate="%{x}<br>ψ_g = %{y:.1f} points<br>n = %{customdata[0]}<extra>" + split + "</extra>",
        )
    if tolerance is not None and not pd.isna(tolerance):
        fig.add_hline(y=100 * tolerance, line_dash="dash", line_color="#d62728",
                      annotation_text=f"tolerance ε = {100 * tolerance:.1f}%", annotation_position="top left")
    fig.update_layout(barmode="group", yaxis_title="excess accuracy gap ψ_g (points)",
                      xaxis_title="group", legend_title="split", margin=dict(t=30, b=10))
    return fig


def group_interval_bars(groups: pd.DataFrame, metric: str = "excess_gap", *,
                        splits: Sequence[str] = SPLIT_ORDER) -> go.Figure:
    """Per-group bars for each run, one panel per split, with interval error bars and ε marked.

    ``groups``: ``ceag.analysis.audit.Audit.groups`` rows (run_id, method, tolerance, split, group_name, n,
    ``metric`` and optionally ``<metric>_low`` / ``<metric>_high``; fractions). For ψ_g each CEAG
    tolerance ε is a dashed line in its run's colour. ``splits``: the panels, top to bottom (those
    the rows lack are left out). Raises ValueError for an unknown ``metric``.
    """
    if metric not in AUDIT_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(AUDIT_METRICS)}")
    splits = [s for s in splits if s in set(groups["split"])] if not groups.empty else []
    if not splits:
        fig = go.Figure()
        fig.update_layout(title="no per-group results for these runs")
        return fig
    fig = make_subplots(rows=len(splits), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{s}" for s in splits])
    labels = audit_run_labels(groups)
    tolerances: dict[float, str] = {}
    for i, (rid, label) in enumerate(labels.items()):
        run = groups[groups["run_id"] == rid]
        method = run["method"].iloc[0]
        color = METHOD_COLORS["nft"] if method == "nft" else palette(i)
        tol = run["tolerance"].iloc[0]
        if not pd.isna(tol):  # a run held to a tolerance (CEAG, CEAG+VS, a model audited against ε)
            tolerances.setdefault(float(tol), color)
        for row, split in enumerate(splits, start=1):
            part = run[run["split"] == split]
            y = 100 * part[metric]
            error = None
            if f"{metric}_low" in part and part[f"{metric}_low"].notna().any():
                error = dict(type="data", symmetric=False, array=100 * (part[f"{metric}_high"] - part[metric]),
                             arrayminus=100 * (part[metric] - part[f"{metric}_low"]), thickness=1.2, width=3)
                custom = np.stack([part["n"], 100 * part[f"{metric}_low"], 100 * part[f"{metric}_high"]], axis=1)
                extra = "<br>interval %{customdata[1]:.1f} to %{customdata[2]:.1f}"
            else:
                custom, extra = part[["n"]].to_numpy(), ""
            fig.add_bar(x=part["group_name"], y=y, name=label, legendgroup=rid, showlegend=row == 1,
                        marker_color=color, error_y=error, customdata=custom, row=row, col=1,
                        hovertemplate=f"<b>{label}</b><br>%{{x}} ({split}, n = %{{customdata[0]}})<br>"
                                      f"{AUDIT_METRICS[metric]}: %{{y:.1f}}{extra}<extra></extra>")
    if metric == "excess_gap":
        positions = ["top left", "top right", "bottom left", "bottom right"]  # close tolerances: labels apart
        for i, (tol, color) in enumerate(tolerances.items()):
            for row in range(1, len(splits) + 1):
                note = dict(annotation_text=f"ε = {100 * tol:g} %", annotation_position=positions[i % 4],
                            annotation_font_color=color) if row == 1 else {}
                fig.add_hline(y=100 * tol, line_dash="dash", line_color=color, line_width=1.5, row=row, col=1,
                              **note)
    fig.update_yaxes(title_text=AUDIT_METRICS[metric])
    fig.update_layout(barmode="group", legend_title="run", margin=dict(t=40, b=10),
                      height=max(320, 260 * len(splits)))
    return fig


def generalization(gen: pd.DataFrame, tolerance: float | None = None) -> go.Figure:
    """Test ψ_g against train ψ_g per group (marker size: train group size), one colour per method (shaded per
    pruning criterion, and the criterion in the series' name, where ``words.names_criteria`` says so; likewise the
    pruning kind where ``words.names_kinds`` says so).

    Points above the diagonal lost more on test than the constraint saw on train.
    """
    fig = go.Figure()
    if gen.empty:
        return fig
    named, kinds = names_criteria(gen), names_kinds(gen)
    gen_kinds = gen.assign(criterion=criteria_of(gen), kind=kinds_of(gen) if kinds else "")
    for (method, criterion, kind), part in gen_kinds.groupby(["method", "criterion", "kind"], sort=False):
        n = part["n_train"].fillna(1).clip(lower=1)
        size = 8 + 22 * np.sqrt(n / n.max())
        labels = [series_label(method, t, criterion, named=named, pruning=kind or None) for t in part["tolerance"]]
        fig.add_scatter(
            x=100 * part["train_excess_gap"], y=100 * part["test_excess_gap"], mode="markers",
            name=series_label(method, None, criterion, named=named, pruning=kind or None),
            marker=dict(color=series_color(method, criterion, pruning=kind or None), size=size, opacity=0.8,
                        line=dict(width=1, color="white")),
            customdata=np.stack([part["group_name"], part["n_train"], part["n_test"], labels, part["run_id"],
                                 part["sparsity"]], axis=1),
            hovertemplate=("%{customdata[0]} (n train %{customdata[1]}, test %{customdata[2]})<br>%{customdata[3]}, "
                           "sparsity %{customdata[5]}<br>train ψ %{x:.1f}, test ψ %{y:.1f} points<br>"
                           "run %{customdata[4]}<extra></extra>"),
        )
    lo = 100 * float(np.nanmin(gen[["train_excess_gap", "test_excess_gap"]].to_numpy()))
    hi = 100 * float(np.nanmax(gen[["train_excess_gap", "test_excess_gap"]].to_numpy()))
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="test = train", line=dict(dash="dot", color="gray"),
                    hoverinfo="skip")
    if tolerance is not None:
        fig.add_vline(x=100 * tolerance, line_dash="dash", line_color="#d62728", annotation_text="ε")
        fig.add_hline(y=100 * tolerance, line_dash="dash", line_color="#d62728")
    fig.update_layout(xaxis_title="train ψ_g (points)", yaxis_title="test ψ_g (points)", legend_title="method",
                      margin=dict(t=30, b=10))
    return fig


def generalization_summary(gen: pd.DataFrame) -> pd.DataFrame:
    """Per method (and pruning criterion and kind, where ``gen`` has them, and tolerance): mean over runs of train and
    test max_g ψ_g and their gap (fractions)."""
    keys = ["method", *(c for c in ("criterion", "pruning") if c in gen), "tolerance"]
    if gen.empty:
        return pd.DataFrame(columns=[*keys, "runs", "train_max_excess_gap", "test_max_excess_gap", "gap"])
    per_run = gen.groupby(["run_id", *keys], dropna=False).agg(
        train_max_excess_gap=("train_excess_gap", "max"), test_max_excess_gap=("test_excess_gap", "max")).reset_index()
    per_run["gap"] = per_run["test_max_excess_gap"] - per_run["train_max_excess_gap"]
    out = per_run.groupby(keys, dropna=False).agg(
        runs=("run_id", "count"), train_max_excess_gap=("train_max_excess_gap", "mean"),
        test_max_excess_gap=("test_max_excess_gap", "mean"), gap=("gap", "mean")).reset_index()
    return out
