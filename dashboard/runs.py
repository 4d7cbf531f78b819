"""Runs: every run with its status; the selection carries to the other pages; downloads."""

import io

import pandas as pd
import streamlit as st

from ceag.config.vocabulary import METHOD_LABELS
from ceag.present.csv_export import write_csv
from ceag.present.sentences.data import data_accounts
from ceag.present.words import CRITERION_HELP, OWN_MASKS, criteria_of, criterion_label
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import empty_store_hint, results_dir, sync_store

# (column, label, help): the reported epoch's metrics, in % (accuracy) and points (gaps).
METRICS = [(f"{split}_{m}", f"{split} {label}", f"{text} on {split}, at the reported epoch.")
           for m, label, text in (("accuracy", "acc (%)", "Accuracy of the pruned model"),
                                  ("max_excess_gap", "max_g ψ_g", "The worst group's excess gap, in points"),
                                  ("psi_pw", "Ψ_PW", "The largest difference of two groups' accuracy loss, in points"))
           for split in ("train", "test")]
COLUMN_HELP = {
    **{label: st.column_config.Column(help=text) for _, label, text in METRICS},
    "epoch": st.column_config.Column(help="The epoch whose metrics are reported: the last one, or for NFT+ES its "
                                          "best validation iterate."),
    "progress": st.column_config.Column(help="How far a run that has not finished got."),
    "criterion": st.column_config.Column(help=f"{CRITERION_HELP} {OWN_MASKS}: FairGRAPE's own masks."),
}


def criterion_labels(frame: pd.DataFrame) -> pd.Series:
    """Each run's pruning criterion as written for people (FairGRAPE: its own group importance)."""
    return pd.Series([criterion_label(c, m) for c, m in zip(criteria_of(frame), frame["method"], strict=True)],
                     index=frame.index, dtype=object)


def runs_view(frame: pd.DataFrame):
    """The table as shown: metrics in % / points, missing values blank (never "None"), sortable by every column."""
    out = frame[["run_id", "status", "dataset", "model"]].copy()
    out["method"] = frame["method"].map(lambda m: METHOD_LABELS.get(m, m))
    out["criterion"] = criterion_labels(frame)
    for col in ("sparsity", "tolerance", "seed"):
        out[col] = frame[col]
    for col, label, _ in METRICS:
        out[label] = 100 * frame[col]
    done = frame["status"].isin(["finished", "diverged"])
    out["epoch"] = frame["reported_epoch"].where(done)
    progress = frame["progress_epoch"].astype("string") + " of " + frame["total_epochs"].astype("string")
    out["progress"] = progress.where(~done & frame["progress_epoch"].notna(), "")
    out["wall (s)"] = frame["wall_seconds"]
    out["achieved sparsity"] = frame["achieved_sparsity"]
    out["device"] = frame["device"].fillna("")
    out["reason"] = frame["reason"].fillna("")
    out["data"] = frame["data"]
    out["skipped rows"] = frame["skipped_rows"]
    formats = {label: "{:.1f}" for _, label, _ in METRICS}
    formats.update({"sparsity": "{:g}", "tolerance": "{:g}", "seed": "{:.0f}", "epoch": "{:.0f}",
                    "wall (s)": "{:.1f}", "achieved sparsity": "{:.4f}",
                    "skipped rows": "{:.0f}"})
    return out.style.format(formats, na_rep="")


_state.restore()
st.title("Runs")
for problem in sync_store():
    st.warning(problem)
runs = store.runs_table()
if runs.empty:
    empty_store_hint()
    st.stop()

c1, c2, c3, c4 = st.columns(4)
datasets = _state.widget(c1.multiselect, "runs_dataset", "Dataset", default=[], options=sorted(runs.dataset.unique()))
methods = _state.widget(c2.multiselect, "runs_method", "Method", default=[], options=sorted(runs.method.unique()),
                        format_func=lambda m: METHOD_LABELS.get(m, m))
runs = runs.assign(criterion_label=criterion_labels(runs))
criteria = _state.widget(c3.multiselect, "runs_criterion", "Pruning criterion", default=[],
                         options=sorted(runs.criterion_label.unique()), help=CRITERION_HELP)
statuses = _state.widget(c4.multiselect, "runs_status", "Status", default=[], options=sorted(runs.status.unique()))
keep = runs.run_id.notna()
for column, values in (("dataset", datasets), ("method", methods), ("criterion_label", criteria),
                       ("status", statuses)):
    if values:
        keep &= runs[column].isin(values)
shown = runs[keep].reset_index(drop=True)
selection = _state.selected_runs()
known = set(runs.run_id)
st.caption(f"{len(shown)} of {len(runs)} runs. Select rows to carry them to the other pages.")

# The table's own selection state is keyed by the view's selection, so a selection made on another
# page (or by a link) shows here as ticked rows, and a tick here changes the view's selection.
preselected = [i for i, r in enumerate(shown.run_id) if r in set(selection)]
shown = shown.assign(data=shown.data_fingerprint.fillna("fingerprint unknown"))
for row in shown[shown.data_warning.notna()].itertuples():
    st.warning(f"Run {row.run_id} ({row.dataset}): {row.data_warning}. Its group numbers rest on fewer rows than "
               "the data folder holds.")
left_out = data_accounts(shown)
if left_out:
    folders = len({(item["dataset"], item["fingerprint"]) for item in left_out})
    with st.expander(f"How the data was read and what loading left out: {folders} data folder(s) of the runs "
                     "shown"):
        for item in left_out:
            st.markdown(f"**{item['dataset']}** · data {item['fingerprint']} · {len(item['run_ids'])} run(s): "
                        + "; ".join(item["lines"] + item["notes"]))

event = st.dataframe(runs_view(shown), hide_index=True, width="stretch", on_select="rerun",
                     selection_mode="multi-row", column_config=COLUMN_HELP, placeholder="",
                     key=f"runs_table_{hash((tuple(selection), tuple(shown.run_id))) & 0xFFFFFFFF:x}",
                     selection_default={"selection": {"rows": preselected}} if preselected else None)
rows = (event or {}).get("selection", {}).get("rows", [])
if sorted(rows) != preselected:
    hidden = [r for r in selection if r not in set(shown.run_id)]  # selected runs the filters hide stay selected
    _state.select_runs(hidden + list(shown.run_id.iloc[sorted(rows)]))
    st.rerun()
chosen = [r for r in _state.selected_runs() if r in known]
missing = [r for r in _state.selected_runs() if r not in known]
if missing:
    st.warning(f"{len(missing)} selected run(s) are not in this store: {', '.join(missing[:5])}"
               + (" …" if len(missing) > 5 else ""))
if not chosen:
    st.info("Select runs to download their metrics or predictions.")
    st.stop()

hidden = len([r for r in chosen if r not in set(shown.run_id)])
st.subheader(f"{len(chosen)} selected")
if hidden:
    st.caption(f"{hidden} of them hidden by the filters above.")
if st.button("Clear the selection", icon=":material/deselect:"):
    _state.select_runs([])
    st.rerun()
final = store.export_table(table="final", run_ids=chosen)
c1, c2 = st.columns(2)
c1.download_button("Per-group metrics (CSV)", write_csv(final), file_name="ceag_metrics.csv",
                   mime="text/csv")
buffer = io.BytesIO()
final.to_parquet(buffer, index=False)
c2.download_button("Per-group metrics (Parquet)", buffer.getvalue(), file_name="ceag_metrics.parquet",
                   mime="application/octet-stream")

st.subheader("Per-sample predictions")
c1, c2 = st.columns(2)
run_id = c1.selectbox("Run", chosen)
split = c2.selectbox("Split", ["test", "train", "val"])
if st.button("Prepare predictions"):
    from ceag.results.predictions import RunNotFound, predictions

    try:
        frame = predictions(results_dir(), run_id, split)
    except (RunNotFound, ValueError) as err:
        st.error(str(err))
    else:
        st.download_button(f"Download predictions of {run_id} on {split} (CSV)", write_csv(frame),
                           file_name=f"predictions_{run_id}_{split}.csv", mime="text/csv")
        st.caption(f"One row per {split} sample, columns {', '.join(frame.columns)}: p_pred is the probability "
                   "of y_pred, dense_pred and dense_p_pred the dense model's. y_true, y_pred and group (as "
                   "sensitive_features) go straight into Fairlearn's MetricFrame.")
