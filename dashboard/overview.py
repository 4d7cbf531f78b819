"""Overview: the story of the store told from its numbers, what the words mean, and the demo for an empty store."""

import numpy as np
import pandas as pd
import streamlit as st

from ceag.config.presets import preset
from ceag.grid import jobs
from ceag.present.footprint import pruning_label
from ceag.present.glossary import GLOSSARY
from ceag.present.plots.frontier import overview_chart
from ceag.present.sentences.overview import bounds_from, overview_story
from ceag.present.words import criterion_label
from dashboard import _state
from dashboard import _store as store
from dashboard._jobs import job_card
from dashboard._shared import CHART_CONFIG, results_dir

_state.restore()
st.title("The disparate impact of pruning")
results = results_dir()
overview = store.overview()


def glossary(terms=None) -> str:
    """The glossary as a Markdown list (``terms``: a subset, in GLOSSARY's order)."""
    return "\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY.items() if terms is None or term in terms)


def tip(*terms: str) -> str:
    """Tooltip text defining ``terms`` (GLOSSARY keys)."""
    return "\n\n".join(f"**{term}**: {GLOSSARY[term]}" for term in terms)


INTRO = ("Pruning removes most of a network's weights, then fine-tunes what is left; some groups pay more than "
         "others. **NFT** fine-tunes naively, **NFT+ES** keeps its best validation iterate, **EL+RB** equalizes "
         "group losses, and **CEAG** fine-tunes under one constraint per group, ψ_g ≤ ε. Gaps are in percentage "
         "points; read them next to accuracy, since a collapsed model can look fair.")
if overview.empty:  # nothing else to read yet: the explanation opens
    with st.expander("What the numbers mean", expanded=True):
        st.markdown(INTRO + "\n\n" + glossary())


def _heading(criterion: str | None, kind: str | None) -> str:
    """The heading of one telling of the story: the pruning criterion and kind where they are named, else none."""
    said = ([f"by {criterion_label(criterion)}"] if criterion else []) + ([pruning_label(kind)] if kind else [])
    return f"**Pruned {', '.join(said)}**\n\n" if said else ""


def percents(fractions) -> str:
    """0.9, 0.95, 0.98 -> '90, 95 and 98'."""
    words = [f"{100 * f:g}" for f in fractions]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


@st.fragment(run_every=1.0)
def live_jobs(store_empty: bool) -> None:
    """The jobs running in this results folder (found from the folder, not the URL) and the one followed.

    Redraws the whole page when a job starts or ends (and, on an empty store, when a run lands),
    so results show without a reload.
    """
    active = [j for j in jobs.list_jobs(results, limit=50) if j.get("state") in jobs.ACTIVE]
    followed = _state.get("job")
    shown = list(active)
    if followed and followed not in {j["job_id"] for j in active}:
        job = jobs.job_state(results, followed)
        if job["state"] == "unknown":
            st.warning(f"Job {followed} is unknown in {results}: it has no progress feed there (a link from "
                       "another results folder or machine, or a job whose folder was removed).")
        else:
            shown.insert(0, job)
    for job in shown:
        job_card(job, results)
    done = sum(int(j.get(s) or 0) for j in active for s in ("cached", "finished", "diverged", "failed"))
    signature = (tuple(sorted(j["job_id"] for j in active)), done if store_empty else None)
    before = st.session_state.get("overview_jobs")
    st.session_state["overview_jobs"] = signature
    if before is not None and before != signature:
        st.rerun()


live_jobs(overview.empty)
if overview.empty:
    st.subheader("Start here")
    demo = preset("demo")
    st.write("This results folder is empty. The demo grid prunes a small MLP on scikit-learn's 8×8 digits "
             f"(digit 8 is rare in training) to {percents(demo.sparsities)} % sparsity and fine-tunes it with NFT, "
             f"NFT+ES, EL+RB and CEAG (ε = {percents(demo.tolerances)} %), {len(demo.seeds)} seeds each: "
             f"{demo.size()} runs, under a minute on a laptop CPU.")
    if jobs.running_jobs(results):
        st.caption("Results appear here as soon as the running job's first runs are stored.")
    elif st.button("Run the demo grid", type="primary", icon=":material/play_arrow:"):
        try:
            job_id = jobs.launch(preset("demo"), results)
        except OSError as err:
            st.error(f"Could not start the demo in {results}: {err}")
            st.stop()
        _state.put("job", job_id)
        st.rerun()
    st.stop()

runs_total = int(overview["runs"].sum())
finished = int(overview.loc[overview.status == "finished", "runs"].sum())
running = jobs.running_jobs(results)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Runs", runs_total)
c2.metric("Finished", finished)
c3.metric("Datasets", overview["dataset"].nunique())
c4.metric("Running jobs", len(running))
datasets = sorted(overview["dataset"].unique())
dataset = (_state.widget(st.selectbox, "dataset", "Dataset", default=datasets[0], options=datasets)
           if len(datasets) > 1 else datasets[0])
models = sorted(overview.loc[overview.dataset == dataset, "model"].unique())
model = st.selectbox("Model", models, key="overview.model") if len(models) > 1 else models[0]
st.subheader(f"What pruning does to {dataset} ({model})",
             help=tip("sparsity", "ψ_g", "max_g ψ_g", "ε (tolerance)"))
with st.spinner("Comparing with NFT across seeds…"):
    versus, _ = store.seed_comparisons(dataset=dataset, splits=("train", "test"))
story = overview_story(store.story_groups(dataset=dataset, model=model), bounds_from(versus))
here = overview[(overview.dataset == dataset) & (overview.model == model)]
pruned_by = list(dict.fromkeys(criterion_label(c, m) for c, m in zip(here.criterion, here.method, strict=True)))
if len(pruned_by) > 1:
    st.caption(f"The runs of {dataset} ({model}) chose the weights they keep by "
               f"{', '.join(pruned_by[:-1])} and {pruned_by[-1]}; runs pruned by different criteria are never "
               "averaged together, and each is measured against NFT pruned by the same criterion"
               + (" (FairGRAPE, which chooses its own masks by group importance, against NFT pruned by magnitude)"
                  if "fairgrape" in set(here.method) else "") + ".")
if story:
    # [(None, None)] unless the criteria or the pruning kinds are named
    told = list(dict.fromkeys((point.criterion, point.pruning) for point in story))
    st.markdown("\n\n".join(_heading(criterion, kind)
                              + "\n".join(f"- {point.text}" for point in story
                                          if (point.criterion, point.pruning) == (criterion, kind))
                              for criterion, kind in told))
    if any(point.details for point in story):
        with st.expander("The numbers behind these points"):
            st.markdown("\n".join(f"- **{point.topic}**: " + " ".join(point.details) for point in story
                                   if point.details))
summary = pd.concat([store.frontier_summary(dataset=dataset, model=model, split=split).assign(split=split)
                     for split in ("train", "test")], ignore_index=True)
if not summary.empty:
    st.plotly_chart(overview_chart(summary), width="stretch", config=CHART_CONFIG)
    several = summary["criterion"].nunique() > 1
    st.caption("Per method" + (" and pruning criterion (the criterion shades the method's colour and picks the "
                               "marker)" if several else "")
               + ", the worst group's excess gap max_g ψ_g on the training and the test data at each "
               "sparsity (mean over seeds, bars: standard deviation across seeds); dashed lines: the tolerances ε. "
               "Compare shows each group with bootstrap intervals.")
with st.expander("Glossary: sparsity, ε, Δ_g, ψ_g, max_g ψ_g, Ψ_PW, λ_g, ψ̂_g"):
    st.markdown(INTRO + "\n\n" + glossary())
cols = st.columns(4)
cols[0].page_link("dashboard/compare.py", label="Group by group, with intervals", icon=":material/balance:",
                  help=tip("Δ_g", "ψ_g", "interval"))
cols[1].page_link("dashboard/frontiers.py", label="Accuracy–disparity frontiers", icon=":material/scatter_plot:",
                  help=tip("max_g ψ_g", "Ψ_PW"))
cols[2].page_link("dashboard/multipliers.py", label="Multiplier trajectories", icon=":material/show_chart:",
                  help=tip("λ_g", "ψ̂_g"))
cols[3].page_link("dashboard/generalization.py", label="Train versus test gaps", icon=":material/compare_arrows:",
                  help=tip("ψ_g"))

st.subheader("What is in the store")


def listing(values) -> str:
    return ", ".join(f"{v:g}" for v in values) if isinstance(values, (list, tuple, np.ndarray)) else ""


table = overview.assign(criterion=[criterion_label(c, m) for c, m in zip(overview["criterion"], overview["method"],
                                                                         strict=True)],
                        sparsities=overview["sparsities"].map(listing),
                        tolerances=overview["tolerances"].map(listing))
st.dataframe(table, hide_index=True, width="stretch")
