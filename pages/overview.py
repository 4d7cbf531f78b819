"""Overview: what the store holds, what the metrics mean, and the demo for an empty store."""

import numpy as np
import pandas as pd
import streamlit as st

from ceag import jobs
from ceag.grid import preset
from pages import _state
from pages._jobs import job_card
from pages._shared import query, results_dir, sync_store

_state.restore()
st.title("The disparate impact of pruning")
sync_store()
results = results_dir()
overview = query("overview")

with st.expander("What the numbers mean", expanded=overview.empty):
    st.markdown(
        "Pruning removes most of a network's weights, then fine-tunes what is left. Some groups pay more.\n\n"
        "- **Δ_g = A_g(dense) − A_g(sparse)**: the accuracy group *g* lost to pruning.\n"
        "- **ψ_g = Δ_g − Δ**, the *excess accuracy gap*: how much more group *g* lost than the model as a whole "
        "(Δ is the overall loss of accuracy). ψ_g > 0 means the group was hurt more than average.\n"
        "- **max_g ψ_g**: the worst-treated group's excess gap, the headline disparity.\n"
        "- **Ψ_PW = max_g Δ_g − min_g Δ_g**: the largest difference between two groups' losses.\n\n"
        "**CEAG** fine-tunes under one constraint per group, ψ_g ≤ ε, with a Lagrange multiplier λ_g that grows "
        "while the group's constraint is violated. **NFT** fine-tunes naively, **NFT+ES** keeps its best "
        "validation iterate, **EL+RB** equalizes group losses. All gaps are shown in percentage points; always "
        "read them next to accuracy, since a collapsed model can look fair."
    )


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
st.subheader("What is in the store")


def listing(values) -> str:
    return ", ".join(f"{v:g}" for v in values) if isinstance(values, (list, tuple, np.ndarray)) else ""


table = overview.assign(sparsities=overview["sparsities"].map(listing),
                        tolerances=overview["tolerances"].map(listing))
st.dataframe(table, hide_index=True, width="stretch")
st.subheader("The story in numbers")
dataset = sorted(overview["dataset"].unique())[0]
train = query("frontier_summary", dataset=dataset, split="train")
test = query("frontier_summary", dataset=dataset, split="test")
if not train.empty and {"nft", "ceag"} <= set(train["method"]):
    keys = ["model", "method", "sparsity", "tolerance"]
    story = train.merge(test, on=keys, suffixes=("_train", "_test"), how="left")
    story = story[story.method.isin(["nft", "ceag"])]
    rows = []
    for (model, sparsity), part in story.groupby(["model", "sparsity"]):
        nft, ceag = part[part.method == "nft"], part[part.method == "ceag"]
        if nft.empty or ceag.empty:
            continue
        strict = ceag.sort_values("tolerance").iloc[0]
        rows.append({"model": model, "sparsity": sparsity, "CEAG ε (%)": 100 * strict.tolerance,
                     "NFT train max ψ_g": 100 * nft.max_excess_gap_train.iloc[0],
                     "CEAG train max ψ_g": 100 * strict.max_excess_gap_train,
                     "NFT test max ψ_g": 100 * nft.max_excess_gap_test.iloc[0],
                     "CEAG test max ψ_g": 100 * strict.max_excess_gap_test,
                     "NFT test acc": 100 * nft.accuracy_test.iloc[0], "CEAG test acc": 100 * strict.accuracy_test})
    if rows:
        st.caption(f"{dataset}: the worst group's excess gap in points. CEAG holds it near ε on train; whether that "
                   "carries over to test is what Generalization shows.")
        table = pd.DataFrame(rows)
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.1f") for c in table.columns[3:]})
cols = st.columns(3)
cols[0].page_link("pages/frontiers.py", label="Accuracy–disparity frontiers", icon=":material/scatter_plot:")
cols[1].page_link("pages/multipliers.py", label="Multiplier trajectories", icon=":material/show_chart:")
cols[2].page_link("pages/generalization.py", label="Train versus test gaps", icon=":material/compare_arrows:")
