"""``ceag grid``: a grid of runs on the local pool or a Ray cluster."""

from __future__ import annotations

import argparse
import json
import sys

from ceag.cli.options import grid_spec
from ceag.cli.store import read_store
from ceag.config.errors import ConfigError
from ceag.datasets import DatasetError
from ceag.present.progress import GridProgress
from ceag.results.layout import resolve_results
from ceag.store import StoreError


def cmd_grid(args: argparse.Namespace) -> int:
    from ceag.grid.driver import run_grid
    from ceag.grid.plan import count_epochs

    spec = grid_spec(args)
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
    from ceag.grid.plan import plan
    from ceag.run.data import resolve_all

    try:
        configs = resolve_all(configs, resolve_results(results_arg))
        return configs, plan(configs)
    except (DatasetError, OSError, ValueError):
        return configs, {}


def _note_paper_checkpoint(args: argparse.Namespace, spec) -> None:
    """A paper preset without a dense checkpoint: say which file the paper started from."""
    from ceag.config.presets import preset_checkpoint

    published = preset_checkpoint(args.preset) if args.preset else None
    if published and not spec.settings.get("dense_checkpoint") and not args.json:
        print(f"note: the paper's runs start from the dense model {published[0]} ({published[1]}); without "
              f"--dense-checkpoint FILE the dense model is trained with the preset's dense recipe "
              f"(docs/presets.md)", file=sys.stderr)


def _print_grid_data(results, run_ids: list[str]) -> None:
    """How the grid's data was read and what loading left out, once per dataset instance, with its warnings."""
    from ceag.store import queries

    try:
        df = queries.runs(read_store(results))
    except StoreError:
        return
    from ceag.present.sentences.data import data_accounts

    df = df[df.run_id.isin(run_ids)]
    for item in data_accounts(df):
        lines = item["lines"] + [f"note: {note}" for note in item["notes"]]
        print(f"  data {item['dataset']} {item['fingerprint']}: {lines[0]}")
        for line in lines[1:]:
            print(f"    {line}")
    for warning in sorted(set(df.data_warning.dropna())):
        print(f"  WARNING: {warning}")
