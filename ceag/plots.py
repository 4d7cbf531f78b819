"""Pure plot functions: a tidy DataFrame in, a plotly Figure out (no Streamlit, no torch).

Values arrive as fractions and are shown in percent / points. Every figure carries the run ids
of its points in ``customdata`` so a page can open the run a user selects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
METHOD_COLORS = {"nft": "#7f7f7f", "nft_es": "#bcbd22", "el_rb": "#1f77b4", "ceag": "#d62728",
                 "ceag_vs": "#9467bd", "ceag_heldout": "#ff7f0e", "ceag_vs_heldout": "#8c564b"}
# ``*_heldout``: the same method with its multipliers driven by validation data (constraint_data="val").
METHOD_LABELS = {"nft": "NFT", "nft_es": "NFT+ES", "el_rb": "EL+RB", "ceag": "CEAG", "ceag_vs": "CEAG+VS",
                 "ceag_heldout": "CEAG (held-out λ)", "ceag_vs_heldout": "CEAG+VS (held-out λ)"}
METRIC_LABELS = {"psi_pw": "Ψ_PW (points)", "max_excess_gap": "max_g ψ_g (points)"}
FIXED_SPARSITY_SYMBOLS = {0.9: "circle", 0.95: "square", 0.98: "diamond", 0.85: "triangle-up", 0.925: "pentagon",
                          0.99: "hexagon", 0.8: "triangle-down", 0.995: "star-square", 0.5: "triangle-left",
                          0.7: "triangle-right", 0.75: "hourglass", 0.6: "bowtie"}
SPARE_SYMBOLS = ["cross", "x", "star-diamond", "hexagram", "star-triangle-up", "diamond-wide", "square-x",
                 "circle-x"]
TOLERANCE_SIZES = [9, 12, 15, 18, 21]


def method_label(method: str, tolerance: float | None = None) -> str:
    label = METHOD_LABELS.get(method, method)
    if tolerance is not None and not pd.isna(tolerance):
        label += f" ε={100 * tolerance:g}%"
    return label


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


def frontier(summary: pd.DataFrame, metric: str = "psi_pw", *, split: str = "test", clip: bool = False) -> go.Figure:
    """Accuracy (%) versus a disparity metric (points), one colour per method.

    ``summary``: rows of ``queries.frontier_summary`` (mean and std across seeds per method,
    sparsity and tolerance, with ``run_ids`` and ``dense_accuracy``). Sparsity is the marker
    symbol (fixed per value: ``sparsity_symbol``), tolerance the marker size; the dense model is
    the star at zero disparity; the dashed line is the Pareto front over all points. With
    ``clip``, both axes span ``robust_range`` of the points, and a point outside is drawn on the
    edge as an arrow pointing the way it was moved, its true values in the tooltip.
    ``customdata`` columns: run ids (comma-joined), sparsity, tolerance, seeds, model, the
    tooltip's setting text, the true x and y.
    """
    fig = go.Figure()
    if summary.empty:
        fig.update_layout(title="no finished runs for this selection")
        return fig
    tolerances = sorted(t for t in summary["tolerance"].dropna().unique())
    xs_all, ys_all = 100 * summary[metric].to_numpy(dtype=float), 100 * summary["accuracy"].to_numpy(dtype=float)
    x_range = robust_range(xs_all) if clip else None
    y_range = robust_range(ys_all) if clip else None
    clipped_any = False
    for method in dict.fromkeys(summary["method"]):  # legend entries: a method's colour, not a sparsity's symbol
        fig.add_scatter(x=[None], y=[None], mode="markers", name=METHOD_LABELS.get(method, method), legendgroup=method,
                        legendgrouptitle_text="method" if not fig.data else None,
                        marker=dict(color=METHOD_COLORS.get(method), symbol="circle", size=10), hoverinfo="skip")
    for method, part in summary.groupby("method", sort=False):
        true_x = 100 * part[metric].to_numpy(dtype=float)
        true_y = 100 * part["accuracy"].to_numpy(dtype=float)
        x, y = true_x.copy(), true_y.copy()
        arrows = [""] * len(part)
        for i in range(len(part)):
            if y_range is not None and y[i] < y_range[0]:
                y[i], arrows[i] = y_range[0], "arrow-down"
            elif y_range is not None and y[i] > y_range[1]:
                y[i], arrows[i] = y_range[1], "arrow-up"
            if x_range is not None and x[i] > x_range[1]:
                x[i], arrows[i] = x_range[1], "arrow-right"
            elif x_range is not None and x[i] < x_range[0]:
                x[i], arrows[i] = x_range[0], "arrow-left"
        clipped = np.array([bool(a) for a in arrows])
        clipped_any |= bool(clipped.any())
        diverged = part["diverged"].to_numpy() > 0 if "diverged" in part else np.zeros(len(part), dtype=bool)
        # Cells with a diverged run are drawn open, so they never pass for ordinary results.
        symbols = [(a or sparsity_symbol(s)) + ("-open" if d else "")
                   for s, d, a in zip(part["sparsity"], diverged, arrows, strict=True)]
        sizes = [TOLERANCE_SIZES[min(tolerances.index(t), 4)] if not pd.isna(t) else 11 for t in part["tolerance"]]
        std_x = np.where(clipped, 0, 100 * part[f"{metric}_std"].fillna(0).to_numpy())
        std_y = np.where(clipped, 0, 100 * part["accuracy_std"].fillna(0).to_numpy())
        setting = [f"sparsity {s:g}" + ("" if pd.isna(t) else f"<br>tolerance ε {100 * t:g}%")
                   + ("<br><i>outside the clipped range: drawn on its edge</i>" if c else "")
                   for s, t, c in zip(part["sparsity"], part["tolerance"], clipped, strict=True)]
        custom = np.stack([
            part["run_ids"].map(lambda ids: ",".join(ids)).to_numpy(),
            part["sparsity"].to_numpy(), part["tolerance"].fillna(np.nan).to_numpy(),
            part["seeds"].to_numpy(), part["model"].to_numpy(), np.asarray(setting, dtype=object), true_x, true_y,
        ], axis=1)
        fig.add_scatter(
            x=x, y=y, mode="markers", name=METHOD_LABELS.get(method, method), legendgroup=method, showlegend=False,
            marker=dict(color=METHOD_COLORS.get(method), symbol=symbols, size=sizes,
                        line=dict(width=1, color="white")),
            error_x=dict(type="data", array=std_x, visible=bool(std_x.any()), thickness=1),
            error_y=dict(type="data", array=std_y, visible=bool(std_y.any()), thickness=1),
            customdata=custom,
            hovertemplate=(f"<b>{METHOD_LABELS.get(method, method)}</b> (%{{customdata[4]}})<br>"
                           "%{customdata[5]}<br>seeds %{customdata[3]}<br>accuracy %{customdata[7]:.2f}%<br>"
                           f"{METRIC_LABELS[metric]} %{{customdata[6]:.2f}}<br>runs %{{customdata[0]}}<extra></extra>"),
        )
    ok = ~(np.isnan(xs_all) | np.isnan(ys_all))
    front = pareto_front(xs_all[ok], ys_all[ok])
    if len(front) > 1:
        fx, fy = xs_all[ok][front], ys_all[ok][front]
        if x_range is not None:
            fx = np.clip(fx, *x_range)
        if y_range is not None:
            fy = np.clip(fy, *y_range)
        fig.add_scatter(x=fx, y=fy, mode="lines", name="Pareto front",
                        line=dict(dash="dash", color="#9467bd", width=1.5), hoverinfo="skip")
    dense = summary["dense_accuracy"].dropna()
    if not dense.empty:
        fig.add_scatter(x=[0.0], y=[100 * float(dense.mean())], mode="markers", name="dense model",
                        marker=dict(symbol="star", size=16, color="#ffbf00", line=dict(width=1, color="black")),
                        hovertemplate="dense model<br>accuracy %{y:.2f}%<extra></extra>")
    for s in sorted(summary["sparsity"].unique()):  # the symbol key: legend entries only
        fig.add_scatter(x=[None], y=[None], mode="markers", name=f"sparsity {s:g}", legendgroup="sparsity",
                        legendgrouptitle_text="marker", marker=dict(symbol=sparsity_symbol(s), size=10, color="#555"),
                        hoverinfo="skip")
    note = "size grows with ε" + ("; arrows: points outside the clipped range" if clipped_any else "")
    fig.update_layout(
        xaxis_title=f"{METRIC_LABELS[metric]} on {split}, lower is fairer", yaxis_title=f"{split} accuracy (%)",
        margin=dict(t=40, b=10), height=520, legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
        title=dict(text=note, font=dict(size=12)),
    )
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


FRONTIER_COLUMNS = {  # summary column -> (label with its unit, scale)
    "model": ("model", None), "method": ("method", None), "sparsity": ("sparsity (%)", 100),
    "tolerance": ("tolerance ε (%)", 100), "seeds": ("seeds", None), "accuracy": ("accuracy (%)", 100),
    "accuracy_std": ("accuracy std (points)", 100), "max_excess_gap": ("max_g ψ_g (points)", 100),
    "max_excess_gap_std": ("max_g ψ_g std (points)", 100), "psi_pw": ("Ψ_PW (points)", 100),
    "psi_pw_std": ("Ψ_PW std (points)", 100), "dense_accuracy": ("dense accuracy (%)", 100),
    "diverged": ("diverged runs", None), "run_ids": ("run ids", None),
}


def frontier_table(summary: pd.DataFrame, split: str) -> pd.DataFrame:
    """The frontier summary as shown and exported: method labels as on screen, units in column names.

    Percent and points are 100x the store's fractions; ``run ids`` is comma-joined. A method
    without a tolerance has an empty tolerance. Every column name ends in its unit where it has one.
    """
    out = pd.DataFrame({"split": split}, index=summary.index)
    for column, (label, scale) in FRONTIER_COLUMNS.items():
        if column not in summary:
            continue
        values = summary[column]
        if column == "method":
            values = values.map(lambda m: METHOD_LABELS.get(m, m))
        elif column == "run_ids":
            values = values.map(lambda ids: ",".join(ids))
        elif scale:
            values = scale * values.astype(float)
        out[label] = values
    return out.reset_index(drop=True)


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
        color = _palette(i)
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


def generalization(gen: pd.DataFrame, tolerance: float | None = None) -> go.Figure:
    """Test ψ_g against train ψ_g per group (marker size: train group size), one colour per method.

    Points above the diagonal lost more on test than the constraint saw on train.
    """
    fig = go.Figure()
    if gen.empty:
        return fig
    for method, part in gen.groupby("method", sort=False):
        n = part["n_train"].fillna(1).clip(lower=1)
        size = 8 + 22 * np.sqrt(n / n.max())
        labels = [method_label(method, t) for t in part["tolerance"]]
        fig.add_scatter(
            x=100 * part["train_excess_gap"], y=100 * part["test_excess_gap"], mode="markers",
            name=METHOD_LABELS.get(method, method),
            marker=dict(color=METHOD_COLORS.get(method), size=size, opacity=0.8, line=dict(width=1, color="white")),
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
    """Per method (and tolerance): mean over runs of train and test max_g ψ_g and their gap (fractions)."""
    if gen.empty:
        return pd.DataFrame(columns=["method", "tolerance", "runs", "train_max_excess_gap",
                                     "test_max_excess_gap", "gap"])
    per_run = gen.groupby(["run_id", "method", "tolerance"], dropna=False).agg(
        train_max_excess_gap=("train_excess_gap", "max"), test_max_excess_gap=("test_excess_gap", "max")).reset_index()
    per_run["gap"] = per_run["test_max_excess_gap"] - per_run["train_max_excess_gap"]
    out = per_run.groupby(["method", "tolerance"], dropna=False).agg(
        runs=("run_id", "count"), train_max_excess_gap=("train_max_excess_gap", "mean"),
        test_max_excess_gap=("test_max_excess_gap", "mean"), gap=("gap", "mean")).reset_index()
    return out


def _palette(i: int) -> str:
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf"]
    return colors[i % len(colors)]


# -- the audit view ---------------------------------------------------------------------------------
AUDIT_METRICS = {"excess_gap": "excess gap ψ_g (points)", "acc_gap": "accuracy lost Δ_g (points)",
                 "accuracy": "accuracy (%)"}
SPLIT_ORDER = ("train", "val", "test")


def audit_run_labels(groups: pd.DataFrame) -> dict[str, str]:
    """run_id -> "CEAG ε=2%" (plus sparsity / seed / model when they differ between the runs)."""
    runs = groups.drop_duplicates("run_id")
    varying = [c for c in ("dataset", "model", "sparsity", "seed") if c in runs and runs[c].nunique() > 1]
    labels = {}
    for row in runs.itertuples():
        label = method_label(row.method, row.tolerance)
        extra = [f"{c} {getattr(row, c):g}" if c == "sparsity" else f"{c} {getattr(row, c)}" for c in varying]
        labels[row.run_id] = label + (f" ({', '.join(extra)})" if extra else "")
    if len(set(labels.values())) < len(labels):  # still ambiguous: add the run id
        labels = {rid: f"{label} · {rid[:8]}" for rid, label in labels.items()}
    return labels


def group_interval_bars(groups: pd.DataFrame, metric: str = "excess_gap", *,
                        splits: Sequence[str] = SPLIT_ORDER) -> go.Figure:
    """Per-group bars for each run, one panel per split, with interval error bars and ε marked.

    ``groups``: ``ceag.audit.Audit.groups`` rows (run_id, method, tolerance, split, group_name, n,
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
        color = METHOD_COLORS["nft"] if method == "nft" else _palette(i)
        tol = run["tolerance"].iloc[0]
        if method == "ceag" and not pd.isna(tol):
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
                label = dict(annotation_text=f"ε = {100 * tol:g} %", annotation_position=positions[i % 4],
                             annotation_font_color=color) if row == 1 else {}
                fig.add_hline(y=100 * tol, line_dash="dash", line_color=color, line_width=1.5, row=row, col=1,
                              **label)
    fig.update_yaxes(title_text=AUDIT_METRICS[metric])
    fig.update_layout(barmode="group", legend_title="run", margin=dict(t=40, b=10),
                      height=max(320, 260 * len(splits)))
    return fig


def overview_chart(summary: pd.DataFrame) -> go.Figure:
    """Per method, train and test max_g ψ_g across sparsities (mean ± std over seeds), ε marked.

    ``summary``: rows of ``queries.frontier_summary`` for the train and the test split, with a
    ``split`` column added. One line per method (per tolerance for CEAG), train left, test right;
    each tolerance present is a dashed horizontal line.
    """
    panels = [s for s in ("train", "test") if not summary.empty and s in set(summary["split"])]
    fig = make_subplots(rows=1, cols=max(len(panels), 1), shared_yaxes=True,
                        subplot_titles=[f"{s}: the worst group's excess gap" for s in panels])
    if not panels:
        fig.update_layout(title="no finished runs to chart")
        return fig
    tolerances = sorted(summary["tolerance"].dropna().unique())
    for col, split in enumerate(panels, start=1):
        part = summary[summary["split"] == split]
        for (method, tol), line in part.groupby(["method", "tolerance"], dropna=False, sort=True):
            line = line.sort_values("sparsity")
            label = method_label(method, tol)
            dash = "solid" if pd.isna(tol) else ["solid", "dot", "dashdot", "longdash"][tolerances.index(tol) % 4]
            std = 100 * line["max_excess_gap_std"].fillna(0)
            fig.add_scatter(x=100 * line["sparsity"], y=100 * line["max_excess_gap"], mode="lines+markers",
                            name=label, legendgroup=label, showlegend=col == 1,
                            line=dict(color=METHOD_COLORS.get(method), dash=dash),
                            error_y=dict(type="data", array=std, visible=bool(std.any()), thickness=1),
                            customdata=line[["seeds"]].to_numpy(), row=1, col=col,
                            hovertemplate=f"<b>{label}</b> ({split})<br>sparsity %{{x:g}} %<br>max_g ψ_g "
                                          "%{y:.1f} points<br>seeds %{customdata[0]}<extra></extra>")
        for tol in tolerances:
            fig.add_hline(y=100 * tol, line_dash="dash", line_color="#d62728", line_width=1, row=1, col=col,
                          annotation_text=f"ε = {100 * tol:g} %", annotation_position="top left")
    fig.update_xaxes(title_text="sparsity (%)")
    fig.update_yaxes(title_text="max_g ψ_g (points)", col=1)
    fig.update_layout(legend_title="method", margin=dict(t=40, b=10), height=380)
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
                                line=dict(color=_palette(i), width=1.5), row=row, col=col,
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
