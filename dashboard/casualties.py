"""What pruning broke: per group, the samples a run's dense model got right and its pruned model gets wrong.

The run is the view's ``gallery`` field (a link from Compare or Frontiers sets it), else the first selected run,
else the NFT run of the newest setting that has a mitigation beside it. Pictures are read from the data folder
(the digits render their 8×8 inputs), only those shown, and cached.
"""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from ceag.analysis.audit import comparable_setting, default_comparison
from ceag.analysis.casualties import (
    CELL_LABELS,
    CasualtyError,
    casualty_export,
    cell_counts,
    consistent_casualties,
    kept_by,
    ranked,
    related_runs,
    run_label,
)
from ceag.analysis.verdicts import detectable_gaps
from ceag.config.run_config import from_dict
from ceag.present.csv_export import write_csv
from ceag.present.glossary import GLOSSARY
from ceag.present.sentences.casualties import casualty_sentences, consistency_sentence, kept_sentence
from ceag.present.thumbnails import DIGIT_SIZE, SIZE, gallery_html, sample_thumb, tiles_for
from ceag.present.words import sentence
from ceag.results.predictions import RunNotFound, run_names, run_predictions
from dashboard import _state
from dashboard import _store as store
from dashboard._shared import data_dir, empty_store_hint, results_dir, run_labels, store_version

SPLITS = ("train", "test", "val")


@st.cache_data(show_spinner="Reading the run's predictions…", max_entries=16)
def predictions_of(results: str, version: tuple, run_id: str):
    return run_predictions(results, run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def related(results: str, version: tuple, run_id: str) -> dict:
    return related_runs(store.finished_configs(), run_id)


@st.cache_data(show_spinner=False, max_entries=4096)
def cached_picture(config_json: str, data_root: str, split: str, sample_id: int, file: str | None, size: int,
                   stamp: tuple | None):
    return sample_thumb(from_dict(json.loads(config_json), stored=True), data_root, split, sample_id, file, size)


def picture(config_json: str, data_root: str, split: str, sample_id: int, file: str | None, size: int):
    """A sample's picture, cached until its file changes (``stamp``: the file's size and time, None when absent)."""
    try:
        info = (Path(data_root) / file).stat() if isinstance(file, str) and file else None
        stamp = None if info is None else (info.st_size, info.st_mtime_ns)
    except OSError:
        stamp = None
    return cached_picture(config_json, data_root, split, sample_id, file, size, stamp)


def default_run(finished) -> str:
    chosen = [r for r in _state.selected_runs() if r in set(finished.run_id)]
    if chosen:
        return chosen[0]
    row = comparable_setting(finished)
    if row is not None:
        ids = default_comparison(finished, dataset=row.dataset, model=row.model, sparsity=row.sparsity, seed=row.seed)
        return ids[0]
    return str(finished.run_id.iloc[0])


_state.restore()
st.title("What pruning broke")
st.caption("Per group, the samples a run's dense model got right and its pruned model gets wrong (its "
           "**casualties**), beside each group's ψ_g, and their pictures, the most confidently lost first; a "
           "second run of the same setting beside it, and what other seeds lost.")
runs = store.runs()
finished = runs[runs.status == "finished"]
if finished.empty:
    empty_store_hint()
    st.stop()
results = results_dir()
ordered = finished.sort_values(["dataset", "model", "method", "sparsity", "tolerance", "seed"], na_position="first")
labels = run_labels(ordered)
version = store_version(results)
run_id = _state.widget(st.selectbox, "gallery", "Run", default=default_run(finished), options=list(labels),
                       format_func=labels.get)
config_json = store.run_config(run_id)
if not config_json:
    st.error(f"Run {run_id} has no settings in the store; `python -m ceag ls` lists the runs it knows.")
    st.stop()
cfg = from_dict(json.loads(config_json), stored=True)
try:
    frame = predictions_of(str(results), version, run_id)
except (RunNotFound, OSError, ValueError) as err:
    st.error(f"The predictions of run {run_id} cannot be read: {err}")
    st.stop()
metrics = store.group_metrics(run_id)
group_names, class_names = run_names(results, run_id)
group_names = group_names or list(metrics.drop_duplicates("group_id").sort_values("group_id").group_name)
present = [s for s in SPLITS if s in set(frame["split"])]
if not group_names or not present:
    st.warning(f"Run {run_id} has no groups or no predictions to show.")
    st.stop()
c = st.columns([2, 3, 2, 1])
split = _state.widget(c[0].radio, "gallery_split", "Split", default="test" if "test" in present else present[0],
                      options=present, horizontal=True)
try:
    counts = cell_counts(frame, split, group_names)
except CasualtyError as err:
    st.warning(f"Run {run_id}: {err}.")
    st.stop()
label = run_label(cfg)
st.markdown("\n".join(f"- {sentence(s)}" for s in casualty_sentences(label, split, counts)))

psi = metrics[metrics.split == split].set_index("group_id")
gaps = detectable_gaps(frame[frame.split == split])
detectable = dict(zip(gaps.group_id, gaps.min_detectable_gap, strict=True))
table = pd.DataFrame({
    "group": counts.group_name, "n": counts.n, "casualties": counts.casualty,
    "lost (%)": 100 * counts.casualty_rate,
    "ψ_g (points)": [100 * psi.excess_gap.get(g, float("nan")) for g in counts.group_id],
    "min detectable gap (points)": [100 * detectable.get(g, float("nan")) for g in counts.group_id],
    "recovered": counts.recovered, "right → right": counts.kept, "wrong → wrong": counts.both_wrong,
    "dense acc (%)": 100 * counts.dense_accuracy, "acc (%)": 100 * counts.accuracy})
helps = {"casualties": CELL_LABELS["casualty"], "recovered": CELL_LABELS["recovered"],
         "right → right": CELL_LABELS["kept"], "wrong → wrong": CELL_LABELS["both_wrong"],
         "lost (%)": "Casualties as a share of the samples the dense model got right.", "ψ_g (points)": GLOSSARY["ψ_g"],
         "min detectable gap (points)": GLOSSARY["min detectable gap"]}
st.dataframe(table, hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(
                 format="%.1f" if k.endswith(")") else None, help=helps.get(k))
                 for k in ("ψ_g (points)", "lost (%)", "dense acc (%)", "acc (%)", *helps)})

rel = related(str(results), version, run_id)
beside = {lab: ids[cfg.seed] for lab, ids in rel.items()
          if lab != "seeds" and cfg.seed in ids and ids[cfg.seed] != run_id}
ranked_groups = counts.sort_values(["casualty_rate", "casualty"], ascending=False)
group = _state.widget(c[1].selectbox, "gallery_group", "Group", default=str(ranked_groups.group_name.iloc[0]),
                      options=group_names)
group_id = group_names.index(group)
options = ["none", *beside]
preferred = next((lab for lab in sorted(beside) if lab.startswith("CEAG")), None) if cfg.method == "nft" else \
    next((lab for lab in beside if lab == "NFT"), None)
other_label = _state.widget(c[2].selectbox, "gallery_vs", "Beside it", default=preferred or "none",
                            options=options, help="A run of another method with the same pruned model settings "
                                                  "and seed.")
shown = int(_state.widget(c[3].selectbox, "gallery_pictures", "Pictures", default="24",
                          options=["0", "6", "12", "24", "48", "96"], help="Per run; 0 leaves pictures out."))
cell = _state.widget(st.radio, "gallery_show", "Show", default="casualty", options=["casualty", "recovered"],
                     horizontal=True, format_func={"casualty": "casualties (dense right, pruned wrong)",
                                                   "recovered": "recovered (dense wrong, pruned right)"}.get)

root = str(data_dir())
size = DIGIT_SIZE if cfg.dataset == "digits" else SIZE
other_frame = None
if other_label != "none":
    try:
        other_frame = predictions_of(str(results), version, beside[other_label])
    except (RunNotFound, OSError, ValueError) as err:
        st.warning(f"The predictions of {other_label} cannot be read: {err}")


def outcome(frame_of, who: str):
    if frame_of is None:
        return None
    part = frame_of[frame_of.split == split].set_index("sample_id")
    return lambda row: f"{who}: {'right' if part.y_pred.get(row.sample_id) == row.y_true else 'wrong'}"


def show(frame_of, title: str, note) -> None:
    rows = ranked(frame_of, split, cell, group_id)
    what = ("casualty" if len(rows) == 1 else "casualties") if cell == "casualty" else "recovered"
    st.markdown(f"**{title}**: {len(rows):,} {what} in {group}")
    if shown and len(rows):
        tiles = tiles_for(rows.head(shown), class_names,
                          lambda r: picture(config_json, root, split, int(r.sample_id), r.file, size), note)
        st.html(gallery_html(tiles, size))
        missing = sum(t.thumb.jpeg is None for t in tiles)
        if missing:
            st.caption(f"{missing} of {len(tiles)} pictures could not be shown (hover a grey box for why); "
                       f"pictures are read from the data folder {root}.")


cols = st.columns(2 if other_frame is not None else 1)
with cols[0]:
    show(frame, f"{label} (seed {cfg.seed})", outcome(other_frame, other_label))
if other_frame is not None:
    with cols[1]:
        show(other_frame, f"{other_label} (seed {cfg.seed}, run {beside[other_label]})", outcome(frame, label))

if other_frame is not None:
    base_label, mit_label = ("NFT", other_label) if label == "NFT" else (other_label, label)
    if base_label == "NFT" and "NFT" in rel and mit_label in rel:
        try:
            runs_of = {lab: {s: predictions_of(str(results), version, r) for s, r in rel[lab].items()}
                       for lab in (base_label, mit_label)}
            this_seed = kept_by({cfg.seed: runs_of[base_label][cfg.seed]}, {cfg.seed: runs_of[mit_label][cfg.seed]},
                                split, group_names)
            across = kept_by(runs_of[base_label], runs_of[mit_label], split, group_names)
            st.info(kept_sentence(mit_label, base_label, this_seed, group, split, cfg.seed, across))
        except (CasualtyError, RunNotFound, OSError, ValueError) as err:
            st.caption(f"Casualties across seeds cannot be paired: {err}")

if len(rel["seeds"]) >= 2:
    with st.expander(f"Across the {len(rel['seeds'])} seeds of this setting ({label})"):
        try:
            consistent = consistent_casualties({s: predictions_of(str(results), version, r)
                                                for s, r in rel["seeds"].items()}, split)
        except (CasualtyError, RunNotFound, OSError, ValueError) as err:
            st.caption(f"The seeds' runs cannot be paired sample by sample: {err}")
        else:
            text = consistency_sentence(consistent, group_names, split)
            if text:
                st.markdown(text)
            need = len(rel["seeds"]) // 2 + 1
            mine = consistent[(consistent.group_id == group_id) & (consistent.lost >= need)]
            st.markdown(f"{group}: {len(mine):,} {'sample' if len(mine) == 1 else 'samples'} lost by at least {need} "
                        f"of the {len(rel['seeds'])} seeds' pruned models (casualties only; the answers shown are "
                        "each model's most common one across the seeds).")
            if shown and len(mine):
                rows = mine.head(shown).assign(y_pred=mine.sparse_modal, dense_pred=mine.dense_modal,
                                               p_pred=float("nan"), dense_p_pred=float("nan"))
                tiles = tiles_for(rows, class_names,
                                  lambda r: picture(config_json, root, split, int(r.sample_id), r.file, size),
                                  lambda r: f"lost by {r.lost} of {r.seeds} seeds")
                st.html(gallery_html(tiles, size))

export = casualty_export(frame, split, group_names, class_names, cell)
st.download_button(f"The {'casualties' if cell == 'casualty' else 'recovered samples'} of every group on {split} "
                   "(CSV)",
                   write_csv(export), file_name=f"ceag_{cell}_{run_id}_{split}.csv", mime="text/csv",
                   icon=":material/download:")
