"""The Frontiers page's speed–fairness section, and a run's footprint beside its per-group numbers (Run one,
Multipliers, Compare)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ceag.present.csv_export import write_csv
from ceag.present.footprint import (
    MEASURES,
    available_measures,
    export_command,
    footprint_frame,
    footprint_lines,
    footprint_problem,
    footprint_table,
    parse,
    pruning_label,
    speed_cells,
    timing_groups,
)
from ceag.present.plots.speed import speed_frontier, speed_table
from ceag.present.words import criteria_of, own_masks
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import CHART_CONFIG

SPEED_HELP = ("The x axis is the dense model's figure over the pruned model's: how many times faster, how many "
              "times fewer multiply-accumulates, how many times smaller the saved model. Each run times its dense "
              "and its pruned model in turns in one process, so the ratio is read against the same machine and "
              "load; the dense model sits at 1×. Hover a point for the pruned model's own latency, size and MACs.")


def speed_section(*, dataset: str, model: str | None, split: str, methods: list, sparsities: list,
                  tolerances: list, criteria: list) -> None:
    """Speed-up (or fewer MACs, smaller size) against max_g ψ_g and accuracy on ``split``, the page's filters
    applied; latencies of one timing group at a time."""
    st.subheader("Speed and fairness")
    runs, unmeasured = store.speed_frontier(dataset=dataset, model=model, split=split)
    if not runs.empty:
        keep = runs.run_id.notna()
        if methods:
            keep &= runs.method.isin(methods)
        if sparsities:
            keep &= runs.sparsity.isin(sparsities)
        if tolerances:
            keep &= runs.tolerance.isna() | runs.tolerance.isin(tolerances)
        if criteria:
            pruned_by = criteria_of(runs).where(~runs.method.map(own_masks))
            keep &= pruned_by.isna() | pruned_by.isin(criteria)
        runs = runs[keep].reset_index(drop=True)
    one = unmeasured == 1
    left_out = (f"{unmeasured} finished run{'' if one else 's'} of {dataset} {'has' if one else 'have'} no footprint "
                f"(made before runs measured what their model costs) and {'is' if one else 'are'} left out."
                if unmeasured else "")
    if runs.empty:
        st.info("No finished run in this view has a footprint yet. " + left_out)
        return
    kinds = sorted(set(runs.pruning))
    if len(kinds) > 1:
        st.caption(f"The runs in this view were pruned in {len(kinds)} ways ({', '.join(map(pruning_label, kinds))}): "
                   "each kind is a series of its own, here and in the charts above, and is compared with NFT pruned "
                   "the same way.")
    measures = available_measures(runs)
    c1, c2 = st.columns([3, 2])
    measure = _state.widget(c1.radio, "speed_x", "x axis: against the dense model", default=measures[0],
                            options=measures, format_func=lambda m: MEASURES[m].label, horizontal=True,
                            help=SPEED_HELP)
    groups = timing_groups(runs, measure)
    has = runs[MEASURES[measure].column].notna()
    counts = groups[has].value_counts()
    shown = runs[has]
    where = ""
    if len(counts) > 1:
        timing = _state.widget(c2.selectbox, "speed_timing", "Timed on", default=counts.index[0],
                               options=list(counts.index), format_func=lambda g: f"{g} ({counts[g]} runs)")
        st.warning(f"The runs in this view were timed on {len(counts)} machines or thread counts. Latencies compare "
                   f"only within one, so the chart shows the {counts[timing]} runs timed on {timing}; choose another "
                   "under **Timed on**. MACs and size are the same on every machine.")
        shown, where = shown[groups[has] == timing], f" timed on {timing}"
    elif len(counts) == 1 and counts.index[0]:
        where = f" timed on {counts.index[0]}"
    missing = int((~has).sum())
    notes = [left_out] if left_out else []
    if missing:
        notes.append(f"{missing} run{'s' * (missing != 1)} without a {MEASURES[measure].label} "
                     f"({'trained on a CPU' if MEASURES[measure].device == 'gpu' else 'not measured'}) left out.")
    cells = speed_cells(shown, measure)
    st.caption(f"Each point is a setting's mean across seeds{where}, its x the dense model's "
               f"{MEASURES[measure].label} over the pruned model's. Open markers: pruned weights kept in a "
               "full-size model, which runs no faster. " + " ".join(notes))
    fig = speed_frontier(cells, measure, split=split)
    key = abs(hash((dataset, model, split, measure, where, tuple(methods), tuple(sparsities), tuple(tolerances),
                    tuple(criteria)))) & 0xFFFFFFFF
    event = st.plotly_chart(fig, key=f"speed_{key:x}", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config=CHART_CONFIG, width="stretch")
    chosen = [r for p in (event or {}).get("selection", {}).get("points", []) if p.get("customdata")
              for r in str(p["customdata"][0]).split(",")]
    if chosen and sorted(set(chosen)) != sorted(_state.selected_runs()):
        _state.select_runs(chosen)
        st.rerun()
    table = speed_table(cells, measure, split)
    numeric = [c for c in table.columns if c.endswith(("(%)", "(points)", "(×)", "(ms)"))]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3g" if c.endswith("(ms)") else "%.2f")
                                for c in numeric})
    st.download_button("Download this table (CSV)", write_csv(table), file_name=f"speed_{dataset}_{split}.csv",
                       mime="text/csv", key="speed_csv")


def show_footprint(footprint, run_id: str, results: str | None = None, *, heading: bool = True) -> None:
    """One run's footprint (its record, JSON text or dict): the pruned against the dense model, what was removed,
    where it was timed, and the command that exports its model."""
    record = parse(footprint)
    if heading:
        st.markdown("**What the model costs**")
    if record is None:
        st.caption("This run has no footprint: it was made before runs measured their model's size and speed.")
        return
    left, right = st.columns([3, 2])
    left.dataframe(footprint_table(record), hide_index=True, width="stretch")
    problem = footprint_problem(record)
    if problem:
        right.warning(problem)
    for line in footprint_lines(record):
        right.caption(line)
    st.code(export_command(run_id, results), language="bash")


def footprint_section(rows: pd.DataFrame, compared: int, labels: dict[str, str], results: str) -> None:
    """Several runs' footprints side by side (Compare): one row per run with a footprint (``rows``:
    ``queries.footprints``), each figure of its pruned model with dense / pruned, and their export commands."""
    st.markdown("**What each model costs**, against its dense model (dense / pruned in brackets)")
    if rows.empty:
        st.caption("None of these runs has a footprint: they were made before runs measured their model's size "
                   "and speed.")
        return
    out = []
    for run_id, text in zip(rows["run_id"], rows["footprint"], strict=True):
        record = parse(text) or {}
        row = {"run": labels.get(run_id, run_id), "pruning": pruning_label(record.get("pruning")),
               "channel sparsity (%)": 100 * (record.get("channel_sparsity") or 0),
               "weight sparsity (%)": 100 * (record.get("weight_sparsity") or 0)}
        for figure in footprint_table(record).itertuples(index=False):
            row[figure[0]] = f"{figure[1]} ({figure[3]})"
        out.append(row)
    st.dataframe(pd.DataFrame(out), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.1f")
                                for c in ("channel sparsity (%)", "weight sparsity (%)")})
    timed = timing_groups(footprint_frame(rows), "latency_cpu_b64")
    notes = [f"{compared - len(rows)} of the {compared} runs have no footprint (made before it was measured)."
             ] if len(rows) < compared else []
    if timed.nunique() > 1:
        st.warning(f"These runs were timed on {timed.nunique()} machines or thread counts: "
                   + "; ".join(f"{labels.get(r, r)}: {t}" for r, t in zip(rows["run_id"], timed, strict=True))
                   + ". Compare their latencies only within one; each ratio is against its own dense model, "
                   "timed beside it.")
    else:
        notes.append(f"Timed on {timed.iloc[0]}, the dense and the pruned model in turns in one process.")
    st.caption(" ".join(notes))
    with st.expander("Export these models"):
        st.code("\n".join(export_command(r, results) for r in rows["run_id"]), language="bash")
