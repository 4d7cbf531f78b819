"""Frontiers: accuracy against Ψ_PW and against max_g ψ_g, one colour per method."""

import streamlit as st

from ceag import plots
from pages._shared import CHART_CONFIG, empty_store_hint, query, seeded, select_runs, selected_runs, set_param

st.title("Accuracy–disparity frontiers")
overview = query("overview")
if overview.empty:
    empty_store_hint()
    st.stop()

datasets = sorted(overview["dataset"].unique())
c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
dataset = c1.selectbox("Dataset", datasets, key=seeded("dataset", datasets))
models = ["all", *sorted(overview.loc[overview.dataset == dataset, "model"].unique())]
model = c2.selectbox("Model", models, key=seeded("model", models))
splits = ["test", "train", "val"]
split = c3.radio("Split", splits, key=seeded("split", splits), horizontal=True)
show_diverged = c4.toggle("Include diverged runs", key=seeded("diverged", [False, True]),
                          help="Runs whose loss or multipliers blew up; drawn with open markers.")
for key, value in (("dataset", dataset), ("model", model), ("split", split), ("diverged", show_diverged)):
    set_param(key, value)

summary = query("frontier_summary", dataset=dataset, model=None if model == "all" else model, split=split,
                include_diverged=show_diverged)
if summary.empty:
    st.info(f"No finished runs with a {split} split for {dataset}" + ("" if model == "all" else f"/{model}") + ".")
    st.stop()

st.caption("Each point is a (method, sparsity, tolerance) cell: the mean across seeds, with ± one standard "
           "deviation when there are several. Click a point to select its runs for the other pages.")
chosen: list[str] = []
for col, metric in zip(st.columns(2), ("psi_pw", "max_excess_gap"), strict=True):
    with col:
        fig = plots.frontier(summary, metric, split=split)
        event = st.plotly_chart(fig, key=f"frontier_{metric}", on_select="rerun", selection_mode="points",
                                config=CHART_CONFIG, width="stretch")
        for point in (event or {}).get("selection", {}).get("points", []):
            data = point.get("customdata")
            if data:
                chosen += str(data[0]).split(",")
if chosen:
    select_runs(chosen)
if selected_runs():
    st.success(f"Selected runs: {', '.join(selected_runs())}")
    links = st.columns(3)
    links[0].page_link("pages/multipliers.py", label="Multipliers of the selection", icon=":material/show_chart:",
                       query_params={"runs": ",".join(selected_runs())})
    links[1].page_link("pages/generalization.py", label="Generalization of the selection",
                       icon=":material/compare_arrows:", query_params={"runs": ",".join(selected_runs())})
    links[2].page_link("pages/runs.py", label="Table of the selection", icon=":material/table_rows:",
                       query_params={"runs": ",".join(selected_runs())})

table = summary.drop(columns=["run_ids"]).copy()
pct = [c for c in table.columns if c.startswith(("accuracy", "max_excess_gap", "psi_pw", "dense_accuracy"))]
table[pct] = 100 * table[pct]
table["method"] = table["method"].map(plots.METHOD_LABELS)
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in pct})
st.download_button("Download this table (CSV)", summary.drop(columns=["run_ids"]).to_csv(index=False),
                   file_name=f"frontier_{dataset}_{split}.csv", mime="text/csv")
