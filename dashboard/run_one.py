"""Run one experiment on the embedded demo data and show its per-group numbers."""

import pandas as pd
import streamlit as st

from ceag.analysis.verdicts import detectable_gaps
from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import CRITERIA, METHOD_LABELS, METHODS, PRUNING
from ceag.datasets import DatasetError, available
from ceag.datasets.checks import custom_columns
from ceag.present.glossary import GLOSSARY
from ceag.present.plots.groups import excess_gap_bars
from ceag.present.sentences.data import skip_lines
from ceag.present.sentences.trust import summary_line
from ceag.present.words import (
    CRITERION_HELP,
    DEFAULT_CRITERION,
    FAIRGRAPE_HELP,
    PRUNING_HELP,
    criterion_label,
    own_masks,
    sentence,
)
from ceag.results.predictions import stored_predictions
from ceag.run.pipeline import run
from dashboard import _state
from dashboard._forms import NumberFields
from dashboard._shared import data_dir, results_dir
from dashboard._speed import show_footprint

_state.restore()
st.title("Run one experiment")
results = results_dir()
st.caption(
    "Prune a small MLP on scikit-learn's 8×8 digits (digit 8 is rare in the training split), or a small CNN "
    "on your own labelled images when the data folder holds a labels.csv, and fine-tune it with a method. "
    "ψ_g, a group's excess accuracy gap, is how much more accuracy "
    "the group lost to pruning than the model as a whole; CEAG keeps every ψ_g below ε on train."
)

data = {}
if "custom" in available(data_dir()):
    source = st.radio("Data", ["digits", "custom"], horizontal=True,
                      format_func={"digits": "8×8 digits", "custom": f"your labelled images in {data_dir()}"}.get)
    if source == "custom":
        try:
            columns = custom_columns(data_dir())
        except DatasetError as err:
            st.error(str(err))
            st.stop()
        c1, c2, c3 = st.columns(3)
        data = dict(dataset="custom", model="cnn", data_dir=str(data_dir()), target=c1.selectbox("Target", columns),
                    groups=tuple(c2.multiselect("Protected groups", columns, default=columns[-1:])),
                    image_size=int(c3.number_input("Image size (pixels)", 8, 256, 32)))

with st.form("run"):
    c1, c2, c3, c4 = st.columns(4)
    numbers = NumberFields()
    method = _state.widget(c1.selectbox, "one_method", "Method", default="ceag", options=list(METHODS),
                           format_func=METHOD_LABELS.get, help=FAIRGRAPE_HELP)
    sparsity = numbers.field(c2.text_input, "one_sparsity", "Sparsity", default=0.95, kind=float, lo=0.0, hi=1.0,
                             hi_open=True, help="Fraction of weights removed.")
    tolerance = numbers.field(c3.text_input, "one_tolerance", "Tolerance ε (CEAG)", default=0.02, kind=float,
                              lo=0.0, hi=1.0, help="Largest excess accuracy gap ψ_g allowed, as a fraction.")
    seed = numbers.field(c4.text_input, "one_seed", "Seed", default=0, kind=int, lo=0, hi=2**31 - 1)
    c1, c2, _, _ = st.columns(4)
    criterion = _state.widget(c1.selectbox, "one_criterion", "Pruning criterion", default=DEFAULT_CRITERION,
                              options=list(CRITERIA), format_func=criterion_label,
                              help=f"{CRITERION_HELP} FairGRAPE chooses its own masks: leave it at magnitude.")
    pruning = _state.widget(c2.selectbox, "one_pruning", "Pruning", default="unstructured", options=list(PRUNING),
                            help=PRUNING_HELP)
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    for message in numbers.errors:
        st.error(message)
    if numbers.errors:  # nothing runs, and the previous result is not passed off as this one
        st.session_state.pop("last_result", None)
        st.stop()
    try:
        cfg = RunConfig(method=method, sparsity=sparsity, tolerance=tolerance, seed=seed, criterion=criterion,
                        pruning=pruning, **data)
    except ConfigError as err:
        st.error(str(err))
        st.session_state.pop("last_result", None)
        st.stop()
    with st.spinner("Training (a few seconds; finished runs load from the cache)…"):
        try:
            st.session_state["last_result"] = run(cfg, results)
        except DatasetError as err:
            st.error(str(err))
            st.stop()
        except OSError as err:  # e.g. the results folder cannot be written
            st.error(f"The run could not be written to {results}: {err}")
            st.session_state.pop("last_result", None)
            st.stop()

result = st.session_state.get("last_result")
if result is None:
    st.info("Choose a setting and press **Run**.")
    st.stop()

info = result.to_json()
chosen = result.config
pruned = ("" if own_masks(chosen.method) or (chosen.criterion == DEFAULT_CRITERION and chosen.pruning == "unstructured")
          else f", pruned by {criterion_label(chosen.criterion)} ({chosen.pruning})")
st.subheader(f"{METHOD_LABELS[info['method']]} at {100 * info['sparsity']:.0f}% sparsity"
             + ("" if info["tolerance"] is None else f", ε = {100 * info['tolerance']:.1f}%") + pruned)
took = "loaded from cache" if result.cached else f"{info['wall_seconds']:.1f} s"
st.caption(f"run {info['run_id']} · {took}"
           f" · achieved sparsity {100 * info['achieved_sparsity']:.1f}% · reported epoch {info['reported_epoch']}")
if info["status"] != "finished":
    st.warning(f"This run {info['status']}: {info.get('reason')}")
skips = skip_lines({"skipped": info.get("skipped_files"), "lost_by_group": info.get("skipped_by_group"),
                    "rows_read": info.get("rows_read")})
if skips:
    st.caption(" · ".join([*skips, f"data {info.get('data_fingerprint') or 'fingerprint unknown'}"]))
for warning in info.get("data_warnings") or []:
    st.warning(warning)
for text in summary_line(info.get("diagnostics")):
    if text.startswith("warning: "):
        st.warning(sentence(text.removeprefix("warning: ")))

cols = st.columns(len(result.splits))
frames = []
for col, split in zip(cols, result.splits, strict=True):
    row, groups = result.final(split)
    col.metric(f"{split} accuracy", f"{100 * row['accuracy']:.1f}%",
               f"{100 * (row['accuracy'] - row['dense_accuracy']):+.1f} vs dense")
    col.metric(f"{split} max ψ_g", f"{100 * row['max_excess_gap']:.1f} pts")
    col.metric(f"{split} Ψ_PW", f"{100 * row['psi_pw']:.1f} pts")
    frames.append(groups)

table = pd.concat(frames)
st.plotly_chart(excess_gap_bars(table, info["tolerance"]), width="stretch")
shown = table[["split", "group_name", "n", "accuracy", "dense_accuracy", "acc_gap", "excess_gap"]].copy()
predicted = stored_predictions(results, info["run_id"])
gaps = pd.DataFrame(columns=["split", "group_id", "min_detectable_gap"]) if predicted is None \
    else detectable_gaps(predicted)
lookup = dict(zip(zip(gaps["split"], gaps["group_id"], strict=True), gaps["min_detectable_gap"], strict=True))
shown["min_detectable_gap"] = [lookup.get((sp, g), float("nan"))
                               for sp, g in zip(table["split"], table["group_id"], strict=True)]
numbers = ("accuracy", "dense_accuracy", "acc_gap", "excess_gap", "min_detectable_gap")
for c in numbers:
    shown[c] = 100 * shown[c]
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(
                 format="%.1f", help=GLOSSARY["min detectable gap"] if c == "min_detectable_gap" else None)
                 for c in numbers})
show_footprint(info.get("footprint"), info["run_id"], str(results))
