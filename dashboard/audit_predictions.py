"""Audit predictions: a file of per-sample predictions of a dense and one or more pruned models, made anywhere,
audited with the intervals, verdicts, chart, table and downloads of Compare.

Uploading a file and choosing its columns stores the audit in the results folder
(``<results>/audits/<id>``, ``ceag.analysis.stored_audits``) and writes its id into the view field
``audit``, so the URL (``?audit=<id>``) reopens it without the file; stored audits can be reopened from
the list. A file that cannot be audited gets an error box naming the column and the row.
"""

import pandas as pd
import streamlit as st

from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.predictions_file import (
    DEFAULT_SPARSE,
    DENSE_COLUMN,
    SPLIT_COLUMN,
    TRUE_COLUMN,
    AuditOptions,
    prepare,
)
from ceag.analysis.stored_audits import StoredAudit, list_audits, open_audit, store_audit
from ceag.analysis.table_file import MAX_UPLOAD_BYTES, read_bytes, read_table
from ceag.config.errors import PredictionsFileError, UnknownAudit
from ceag.config.vocabulary import CORRECTIONS
from ceag.present.csv_export import write_csv
from ceag.present.glossary import GLOSSARY
from ceag.present.report import render_html
from ceag.present.sentences.compare import headline_sentences
from ceag.present.words import CORRECTION_HELP, CORRECTION_LABELS, confidence_label
from dashboard import _state
from dashboard._audit import audit_chart, audit_table
from dashboard._shared import results_dir

LIMIT_MB = MAX_UPLOAD_BYTES // 1024 ** 2
RESERVED = (TRUE_COLUMN, DENSE_COLUMN, SPLIT_COLUMN)
FORMAT_HELP = (f"One row per sample: `{TRUE_COLUMN}` (the true class), your group column(s), `{DENSE_COLUMN}` (the "
               "dense model's prediction) and one column per pruned model (e.g. `y_pred`, as `python -m ceag export "
               f"--predictions` writes); optional `{SPLIT_COLUMN}` (train, val or test; without it every row is test). "
               "Other columns are kept and ignored. CSV (separated by commas, semicolons or tabs; UTF-8, UTF-16 or "
               "Windows-1252) or Parquet, up to "
               f"{LIMIT_MB} MB. docs/audit.md describes the file.")


@st.cache_data(show_spinner="Reading the file…", max_entries=4)
def read_upload(data: bytes, name: str) -> tuple[pd.DataFrame, list[str], str]:
    """(the file's rows, notes on how it was read, the SHA-256 of its bytes); PredictionsFileError says what is
    wrong with it."""
    import hashlib

    data, name = read_bytes(data, name=name, max_bytes=MAX_UPLOAD_BYTES)
    frame, notes = read_table(data, name)
    return frame, notes, hashlib.sha256(data).hexdigest()


@st.cache_data(show_spinner="Bootstrapping intervals…", max_entries=16)
def cached_audit(results: str, audit_id: str) -> StoredAudit:
    """A stored audit never changes (its id is a hash of its content and options): cached by id."""
    return open_audit(results, audit_id)


@st.cache_data(show_spinner="Writing the report…", max_entries=8)
def cached_report(results: str, audit_id: str) -> str:
    stored = cached_audit(results, audit_id)
    return render_html(stored.result, title=f"ceag audit of {stored.record.get('file')}")


def audit_form(results) -> None:
    """The upload, the column choices and the settings; on success the audit is stored and opened."""
    uploaded = st.file_uploader("Predictions file (CSV or Parquet)", type=["csv", "parquet"], help=FORMAT_HELP,
                                max_upload_size=LIMIT_MB, key="audit_predictions.file")
    if uploaded is None:
        st.caption(FORMAT_HELP)
        return
    try:
        frame, read_notes, sha256 = read_upload(uploaded.getvalue(), uploaded.name)
    except PredictionsFileError as err:
        st.error(str(err))
        return
    columns = [str(c) for c in frame.columns]
    free = [c for c in columns if c not in RESERVED]
    c = st.columns(2)
    groups = c[0].multiselect("Group column(s)", free, default=["group"] if "group" in free else [],
                              key=f"audit_predictions.groups.{sha256}",  # a new file: its own defaults
                              help="The protected attribute. Several columns give intersectional groups, named "
                                   "“a × b” in the order chosen. Groups are numbered in sorted order of their values "
                                   "(numbers as numbers).")
    if not [s for s in free if s not in groups]:
        st.error(f"{uploaded.name} has no column left to audit as a pruned model's predictions: besides "
                 f"{TRUE_COLUMN}, {DENSE_COLUMN} and the group column(s) it has none (its columns: "
                 f"{', '.join(columns)}). Add one column of predictions per pruned model, e.g. `sparse_pred`.")
    default_sparse = [s for s in DEFAULT_SPARSE if s in free and s not in groups][:1]
    sparse = c[1].multiselect("Sparse predictions", [s for s in free if s not in groups], default=default_sparse,
                              key=f"audit_predictions.sparse.{sha256}",
                              help="One column per pruned model; each is audited against "
                                   f"`{DENSE_COLUMN}` and named by its column.")
    c = st.columns(4)
    tolerance = c[0].number_input("Tolerance ε (%)", min_value=0.0, max_value=99.0, value=None, step=0.5,
                                  key="audit_predictions.tolerance", placeholder="none",
                                  help="Each group's ψ_g is judged against ε (meets ε, exceeds ε, cannot tell). "
                                       "Empty: no verdicts.")
    confidence = c[1].selectbox("Interval", [0.9, 0.95, 0.99], index=1, format_func=lambda x: f"{100 * x:g} %",
                                key="audit_predictions.confidence")
    n_boot = c[2].number_input("Bootstrap resamples", 100, 20000, 1000, step=100, key="audit_predictions.n_boot")
    correction = c[3].selectbox("Verdict intervals", CORRECTIONS, format_func=CORRECTION_LABELS.get,
                                key="audit_predictions.correction", help=CORRECTION_HELP)
    if not st.button("Audit", type="primary", icon=":material/fact_check:"):
        return
    if not groups:
        st.error("Choose the group column(s): the column holding the protected attribute of each sample.")
        return
    if not sparse:
        st.error("Choose at least one column of sparse (pruned) predictions.")
        return
    try:
        options = AuditOptions(tuple(groups), tuple(sparse), None if tolerance is None else tolerance / 100)
        pf = prepare(frame, options, name=uploaded.name, sha256=sha256, read_notes=read_notes)
        audit_id = store_audit(results, pf, BootstrapSettings(n_boot=int(n_boot), confidence=float(confidence),
                                                                      correction=correction))
    except PredictionsFileError as err:
        st.error(str(err))
        return
    except OSError as err:
        st.error(f"The audit could not be stored in {results}: {err}")
        return
    _state.put("audit", audit_id)
    st.rerun()


def stored_list(results, opened: str | None) -> str | None:
    """The list of stored audits to open, bound to the view field ``audit``; returns the audit to show (None: none).

    An id from the URL that is not stored stays in the list (and in the URL), and the page says why it cannot
    be opened."""
    stored = list_audits(results)
    if stored.empty:
        return opened
    ids = list(stored.audit_id)
    about = {r.audit_id: f"{r.file} · {r.sparse} by {r.groups} · {r.created} · {r.audit_id}"
             for r in stored.itertuples()}
    options = ["", *ids, *([opened] if opened and opened not in ids else [])]
    chosen = _state.widget(st.selectbox, "audit", "Open a stored audit", default="", options=options,
                           format_func=lambda a: about.get(a, a) if a else "—",
                           help=f"Audits kept in {results}/audits, newest first.")
    return chosen or None


_state.restore()
st.title("Audit predictions")
results = results_dir()
opened = stored_list(results, _state.get("audit") or None)
with st.expander("Audit a file", expanded=opened is None):
    audit_form(results)
if opened is None:
    st.info("Upload a file of predictions under **Audit a file**, choose its columns and press **Audit**, or open a "
            "stored audit.")
    st.stop()
try:
    stored = cached_audit(str(results), opened)
except UnknownAudit as err:
    st.error(str(err))
    st.stop()

result, record = stored.result, stored.record
ci = confidence_label(result.settings)
tolerance = record.get("tolerance")
st.subheader(str(record.get("file")))
st.caption(f"Audit {stored.audit_id}, made {record.get('created')}: {record.get('rows')} rows; groups from "
           f"{', '.join(record.get('groups', []))}; sparse models {', '.join(record.get('sparse', []))} against "
           f"{DENSE_COLUMN}; ε {'none' if tolerance is None else f'{100 * tolerance:g} %'}; {ci} intervals from "
           f"{result.settings.n_boot} resamples (seed {result.settings.seed}); file SHA-256 "
           f"{str(record.get('file_sha256'))[:16]}….")
sentences = headline_sentences(result.groups, confidence=result.settings.confidence)
st.markdown("\n".join(f"- {s}" for s in sentences))
if result.notes:
    st.warning("\n".join(f"- {note}" for note in result.notes))

audit_chart(result, [s for s in ("test", "train", "val") if s in set(result.groups.split)],
            key="audit_predictions")
audit_table(result)
c = st.columns(2)
c[0].download_button("Audit report (HTML, opens offline)", lambda: cached_report(str(results), stored.audit_id),
                     file_name=f"ceag_audit_{stored.audit_id}.html", mime="text/html", icon=":material/download:")
c[1].download_button("Per-group table (CSV)", write_csv(result.csv_table()),
                     file_name=f"ceag_audit_{stored.audit_id}.csv", mime="text/csv", icon=":material/download:")
with st.expander("What the symbols mean"):
    st.markdown("\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY.items()))
