"""Frontiers: accuracy against Ψ_PW and against max_g ψ_g, one colour per method, shaded per pruning criterion; then
speed (or MACs, or size) against the dense model, against max_g ψ_g and accuracy."""

import streamlit as st

from ceag.analysis.seed_cache import attach_to_cells
from ceag.config.vocabulary import CRITERIA, METHOD_LABELS
from ceag.present.csv_export import write_csv
from ceag.present.plots.frontier import frontier, frontier_table
from ceag.present.words import CRITERION_HELP, criteria_of, criterion_label, names_criteria, own_masks, sentence
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import CHART_CONFIG, empty_store_hint
from dashboard._speed import speed_section

VERSUS_CONFIDENCE = 0.95  # store_comparisons' default
# Side by side on a wide screen; below this viewport width the two charts stack.
STACK_BELOW_PX = 1280
st.markdown(f"""<style>
@media (max-width: {STACK_BELOW_PX}px) {{
  .st-key-frontier_charts [data-testid="stHorizontalBlock"] {{ flex-direction: column; }}
  .st-key-frontier_charts [data-testid="stColumn"] {{ width: 100% !important; flex: 1 1 100% !important; }}
}}</style>""", unsafe_allow_html=True)

_state.restore()
st.title("Accuracy–disparity frontiers")
overview = store.overview()
if overview.empty:
    empty_store_hint()
    st.stop()

datasets = sorted(overview["dataset"].unique())
c1, c2, c3 = st.columns(3)
dataset = _state.widget(c1.selectbox, "dataset", "Dataset", default=datasets[0], options=datasets)
models = ["all", *sorted(overview.loc[overview.dataset == dataset, "model"].unique())]
model = _state.widget(c2.selectbox, "model", "Model", default="all", options=models)
split = _state.widget(c3.radio, "split", "Split", default="test", options=["test", "train", "val"], horizontal=True)
c1, c2, c3 = st.columns(3)
show_diverged = _state.widget(c1.toggle, "diverged", "Include diverged runs", default=False,
                              help="Runs whose loss or multipliers blew up; drawn with open markers.")
toggles = c2  # "Clip outliers" goes beside it, once the summary is known
summary = store.frontier_summary(dataset=dataset, model=None if model == "all" else model, split=split,
                include_diverged=show_diverged)
if summary.empty:
    st.info(f"No finished runs with a {split} split for {dataset}" + ("" if model == "all" else f"/{model}") + ".")
    st.stop()

pruned_by = criteria_of(summary).where(~summary.method.map(own_masks))  # FairGRAPE: its own masks, no criterion
present = [c for c in CRITERIA if c in set(pruned_by)] + sorted(set(pruned_by.dropna()) - set(CRITERIA))
show_criteria = len(present) > 1 or names_criteria(summary)
c1, *cc, c2, c3 = st.columns(4 if show_criteria else 3)
methods = _state.widget(c1.multiselect, "methods", "Methods", default=[], options=list(dict.fromkeys(summary.method)),
                        format_func=lambda m: METHOD_LABELS.get(m, m), placeholder="all")
criteria = (_state.widget(cc[0].multiselect, "criteria", "Pruning criteria", default=[], options=present,
                          format_func=criterion_label, placeholder="all",
                          help=CRITERION_HELP + " FairGRAPE chooses its own masks: always shown.")
            if show_criteria else [])
sparsities = _state.widget(c2.multiselect, "sparsities", "Sparsities", default=[],
                           options=sorted(summary.sparsity.unique()), format_func=lambda s: f"{s:g}", placeholder="all")
tolerances = _state.widget(c3.multiselect, "tolerances", "Tolerances ε (CEAG)", default=[],
                           options=sorted(summary.tolerance.dropna().unique()), format_func=lambda t: f"{100 * t:g}%",
                           placeholder="all", help="Methods without a tolerance are always shown.")
clip = _state.widget(toggles.toggle, "clip", "Clip outliers", default=False,
                     help="Zoom to the bulk of the points; points outside are drawn on the edge as arrows.")
keep = summary.method.notna()
if methods:
    keep &= summary.method.isin(methods)
if sparsities:
    keep &= summary.sparsity.isin(sparsities)
if tolerances:
    keep &= summary.tolerance.isna() | summary.tolerance.isin(tolerances)
if criteria:
    keep &= pruned_by.isna() | pruned_by.isin(criteria)
summary = summary[keep].reset_index(drop=True)
if summary.empty:
    st.info("No cell matches these filters.")
    st.stop()
with st.spinner("Comparing each mitigation with NFT across seeds…"):
    versus, versus_notes = store.seed_comparisons(dataset=dataset, splits=(split,))
summary = attach_to_cells(summary, versus, split)
unsettled = int(summary["unsettled"].sum()) if "unsettled" in summary else 0
if unsettled:
    in_view = {r for ids in summary["run_ids"] for r in ids}
    runs = store.runs(dataset=dataset)
    flagged = runs[runs.run_id.isin(in_view) & (runs.converged == False)]  # noqa: E712 (NULL: unknown)
    advice = " ".join(dict.fromkeys(sentence(a.split("; ", 1)[-1]) for a in flagged.advice.dropna()))
    st.warning(f"{unsettled} of {int(summary['seeds'].sum())} runs in this view did not settle: their metrics still "
               f"moved over the last fifth of fine-tuning, so their points are one draw. {advice} See **Curves**.")

st.caption("Each point is a (method, " + ("pruning criterion, " if names_criteria(summary) else "")
           + "sparsity, tolerance) cell: the mean across seeds, with ± one standard "
           "deviation when there are several. Its tooltip and the table compare it with NFT on the same seeds"
           + (" pruned by the same criterion (FairGRAPE: by magnitude)" if names_criteria(summary) else "") + ": the "
           f"mean difference, its {100 * VERSUS_CONFIDENCE:g} % interval over seeds and samples, and whether that "
           "is more than chance. Click a point, or drag a box or lasso (toolbar), to select its runs for the other "
           "pages.")
if versus_notes:
    st.warning("\n".join(f"- {note}" for note in versus_notes))
chosen: list[str] = []
# Charts are keyed by what they show, so a selection made on one view never applies to another.
view_key = abs(hash((dataset, model, split, show_diverged, tuple(methods), tuple(sparsities), tuple(tolerances),
                     tuple(criteria), clip))) & 0xFFFFFFFF
with st.container(key="frontier_charts"):
    for col, metric in zip(st.columns(2), ("psi_pw", "max_excess_gap"), strict=True):
        with col:
            fig = frontier(summary, metric, split=split, clip=clip)
            event = st.plotly_chart(fig, key=f"frontier_{metric}_{view_key:x}", on_select="rerun",
                                    selection_mode=("points", "box", "lasso"), config=CHART_CONFIG, width="stretch")
            for point in (event or {}).get("selection", {}).get("points", []):
                data = point.get("customdata")
                if data:
                    chosen += str(data[0]).split(",")
if chosen and sorted(set(chosen)) != sorted(_state.selected_runs()):
    _state.select_runs(chosen)
selection = _state.selected_runs()
if selection:
    st.success(f"{len(selection)} selected run(s): {', '.join(selection[:8])}" + (" …" if len(selection) > 8 else ""))
    links = st.columns(4)
    links[0].page_link("dashboard/multipliers.py", label="Multipliers of the selection", icon=":material/show_chart:")
    links[1].page_link("dashboard/generalization.py", label="Generalization of the selection",
                       icon=":material/compare_arrows:")
    links[2].page_link("dashboard/runs.py", label="Table of the selection", icon=":material/table_rows:")
    links[3].page_link("dashboard/casualties.py", label="What pruning broke", icon=":material/broken_image:",
                       query_params={"gallery": selection[0]})

table = frontier_table(summary, split)
numeric = [c for c in table.columns if c.endswith(("(%)", "(points)"))]
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in numeric})
st.download_button("Download this table (CSV)", write_csv(table),
                   file_name=f"frontier_{dataset}_{split}.csv", mime="text/csv")

speed_section(dataset=dataset, model=None if model == "all" else model, split=split, methods=methods,
              sparsities=sparsities, tolerances=tolerances, criteria=criteria)
