"""Multipliers: λ_g and the constraint of a CEAG or EL+RB run over training, with its schedule."""

import json

import streamlit as st

from ceag import plots
from pages._shared import CHART_CONFIG, empty_store_hint, query, run_labels, select_runs, selected_runs

HEATMAP_FROM = 13  # groups; beyond this, lines are unreadable

st.title("Multiplier trajectories")
runs = query("runs", status="finished")
constrained = runs[runs.method.isin(["ceag", "el_rb"])].sort_values(["dataset", "method", "sparsity", "tolerance"])
if runs.empty:
    empty_store_hint()
    st.stop()
if constrained.empty:
    st.info("No finished CEAG or EL+RB runs yet: only they have multipliers. Launch some on **Launch**.")
    st.stop()

ids = list(constrained["run_id"])
labels = run_labels(constrained)
wanted = [r for r in selected_runs() if r in labels]
if st.session_state.get("multipliers_run") not in ids:
    st.session_state["multipliers_run"] = wanted[0] if wanted else ids[0]
run_id = st.selectbox("Run", ids, key="multipliers_run", format_func=labels.get)
if run_id not in selected_runs():
    select_runs([run_id])
row = constrained.set_index("run_id").loc[run_id]
detail = query("run_detail", run_id=run_id)  # one connection for the whole page
config = json.loads(detail["config"])
tolerance = None if row["tolerance"] != row["tolerance"] else float(row["tolerance"])

duals = detail["duals"]
if duals.empty:
    st.warning("This run recorded no multiplier trace (its mitigation never became active).")
else:
    n_groups = duals["group_id"].nunique()
    never = sorted(duals.groupby("group_name")["violation"].apply(lambda v: v.isna().all()).pipe(
        lambda s: s[s].index))
    view = st.radio("View", ["lines", "heatmap"], index=int(n_groups >= HEATMAP_FROM), horizontal=True)
    fig = plots.multipliers(duals, tolerance, row["method"]) if view == "lines" else plots.multiplier_heatmap(duals)
    st.plotly_chart(fig, config=CHART_CONFIG, width="stretch")
    if never:
        st.caption(f"Never active (the group's replay buffer never filled): {', '.join(map(str, never))}.")
    last = duals[duals.step == duals.step.max()].sort_values("multiplier", ascending=False)
    st.caption(f"At the last traced step (step {int(last.step.iloc[0])}) the largest multiplier is "
               f"λ = {last.multiplier.iloc[0]:.4g} ({last.group_name.iloc[0]}).")

st.subheader("Pruning schedule and accuracy")
metrics = detail["run_metrics"]
st.plotly_chart(plots.training_curves(metrics, config.get("prune_epochs")), config=CHART_CONFIG, width="stretch")
groups = detail["group_metrics"]
st.plotly_chart(plots.excess_gap_bars(groups, tolerance), config=CHART_CONFIG, width="stretch")
