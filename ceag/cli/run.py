"""``ceag run``: one experiment, or its cached result."""

from __future__ import annotations

import argparse
import json
import sys

from ceag.cli.options import config_from_args
from ceag.results.layout import resolve_results


def cmd_run(args: argparse.Namespace) -> int:
    from ceag.present.progress import ProgressBar
    from ceag.run.pipeline import run

    cfg = config_from_args(args)
    bar = ProgressBar()
    try:
        result = run(cfg, args.results, progress=bar)
    finally:
        bar.close()
    _ingest_ended_run(args.results, result)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_run(result, sys.stdout)
    return 0 if result.status == "finished" else 3


def _ingest_ended_run(results_arg, result) -> None:
    """Put the run that ``run`` ended (or loaded) into the store, so every command finds it at once.

    Best effort: the run is finished in its folder whatever happens here. A store that cannot be
    written gets a note on stderr, and the next command that reads the store takes the run in.
    """
    from ceag import store

    results = resolve_results(results_arg)
    try:
        if result.cached and store.queries.finished_ids(results, [result.run_id]):
            return  # a cached run the store already holds
        store.ingest_run(results, result.run_id)
    except Exception as err:  # noqa: BLE001 - nothing here may fail a finished run
        print(f"note: run {result.run_id} is kept in its folder but could not be added to the store of {results} "
              f"({err}); the next command that reads the store adds it", file=sys.stderr)


def _print_run(result, out) -> None:
    j = result.to_json()
    tol = "" if j["tolerance"] is None else f", tolerance {j['tolerance']:.3f}"
    state = "cached" if result.cached else f"{j['wall_seconds']:.1f}s on {j['device']}"
    out.write(f"run {j['run_id']}  {j['method']} on {j['dataset']}/{j['model']}, sparsity "
              f"{j['sparsity']:.3f} (achieved {j['achieved_sparsity']:.3f}){tol}, seed {j['seed']}: "
              f"{j['status']} ({state}); reported epoch {j['reported_epoch']}\n")
    if j.get("reason"):
        out.write(f"  reason: {j['reason']}\n")
    from ceag.present.sentences.trust import summary_line

    for text in summary_line(j.get("diagnostics")):
        out.write(f"  {text}\n")
    if j.get("selected_tolerance") is not None:
        sel = j.get("selection") or {}
        out.write(f"  selected tolerance {j['selected_tolerance']:g} ({sel.get('rule', 'on validation')})\n")
    drove = j.get("constraint_data") or {}
    if drove.get("split"):
        out.write(f"  multipliers driven by the {drove['split']} split"
                  + (f" ({drove['samples']} samples)" if drove.get("samples") else "") + "\n")
    from ceag.present.sentences.data import skip_lines

    out.write(f"  data {j.get('data_fingerprint') or 'fingerprint unknown'}\n")
    for line in skip_lines({"skipped": j.get("skipped_files"), "lost_by_group": j.get("skipped_by_group"),
                            "rows_read": j.get("rows_read")}):
        out.write(f"  {line}\n")
    for warning in j.get("data_warnings") or []:
        out.write(f"  WARNING: {warning}\n")
    for note in j.get("data_notes") or []:
        out.write(f"  note: {note}\n")
    for split in ("train", "val", "test"):
        if split not in j:
            continue
        s = j[split]
        out.write(f"\n{split}: accuracy {_pct(s['accuracy'])} (dense {_pct(s['dense_accuracy'])}), "
                  f"max excess gap {_pct(s['max_excess_gap'])}, psi_PW {_pct(s['psi_pw'])}\n")
        out.write(f"  {'group':<12}{'n':>6}{'acc':>9}{'dense':>9}{'excess gap':>12}\n")
        for g in s["groups"]:
            out.write(f"  {g['name']:<12}{g['n']:>6}{_pct(g['accuracy']):>9}"
                      f"{_pct(g['dense_accuracy']):>9}{_pct(g['excess_gap']):>12}\n")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
