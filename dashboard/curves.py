"""Curves: per-group accuracy and ψ_g of one run over epochs, with its convergence and constraint diagnostics."""

import json

import streamlit as st

from ceag.present.plots.training import group_curves
from ceag.present.sentences.trust import summary_line
from ceag.present.words import sentence
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import CHART_CONFIG, empty_store_hint, run_labels

_state.restore()
st.title("Per-group curves")
runs = store.runs(status="finished")
if runs.empty:
    empty_store_hint()
    st.stop()
runs = runs.sort_values(["dataset", "method", "sparsity", "tolerance", "seed"])
ids = list(runs["run_id"])
labels = run_labels(runs)
wanted = [r for r in _state.selected_runs() if r in labels]  # the selection's first run opens first
run_id = st.selectbox("Run", ids, index=ids.index(wanted[0]) if wanted else 0, format_func=labels.get,
                      key=f"curves_run_{wanted[0] if wanted else ''}")
row = runs.set_index("run_id").loc[run_id]
tolerance = None if row["tolerance"] != row["tolerance"] else float(row["tolerance"])
stored = store.diagnostics(run_id=run_id)
diag = json.loads(stored["run"]["diagnostics"]) if stored["run"] else None
config = json.loads(store.run_config(run_id=run_id) or "{}")

lines = summary_line(diag)
if diag and diag.get("converged") is False:
    st.warning(f"**This run did not settle**: {lines[0]} Its reported numbers are one draw of a moving quantity.")
elif lines:
    st.success(sentence(lines[0]))
for text in lines[1:]:
    (st.warning if text.startswith("warning:") else st.caption)(sentence(text.removeprefix("warning: ")))

splits = tuple(s for s in ("train", "val", "test") if diag is None or s in diag.get("spread", {}))
shown = st.multiselect("Splits", list(splits), default=[s for s in ("train", "test") if s in splits] or list(splits),
                       key="curves_splits")
curves = store.group_curves(run_id=run_id)
window = tuple(diag["window"]) if diag else None
st.plotly_chart(group_curves(curves, tolerance, prune_epochs=config.get("prune_epochs"), window=window,
                                   splits=tuple(shown) or splits),
                config=CHART_CONFIG, width="stretch")
st.caption("One line per group; the dotted line is the end of pruning, the shaded band the last fifth of "
           "fine-tuning over which the run's spread is measured" + (", the dashed line ε." if tolerance else "."))
if diag and diag.get("spread"):
    spread = stored["spreads"].set_index("split")
    table = 100 * spread[["accuracy", "accuracy_limit", "max_excess_gap", "max_excess_gap_limit"]]
    st.dataframe(table.rename(columns={"accuracy": "accuracy spread", "accuracy_limit": "limit",
                                       "max_excess_gap": "max_g ψ_g spread", "max_excess_gap_limit": "limit "}),
                 width="stretch", column_config={c: st.column_config.NumberColumn(format="%.2f points")
                                                 for c in ("accuracy spread", "limit", "max_g ψ_g spread", "limit ")})
