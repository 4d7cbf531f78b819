"""The audit report: one self-contained HTML file (plotly's JavaScript embedded, nothing fetched
when it opens), or the per-group table as CSV.

The HTML holds the generated sentences, the per-group chart with intervals and ε, the per-group
and per-run tables with intervals, what each run's model costs against its dense model with the speed–fairness
frontier of the runs (those with a footprint), every setting of every run (the pruning criterion always, magnitude
included, though a run's config names it only away from the default), the run ids, the bootstrap
settings, the glossary and the versions of the packages that produced it.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from ceag.analysis.audit import Audit, audit
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.verdicts import CANNOT_TELL, EXCEEDS
from ceag.present.audit_table import verdict_lines
from ceag.present.casualty_report import DEFAULT_THUMBNAILS, casualty_section
from ceag.present.sentences.compare import audit_sentences
from ceag.present.sentences.trust import audit_notes
from ceag.present.words import confidence_label, criterion_label, names_criteria, names_kinds

PACKAGES = ("ceag", "torch", "torchvision", "numpy", "pandas", "pyarrow", "duckdb", "plotly", "fairlearn",
            "scikit-learn", "streamlit")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
.flag { color: #b00; } .note { color: #555; font-size: 0.9rem; } code { font-size: 0.85rem; }
"""


def package_versions() -> dict[str, str]:
    """Installed versions of the packages behind a report ('not installed' where absent); no imports."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed" if name != "ceag" else _ceag_version()
    return out


def _ceag_version() -> str:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    for line in pyproject.read_text().splitlines() if pyproject.exists() else []:
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"') + " (source checkout)"
    return "unknown"


def _pt(x) -> str:
    return "" if x is None or pd.isna(x) else f"{100 * x:.1f}"


def _interval(row, col) -> str:
    lo, hi = row.get(f"{col}_low"), row.get(f"{col}_high")
    return "" if lo is None or pd.isna(lo) else f"{_pt(lo)} – {_pt(hi)}"


def _table(headers: list[str], rows: list[list[str]], text_cols: int = 0) -> str:
    head = "".join(f'<th class="{"text" if i < text_cols else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"text" if i < text_cols else ""}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def group_table_html(result: Audit) -> str:
    from ceag.present.words import audit_run_labels

    labels = audit_run_labels(result.groups)
    ci = confidence_label(result.settings)
    headers = ["run", "split", "group", "n", "dense acc", "acc", f"acc {ci} CI", "Δ_g", f"Δ_g {ci} CI", "ψ_g",
               f"ψ_g {ci} CI", "verdict vs ε", "verdict interval", "min detectable gap", "flag"]
    rows = []
    for _, r in result.groups.iterrows():
        flag = ""
        if r.get("too_small"):
            flag = f'<span class="flag">n = {r["n"]}: too few samples for an interval</span>'
        elif r["n"] == 0:
            flag = "no samples: undefined"
        elif r.get("small_for_tolerance"):
            flag = (f'<span class="flag">too small to audit at ε: gaps under {_pt(r["min_detectable_gap"])} points '
                    "cannot be told from zero</span>")
        verdict = r.get("verdict") if isinstance(r.get("verdict"), str) else ""
        cls = ' class="flag"' if verdict in (EXCEEDS, CANNOT_TELL) else ""
        rows.append([html.escape(labels[r["run_id"]]), r["split"], html.escape(str(r["group_name"])), str(r["n"]),
                     _pt(r["dense_accuracy"]), _pt(r["accuracy"]), _interval(r, "accuracy"), _pt(r["acc_gap"]),
                     _interval(r, "acc_gap"), _pt(r["excess_gap"]), _interval(r, "excess_gap"),
                     f"<span{cls}>{html.escape(verdict)}</span>" if verdict else "",
                     _interval(r, "excess_gap_corrected") if verdict else "", _pt(r.get("min_detectable_gap")), flag])
    return _table(headers, rows, text_cols=3)


def verdict_note_html(result: Audit) -> str:
    """One line per constrained run and split: how many groups meet ε, exceed it or cannot tell, and how the
    intervals were widened for the number of groups (``audit_table.verdict_lines``)."""
    lines = verdict_lines(result)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(t)}</li>" for t in lines)
    return f"<p>Verdicts against ε, per run and split:</p><ul>{items}</ul>"


def run_table_html(result: Audit) -> str:
    from ceag.present.words import audit_run_labels

    labels = audit_run_labels(result.groups)
    ci = confidence_label(result.settings)
    headers = ["run", "run id", "criterion", "split", "accuracy", f"{ci} CI", "dense accuracy", "max_g ψ_g",
               f"{ci} CI", "Ψ_PW", f"{ci} CI", "status", "reported epoch"]
    rows = []
    for _, r in result.runs.iterrows():
        rows.append([html.escape(labels.get(r["run_id"], r["run_id"])), f"<code>{r['run_id']}</code>",
                     html.escape(criterion_label(r.get("criterion"), r["method"])), r["split"],
                     _pt(r["accuracy"]), _interval(r, "accuracy"), _pt(r["dense_accuracy"]), _pt(r["max_excess_gap"]),
                     _interval(r, "max_excess_gap"), _pt(r["psi_pw"]), _interval(r, "psi_pw"), r["status"],
                     "" if r["reported_epoch"] is None or pd.isna(r["reported_epoch"]) else str(r["reported_epoch"])])
    return _table(headers, rows, text_cols=4)


def settings_table_html(result: Audit) -> str:
    """Every setting of every run: one row per setting, one column per run. The pruning criterion is always a row:
    a config names it only away from magnitude, the store's ``criterion`` says it for every run."""
    configs = {}
    for _, r in result.runs.drop_duplicates("run_id").iterrows():
        configs[r["run_id"]] = json.loads(r["config"]) if r["config"] else {}
        if isinstance(r.get("criterion"), str):
            configs[r["run_id"]].setdefault("criterion", r["criterion"])
    keys = sorted(set().union(*[c.keys() for c in configs.values()])) if configs else []
    rows = [[html.escape(k)] + [html.escape(json.dumps(c.get(k))) for c in configs.values()] for k in keys]
    return _table(["setting", *configs.keys()], rows, text_cols=len(configs) + 1)


def across_seeds_section(results: str | os.PathLike, result: Audit) -> str | None:
    """The report's section on each audited mitigation against NFT across seeds (``analysis.seeds``): sentences
    for test max_g ψ_g first, then a table of every split and metric; None when no audited run has an NFT
    run on the same seed to be paired with."""
    from ceag.analysis.seed_cache import store_comparisons
    from ceag.present.sentences.seeds import METRIC_WORDS, seed_subject, verdict_label, verdict_sentences

    confidence = result.settings.confidence
    ids = result.run_ids
    frame, notes = store_comparisons(results, splits=("test", "train", "val"), n_boot=result.settings.n_boot,
                                     confidence=confidence, run_ids=tuple(ids))
    if frame.empty:
        return None
    mine = frame[[any(r in ids for r in cell.split(",")) for cell in frame["run_ids"]]]
    mine = mine[mine["metric"] != "excess_gap"]
    if mine.empty:
        return None
    text = "".join(f"<li>{html.escape(s)}</li>" for s in verdict_sentences(frame, ids, confidence=confidence))
    ci = f"{100 * confidence:g} %"
    named = names_criteria(mine)
    kinds = names_kinds(mine)
    rows = [[html.escape(seed_subject(r._asdict(), kinds=kinds)),
             html.escape(criterion_label(getattr(r, "criterion", None), r.method)),
             f"{r.sparsity:g}", r.split, METRIC_WORDS[r.metric],
             _pt(r.baseline), _pt(r.mitigation), _pt(r.diff), f"{_pt(r.diff_low)} – {_pt(r.diff_high)}",
             html.escape(verdict_label(r._asdict())), str(r.seeds)] for r in mine.itertuples()]
    table = _table(["mitigation", "criterion", "sparsity", "split", "metric", "NFT (mean)", "mitigation (mean)",
                    "difference", f"{ci} CI", "verdict", "seeds"], rows, text_cols=2)
    extra = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    against = " pruned by the same criterion (FairGRAPE: NFT pruned by magnitude)" if named else ""
    return (f"<p>Each mitigation against NFT on the same seeds and the same dense model{against}: the mean difference "
            f"(mitigation − NFT, points) and its {ci} interval from a hierarchical bootstrap (seeds with replacement, "
            f"then the shared split's samples with replacement, {result.settings.n_boot} replicates).</p>"
            f"<ul>{text}</ul>{table}{extra}")


SPEED_MEASURE = "latency_cpu_b64"  # the speed section's x axis: every run is timed on a CPU at batch 64


def speed_frame(results: str | os.PathLike, result: Audit, split: str = "test") -> tuple[pd.DataFrame, int]:
    """(one row per audited run with a footprint: its metrics on ``split`` and its footprint columns, as
    ``queries.speed_frontier`` has them; how many audited runs have none)."""
    from ceag.present.footprint import footprint_frame
    from ceag.store import queries

    stored = footprint_frame(queries.footprints(results, list(result.run_ids)))
    runs = result.runs[result.runs["split"] == split]
    if stored.empty or runs.empty:
        return pd.DataFrame(), len(set(result.run_ids) - set(stored.get("run_id", [])))
    frame = runs.drop(columns=[c for c in stored.columns if c != "run_id" and c in runs]).merge(stored, on="run_id")
    return frame.reset_index(drop=True), len(set(result.run_ids) - set(frame["run_id"]))


def speed_table_html(frame: pd.DataFrame, labels: dict[str, str], split: str) -> str:
    """One row per run: what was pruned, each figure of its pruned model with dense / pruned, its metrics on
    ``split`` and where it was timed."""
    from ceag.present.footprint import bytes_text, count_text, ms_text, pruning_label, ratio_text, timing_groups

    latencies = [(f"latency_{d}_b{b}_ms", f"{d.upper()} latency, batch {b}") for d in ("cpu", "gpu") for b in (1, 64)
                 if f"latency_{d}_b{b}_ms" in frame and frame[f"latency_{d}_b{b}_ms"].notna().any()]
    timed = timing_groups(frame, SPEED_MEASURE)
    several = timed.nunique() > 1  # else the section names the one machine once
    headers = ["run", "pruning", "channel sparsity", "weight sparsity", "parameters", "MACs", "saved size",
               *[label for _, label in latencies], f"{split} accuracy", f"{split} max_g ψ_g",
               *(["timed on"] if several else [])]

    def both(r, column: str, write) -> str:
        dense, pruned = r.get(f"dense_{column}"), r.get(column)
        ratio = dense / pruned if pruned and not pd.isna(pruned) and not pd.isna(dense) else float("nan")
        return f'{write(pruned)} <span class="note">({ratio_text(ratio)})</span>'

    rows = [[html.escape(labels.get(r["run_id"], r["run_id"])), html.escape(pruning_label(r["pruning"])),
             f"{_pt(r['channel_sparsity'])} %", f"{_pt(r['achieved_sparsity'])} %", both(r, "params", count_text),
             both(r, "macs", count_text), both(r, "size_bytes", bytes_text),
             *[both(r, c, ms_text) for c, _ in latencies], f"{_pt(r['accuracy'])} %", _pt(r["max_excess_gap"]),
             *([html.escape(timed[i])] if several else [])] for i, r in frame.iterrows()]
    return _table(headers, rows, text_cols=2)


def speed_section(results: str | os.PathLike, result: Audit, split: str = "test") -> str | None:
    """The report's section on speed and fairness (plotly.js not included: the report's first chart carries it):
    ``speed_table_html`` and the speed–fairness frontier of the audited runs, one chart per machine and thread
    count they were timed on; None when no audited run has a footprint."""
    from ceag.present.footprint import MEASURES, speed_cells, timing_groups
    from ceag.present.plots.speed import speed_frontier
    from ceag.present.words import audit_run_labels

    frame, unmeasured = speed_frame(results, result, split)
    if frame.empty:
        return None
    parts = [f"<p>What each run's pruned model costs against its dense model, measured at the run's end beside "
             f"it (parameters, multiply-accumulates per sample, saved state dict, median eval latency), with dense "
             f"/ pruned in brackets: how many times fewer, smaller or faster. A model pruned by channels is rebuilt "
             f"without them; one pruned by weights keeps its size. Accuracy (%) and max_g ψ_g (points) on "
             f"{split}.</p>", speed_table_html(frame, audit_run_labels(result.groups), split)]
    if unmeasured:
        parts.append(f'<p class="note">{unmeasured} of the audited runs {"has" if unmeasured == 1 else "have"} no '
                     "footprint (made before runs measured what their model costs) and "
                     f'{"is" if unmeasured == 1 else "are"} left out.</p>')
    groups = timing_groups(frame, SPEED_MEASURE)
    if groups.nunique() > 1:
        parts.append(f'<p class="note">These runs were timed on {groups.nunique()} machines or thread counts: '
                     "latencies compare only within one, so each has a chart of its own.</p>")
    else:
        parts.append(f'<p class="note">Timed on {html.escape(str(groups.iloc[0]))}, each run\'s dense and pruned '
                     "model in turns in one process.</p>")
    for i, (where, part) in enumerate(frame.groupby(groups, sort=True)):
        fig = speed_frontier(speed_cells(part, SPEED_MEASURE), SPEED_MEASURE, split=split,
                             title=f"{MEASURES[SPEED_MEASURE].label}: timed on {where}")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False},
                                 div_id=f"speed-{i}"))
    return "".join(parts)


def render_html(result: Audit, *, title: str | None = None, generated_at: str | None = None,
                casualties: str | None = None, across: str | None = None, speed: str | None = None) -> str:
    """The report as one HTML document (plotly.js embedded once, about 4.7 MB); ``casualties``: the section on
    whom pruning hurt (``casualty_report.casualty_section``), ``across``: the section on mitigations against
    NFT across seeds (``across_seeds_section``), ``speed``: the section on what each model costs
    (``speed_section``); each left out when None."""
    from ceag.present.glossary import GLOSSARY
    from ceag.present.plots.groups import group_interval_bars

    generated_at = generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    title = title or f"ceag audit of {len(result.run_ids)} runs"
    ci = confidence_label(result.settings)
    charts = []
    for i, metric in enumerate(("excess_gap", "accuracy")):
        fig = group_interval_bars(result.groups, metric)
        charts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False},
                                  div_id=f"chart-{metric}"))
    story = "".join(f"<li>{html.escape(s)}</li>" for s in audit_sentences(result))
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in result.notes)
    versions = _table(["package", "version"], [[k, html.escape(v)] for k, v in package_versions().items()], 1)
    glossary = "".join(f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items())
    s = result.settings
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Generated {generated_at}. Runs: {", ".join(f"<code>{r}</code>" for r in result.run_ids)}.
Accuracies in percent, gaps in percentage points. Intervals: {ci} paired percentile bootstrap,
{s.n_boot} resamples of each split, seed {s.seed} (resampling as Fairlearn's MetricFrame does).</p>
{notes}
{"" if across is None else "<h2>Across seeds</h2>" + across}
<h2>What the numbers say</h2><ul>{story}</ul>
<h2>Excess accuracy gap ψ_g per group, with intervals and ε</h2>{charts[0]}
<h2>Accuracy per group</h2>{charts[1]}
<h2>Per-group table</h2>{verdict_note_html(result)}{group_table_html(result)}
<h2>Per run</h2>{run_table_html(result)}
{"" if speed is None else "<h2>Speed and fairness</h2>" + speed}
{"" if casualties is None else "<h2>What pruning broke</h2>" + casualties}
<h2>Settings of every run</h2>{settings_table_html(result)}
<h2>Glossary</h2><dl>{glossary}</dl>
<h2>Software</h2>{versions}
</body></html>
"""


def audited(results: str | os.PathLike, run_ids: list[str], settings: BootstrapSettings | None = None) -> Audit:
    """``analysis.audit.audit`` with the notes an auditor reads first (``audit_notes``): the audit every report
    and the Compare page show. Raises UnknownRuns for ids that are not finished runs."""
    result = audit(results, run_ids, settings)
    return dataclasses.replace(result, notes=audit_notes(result, results))


def excess_gaps(result: Audit) -> dict:
    """{(run_id, split, group_id): ψ_g} of an audit, for the casualty section."""
    g = result.groups
    return dict(zip(zip(g["run_id"], g["split"], g["group_id"], strict=True), g["excess_gap"], strict=True))


def write_report(results: str | os.PathLike, run_ids: list[str], out: str | os.PathLike,
                 settings: BootstrapSettings | None = None, *, data_root: str | os.PathLike | None = None,
                 thumbnails: int = DEFAULT_THUMBNAILS, picture_split: str = "test") -> tuple[Path, Audit]:
    """Audit ``run_ids`` and write ``out``: HTML for ``.html`` / ``.htm``, the per-group table for ``.csv``
    (text cells that a spreadsheet would run as a formula neutralised: ceag.present.csv_export).

    The HTML has a section on whom pruning hurt, with up to ``thumbnails`` pictures per group of
    ``picture_split``, read from ``data_root`` (None: no pictures).

    Raises UnknownRuns for ids that are not finished runs, ValueError for another suffix.
    """
    from ceag.results.files import atomic_write

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".csv"):
        raise ValueError(f"--out {out}: the report is written as .html (the full report) or .csv (the per-group "
                         "table); choose one of those suffixes")
    result = audited(results, run_ids, settings)
    if suffix == ".csv":
        table = result.csv_table()
        from ceag.present.csv_export import write_csv

        atomic_write(out, lambda p: write_csv(table, p))  # formulas neutralised for spreadsheets
    else:
        section = casualty_section(results, result.run_ids, data_root or ".",
                                   thumbnails if data_root is not None else 0, excess_gap=excess_gaps(result),
                                   picture_split=picture_split)
        text = render_html(result, casualties=section, across=across_seeds_section(results, result),
                           speed=speed_section(results, result))
        atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
    return out, result
