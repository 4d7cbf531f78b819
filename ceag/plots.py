"""Pure plot functions: a tidy DataFrame in, a plotly Figure out (no Streamlit, no torch)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def excess_gap_bars(groups: pd.DataFrame, tolerance: float | None = None) -> go.Figure:
    """Grouped bars of psi_g (percent) per group and split.

    ``groups``: one row per (split, group) with columns split, group_name, n, excess_gap.
    """
    fig = go.Figure()
    for split, part in groups.groupby("split", sort=False):
        fig.add_bar(
            name=split, x=part["group_name"], y=100 * part["excess_gap"],
            marker_color=SPLIT_COLORS.get(split), customdata=part[["n"]].to_numpy(),
            hovertemplate="%{x}<br>ψ_g = %{y:.1f} points<br>n = %{customdata[0]}<extra>" + split + "</extra>",
        )
    if tolerance is not None:
        fig.add_hline(y=100 * tolerance, line_dash="dash", line_color="#d62728",
                      annotation_text=f"tolerance ε = {100 * tolerance:.1f}%", annotation_position="top left")
    fig.update_layout(barmode="group", yaxis_title="excess accuracy gap ψ_g (points)",
                      xaxis_title="group", legend_title="split", margin=dict(t=30, b=10))
    return fig
