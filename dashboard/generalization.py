"""Generalization: does a group protected on train stay protected on test?"""

import pandas as pd
import streamlit as st

from ceag.analysis.verdicts import detectable_gaps
from ceag.config.vocabulary import METHOD_LABELS
from ceag.present.csv_export import write_csv
from ceag.present.footprint import pruning_label
from ceag.present.glossary import GLOSSARY
from ceag.present.plots.groups import generalization, generalization_summary
from ceag.present.words import criterion_label
from ceag.results.predictions import stored_predictions
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import CHART_CONFIG, empty_store_hint, results_dir, run_labels, store_version

SHOWN_WITHOUT_SELECTION = 30


@st.cache_data(show_spinner=False, max_entries=256)
def run_detectable_gaps(results: str, version: tuple, run_id: str) -> pd.DataFrame:
    """``verdicts.detectable_gaps`` of one run's stored predictions (empty for a run made before they were kept)."""
    frame = stored_predictions(results, run_id)
    return pd.DataFrame(columns=["split", "group_id", "n", "min_detectable_gap"]) if frame is None \
        else detectable_gaps(frame)


def with_detectable_gaps(gen: pd.DataFrame) -> pd.DataFrame:
    """``gen`` with train_ and test_min_detectable_gap per run and group (NaN where unknown)."""
    results = results_dir()
    parts = [run_detectable_gaps(str(results), store_version(results), rid).assign(run_id=rid)
             for rid in dict.fromkeys(gen["run_id"])]
    gaps = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    out = gen.copy()
    for split in ("train", "test"):
        mine = gaps[gaps["split"] == split] if not gaps.empty else gaps
        lookup = {} if mine.empty else dict(zip(zip(mine["run_id"], mine["group_id"], strict=True),
                                                 mine["min_detectable_gap"], strict=True))
        out[f"{split}_min_detectable_gap"] = [lookup.get((r, g), float("nan"))
                                              for r, g in zip(out["run_id"], out["group_id"], strict=True)]
    return out

_state.restore()
st.title("Train versus test excess gaps")
runs = store.runs(status="finished")
if runs.empty:
    empty_store_hint()
    st.stop()

selection = _state.selected_runs()
datasets = sorted(runs["dataset"].unique())
# A selection decides the dataset first shown; the view's own choice wins once made.
first = runs.loc[runs.run_id.isin(selection), "dataset"]
dataset = _state.widget(st.selectbox, "dataset", "Dataset", default=first.iloc[0] if len(first) else datasets[0],
                        options=datasets)
pool = runs[runs.dataset == dataset].sort_values(["method", "sparsity", "tolerance", "seed"])
labels = run_labels(pool)
picked = st.multiselect("Runs", list(labels), default=[r for r in selection if r in labels],
                        format_func=labels.get, help="The selection, carried to every page.",
                        key=f"generalization_runs_{hash(tuple(selection)) & 0xFFFFFFFF:x}")
if sorted(picked) != sorted(r for r in selection if r in labels):
    # Selected runs of other datasets stay selected.
    _state.select_runs([r for r in selection if r not in labels] + picked)
    st.rerun()
if picked:
    chosen = picked
else:
    chosen = list(pool["run_id"])[:SHOWN_WITHOUT_SELECTION]
    st.caption(f"No run of {dataset} is selected: showing {len(chosen)} of its {len(pool)} finished runs. "
               "Pick runs above to select them.")

gen = store.generalization(run_ids=chosen)
if gen["test_excess_gap"].isna().all():
    st.info("These runs have no test split to compare with.")
    st.stop()
tolerances = gen["tolerance"].dropna().unique()
st.caption("Each point is one group of one run; size grows with the group's training-set size. Above the "
           "diagonal, the group lost more on test than on train: the constraint did not generalize to it.")
st.plotly_chart(generalization(gen, float(tolerances[0]) if len(tolerances) == 1 else None),
                config=CHART_CONFIG, width="stretch")

st.subheader("Per method: mean max_g ψ_g on train and test")
summary = generalization_summary(gen)
shown = summary.assign(method=summary["method"].map(METHOD_LABELS))
if "pruning" in summary:
    shown["pruning"] = summary["pruning"].map(pruning_label)
if "criterion" in summary:
    shown["criterion"] = [criterion_label(c, m) for c, m in zip(summary["criterion"], summary["method"], strict=True)]
cols = ["train_max_excess_gap", "test_max_excess_gap", "gap"]
shown[cols] = 100 * shown[cols]
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f pts") for c in cols})

st.subheader("Per group")
gen = with_detectable_gaps(gen)
table = gen.copy()
pct = ["train_excess_gap", "test_excess_gap", "train_acc_gap", "test_acc_gap", "train_min_detectable_gap",
       "test_min_detectable_gap"]
table[pct] = 100 * table[pct]
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(
                 format="%.2f", help=GLOSSARY["min detectable gap"] if "detectable" in c else None) for c in pct})
st.download_button("Download per-group table (CSV)", write_csv(gen), file_name="generalization.csv",
                   mime="text/csv")
