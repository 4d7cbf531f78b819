"""Accuracy against disparity, one point per setting (mean and spread across seeds), and the Overview chart.

A series is a method under a pruning criterion and a pruning kind (``queries.frontier_summary``'s ``criterion`` and
``pruning``): its label names the criterion where the summary holds more than one, or one other than magnitude
(``words.names_criteria``), and the kind where it holds more than one (``words.names_kinds``); its colour is the
method's, shaded for the criterion and, where named, the kind (``series``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ceag.config.vocabulary import METHOD_LABELS
from ceag.present.footprint import pruning_label
from ceag.present.plots.series import series_color, series_outline, series_symbol
from ceag.present.plots.style import (
    METRIC_LABELS,
    TOLERANCE_SIZES,
    pareto_front,
    robust_range,
    sparsity_symbol,
)
from ceag.present.sentences.seeds import verdict_label, vs_nft_text
from ceag.present.words import (
    criteria_of,
    criterion_label,
    kinds_of,
    names_criteria,
    names_kinds,
    series_label,
)


def frontier(summary: pd.DataFrame, metric: str = "psi_pw", *, split: str = "test", clip: bool = False) -> go.Figure:
    """Accuracy (%) versus a disparity metric (points), one series per method and pruning criterion.

    ``summary``: rows of ``queries.frontier_summary`` (mean and std across seeds per method, criterion,
    sparsity and tolerance, with ``run_ids`` and ``dense_accuracy``). Each series has the method's colour,
    shaded and outlined for its criterion (``series``); its name and tooltip say the criterion where
    ``names_criteria`` holds. Sparsity is the marker
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
    named, kinds = names_criteria(summary), names_kinds(summary)
    # the pruning kind of each series where several are shown, None (not named, not shaded) where one is
    summary = summary.assign(criterion=criteria_of(summary), kind=kinds_of(summary) if kinds else "")
    xs_all, ys_all = 100 * summary[metric].to_numpy(dtype=float), 100 * summary["accuracy"].to_numpy(dtype=float)
    x_range = robust_range(xs_all) if clip else None
    y_range = robust_range(ys_all) if clip else None
    clipped_any = False
    series = list(dict.fromkeys(zip(summary["method"], summary["criterion"], summary["kind"], strict=True)))
    for i, (method, criterion, kind) in enumerate(series):  # legend entries: a series' colour, not a sparsity's
        fig.add_scatter(x=[None], y=[None], mode="markers",
                        name=series_label(method, None, criterion, named=named, pruning=kind or None),
                        legendgroup=f"{method}|{criterion}|{kind}",
                        marker=dict(color=series_color(method, criterion, i, kind or None), symbol="circle", size=10,
                                    line=series_outline(method, criterion)), hoverinfo="skip")
    for (method, criterion, kind), part in summary.groupby(["method", "criterion", "kind"], sort=False):
        name = series_label(method, None, criterion, named=named, pruning=kind or None)
        pruned = (f"<br>pruned by {criterion_label(criterion, method)}" if named else "") + (
            f"<br>{pruning_label(kind)} pruning" if kind else "")
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
        setting = [f"sparsity {s:g}" + ("" if pd.isna(t) else f"<br>tolerance ε {100 * t:g}%") + pruned
                   + ("<br><i>outside the clipped range: drawn on its edge</i>" if c else "")
                   for s, t, c in zip(part["sparsity"], part["tolerance"], clipped, strict=True)]
        versus = np.asarray([f"<br>{text}" if text else "" for text in (
            vs_nft_text(r[f"{metric}_vs_nft"], r[f"{metric}_vs_nft_low"], r[f"{metric}_vs_nft_high"],
                        r["vs_nft_seeds"]) if f"{metric}_vs_nft" in part else "" for _, r in part.iterrows())],
            dtype=object)
        custom = np.stack([
            part["run_ids"].map(lambda ids: ",".join(ids)).to_numpy(),
            part["sparsity"].to_numpy(), part["tolerance"].fillna(np.nan).to_numpy(),
            part["seeds"].to_numpy(), part["model"].to_numpy(), np.asarray(setting, dtype=object), true_x, true_y,
            versus,
        ], axis=1)
        fig.add_scatter(
            x=x, y=y, mode="markers", name=name, legendgroup=f"{method}|{criterion}|{kind}", showlegend=False,
            marker=dict(color=series_color(method, criterion, series.index((method, criterion, kind)), kind or None),
                        symbol=symbols,
                        size=sizes, line=series_outline(method, criterion)),
            error_x=dict(type="data", array=std_x, visible=bool(std_x.any()), thickness=1),
            error_y=dict(type="data", array=std_y, visible=bool(std_y.any()), thickness=1),
            customdata=custom,
            hovertemplate=(f"<b>{name}</b> (%{{customdata[4]}})<br>"
                           "%{customdata[5]}<br>seeds %{customdata[3]}<br>accuracy %{customdata[7]:.2f}%<br>"
                           f"{METRIC_LABELS[metric]} %{{customdata[6]:.2f}}%{{customdata[8]}}<br>runs "
                           "%{customdata[0]}<extra></extra>"),
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
        margin=dict(t=40, b=10), height=520,
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0,
                    title=dict(text="method · criterion" if named else "method", side="top left")),
        title=dict(text=note, font=dict(size=12)),
    )
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


FRONTIER_COLUMNS = {  # summary column -> (label with its unit, scale)
    "model": ("model", None), "method": ("method", None), "criterion": ("criterion", None),
    "pruning": ("pruning", None), "sparsity": ("sparsity (%)", 100),
    "tolerance": ("tolerance ε (%)", 100), "seeds": ("seeds", None), "accuracy": ("accuracy (%)", 100),
    "accuracy_std": ("accuracy std (points)", 100), "max_excess_gap": ("max_g ψ_g (points)", 100),
    "max_excess_gap_std": ("max_g ψ_g std (points)", 100), "psi_pw": ("Ψ_PW (points)", 100),
    "psi_pw_std": ("Ψ_PW std (points)", 100), "dense_accuracy": ("dense accuracy (%)", 100),
    "max_excess_gap_vs_nft": ("max_g ψ_g vs NFT (points)", 100),
    "max_excess_gap_vs_nft_low": ("max_g ψ_g vs NFT low (points)", 100),
    "max_excess_gap_vs_nft_high": ("max_g ψ_g vs NFT high (points)", 100),
    "psi_pw_vs_nft": ("Ψ_PW vs NFT (points)", 100), "psi_pw_vs_nft_low": ("Ψ_PW vs NFT low (points)", 100),
    "psi_pw_vs_nft_high": ("Ψ_PW vs NFT high (points)", 100), "vs_nft_seeds": ("seeds paired with NFT", None),
    "diverged": ("diverged runs", None), "run_ids": ("run ids", None),
}
VERDICT_COLUMNS = {"max_excess_gap": "max_g ψ_g vs NFT: verdict", "psi_pw": "Ψ_PW vs NFT: verdict"}


def frontier_table(summary: pd.DataFrame, split: str) -> pd.DataFrame:
    """The frontier summary as shown and exported: method labels as on screen, units in column names.

    Percent and points are 100x the store's fractions; ``run ids`` is comma-joined. A method
    without a tolerance has an empty tolerance. ``criterion`` is the pruning criterion as written for
    people (``words.criterion_label``: "magnitude", "SNIP", "SynFlow"; a method that chooses its own masks,
    FairGRAPE, "group importance"); ``pruning`` its pruning kind (``footprint.pruning_label``). Every column name
    ends in its unit where it has one.
    With ``seed_cache.attach_to_cells``' columns, each mitigation's difference from NFT across seeds, its
    interval and its verdict in words follow.
    """
    out = pd.DataFrame({"split": split}, index=summary.index)
    summary = summary.assign(criterion=criteria_of(summary))
    for column, (label, scale) in FRONTIER_COLUMNS.items():
        if column not in summary:
            continue
        values = summary[column]
        if column == "method":
            values = values.map(lambda m: METHOD_LABELS.get(m, m))
        elif column == "criterion":
            values = [criterion_label(c, m) for c, m in zip(values, summary["method"], strict=True)]
        elif column == "pruning":
            values = values.fillna("unstructured").map(pruning_label)
        elif column == "run_ids":
            values = values.map(lambda ids: ",".join(ids))
        elif scale:
            values = scale * values.astype(float)
        out[label] = values
        metric = column.removesuffix("_vs_nft_high")
        if column.endswith("_vs_nft_high") and metric in VERDICT_COLUMNS:  # the verdict in words after the interval
            out[VERDICT_COLUMNS[metric]] = [
                "" if pd.isna(d) else verdict_label({"diff_low": lo, "diff_high": hi, "seeds": n})
                for d, lo, hi, n in zip(summary[f"{metric}_vs_nft"], summary[f"{metric}_vs_nft_low"],
                                        summary[column], summary["vs_nft_seeds"], strict=True)]
    return out.reset_index(drop=True)


OVERVIEW_LEGEND_ROWS = 9  # the lines a 380-pixel chart lists beside it; more go below it


def overview_chart(summary: pd.DataFrame) -> go.Figure:
    """Per method, train and test max_g ψ_g across sparsities (mean ± std over seeds), ε marked.

    ``summary``: rows of ``queries.frontier_summary`` for the train and the test split, with a
    ``split`` column added. One line per method, pruning criterion and pruning kind (per tolerance for CEAG), train
    left, test right; the criterion shades the method's colour and sets the marker, the kind (where several) shades
    it further (``series``); each tolerance
    present is a dashed horizontal line.
    """
    panels = [s for s in ("train", "test") if not summary.empty and s in set(summary["split"])]
    fig = make_subplots(rows=1, cols=max(len(panels), 1), shared_yaxes=True,
                        subplot_titles=[f"{s}: the worst group's excess gap" for s in panels])
    if not panels:
        fig.update_layout(title="no finished runs to chart")
        return fig
    tolerances = sorted(summary["tolerance"].dropna().unique())
    named, kinds = names_criteria(summary), names_kinds(summary)
    summary = summary.assign(criterion=criteria_of(summary), kind=kinds_of(summary) if kinds else "")
    for col, split in enumerate(panels, start=1):
        part = summary[summary["split"] == split]
        for (method, criterion, kind, tol), line in part.groupby(["method", "criterion", "kind", "tolerance"],
                                                                  dropna=False, sort=True):
            line = line.sort_values("sparsity")
            label = series_label(method, tol, criterion, named=named, pruning=kind or None)
            dash = "solid" if pd.isna(tol) else ["solid", "dot", "dashdot", "longdash"][tolerances.index(tol) % 4]
            std = 100 * line["max_excess_gap_std"].fillna(0)
            fig.add_scatter(x=100 * line["sparsity"], y=100 * line["max_excess_gap"], mode="lines+markers",
                            name=label, legendgroup=label, showlegend=col == 1,
                            line=dict(color=series_color(method, criterion, pruning=kind or None), dash=dash),
                            marker=dict(symbol=series_symbol(method, criterion)),
                            error_y=dict(type="data", array=std, visible=bool(std.any()), thickness=1),
                            customdata=line[["seeds"]].to_numpy(), row=1, col=col,
                            hovertemplate=f"<b>{label}</b> ({split})<br>sparsity %{{x:g}} %<br>max_g ψ_g "
                                          "%{y:.1f} points<br>seeds %{customdata[0]}<extra></extra>")
        for tol in tolerances:
            fig.add_hline(y=100 * tol, line_dash="dash", line_color="#d62728", line_width=1, row=1, col=col,
                          annotation_text=f"ε = {100 * tol:g} %", annotation_position="top left")
    fig.update_xaxes(title_text="sparsity (%)")
    fig.update_yaxes(title_text="max_g ψ_g (points)", col=1)
    lines = len({t.name for t in fig.data})
    if lines <= OVERVIEW_LEGEND_ROWS:
        fig.update_layout(legend_title="method · criterion" if named else "method", margin=dict(t=40, b=10),
                          height=380)
    else:  # more lines than the chart is tall: the legend goes below it, three to a row
        fig.update_layout(legend=dict(title=dict(text="method · criterion" if named else "method", side="top left"),
                                      orientation="h", yanchor="top", y=-0.25, x=0),
                          margin=dict(t=40, b=10), height=380 + 24 * math.ceil(lines / 3))
    return fig
