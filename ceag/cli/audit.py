"""``python -m ceag audit``: the audit of a predictions file made anywhere (``ceag.analysis.predictions_file``,
``ceag.analysis.stored_audits``), written as the HTML report or the per-group CSV table and kept in the results
folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT_SUFFIXES = (".html", ".htm", ".csv")


class BadOption(ValueError):
    """An option of ``audit`` has a value that is not allowed; the message names the option and the rule."""


def _number(text: str | None, option: str, kind: type, rule: str):
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise BadOption(f"invalid {option} {text!r}: {rule}") from None


def cmd_audit(args: argparse.Namespace) -> int:
    """Exit 0 with the report written and the audit stored; 2 with one ``error:`` line for bad input (the
    file, a column, an option); 1 (through ``ceag.cli.main``) when the results folder or --out cannot be
    written."""
    from ceag.analysis.predictions_file import AuditOptions, load_predictions, parse_columns
    from ceag.analysis.stored_audits import audit_predictions, audits_dir, settings_from, store_audit
    from ceag.analysis.table_file import MAX_FILE_BYTES
    from ceag.config.errors import PredictionsFileError
    from ceag.results.layout import resolve_results

    try:
        out = Path(args.out)
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise BadOption(f"invalid --out {args.out!r}: the audit is written as FILE.html (the full report) or "
                            "FILE.csv (the per-group table)")
        tolerance = _number(args.tolerance, "--tolerance", float, "ε is a fraction, e.g. 0.02 for 2 points")
        settings = settings_from(
            _number(args.n_boot, "--n-boot", int, "a whole number of resamples from 1 to 100000"),
            _number(args.ci, "--ci", float, "a fraction strictly between 0 and 1, e.g. 0.95"),
            _number(args.seed, "--seed", int, "a non-negative whole number"), args.correction)
        options = AuditOptions(parse_columns(args.groups), parse_columns(args.sparse), tolerance)
        pf = load_predictions(args.predictions, options, max_bytes=MAX_FILE_BYTES)
    except (BadOption, PredictionsFileError) as err:
        text = str(err).replace("invalid n_boot=", "invalid --n-boot ").replace("invalid confidence=", "invalid --ci ")
        print(f"error: {text.replace('invalid seed=', 'invalid --seed ')}", file=sys.stderr)
        return 2
    result = audit_predictions(pf, settings)
    aid = store_audit(args.results, pf, settings)
    _write(result, out, pf.name)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    folder = audits_dir(args.results) / aid
    if args.json:
        print(json.dumps({"audit_id": aid, "out": str(out), "stored": str(folder), "file": pf.name,
                          "file_sha256": pf.sha256, "rows": pf.rows, "groups": pf.group_names,
                          "sparse": list(pf.sparse_columns), "tolerance": pf.options.tolerance,
                          "notes": result.notes}))
    else:
        models = f"{len(pf.sparse_columns)} sparse model" + ("s" if len(pf.sparse_columns) > 1 else "")
        print(f"wrote the audit of {models} ({', '.join(pf.sparse_columns)}) in {pf.name} to {out}; stored as audit "
              f"{aid} in {resolve_results(args.results)}")
    return 0


def _write(result, out: Path, name: str) -> None:
    from ceag.present.csv_export import write_csv
    from ceag.present.report import render_html
    from ceag.results.files import atomic_write

    if out.suffix.lower() == ".csv":
        table = result.csv_table()
        atomic_write(out, lambda p: write_csv(table, p))
    else:
        text = render_html(result, title=f"ceag audit of {name}")
        atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
