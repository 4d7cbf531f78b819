"""The speed–fairness frontier: how much faster (or smaller) a pruned model is than its dense model, against the
worst group's excess gap and against accuracy, one point per setting (mean across seeds).

A series is a method under a pruning criterion, as on the accuracy–disparity frontier (``series``, ``words``),
and under a pruning kind where the points hold several ("NFT · channels", "NFT · unstructured": the method's
colour shaded per kind). Sparsity is the marker symbol, tolerance its size; markers of kinds that keep the
model's size (unstructured, global) are open.
The dense model is the star at 1× (ψ = 0, its accuracy); the dashed line is the Pareto front, the dense model
included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ceag.config.vocabulary import STRUCTURED_PRUNING
from ceag.present.footprint import MEASURES, bytes_text, count_text, ms_text, pruning_label
from ceag.present.plots.series import mix, series_color, series_outline
from ceag.present.plots.style import TOLERANCE_SIZES, pareto_front, sparsity_symbol
from ceag.present.words import criteria_of, criterion_label, names_criteria, series_label

# Where a view holds several pruning kinds, each kind of a method is its colour moved this far towards black (< 0)
# or white (> 0): the kinds that remove channels filled (channels as the method's own colour), the others open.
KIND_SHADES = {"channels": 0.0, "channels_global": -0.45, "structured": 0.5, "unstructured": 0.0, "global": -0.45}
PANELS = (("max_excess_gap", "max_g ψ_g (points), lower is fairer"), ("accuracy", "accuracy (%)"))
LOG_FROM = 3.0  # the x axis turns logarithmic once the largest ratio is this many times the smallest


TICKS = (0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 6, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000)


def axis_title(measure: str) -> str:
    m = MEASURES[measure]
    return f"{m.ratio}: dense / pruned {m.label} (×)"


def speed_frontier(cells: pd.DataFrame, measure: str, *, split: str = "test", title: str | None = None) -> go.Figure:
    """Two panels, max_g ψ_g and accuracy on ``split`` against the ratio dense / pruned of ``measure``.

    ``cells``: ``footprint.speed_cells`` of the runs of one timing group. ``customdata[0]`` of every point is its
    runs' ids, comma-joined (for selections)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=[f"{split}: {label.split(',')[0]}" for _, label in PANELS])
    if cells.empty:
        fig.update_layout(title=title or "no runs with this figure for this selection")
        return fig
    named = names_criteria(cells)
    cells = cells.assign(criterion=criteria_of(cells))
    kinds = list(dict.fromkeys(cells["pruning"]))
    tolerances = sorted(t for t in cells["tolerance"].dropna().unique())
    series = list(dict.fromkeys(zip(cells["method"], cells["criterion"], cells["pruning"], strict=True)))
    for i, (method, criterion, kind) in enumerate(series):
        part = cells[(cells["method"] == method) & (cells["criterion"] == criterion) & (cells["pruning"] == kind)]
        name = series_label(method, None, criterion, named=named) + (f" · {pruning_label(kind)}" if len(kinds) > 1
                                                                     else "")
        color = series_color(method, criterion, i)
        if len(kinds) > 1 and KIND_SHADES.get(kind):
            color = mix(color, KIND_SHADES[kind])
        opened = "" if kind in STRUCTURED_PRUNING else "-open"
        outline = series_outline(method, criterion) if not opened else dict(width=2, color=color)
        fig.add_scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=name, row=1, col=1,
                        marker=dict(color=color, symbol="circle" + opened, size=10, line=outline), hoverinfo="skip")
        symbols = [sparsity_symbol(s) + opened for s in part["sparsity"]]
        sizes = [TOLERANCE_SIZES[min(tolerances.index(t), 4)] if not pd.isna(t) else 11 for t in part["tolerance"]]
        custom = _custom(part, measure, named)
        for col, (metric, _) in enumerate(PANELS, start=1):
            std_y = 100 * part[f"{metric}_std"].fillna(0).to_numpy(dtype=float)
            std_x = part["ratio_std"].fillna(0).to_numpy(dtype=float)
            fig.add_scatter(
                x=part["ratio"], y=100 * part[metric], mode="markers", name=name, legendgroup=name,
                showlegend=False, row=1, col=col, marker=dict(color=color, symbol=symbols, size=sizes, line=outline),
                error_x=dict(type="data", array=std_x, visible=bool(std_x.any()), thickness=1),
                error_y=dict(type="data", array=std_y, visible=bool(std_y.any()), thickness=1),
                customdata=custom,
                hovertemplate=f"<b>{name}</b><br>%{{customdata[1]}}<br>{MEASURES[measure].ratio} %{{x:.2f}}×<br>"
                              + ("max_g ψ_g %{y:.2f} points" if metric != "accuracy" else "accuracy %{y:.2f}%")
                              + f" ({split})<br>%{{customdata[2]}}<extra></extra>")
    _dense_and_front(fig, cells)
    _sparsity_key(fig, cells, any(k not in STRUCTURED_PRUNING for k in kinds))
    ratios = cells["ratio"].to_numpy(dtype=float)
    log = np.nanmax(ratios) / max(np.nanmin(ratios), 1e-9) >= LOG_FROM or np.nanmax(ratios) >= 2 * LOG_FROM
    fig.update_xaxes(title_text=axis_title(measure), type="log" if log else "linear")
    if log:  # ticks at round ratios, written as ratios
        low, high = min(float(np.nanmin(ratios)), 1.0) / 1.3, max(float(np.nanmax(ratios)), 1.0) * 1.3
        ticks = [t for t in TICKS if low <= t <= high]
        fig.update_xaxes(tickvals=ticks, ticktext=[f"{t:g}×" for t in ticks])
    fig.add_vline(x=1.0, line_dash="dot", line_color="#999", line_width=1)
    fig.update_yaxes(title_text=PANELS[0][1], col=1)
    fig.update_yaxes(title_text=PANELS[1][1], col=2)
    fig.update_layout(height=520, margin=dict(t=60, b=10),
                      title=dict(text=title or "size grows with ε; open markers: the model keeps its size",
                                 font=dict(size=12)),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0,
                                  title=dict(text="method · criterion" if named else "method", side="top left")))
    return fig


def _custom(part: pd.DataFrame, measure: str, named: bool) -> np.ndarray:
    """Per point: run ids, its setting, what it costs (the tooltip's lines)."""
    column = MEASURES[measure].column
    write = ms_text if column.endswith("_ms") else bytes_text if column == "size_bytes" else count_text
    settings, costs = [], []
    for r in part.itertuples():
        setting = f"{r.model} · sparsity {r.sparsity:g}" + ("" if pd.isna(r.tolerance) else
                                                           f" · ε {100 * r.tolerance:g}%")
        setting += f"<br>{pruning_label(r.pruning)} pruning" + (f", {criterion_label(r.criterion, r.method)}"
                                                                 if named else "") + f" · seeds {r.seeds}"
        figures = getattr(r, column, None), getattr(r, f"dense_{column}", None)
        lat = [f"{ms_text(getattr(r, c, None))} at batch {b}" for c, b in (("latency_cpu_b1_ms", 1),
                                                                           ("latency_cpu_b64_ms", 64))
               if not pd.isna(getattr(r, c, np.nan))]
        cost = (f"{MEASURES[measure].label}: {write(figures[0])} (dense {write(figures[1])})<br>"
                f"CPU latency {', '.join(lat) or 'n/a'}<br>size {bytes_text(getattr(r, 'size_bytes', None))} · "
                f"MACs {count_text(getattr(r, 'macs', None))} · params {count_text(getattr(r, 'params', None))}<br>"
                f"channel sparsity {_pct(getattr(r, 'channel_sparsity', None))} · weight sparsity "
                f"{_pct(getattr(r, 'achieved_sparsity', None))}<br>runs {', '.join(r.run_ids)}")
        settings.append(setting)
        costs.append(cost)
    return np.stack([np.asarray([",".join(ids) for ids in part["run_ids"]], dtype=object),
                     np.asarray(settings, dtype=object), np.asarray(costs, dtype=object)], axis=1)


def _pct(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{100 * x:.1f} %"


def _dense_and_front(fig: go.Figure, cells: pd.DataFrame) -> None:
    """The dense model (one star per model) at 1×, and each panel's Pareto front over the points and the dense
    model: the faster, the fairer (left), the more accurate (right)."""
    dense = cells.groupby("model", sort=True)["dense_accuracy"].mean()
    for i, (model, accuracy) in enumerate(dense.items()):
        name = "dense model" if len(dense) == 1 else f"dense {model}"
        for col, at in ((1, 0.0), (2, 100 * float(accuracy))):
            star = dict(symbol="star", size=16, color="#ffbf00" if i == 0 else "#ffd966",
                        line=dict(width=1, color="black"))
            fig.add_scatter(x=[1.0], y=[at], mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                            row=1, col=col, marker=star,
                            hovertemplate=f"{name}: 1×<br>" + ("ψ_g 0 by definition" if col == 1 else
                                                                "accuracy %{y:.2f}%") + "<extra></extra>")
    x = np.concatenate([cells["ratio"].to_numpy(dtype=float), np.ones(len(dense))])
    for col, (metric, _) in enumerate(PANELS, start=1):
        y = np.concatenate([100 * cells[metric].to_numpy(dtype=float),
                            np.zeros(len(dense)) if col == 1 else 100 * dense.to_numpy(dtype=float)])
        ok = np.isfinite(x) & np.isfinite(y)
        front = pareto_front(-x[ok], -y[ok] if col == 1 else y[ok])
        if len(front) > 1:
            fig.add_scatter(x=x[ok][front], y=y[ok][front], mode="lines", name="Pareto front",
                            legendgroup="Pareto front", showlegend=col == 1, row=1, col=col,
                            line=dict(dash="dash", color="#9467bd", width=1.5), hoverinfo="skip")


def _sparsity_key(fig: go.Figure, cells: pd.DataFrame, opened: bool) -> None:
    for s in sorted(cells["sparsity"].unique()):  # the symbol key: legend entries only
        fig.add_scatter(x=[None], y=[None], mode="markers", name=f"sparsity {s:g}", legendgroup="sparsity",
                        legendgrouptitle_text="marker", marker=dict(symbol=sparsity_symbol(s), size=10, color="#555"),
                        hoverinfo="skip")
    if opened:
        fig.add_scatter(x=[None], y=[None], mode="markers", name="open: weights pruned, size kept",
                        legendgroup="sparsity", marker=dict(symbol="circle-open", size=10, color="#555"),
                        hoverinfo="skip")


SPEED_COLUMNS = {  # speed_cells column -> (label with its unit, scale)
    "model": ("model", None), "method": ("method", None), "criterion": ("criterion", None),
    "pruning": ("pruning", None), "sparsity": ("sparsity (%)", 100), "tolerance": ("tolerance ε (%)", 100),
    "seeds": ("seeds", None), "channel_sparsity": ("channel sparsity (%)", 100),
    "achieved_sparsity": ("weight sparsity (%)", 100), "ratio": (None, None), "params": ("parameters", None),
    "dense_params": ("dense parameters", None), "macs": ("MACs", None), "dense_macs": ("dense MACs", None),
    "size_bytes": ("size (bytes)", None), "dense_size_bytes": ("dense size (bytes)", None),
    "latency_cpu_b1_ms": ("CPU latency batch 1 (ms)", None), "latency_cpu_b64_ms": ("CPU latency batch 64 (ms)", None),
    "latency_gpu_b1_ms": ("GPU latency batch 1 (ms)", None), "latency_gpu_b64_ms": ("GPU latency batch 64 (ms)", None),
    "accuracy": ("accuracy (%)", 100), "max_excess_gap": ("max_g ψ_g (points)", 100), "psi_pw": ("Ψ_PW (points)", 100),
    "dense_accuracy": ("dense accuracy (%)", 100), "run_ids": ("run ids", None),
}


def speed_table(cells: pd.DataFrame, measure: str, split: str) -> pd.DataFrame:
    """``speed_cells`` as shown and exported: method labels as on screen, units in the column names, the ratio
    named for ``measure``."""
    from ceag.config.vocabulary import METHOD_LABELS

    out = pd.DataFrame({"split": split}, index=cells.index)
    for column, (label, scale) in SPEED_COLUMNS.items():
        if column not in cells or (column.startswith("latency_gpu") and cells[column].isna().all()):
            continue
        values = cells[column]
        if column == "method":
            values = values.map(lambda m: METHOD_LABELS.get(m, m))
        elif column == "criterion":
            values = [criterion_label(c, m) for c, m in zip(criteria_of(cells), cells["method"], strict=True)]
        elif column == "pruning":
            values = values.map(pruning_label)
        elif column == "run_ids":
            values = values.map(",".join)
        elif scale:
            values = scale * values.astype(float)
        out[label or f"{MEASURES[measure].ratio} (×)"] = values
    return out.reset_index(drop=True)
