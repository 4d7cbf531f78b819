"""Multipliers: λ_g and the constraint of a CEAG or EL+RB run over training, with its schedule."""

import json

import streamlit as st

from ceag.present.plots.groups import excess_gap_bars
from ceag.present.plots.training import multiplier_heatmap, multipliers, training_curves
from ceag.present.sentences.trust import summary_line
from ceag.present.words import sentence
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import CHART_CONFIG, empty_store_hint, results_dir, run_labels
from dashboard._speed import show_footprint

HEATMAP_FROM = 13  # groups; beyond this, lines are unreadable
CLOSEST = 5


def closest(constrained, chosen):
    """Constrained runs ordered by how much of their setting they share with a selected run.

    Shared dataset, model, seed and sparsity each count one; ties go to the nearer sparsity.
    """
    best = None
    for _, sel in chosen.iterrows():
        score = sum((constrained[c] == sel[c]).astype(int) for c in ("dataset", "model", "seed", "sparsity"))
        rank = score * 10 - (constrained["sparsity"] - sel["sparsity"]).abs()
        best = rank if best is None else best.combine(rank, max)
    return constrained.assign(_rank=best).sort_values("_rank", ascending=False, kind="stable").head(CLOSEST)


_state.restore()
st.title("Multiplier trajectories")
runs = store.runs(status="finished")
if runs.empty:
    empty_store_hint()
    st.stop()
constrained = runs[runs.method.isin(["ceag", "el_rb"])].sort_values(["dataset", "method", "sparsity", "tolerance"])
if constrained.empty:
    st.info("No finished CEAG or EL+RB runs yet: only they have multipliers. Launch some on **Launch**.")
    st.stop()

selection = _state.selected_runs()
in_selection = [r for r in selection if r in set(constrained.run_id)]
if in_selection:  # the selection's constrained runs; the selection itself is never changed here
    pool = constrained.set_index("run_id").loc[in_selection].reset_index()
    st.caption(f"{len(in_selection)} of the {len(selection)} selected runs have multipliers.")
elif selection:
    chosen = runs[runs.run_id.isin(selection)]
    named = ", ".join(run_labels(chosen).values()) or ", ".join(selection)
    pool = closest(constrained, chosen) if not chosen.empty else constrained.head(CLOSEST)
    st.info(f"No CEAG or EL+RB run is in the selection ({named}): only those runs have multipliers. "
            f"Below are the {len(pool)} constrained runs closest to it; your selection is unchanged.")
else:
    pool = constrained
ids = list(pool["run_id"])
labels = run_labels(pool)
run_id = _state.widget(st.selectbox, "run", "Run", default=ids[0], options=ids, format_func=labels.get)
if run_id not in selection and st.button("Add this run to the selection", icon=":material/add:"):
    _state.select_runs([*selection, run_id])
    st.rerun()
row = constrained.set_index("run_id").loc[run_id]
detail = store.run_detail(run_id=run_id)  # one connection for the whole page
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
    fig = multipliers(duals, tolerance, row["method"]) if view == "lines" else multiplier_heatmap(duals)
    st.plotly_chart(fig, config=CHART_CONFIG, width="stretch")
    if never:
        st.caption(f"Never active (the group's replay buffer never filled): {', '.join(map(str, never))}.")
    last = duals[duals.step == duals.step.max()].sort_values("multiplier", ascending=False)
    st.caption(f"At the last traced step (step {int(last.step.iloc[0])}) the largest multiplier is "
               f"λ = {last.multiplier.iloc[0]:.4g} ({last.group_name.iloc[0]}).")

st.subheader("Did the constraints act?")
stored = store.diagnostics(run_id=run_id)
if stored["run"]:
    for text in summary_line(json.loads(stored["run"]["diagnostics"]))[1:]:
        (st.warning if text.startswith("warning:") else st.caption)(sentence(text.removeprefix("warning: ")))
    scale, unit = (100, "points") if row["method"] == "ceag" else (1, "loss")
    # held-out multipliers are driven by, and compared with, the validation split
    drive = (json.loads(stored["run"]["diagnostics"]).get("constraints") or {}).get("split", "train")
    cons = stored["constraint_groups"].set_index("group_name")
    table = cons[["max_multiplier", "multiplier_ratio", "violated_share"]].assign(
        **{f"last buffered ({unit})": scale * cons["last_estimate"], f"{drive}, evaluated ({unit})": scale *
           cons["train_excess_gap"], f"window buffered ({unit})": scale * cons["window_estimate"],
           f"window evaluated ({unit})": scale * cons["window_train_excess_gap"], "disagree": cons["disagree"]})
    st.dataframe(table, width="stretch", column_config={c: st.column_config.NumberColumn(format="%.3g")
                                                         for c in table.columns if c != "disagree"})
    st.caption(f"λ / share: the largest multiplier over the group's share of the "
               f"{'validation' if drive == 'val' else 'training'} split (how much the "
               "constraint re-weighted the group; at 0.5 or more the constraints count as acting). Violated: the "
               "share of dual steps in which the group's constraint was violated. Window: means over the last fifth "
               "of fine-tuning, buffered estimates against the evaluation.")

st.subheader("Pruning schedule and accuracy")
metrics = detail["run_metrics"]
st.plotly_chart(training_curves(metrics, config.get("prune_epochs")), config=CHART_CONFIG, width="stretch")
groups = detail["group_metrics"]
st.plotly_chart(excess_gap_bars(groups, tolerance), config=CHART_CONFIG, width="stretch")
show_footprint(detail.get("footprint"), run_id, str(results_dir()))
