"""The commands that read the store (``ls``, ``export``, ``report``) and ``import``; each sees every finished
run folder (the store takes in what it lacks first)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ceag.config.errors import ConfigError
from ceag.config.vocabulary import MASK_METHODS
from ceag.datasets.layouts import DATA_ENV
from ceag.results.layout import CONFIG, resolve_results, run_dir
from ceag.store import StoreError


def read_store(results_arg) -> Path:
    """The results folder, its store first brought up to date with the run folders (``store.sync``).

    Every command that reads the store comes through here (``ls``, ``export`` in all its modes,
    ``report``, the grid's closing summary), so each sees every finished run, also one whose
    process ended before it reached the store. A store that cannot take new runs in (a read-only
    folder) is read as it is, with a note on stderr; a run folder that cannot be read as a run is
    left out with a note naming it. A store that cannot be used at all raises StoreError.
    """
    from ceag.store import sync, verify

    results = resolve_results(results_arg)
    if not results.is_dir():
        return results  # no folder: an empty store
    problems: list[tuple[str, str]] = []
    try:
        sync(results, problems=problems)
    except (OSError, StoreError) as err:
        verify(results)  # a store that cannot be read either: that is the error to report
        print(f"note: the store in {results} could not take in new run folders ({err}); showing what it holds",
              file=sys.stderr)
    for run_id, reason in problems:
        print(f"note: run folder {run_id} was left out of the store: {reason}", file=sys.stderr)
    return results


class UnknownRunIds(LookupError):
    """Run ids given on the command line that are neither in the store nor in a run folder."""


def _check_known(results: Path, run_ids: list[str]) -> None:
    """Raise UnknownRunIds naming every id of ``run_ids`` that the store and the run folders lack."""
    from ceag.store import queries

    known = set(queries.run_statuses(results))
    unknown = [r for r in run_ids if r not in known and not (run_dir(results, r) / CONFIG).is_file()]
    if unknown:
        what = f"run {unknown[0]} is" if len(unknown) == 1 else f"runs {', '.join(unknown)} are"
        raise UnknownRunIds(f"{what} not in the store of {results}; `python -m ceag ls --results {results}` "
                            "lists the runs there")


def cmd_ls(args: argparse.Namespace) -> int:
    import pandas as pd

    from ceag.store import queries

    results = read_store(args.results)
    df = queries.runs(results, status=args.status, dataset=args.dataset, method=args.method)
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs yet; try: python -m ceag grid --preset demo")
        return 0
    df = df.assign(data=df.data_fingerprint.fillna("unknown"),
                   skipped=[("?" if pd.isna(n) else str(int(n))) for n in df.skipped_rows])
    df["settled"] = df["converged"].map(_flag("yes", "NO"))
    df["constraints"] = df["constraints_active"].map(_flag("acted", "NEVER"))
    own = df["method"].isin(MASK_METHODS)  # FairGRAPE chooses its own masks: no criterion applies
    df["criterion"] = df["criterion"].fillna("magnitude").where(~own, "-")
    cols = ["run_id", "status", "dataset", "model", "method", "criterion", "sparsity", "tolerance", "seed",
            "progress_epoch", "total_epochs", "wall_seconds", "data", "skipped", "settled", "constraints"]
    print(df[cols].to_string(index=False))
    if df.data_fingerprint.isna().any():
        print("data 'unknown': runs made before data fingerprints were recorded; their data cannot be told apart")
    if own.any():
        print("criterion '-': " + ", ".join(sorted(set(df.loc[own, "method"]))) + " chooses the weights it keeps by "
              "its own group importance, so no pruning criterion applies")
    for row in df[df.data_warning.notna()].itertuples():
        print(f"WARNING run {row.run_id}: {row.data_warning}")
    _print_run_flags(df)
    return 0


def _flag(yes: str, no: str):
    """A yes/no/unknown column: NULL (unknown, or not applicable) shows as "-"."""
    import pandas as pd

    return lambda v: "-" if v is None or pd.isna(v) else (yes if bool(v) else no)


def _print_run_flags(df, limit: int = 10) -> None:
    """Below the table: what to do about runs that did not settle or whose constraints misbehaved."""
    import numpy as np

    flagged = [(r.run_id, r.advice) for r in df.itertuples() if r.settled == "NO" and isinstance(r.advice, str)]
    flagged += [(r.run_id, w) for r in df.itertuples() if isinstance(r.warnings, (list, tuple, np.ndarray))
                for w in r.warnings]
    if not flagged:
        return
    print(f"\n{len(flagged)} note(s) on these runs (settled: over the last 20 % of fine-tuning, accuracy and "
          "max_g ψ_g stayed within their limits):")
    for run_id, text in flagged[:limit]:
        print(f"  {run_id}: {text}")
    if len(flagged) > limit:
        print(f"  ... and {len(flagged) - limit} more (python -m ceag ls --json has them all)")


def cmd_export(args: argparse.Namespace) -> int:
    from ceag.store import queries

    results = read_store(args.results)
    if args.model:
        from ceag.results.model_export import export_model

        _check_known(results, [args.model])
        if args.out == "-":
            raise ConfigError("--out", "-", "a model is written to a file: --out FILE.pt (or FILE.onnx)")
        path = export_model(results, args.model, args.out)
        print(f"wrote the model of run {args.model} to {path}", file=sys.stderr)
        return 0
    if args.predictions and len(args.run or []) != 1:
        raise ConfigError("--run", args.run, "--predictions needs exactly one --run RUN_ID")
    if args.casualties and len(args.run or []) != 1:
        raise ConfigError("--run", args.run, "--casualties needs exactly one --run RUN_ID")
    if args.run:
        _check_known(results, args.run)
    if args.predictions:
        from ceag.results.predictions import files_note, predictions

        frame = predictions(results, args.run[0], args.split)
        note = files_note(results, args.run[0], frame)
        if note:
            print(f"note: {note}", file=sys.stderr)
    elif args.casualties:
        frame = _casualties(results, args.run[0], args.split, args.casualties)
    elif args.bundle:
        from ceag.results.bundle import export_bundle

        ids = args.run or list(queries.runs(results, status="finished")["run_id"])
        path = export_bundle(results, ids, args.out)
        print(f"wrote {len(ids)} runs to {path}")
        return 0
    elif args.table == "verdicts":
        frame = _verdicts(results, args)
    else:
        ids = args.run or list(queries.runs(results, status=args.status, dataset=args.dataset,
                                            method=args.method)["run_id"])
        frame = queries.export_table(results, args.table, ids)
    _write_frame(frame, args.out, args.format)
    if args.out != "-":
        print(f"wrote {len(frame)} rows to {args.out}", file=sys.stderr)
    return 0


def _verdicts(results, args: argparse.Namespace):
    """Every mitigation of the store against NFT across seeds (``analysis.seeds``; NFT pruned by the cell's
    criterion), one row per cell, split and metric (each group's ψ_g included), with the verdict in words;
    ``--dataset``, ``--method`` and ``--run`` (a cell holding one of the runs) narrow it."""
    from ceag.analysis.seed_cache import store_comparisons
    from ceag.present.sentences.seeds import seed_verdict

    frame, notes = store_comparisons(results, dataset=args.dataset, splits=("train", "val", "test"))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.method:
        frame = frame[frame["method"] == args.method]
    if args.run:
        frame = frame[[any(r in args.run for r in ids.split(",")) for ids in frame["run_ids"]]]
    frame = frame.assign(verdict=[seed_verdict(r) for _, r in frame.iterrows()])
    order = {"train": 0, "val": 1, "test": 2}
    return frame.sort_values(["dataset", "model", "method", "criterion", "tolerance", "sparsity", "split", "metric",
                              "group_id"],
                             key=lambda c: c.map(order) if c.name == "split" else c, kind="stable",
                             na_position="first").reset_index(drop=True)


def _casualties(results, run_id: str, split: str, cell: str):
    from ceag.analysis.casualties import CasualtyError, casualty_export
    from ceag.results.predictions import files_note, run_names, run_predictions

    frame = run_predictions(results, run_id)
    if split not in set(frame["split"]):
        raise ConfigError("--split", split, f"a split of run {run_id}: {', '.join(sorted(set(frame['split'])))}")
    note = files_note(results, run_id, frame)
    if note:
        print(f"note: {note}", file=sys.stderr)
    groups, classes = run_names(results, run_id)
    try:
        return casualty_export(frame, split, groups, classes, cell)
    except CasualtyError as err:
        raise ConfigError("--run", run_id, f"a run whose dense model's predictions are known ({err})") from err


def _write_frame(frame, out: str, fmt: str | None) -> None:
    """``frame`` as CSV (text cells that start like a formula neutralised: ceag.present.csv_export) or Parquet (raw)."""
    from ceag.present.csv_export import write_csv
    from ceag.results.files import atomic_write

    fmt = fmt or ("parquet" if out.endswith(".parquet") else "csv")
    if fmt not in ("csv", "parquet"):
        raise ConfigError("--format", fmt, "must be csv or parquet")
    if out == "-":
        if fmt == "parquet":
            raise ConfigError("--out", "-", "Parquet needs a file; give --out FILE.parquet")
        write_csv(frame, sys.stdout)
        return
    writer = (lambda p: frame.to_parquet(p, index=False)) if fmt == "parquet" else (lambda p: write_csv(frame, p))
    atomic_write(Path(out), writer)


def cmd_report(args: argparse.Namespace) -> int:
    from ceag.analysis.audit import UnknownRuns, parse_run_ids
    from ceag.analysis.bootstrap import BootstrapSettings
    from ceag.present.report import write_report

    try:
        settings = BootstrapSettings(n_boot=args.n_boot, confidence=args.ci, seed=args.seed,
                                     correction=args.correction)
    except ValueError as err:  # named as the options are
        text = str(err).replace("n_boot=", "--n-boot ").replace("confidence=", "--ci ").replace("seed=", "--seed ")
        print(f"error: {text}", file=sys.stderr)
        return 2
    if args.thumbnails < 0:
        raise ConfigError("--thumbnails", args.thumbnails, "a count of pictures per group: 0 (none) or more")
    if Path(args.out).suffix.lower() not in (".html", ".htm", ".csv"):
        raise ConfigError("--out", args.out, "the report is written as FILE.html (the full report) or FILE.csv "
                                             "(the per-group table)")
    results = read_store(args.results)
    try:
        out, result = write_report(results, parse_run_ids(args.runs), args.out, settings,
                                   data_root=args.data_dir or os.environ.get(DATA_ENV) or "data",
                                   thumbnails=args.thumbnails, picture_split=args.thumbnails_split)
    except UnknownRuns as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote the audit of {len(result.run_ids)} runs to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ceag.store import import_runs

    out = import_runs(args.source, args.results)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"imported {len(out['imported'])} runs; {len(out['present'])} were already present")
    return 0
