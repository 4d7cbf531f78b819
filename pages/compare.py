"""Compare: how each chosen run treats each group, with bootstrap intervals, sentences and the audit report."""

import pandas as pd
import streamlit as st

from ceag.audit import Audit, audit, comparable_setting, confidence_label, default_comparison, sentences
from ceag.bootstrap import BootstrapSettings
from ceag.plots import AUDIT_METRICS, audit_run_labels, group_interval_bars
from ceag.report import render_html
from ceag.sentences import GLOSSARY
from pages import _state
from pages._shared import CHART_CONFIG, empty_store_hint, query, results_dir, run_labels, store_version, sync_store


@st.cache_data(show_spinner="Bootstrapping intervals…", max_entries=32)
def cached_audit(results: str, version: tuple, run_ids: tuple, n_boot: int, confidence: float) -> Audit:
    return audit(results, list(run_ids), BootstrapSettings(n_boot=n_boot, confidence=confidence))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_report(results: str, version: tuple, run_ids: tuple, n_boot: int, confidence: float) -> str:
    return render_html(cached_audit(results, version, run_ids, n_boot, confidence))


def pick(column, label: str, options: list, preferred, **kwargs):
    """A selectbox keyed in the session: it keeps the user's choice; ``preferred`` when it has none (or a stale one)."""
    key = f"compare_{label.lower()}"
    if st.session_state.get(key) not in options:
        st.session_state[key] = preferred if preferred in options else options[0]
    return column.selectbox(label, options, key=key, **kwargs)


SETTING_KEY = "compare_setting"
_state.restore()
st.title("Compare runs group by group")
sync_store()
runs = query("runs")
finished = runs[runs.status == "finished"]
if finished.empty:
    empty_store_hint()
    st.stop()
labels = run_labels(finished)
chosen = [r for r in _state.selected_runs() if r in labels]
row = finished[finished.run_id == chosen[0]].iloc[0] if chosen else comparable_setting(finished)
nothing_to_pair = row is None
row = finished.iloc[0] if row is None else row

c = st.columns(4)
dataset = pick(c[0], "Dataset", sorted(finished.dataset.unique()), row.dataset)
part = finished[finished.dataset == dataset]
model = pick(c[1], "Model", sorted(part.model.unique()), row.model)
part = part[part.model == model]
sparsity = pick(c[2], "Sparsity", sorted(part.sparsity.unique()), row.sparsity, format_func=lambda s: f"{100 * s:g} %")
seed = pick(c[3], "Seed", sorted(part[part.sparsity == sparsity].seed.unique()), row.seed)
default = default_comparison(finished, dataset=dataset, model=model, sparsity=sparsity, seed=seed)
setting = (dataset, model, float(sparsity), int(seed))
if st.session_state.get(SETTING_KEY, setting) != setting or len(chosen) < 2:
    chosen = default  # a new setting (or no selection): NFT against CEAG at each tolerance there
st.session_state[SETTING_KEY] = setting
with st.expander("Runs and intervals", expanded=nothing_to_pair):
    picked = st.multiselect("Runs (two or more)", list(labels), default=chosen, format_func=labels.get)
    if picked != chosen:
        chosen = picked
    c = st.columns(2)
    n_boot = c[0].number_input("Bootstrap resamples", 100, 20000, 1000, step=100)
    confidence = c[1].selectbox("Interval", [0.9, 0.95, 0.99], index=1, format_func=lambda x: f"{100 * x:g} %")
_state.select_runs(chosen)

if len(chosen) < 2:
    st.info("Choose two or more finished runs under **Runs and intervals** (this setting has no NFT and CEAG "
            "runs to pair by default).")
    st.stop()
args = (str(results_dir()), store_version(results_dir()), tuple(chosen), int(n_boot), float(confidence))
result = cached_audit(*args)
for note in result.notes:
    st.warning(note)
st.markdown("\n".join(f"- {s}" for s in sentences(result)))

metric = st.radio("Show", list(AUDIT_METRICS), format_func=AUDIT_METRICS.get, horizontal=True)
st.plotly_chart(group_interval_bars(result.groups, metric), width="stretch", config=CHART_CONFIG)

names = audit_run_labels(result.groups)
ci = confidence_label(result.settings)
g = result.groups
table = {"run": g.run_id.map(names), "split": g.split, "group": g.group_name, "n": g.n,
         "dense acc (%)": 100 * g.dense_accuracy, "acc (%)": 100 * g.accuracy}
for col, name in (("accuracy", "acc"), ("acc_gap", "Δ_g"), ("excess_gap", "ψ_g")):
    if col != "accuracy":
        table[name] = 100 * g[col]
    table[f"{name} {ci} low"], table[f"{name} {ci} high"] = 100 * g[f"{col}_low"], 100 * g[f"{col}_high"]
numbers = [k for k in table if k not in ("run", "split", "group", "n")]
table["ψ_g interval contains ε"] = g.indistinguishable
st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(format="%.1f") for k in numbers})
c = st.columns(2)
c[0].download_button("Audit report (HTML, opens offline)", cached_report(*args), file_name="ceag_audit.html",
                     mime="text/html", icon=":material/download:")
c[1].download_button("Per-group table (CSV)", result.csv_table().to_csv(index=False), file_name="ceag_audit.csv",
                     mime="text/csv")
with st.expander("What the symbols mean"):
    st.markdown("\n".join(f"- **{k}**: {v}" for k, v in GLOSSARY.items()))
