"""Compare: how each chosen run treats each group, with bootstrap intervals, sentences and the audit report.

The compared runs are the page's own view field (``compare``), never the selection: absent, the
page compares the selection when it holds two or more finished runs, else NFT against CEAG at each
tolerance for one setting (that of the first selected run, else the newest setting that has both). A setting
is a dataset, model, sparsity, seed and pruning criterion: runs pruned by another criterion are never its default
pair (the criterion's selector shows when the store holds more than one).
Changing the setting or the runs under "Runs and intervals" writes ``compare``, so the URL links to
exactly what is shown; the selection changes only through the "Add … to the selection" button.
"""

import pandas as pd
import streamlit as st

from ceag.analysis.audit import Audit, audit, default_comparison
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.config.vocabulary import CORRECTIONS, method_label
from ceag.present.casualty_report import DEFAULT_THUMBNAILS, casualty_section
from ceag.present.csv_export import write_csv
from ceag.present.glossary import GLOSSARY
from ceag.present.report import across_seeds_section, excess_gaps, render_html, speed_section
from ceag.present.sentences.compare import audit_sentences, headline_sentences
from ceag.present.sentences.seeds import verdict_sentences
from ceag.present.words import (
    CORRECTION_HELP,
    CORRECTION_LABELS,
    DEFAULT_CRITERION,
    audit_run_labels,
    criteria_of,
    criterion_label,
)
from dashboard import _state
from dashboard import _store as store
from dashboard._audit import audit_chart, audit_table
from dashboard._shared import data_dir, empty_store_hint, results_dir, run_labels, store_version
from dashboard._speed import footprint_section

SETTING = ("dataset", "model", "sparsity", "seed", "criterion")
DERIVED_KEY = "compare.setting"  # the setting the selectors last showed: a difference is the user's edit


@st.cache_data(show_spinner="Bootstrapping intervals…", max_entries=32)
def cached_audit(results: str, version: tuple, run_ids: tuple, n_boot: int, confidence: float,
                 correction: str) -> Audit:
    return audit(results, list(run_ids), BootstrapSettings(n_boot=n_boot, confidence=confidence,
                                                           correction=correction))


@st.cache_data(show_spinner="Writing the report…", max_entries=8)
def cached_report(results: str, version: tuple, run_ids: tuple, n_boot: int, confidence: float, correction: str,
                  data: str) -> str:
    result = cached_audit(results, version, run_ids, n_boot, confidence, correction)
    return render_html(result, casualties=casualty_section(results, list(run_ids), data, DEFAULT_THUMBNAILS,
                                                           excess_gap=excess_gaps(result)),
                       across=across_seeds_section(results, result), speed=speed_section(results, result))


def setting_of(row) -> tuple:
    criterion = row.get("criterion", DEFAULT_CRITERION)
    return (row["dataset"], row["model"], float(row["sparsity"]), int(row["seed"]),
            DEFAULT_CRITERION if pd.isna(criterion) else criterion)


def setting_runs(finished: pd.DataFrame, setting: tuple) -> list[str]:
    """NFT against CEAG at each tolerance there; without them, the newest run of each method there (all pruned by
    the setting's criterion)."""
    dataset, model, sparsity, seed, criterion = setting
    pruned = finished[criteria_of(finished) == criterion]
    ids = default_comparison(pruned, dataset=dataset, model=model, sparsity=sparsity, seed=seed)
    if ids:
        return ids
    part = pruned[(pruned.dataset == dataset) & (pruned.model == model) & (pruned.sparsity == sparsity)
                  & (pruned.seed == seed)]
    return list(part.drop_duplicates(["method", "tolerance"]).run_id)


def comparable_setting(finished: pd.DataFrame) -> pd.Series | None:
    """The newest finished run whose setting (its criterion included) has NFT and CEAG runs to compare, or None."""
    criteria = criteria_of(finished)
    for _, row in finished.assign(criterion=criteria).drop_duplicates(list(SETTING)).iterrows():
        if len(default_comparison(finished[criteria == row.criterion], dataset=row.dataset, model=row.model,
                                  sparsity=row.sparsity, seed=row.seed)) >= 2:
            return row
    return None


def setting_selectors(finished: pd.DataFrame, shown: tuple) -> tuple:
    """Dataset, model, sparsity, seed and (where the store holds several) pruning criterion selectors showing
    ``shown``; returns the setting the user picked.

    An edit (a value that differs from what the selectors showed last) keeps the user's choices
    where they still exist and fills the rest with the first available value.
    """
    part = finished.assign(criterion=criteria_of(finished))
    drawn = [n for n in SETTING if n != "criterion" or part["criterion"].nunique() > 1]
    keys = [f"compare.{name}" for name in drawn]
    before = st.session_state.get(DERIVED_KEY)
    # Streamlit drops a widget's state on a page that did not draw it: only a complete set is an edit.
    edited = (before is not None and len(before) == len(keys) and all(k in st.session_state for k in keys)
              and tuple(st.session_state[k] for k in keys) != before)
    wanted = dict(zip(drawn, (st.session_state.get(k) for k in keys), strict=True)) if edited else dict(
        zip(SETTING, shown, strict=True))
    cols, picked = iter(st.columns(len(drawn))), []
    labels = {"sparsity": lambda s: f"{100 * s:g} %", "criterion": criterion_label}
    for name in SETTING:
        options = sorted(part[name].unique().tolist())
        want = wanted.get(name)
        if name in drawn:
            key = f"compare.{name}"
            st.session_state[key] = want if want in options else options[0]
            value = next(cols).selectbox("Pruning criterion" if name == "criterion" else name.capitalize(), options,
                                         key=key, format_func=labels.get(name, str))
        else:
            value = want if want in options else options[0]
        part = part[part[name] == value]
        picked.append(value)
    st.session_state[DERIVED_KEY] = tuple(v for n, v in zip(SETTING, picked, strict=True) if n in drawn)
    return tuple(picked) if edited else shown


_state.restore()
st.title("Compare runs group by group")
runs = store.runs()
finished = runs[runs.status == "finished"]
if finished.empty:
    empty_store_hint()
    st.stop()
labels = run_labels(finished)
by_id = finished.set_index("run_id", drop=False)
selection = _state.selected_runs()
selected = [r for r in selection if r in labels]
explicit = _state.get("compare")
if explicit is not None:
    unknown = [r for r in explicit if r not in labels]
    if unknown:
        st.warning(f"Not a finished run of this store, left out: {', '.join(unknown[:5])}"
                   + (" …" if len(unknown) > 5 else ""))
    default = [r for r in explicit if r in labels]
    source = "explicit"
elif len(selected) >= 2:
    default, source = selected, "selection"
else:
    row = by_id.loc[selected[0]] if selected else comparable_setting(finished)
    default, source = setting_runs(finished, setting_of(finished.iloc[0] if row is None else row)), "setting"

shown = setting_of(by_id.loc[default[0]]) if default else setting_of(finished.iloc[0])
setting = setting_selectors(finished, shown)
if setting != shown:  # the user picked another setting: compare its default runs (the selection stays)
    default, source = setting_runs(finished, setting), "explicit"
    _state.put("compare", default)

about = {"selection": "your selected runs",
         "setting": "NFT against CEAG at each tolerance for this setting (your selection is unchanged)"}
with st.expander("Runs and intervals", expanded=len(default) < 2):
    chosen = _state.widget(st.multiselect, "compare", "Runs (two or more)", default=default, options=list(labels),
                           format_func=labels.get)
    c = st.columns(3)
    n_boot = c[0].number_input("Bootstrap resamples", 100, 20000, 1000, step=100)
    confidence = c[1].selectbox("Interval", [0.9, 0.95, 0.99], index=1, format_func=lambda x: f"{100 * x:g} %")
    correction = c[2].selectbox("Verdict intervals", CORRECTIONS, format_func=CORRECTION_LABELS.get,
                                help=CORRECTION_HELP)
    buttons = st.columns(3)
    if len(selected) >= 2 and selected != chosen and buttons[0].button(
            f"Compare the {len(selected)} selected runs", icon=":material/checklist:"):
        _state.put("compare", selected)
        st.rerun()
    if chosen != setting_runs(finished, setting) and buttons[1].button(
            "NFT against CEAG at this setting", icon=":material/balance:"):
        _state.put("compare", setting_runs(finished, setting))
        st.rerun()
    missing = [r for r in chosen if r not in selection]
    if missing and buttons[2].button(f"Add {'them' if len(missing) > 1 else 'it'} to the selection",
                                     icon=":material/add:"):
        _state.select_runs([*selection, *missing])
        st.rerun()
st.caption(f"Comparing {len(chosen)} runs: "
           + about.get(source, "the runs chosen under **Runs and intervals** (or in the link)") + ".")
if len(chosen) < 2:
    st.info("Choose two or more finished runs under **Runs and intervals** (this setting has no NFT and CEAG "
            "runs to pair by default).")
    st.stop()

args = (str(results_dir()), store_version(results_dir()), tuple(chosen), int(n_boot), float(confidence), correction)
result = cached_audit(*args)
with st.spinner("Comparing with NFT across seeds…"):
    versus, versus_notes = store.seed_comparisons(splits=("test", "train", "val"), confidence=float(confidence),
                                                  run_ids=tuple(chosen))
across = verdict_sentences(versus, chosen, confidence=float(confidence))
if across:
    st.markdown("**Across seeds**, against NFT on the same seeds (an interval over seeds and samples):\n"
                + "\n".join(f"- {s}" for s in across))
headline = headline_sentences(result.groups, confidence=result.settings.confidence)
st.markdown(("**These runs**:\n" if across else "") + "\n".join(f"- {s}" for s in headline))
if result.notes:
    st.warning("\n".join(f"- {note}" for note in result.notes))

audit_chart(result, ["test", "train", "val"])
with st.expander("Every sentence: train, validation and each run"):
    st.markdown("\n".join(f"- {s}" for s in audit_sentences(result)))
    more = verdict_sentences(versus, chosen, splits=("test", "train", "val"),
                             metrics=("max_excess_gap", "psi_pw", "accuracy"), confidence=float(confidence))
    if more:
        st.markdown("Across seeds, against NFT:\n" + "\n".join(f"- {s}" for s in more))
    if versus_notes:
        st.caption(" ".join(versus_notes))

audit_table(result)
footprint_section(store.footprints(run_ids=list(chosen)), len(chosen), audit_run_labels(result.groups),
                  str(results_dir()))
c = st.columns(3)
c[0].download_button("Audit report (HTML, opens offline)", lambda: cached_report(*args, str(data_dir())),
                     file_name="ceag_audit.html", mime="text/html", icon=":material/download:")
c[1].download_button("Per-group table (CSV)", write_csv(result.csv_table()), file_name="ceag_audit.csv",
                     mime="text/csv", icon=":material/download:")
first, second = by_id.loc[chosen[0]], by_id.loc[chosen[1]] if len(chosen) > 1 else None
same = second is not None and setting_of(first) == setting_of(second) and second.method != first.method
beside = method_label(second.method, second.tolerance) if same else "none"  # the gallery sets beside a run
# another method on the same setting and seed only
c[2].page_link("dashboard/casualties.py", label="What pruning broke in these runs", icon=":material/broken_image:",
               query_params={"gallery": chosen[0], "gallery_vs": beside})
with st.expander("What the symbols mean"):
    st.markdown("\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY.items()))
