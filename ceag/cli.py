"""Command line: ``python -m ceag run ...`` (more commands: ``python -m ceag --help``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .bundle import BundleError
from .config import (
    CONSTRAINT_DATA,
    DATASETS,
    METHODS,
    MITIGATION_START,
    MODELS,
    PRUNING,
    ConfigError,
    RunConfig,
    from_dict,
)
from .datasets import DatasetError
from .predictions import RunNotFound
from .progress import GridProgress
from .runs import resolve_results, run_dir
from .store import StoreError

DESCRIPTION = """ceag: constrain the disparate impact of pruning (CEAG) and compare it with NFT,
NFT+ES and EL+RB. Accuracies and gaps are fractions in [0, 1]."""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    p.add_argument("--method", choices=METHODS, default=d.method,
                   help="nft: naive fine-tuning; nft_es: NFT + best validation iterate; "
                        "el_rb: equalized loss with replay buffers; ceag: excess-gap constraints; "
                        "ceag_vs: CEAG with its tolerance selected on validation among eps, eps/2, eps/4 "
                        f"(or --set vs_tolerances=[...]) (default {d.method})")
    p.add_argument("--sparsity", type=float, default=d.sparsity,
                   help=f"target fraction of pruned weights, in [0, 1) (default {d.sparsity})")
    p.add_argument("--tolerance", type=float, default=None,
                   help="CEAG's tolerance eps on every group's excess accuracy gap, a fraction "
                        "(default 0.02; ignored by the other methods)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"run seed (default {d.seed})")
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset,
                   help=f"dataset (default {d.dataset}: scikit-learn's 8x8 digits, class 8 rare in train)")
    p.add_argument("--model", choices=MODELS, default=d.model, help=f"model (default {d.model})")
    p.add_argument("--epochs", type=int, default=d.finetune_epochs,
                   help=f"fine-tuning epochs after gradual pruning ends (default {d.finetune_epochs})")
    p.add_argument("--prune-epochs", type=int, default=d.prune_epochs,
                   help=f"epochs of gradual magnitude pruning (default {d.prune_epochs})")
    p.add_argument("--dense-epochs", type=int, default=d.dense_epochs,
                   help=f"epochs to train the dense model, trained once and reused (default {d.dense_epochs})")
    p.add_argument("--pruning", choices=PRUNING, default=d.pruning,
                   help=f"magnitude pruning: per-layer unstructured, global, or structured "
                        f"output channels (default {d.pruning})")
    p.add_argument("--dual-lr", type=float, default=d.dual_lr,
                   help=f"dual step size for EL+RB and CEAG (default {d.dual_lr})")
    p.add_argument("--buffer-size", type=int, default=d.buffer_size,
                   help=f"replay buffer entries per group (default {d.buffer_size})")
    p.add_argument("--no-replay-buffer", action="store_true",
                   help="ablation: dual step on minibatch estimates instead of replay buffers")
    p.add_argument("--constraint-data", choices=CONSTRAINT_DATA, default=d.constraint_data,
                   help="data behind CEAG's multipliers: train, or val (held-out multipliers: the dual step "
                        f"reads validation batches) (default {d.constraint_data})")
    p.add_argument("--mitigation-start", choices=MITIGATION_START, default=d.mitigation_start,
                   help="when EL+RB and CEAG switch on (default: after the last pruning epoch)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where to train (default auto: CUDA when present)")
    p.add_argument("--dense-checkpoint", help="use these dense weights (a state dict, loaded weights-only) "
                                              "instead of training the dense model")
    _add_data_options(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, VALUE in JSON (e.g. --set batch_size=128 "
                        "--set 'lr_milestones=[0.6,0.8]'); repeatable")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding the real datasets (default: $CEAG_DATA, else ./data)")
    p.add_argument("--target", help="attribute to predict (utkface, fairface: race, gender or age; custom: the "
                                    "labels.csv column holding the class)")
    p.add_argument("--groups", help="protected attribute(s), comma-separated: e.g. race, or race,gender for "
                                    "intersectional groups (custom: labels.csv column names)")
    p.add_argument("--image-size", type=int, help="resize images to N x N pixels (e.g. 64 for a CPU run)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16) forward passes; metrics "
                                                      "stay float32")


def _data_settings(args: argparse.Namespace) -> dict:
    out = {}
    if args.data_dir:
        out["data_dir"] = args.data_dir
    if args.target:
        out["target"] = args.target
    if args.groups:
        out["groups"] = [g.strip() for g in args.groups.split(",") if g.strip()]
    if args.image_size is not None:
        out["image_size"] = args.image_size
    if args.amp:
        out["amp"] = True
    return out


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    data = RunConfig().to_dict()
    # the chosen dataset's defaults; its fingerprint is taken from its data when the run starts
    data.update(target=None, groups=[], rare_groups=None, data_fingerprint=None)
    data.update(method=args.method, sparsity=args.sparsity, tolerance=args.tolerance, seed=args.seed,
                dataset=args.dataset, model=args.model, finetune_epochs=args.epochs,
                prune_epochs=args.prune_epochs, dense_epochs=args.dense_epochs, pruning=args.pruning,
                dual_lr=args.dual_lr, buffer_size=args.buffer_size,
                replay_buffer=not args.no_replay_buffer, mitigation_start=args.mitigation_start,
                constraint_data=args.constraint_data,
                device=args.device, dense_checkpoint=args.dense_checkpoint, **_data_settings(args))
    data.update(_overrides(args.overrides))
    return from_dict(data)


def _overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` options as a dict; VALUE is JSON, or a bare word such as a method name."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. --set batch_size=128")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _print_run(result, out) -> None:
    j = result.to_json()
    tol = "" if j["tolerance"] is None else f", tolerance {j['tolerance']:.3f}"
    state = "cached" if result.cached else f"{j['wall_seconds']:.1f}s on {j['device']}"
    out.write(f"run {j['run_id']}  {j['method']} on {j['dataset']}/{j['model']}, sparsity "
              f"{j['sparsity']:.3f} (achieved {j['achieved_sparsity']:.3f}){tol}, seed {j['seed']}: "
              f"{j['status']} ({state}); reported epoch {j['reported_epoch']}\n")
    if j.get("reason"):
        out.write(f"  reason: {j['reason']}\n")
    from .diagnostics import summary_line

    for text in summary_line(j.get("diagnostics")):
        out.write(f"  {text}\n")
    if j.get("selected_tolerance") is not None:
        sel = j.get("selection") or {}
        out.write(f"  selected tolerance {j['selected_tolerance']:g} ({sel.get('rule', 'on validation')})\n")
    drove = j.get("constraint_data") or {}
    if drove.get("split"):
        out.write(f"  multipliers driven by the {drove['split']} split"
                  + (f" ({drove['samples']} samples)" if drove.get("samples") else "") + "\n")
    from .sentences import skip_lines

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


def cmd_run(args: argparse.Namespace) -> int:
    from .progress import ProgressBar
    from .runs import run

    cfg = _config_from_args(args)
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
    from . import store

    results = resolve_results(results_arg)
    try:
        if result.cached and store.queries.finished_ids(results, [result.run_id]):
            return  # a cached run the store already holds
        store.ingest_run(results, result.run_id)
    except Exception as err:  # noqa: BLE001 - nothing here may fail a finished run
        print(f"note: run {result.run_id} is kept in its folder but could not be added to the store of {results} "
              f"({err}); the next command that reads the store adds it", file=sys.stderr)


def _read_store(results_arg) -> Path:
    """The results folder, its store first brought up to date with the run folders (``store.sync``).

    Every command that reads the store comes through here (``ls``, ``export`` in all its modes,
    ``report``, the grid's closing summary), so each sees every finished run, also one whose
    process ended before it reached the store. A store that cannot take new runs in (a read-only
    folder) is read as it is, with a note on stderr; a run folder that cannot be read as a run is
    left out with a note naming it. A store that cannot be used at all raises StoreError.
    """
    from .store import sync, verify

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
    from .store import queries

    known = set(queries.run_statuses(results))
    unknown = [r for r in run_ids if r not in known and not (run_dir(results, r) / "config.json").is_file()]
    if unknown:
        what = f"run {unknown[0]} is" if len(unknown) == 1 else f"runs {', '.join(unknown)} are"
        raise UnknownRunIds(f"{what} not in the store of {results}; `python -m ceag ls --results {results}` "
                            "lists the runs there")


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from err
    return parse


def _grid_spec(args: argparse.Namespace):
    from .grid import GridSpec, preset

    chosen = [n for n, v in (("--preset", args.preset), ("--spec", args.spec)) if v]
    if len(chosen) > 1:
        raise ConfigError("grid", " and ".join(chosen), "give --preset or --spec, not both")
    axes = {a: getattr(args, a) for a in ("datasets", "models", "methods", "sparsities", "tolerances", "seeds")
            if getattr(args, a) is not None}
    if args.preset:
        spec = preset(args.preset).to_dict()
    elif args.spec:
        spec = GridSpec.from_file(args.spec).to_dict()
    else:
        spec = GridSpec().to_dict()
    spec.update(axes)  # axis options refine a preset or spec
    typed = dict(_data_settings(args))
    if args.epochs is not None:
        typed["finetune_epochs"] = args.epochs
    if args.dense_checkpoint:
        typed["dense_checkpoint"] = args.dense_checkpoint
    typed.update(_overrides(args.overrides))
    # what was typed holds in every cell, over a preset's or spec's per-method values too
    return GridSpec.from_dict(spec).with_settings(typed)


def cmd_grid(args: argparse.Namespace) -> int:
    from .executor import run_grid
    from .grid import count_epochs

    spec = _grid_spec(args)
    configs = spec.configs(max_cells=args.max_cells)
    _note_paper_checkpoint(args, spec)
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers", args.workers, "must be at least 1")
    configs, tasks = _planned(configs, args.results)
    progress = GridProgress(len(configs), tasks=tasks, bar=not args.json)
    report = run_grid(configs, args.results, workers=args.workers, executor=args.executor,
                      address=args.address, job_id=args.job_id, progress=progress)
    progress.close()
    epochs = count_epochs(configs)
    if args.json:
        out = report.to_json()
        out["epochs"] = epochs
        print(json.dumps(out))
    else:
        print(f"job {report.job_id}: {report.total} runs: {report.finished} trained, {report.cached} cached, "
              f"{report.diverged} diverged, {report.failed} failed, {report.cancelled} cancelled "
              f"in {report.wall_seconds:.1f}s")
        if report.busy_fraction is not None:
            print(f"  {len(report.phases)} phase tasks, {report.worker_seconds:.1f}s of work on {report.workers} "
                  f"worker(s): workers busy {100 * report.busy_fraction:.0f}% of the wall time")
        for rid, entry in report.runs.items():
            if entry.get("status") in ("failed", "diverged", "cancelled"):
                print(f"  {rid} {entry['method']} {entry['status']}: {entry.get('reason')}")
        _print_grid_data(args.results, list(report.runs))
    return 0 if report.failed == 0 and report.cancelled == 0 else 1


def _planned(configs: list, results_arg) -> tuple[list, dict]:
    """The configs with their data's fingerprints (as ``run_grid`` resolves them, which then has
    nothing left to do) and the phase graph by task id, which names each task in the grid's log.

    Data that cannot be resolved is left to ``run_grid``, which reports it (in the job's feed too).
    """
    from .datasets.checks import resolve_all
    from .grid import plan

    try:
        configs = resolve_all(configs, resolve_results(results_arg))
        return configs, plan(configs)
    except (DatasetError, OSError, ValueError):
        return configs, {}


def _note_paper_checkpoint(args: argparse.Namespace, spec) -> None:
    """A paper preset without a dense checkpoint: say which file the paper started from."""
    from .grid import preset_checkpoint

    published = preset_checkpoint(args.preset) if args.preset else None
    if published and not spec.settings.get("dense_checkpoint") and not args.json:
        print(f"note: the paper's runs start from the dense model {published[0]} ({published[1]}); without "
              f"--dense-checkpoint FILE the dense model is trained with the preset's dense recipe "
              f"(docs/presets.md)", file=sys.stderr)


def _print_grid_data(results, run_ids: list[str]) -> None:
    """How the grid's data was read and what loading left out, once per dataset instance, with its warnings."""
    from .store import queries

    try:
        df = queries.runs(_read_store(results))
    except StoreError:
        return
    from .sentences import left_out_by_data

    df = df[df.run_id.isin(run_ids)]
    for item in left_out_by_data(df):
        lines = item["lines"] + [f"note: {note}" for note in item["notes"]]
        print(f"  data {item['dataset']} {item['fingerprint']}: {lines[0]}")
        for line in lines[1:]:
            print(f"    {line}")
    for warning in sorted(set(df.data_warning.dropna())):
        print(f"  WARNING: {warning}")


def cmd_ls(args: argparse.Namespace) -> int:
    import pandas as pd

    from .store import queries

    results = _read_store(args.results)
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
    cols = ["run_id", "status", "dataset", "model", "method", "sparsity", "tolerance", "seed", "progress_epoch",
            "total_epochs", "wall_seconds", "data", "skipped", "settled", "constraints"]
    print(df[cols].to_string(index=False))
    if df.data_fingerprint.isna().any():
        print("data 'unknown': runs made before data fingerprints were recorded; their data cannot be told apart")
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
    from .store import queries

    results = _read_store(args.results)
    if args.predictions and len(args.run or []) != 1:
        raise ConfigError("--run", args.run, "--predictions needs exactly one --run RUN_ID")
    if args.run:
        _check_known(results, args.run)
    if args.predictions:
        from .predictions import predictions

        frame = predictions(results, args.run[0], args.split)
    elif args.bundle:
        from .bundle import export_bundle

        ids = args.run or list(queries.runs(results, status="finished")["run_id"])
        path = export_bundle(results, ids, args.out)
        print(f"wrote {len(ids)} runs to {path}")
        return 0
    else:
        ids = args.run or list(queries.runs(results, status=args.status, dataset=args.dataset,
                                            method=args.method)["run_id"])
        frame = queries.export_table(results, args.table, ids)
    _write_frame(frame, args.out, args.format)
    if args.out != "-":
        print(f"wrote {len(frame)} rows to {args.out}", file=sys.stderr)
    return 0


def _write_frame(frame, out: str, fmt: str | None) -> None:
    """``frame`` as CSV (text cells that start like a formula neutralised: ceag.csvsafe) or Parquet (raw)."""
    from .csvsafe import write_csv
    from .runs import atomic_write

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
    from .audit import UnknownRuns, parse_run_ids
    from .bootstrap import BootstrapSettings
    from .report import write_report

    try:
        settings = BootstrapSettings(n_boot=args.n_boot, confidence=args.ci, seed=args.seed)
    except ValueError as err:  # named as the options are
        text = str(err).replace("n_boot=", "--n-boot ").replace("confidence=", "--ci ").replace("seed=", "--seed ")
        print(f"error: {text}", file=sys.stderr)
        return 2
    if Path(args.out).suffix.lower() not in (".html", ".htm", ".csv"):
        raise ConfigError("--out", args.out, "the report is written as FILE.html (the full report) or FILE.csv "
                                             "(the per-group table)")
    results = _read_store(args.results)
    try:
        out, result = write_report(results, parse_run_ids(args.runs), args.out, settings)
    except UnknownRuns as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote the audit of {len(result.run_ids)} runs to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .bundle import import_runs

    out = import_runs(args.source, args.results)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"imported {len(out['imported'])} runs; {len(out['present'])} were already present")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ceag", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run (or load from the cache) one pruning experiment",
                       description="Run one experiment: dense model -> gradual pruning -> "
                                   "fine-tuning with a method. A finished run with the same "
                                   "settings is loaded from the results folder instead.")
    _add_run_options(p)
    p.add_argument("--results", default=None,
                   help="results folder (default: $CEAG_RESULTS, else ./results)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_run)

    g = sub.add_parser("grid", help="run a grid of experiments (cached runs are loaded)",
                       description="Expand datasets x models x methods x sparsities x tolerances x seeds "
                                   "(tolerance multiplies only CEAG and CEAG+VS) and run every cell, sharing dense "
                                   "models and end-of-pruning states. Axis options refine a preset or spec.")
    g.add_argument("--preset", help="a named grid: demo, utkface_cpu (UTKFace on a CPU), utkface, "
                                    "utkface_intersectional, fairface, cifar100")
    g.add_argument("--spec", help="a JSON file with keys datasets, models, methods, sparsities, tolerances, "
                                  "seeds, settings (other RunConfig settings) and method_settings (a method's own, "
                                  'e.g. {"el_rb": {"dual_lr": 0.0001}})')
    g.add_argument("--datasets", type=_csv(str), help="comma-separated datasets")
    g.add_argument("--models", type=_csv(str), help="comma-separated models")
    g.add_argument("--methods", type=_csv(str), help="comma-separated methods among " + ",".join(METHODS))
    g.add_argument("--sparsities", type=_csv(float), help="comma-separated sparsities, e.g. 0.9,0.95")
    g.add_argument("--tolerances", type=_csv(float), help="comma-separated CEAG tolerances, e.g. 0.01,0.02")
    g.add_argument("--seeds", type=_csv(int), help="comma-separated seeds, e.g. 0,1,2")
    g.add_argument("--epochs", type=int, help="fine-tuning epochs after pruning")
    g.add_argument("--dense-checkpoint", help="start every cell from these dense weights (a state dict, loaded "
                   "weights-only; the paper's published files load as released: docs/presets.md)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting for every cell (over a preset's or spec's per-method value too), "
                        "VALUE in JSON; repeatable")
    _add_data_options(g)
    g.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local worker processes, or Ray tasks on a cluster (needs requirements-ray.txt)")
    g.add_argument("--address", help="Ray cluster address (default: start or join a local Ray)")
    g.add_argument("--max-cells", type=int, default=5000, help="refuse grids larger than this (default 5000)")
    g.add_argument("--job-id", help="name the job (its progress feed is <results>/jobs/<job-id>/progress.json)")
    g.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    g.add_argument("--json", action="store_true", help="print one JSON object with the job's outcome")
    g.set_defaults(func=cmd_grid)

    ls = sub.add_parser("ls", help="list runs with their status")
    ls.add_argument("--status", help="only runs with this status (finished, running, failed, diverged, interrupted)")
    ls.add_argument("--dataset", help="only this dataset")
    ls.add_argument("--method", help="only this method")
    ls.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(func=cmd_ls)

    ex = sub.add_parser("export", help="export metrics, per-sample predictions or a bundle of runs",
                        description="Export metrics of selected runs (CSV or Parquet), the per-sample "
                                    "predictions of one run, or a bundle of finished runs for import elsewhere.")
    ex.add_argument("--run", action="append", help="a run id (repeatable); default: every run matching the filters")
    ex.add_argument("--dataset", help="only this dataset")
    ex.add_argument("--method", help="only this method")
    ex.add_argument("--status", default="finished", help="only runs with this status (default finished)")
    ex.add_argument("--table", default="final",
                    choices=("final", "runs", "run_metrics", "group_metrics", "duals"),
                    help="final: per-group metrics at the reported epoch with run settings (default)")
    ex.add_argument("--predictions", action="store_true",
                    help="per-sample predictions of one run: y_true, y_pred, group, group_name, sample_id, "
                         "p_pred (probability of y_pred), dense_pred, dense_p_pred")
    ex.add_argument("--split", default="test", help="split for --predictions (train, val, test; default test)")
    ex.add_argument("--bundle", action="store_true", help="write a .tar.gz bundle of the runs for `ceag import`")
    ex.add_argument("--format", choices=("csv", "parquet"), help="default: from the --out suffix")
    ex.add_argument("--out", default="-", help="output file (default: CSV to standard output)")
    ex.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="an audit report of chosen runs (self-contained HTML, or the table as CSV)",
                        description="Per group and split of each run: n, dense and sparse accuracy, Δ_g and ψ_g "
                                    "with paired bootstrap intervals, max_g ψ_g and Ψ_PW, generated sentences, "
                                    "every setting and the package versions. --out FILE.html writes one file that "
                                    "opens offline; --out FILE.csv writes the per-group table (fractions).")
    rp.add_argument("--runs", required=True, help="comma-separated run ids (`python -m ceag ls` lists them)")
    rp.add_argument("--out", required=True, help="report.html (the full report) or table.csv (the per-group table)")
    rp.add_argument("--ci", type=float, default=0.95,
                    help="confidence level of the intervals, a fraction (default 0.95)")
    rp.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per split (default 1000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    rp.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    rp.set_defaults(func=cmd_report)

    im = sub.add_parser("import", help="import a run folder or bundle from another machine",
                        description="Validate, then copy finished runs into the results folder and the store.")
    im.add_argument("source", help="a run folder or a .tar.gz bundle written by `ceag export --bundle`")
    im.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    im.add_argument("--json", action="store_true", help="print the imported and already-present run ids as JSON")
    im.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownRunIds) as err:
        parser.exit(2, f"error: {err}\n")
    except (BundleError, StoreError, RunNotFound, DatasetError, ValueError, OSError, MemoryError) as err:
        parser.exit(1, f"error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: the run folder keeps its last checkpoint; run again to resume\n")
    return 0
