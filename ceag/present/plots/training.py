"""A run over its training: multipliers and constraints per step, accuracy and ψ_g per group over epochs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ceag.present.plots.style import SPLIT_COLORS, palette


def multipliers(duals: pd.DataFrame, tolerance: float | None, method: str = "ceag") -> go.Figure:
    """λ_g and the constraint estimate over training steps, one line per group.

    ``duals``: step, group_name, multiplier, violation. For CEAG the lower panel shows the
    buffered excess gap ψ̂_g = violation + ε with ε marked; for EL+RB the loss gap |L̂_g − L̂|.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("multiplier λ_g", "constraint: buffered ψ̂_g (points)" if method == "ceag"
                                        else "constraint: buffered loss gap |L̂_g − L̂|"))
    offset = tolerance if (method == "ceag" and tolerance is not None) else 0.0
    scale = 100.0 if method == "ceag" else 1.0
    for i, (name, part) in enumerate(duals.groupby("group_name", sort=False)):
        color = palette(i)
        fig.add_scatter(x=part["step"], y=part["multiplier"], mode="lines", name=str(name), legendgroup=str(name),
                        line=dict(color=color, width=1.5), row=1, col=1,
                        hovertemplate=f"{name}<br>step %{{x}}<br>λ %{{y:.4f}}<extra></extra>")
        fig.add_scatter(x=part["step"], y=scale * (part["violation"] + offset), mode="lines", name=str(name),
                        legendgroup=str(name), showlegend=False, line=dict(color=color, width=1), row=2, col=1,
                        hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>")
    if method == "ceag" and tolerance is not None:
        fig.add_hline(y=100 * tolerance, line_dash="dash", line_color="#d62728", row=2, col=1,
                      annotation_text=f"ε = {100 * tolerance:g}%", annotation_position="top left")
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(legend_title="group", margin=dict(t=40, b=10), height=560)
    return fig


def multiplier_heatmap(duals: pd.DataFrame) -> go.Figure:
    """λ_g as a heatmap (groups × steps): readable with many groups (CIFAR-100 has 100)."""
    table = duals.pivot_table(index="group_name", columns="step", values="multiplier", aggfunc="first", sort=False)
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=table.columns, y=table.index.astype(str), colorscale="Viridis",
                               colorbar=dict(title="λ_g"),
                               hovertemplate="%{y}<br>step %{x}<br>λ %{z:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title="training step", yaxis_title="group", margin=dict(t=30, b=10),
                      height=max(320, 12 * len(table)))
    return fig


def training_curves(run_metrics: pd.DataFrame, prune_epochs: int | None = None) -> go.Figure:
    """Sparsity (pruning schedule) and accuracy per split over epochs."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("pruning schedule: sparsity", "accuracy"))
    first = run_metrics[run_metrics["split"] == run_metrics["split"].iloc[0]] if not run_metrics.empty else run_metrics
    fig.add_scatter(x=first["epoch"], y=100 * first["sparsity"], mode="lines+markers", name="sparsity",
                    line=dict(color="#9467bd"), row=1, col=1, hovertemplate="epoch %{x}<br>%{y:.1f}%<extra></extra>")
    for split, part in run_metrics.groupby("split", sort=False):
        fig.add_scatter(x=part["epoch"], y=100 * part["accuracy"], mode="lines", name=f"{split} accuracy",
                        line=dict(color=SPLIT_COLORS.get(split)), row=1, col=2,
                        hovertemplate=f"{split}<br>epoch %{{x}}<br>%{{y:.2f}}%<extra></extra>")
    if prune_epochs:
        for col in (1, 2):
            fig.add_vline(x=prune_epochs, line_dash="dot", line_color="gray", row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="%", row=1, col=1)
    fig.update_layout(margin=dict(t=40, b=10), height=340)
    return fig


def group_curves(curves: pd.DataFrame, tolerance: float | None = None, *, prune_epochs: int | None = None,
                 window: tuple[int, int] | None = None, splits: tuple[str, ...] = ("train", "test")) -> go.Figure:
    """Per-group accuracy and ψ_g over epochs, one column per split: is a number a trend or a draw?

    ``curves``: rows of ``queries.group_curves`` (epoch, split, group_name, accuracy, excess_gap;
    fractions). ε is marked on the ψ_g row, the end of pruning dotted and the diagnostic
    ``window`` (first, last epoch) shaded.
    """
    present = [s for s in splits if s in set(curves["split"])] or list(splits)
    titles = [f"{s}: accuracy (%)" for s in present] + [f"{s}: ψ_g (points)" for s in present]
    fig = make_subplots(rows=2, cols=len(present), shared_xaxes=True, vertical_spacing=0.08, horizontal_spacing=0.06,
                        subplot_titles=titles)
    names = list(dict.fromkeys(curves.sort_values("group_id")["group_name"])) if not curves.empty else []
    for col, split in enumerate(present, start=1):
        part = curves[curves["split"] == split]
        for i, name in enumerate(names):
            g = part[part["group_name"] == name].sort_values("epoch")
            for row, metric in ((1, "accuracy"), (2, "excess_gap")):
                fig.add_scatter(x=g["epoch"], y=100 * g[metric], mode="lines+markers", marker=dict(size=4),
                                name=str(name), legendgroup=str(name), showlegend=(col == 1 and row == 1),
                                line=dict(color=palette(i), width=1.5), row=row, col=col,
                                hovertemplate=f"{name} ({split})<br>epoch %{{x}}<br>%{{y:.1f}}<extra></extra>")
        if tolerance is not None and not pd.isna(tolerance):
            fig.add_hline(y=100 * tolerance, line_dash="dash", line_color="#d62728", row=2, col=col,
                          annotation_text=f"ε = {100 * tolerance:g}%", annotation_position="top left")
        for row in (1, 2):
            if prune_epochs:
                fig.add_vline(x=prune_epochs, line_dash="dot", line_color="gray", row=row, col=col)
            if window:
                fig.add_vrect(x0=window[0] - 0.5, x1=window[1] + 0.5, fillcolor="#9467bd", opacity=0.08,
                              line_width=0, row=row, col=col)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(legend_title="group", margin=dict(t=40, b=10), height=600)
    return fig
