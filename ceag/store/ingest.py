"""Ingest run folders into the store: one transaction per run, idempotent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pandas as pd

from ceag.config.keys import DATA_FIELDS
from ceag.results.bundle import unpack_runs
from ceag.results.files import json_safe, read_status
from ceag.results.layout import CONFIG, resolve_results, run_dir, runs_dir
from ceag.results.record import load_result, read_config
from ceag.store.db import StoreError, StoreNeedsMigration, connect, db_path, migrate_if_needed, verify

RUN_COLUMNS = [
    "run_id", "status", "reason", "dataset", "model", "method", "sparsity", "achieved_sparsity",
    "tolerance", "seed", "reported_epoch", "best_epoch", "selection_split", "progress_epoch",
    "total_epochs", "config", "data_key", "dense_key", "prune_key", "device", "threads",
    "wall_seconds", "diverged_step", "started_at", "finished_at", "data_fingerprint", "skipped_rows",
    "data_report", "data_warning",
]
# What the pruned model costs (migration 4), from the run's ``footprint``: the pruned model's figures, then the
# dense model's, the channel sparsity, which model was measured, the CPU timings' threads and the whole record.
SIZE_FIELDS = ("params", "macs", "size_bytes")
LATENCY_FIELDS = ("cpu_b1", "cpu_b64", "gpu_b1", "gpu_b64")
FOOTPRINT_COLUMNS = [
    *SIZE_FIELDS, *(f"latency_{k}_ms" for k in LATENCY_FIELDS), *(f"dense_{k}" for k in SIZE_FIELDS),
    *(f"dense_latency_{k}_ms" for k in LATENCY_FIELDS), "channel_sparsity", "footprint_model", "latency_threads",
    "footprint",
]
RUN_COLUMNS += FOOTPRINT_COLUMNS
TABLES = {
    "run_metrics": ["run_id", "epoch", "split", "accuracy", "loss", "dense_accuracy", "acc_gap",
                    "max_excess_gap", "psi_pw", "sparsity"],
    "group_metrics": ["run_id", "epoch", "split", "group_id", "group_name", "n", "accuracy", "loss",
                      "dense_accuracy", "acc_gap", "excess_gap"],
    "duals": ["run_id", "step", "epoch", "group_id", "multiplier", "violation"],
}
# Diagnostics tables (migration 3), filled from the run's ``diagnostics`` object.
DIAGNOSTIC_TABLES = {
    "run_diagnostics": ["run_id", "converged", "window_first", "window_last", "advice", "constraints_active",
                        "max_multiplier", "multiplier_ratio", "estimates_agree", "warnings", "diagnostics"],
    "run_spreads": ["run_id", "split", "accuracy", "max_excess_gap", "accuracy_limit", "max_excess_gap_limit"],
    "constraint_groups": ["run_id", "group_id", "max_multiplier", "multiplier_ratio", "dual_steps",
                          "violated_share", "last_estimate", "train_excess_gap", "window_estimate",
                          "window_train_excess_gap", "disagree"],
}


def diagnostic_frames(run_id: str, diag: dict) -> dict[str, pd.DataFrame]:
    """The rows of the diagnostics tables for one run's ``diagnostics`` object."""
    c = diag.get("constraints") or {}
    run = {"run_id": run_id, "converged": diag.get("converged"), "window_first": diag["window"][0],
           "window_last": diag["window"][1], "advice": diag.get("advice"),
           "constraints_active": diag.get("constraints_active"), "max_multiplier": diag.get("max_multiplier"),
           "multiplier_ratio": c.get("multiplier_ratio"), "estimates_agree": c.get("estimates_agree"),
           "warnings": [*(diag.get("learning") or {}).get("warnings", []), *(c.get("warnings") or [])],
           "diagnostics": json.dumps(json_safe(diag))}
    spreads = [{"run_id": run_id, "split": split, "accuracy": v["accuracy"], "max_excess_gap": v["max_excess_gap"],
                "accuracy_limit": diag["spread_limit"][split]["accuracy"],
                "max_excess_gap_limit": diag["spread_limit"][split]["max_excess_gap"]}
               for split, v in diag.get("spread", {}).items()]
    per_group = DIAGNOSTIC_TABLES["constraint_groups"][2:]
    groups = [{"run_id": run_id, "group_id": g["group"], **{k: g[k] for k in per_group}} for g in c.get("groups", [])]
    return {"run_diagnostics": pd.DataFrame([run], columns=DIAGNOSTIC_TABLES["run_diagnostics"]),
            "run_spreads": _numeric(pd.DataFrame(spreads, columns=DIAGNOSTIC_TABLES["run_spreads"]), 2),
            "constraint_groups": _numeric(pd.DataFrame(groups, columns=DIAGNOSTIC_TABLES["constraint_groups"]), 2)}


def _numeric(frame: pd.DataFrame, first: int) -> pd.DataFrame:
    """Columns from ``first`` on as numbers (None -> NaN, stored as NULL); booleans stay booleans."""
    for col in frame.columns[first:]:
        if frame[col].map(lambda v: isinstance(v, bool)).any():
            frame[col] = frame[col].astype("boolean")
        else:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _run_row(run_id: str, cfg, status: dict, summary: dict | None) -> dict:
    s = summary or {}
    return {
        "run_id": run_id, "status": s.get("status", status.get("status", "running")),
        "reason": s.get("reason", status.get("reason")), "dataset": cfg.dataset, "model": cfg.model,
        "method": cfg.method, "sparsity": cfg.sparsity, "achieved_sparsity": s.get("achieved_sparsity"),
        "tolerance": cfg.tolerance, "seed": cfg.seed, "reported_epoch": s.get("reported_epoch"),
        "best_epoch": s.get("best_epoch"), "selection_split": s.get("selection_split"),
        "progress_epoch": status.get("run_epoch", status.get("epoch", s.get("reported_epoch"))),
        "total_epochs": cfg.total_epochs,
        "config": cfg.canonical_json(), "data_key": cfg.key(DATA_FIELDS),
        "dense_key": s.get("dense_key") or "", "prune_key": s.get("prune_key") or "",
        "device": s.get("device"), "threads": s.get("threads"), "wall_seconds": s.get("wall_seconds"),
        "diverged_step": s.get("diverged_step"), "started_at": s.get("started_at", status.get("started_at")),
        "finished_at": s.get("finished_at"), "data_fingerprint": cfg.data_fingerprint,
        **_data_columns(s), **footprint_columns(s.get("footprint")),
    }


def footprint_columns(footprint: dict | None) -> dict:
    """The ``FOOTPRINT_COLUMNS`` of a run's ``footprint`` record (all None for a run without one)."""
    if not footprint:
        return dict.fromkeys(FOOTPRINT_COLUMNS)
    out: dict = {}
    for prefix, which in (("", "pruned"), ("dense_", "dense")):
        figures = footprint.get(which) or {}
        latency = figures.get("latency_ms") or {}
        out.update({f"{prefix}{k}": figures.get(k) for k in SIZE_FIELDS})
        out.update({f"{prefix}latency_{k}_ms": latency.get(k) for k in LATENCY_FIELDS})
    threads = [lat.get("threads") for lat in footprint.get("latencies") or [] if lat.get("device") == "cpu"]
    return {**out, "channel_sparsity": footprint.get("channel_sparsity"), "footprint_model": footprint.get("model"),
            "latency_threads": threads[0] if threads else None, "footprint": json.dumps(json_safe(footprint))}


def _data_columns(summary: dict) -> dict:
    """What loading skipped, from a run's summary (older summaries had only ``skipped_files``)."""
    report = summary.get("data_report")
    skipped = (report or {}).get("skipped", summary.get("skipped_files"))
    if report is None and skipped is None:
        return {"skipped_rows": None, "data_report": None, "data_warning": None}
    warnings = (report or {}).get("warnings") or []
    return {"skipped_rows": int(sum((skipped or {}).values())),
            "data_report": json.dumps(report if report is not None else {"skipped": skipped}),
            "data_warning": "; ".join(warnings) or None}


def ingest_run(results: str | os.PathLike, run_id: str) -> str:
    """Copy one run folder into the store, replacing what the store had for it.

    Returns the status ingested. A finished run brings its metrics and traces; an unfinished
    one only its status row.
    """
    from ceag.config.keys import dense_key, prune_key

    results = Path(results)
    folder = run_dir(results, run_id)
    cfg = read_config(folder)
    status = read_status(folder)
    result = load_result(results, run_id)
    summary = result.summary if result is not None else None
    # Everything is keyed by the folder's name: a folder written by an older version may hold a
    # config that hashes to another id today, and its rows must still join and replace cleanly.
    row = _run_row(run_id, cfg, status, summary)
    row["dense_key"] = row["dense_key"] or dense_key(cfg)
    row["prune_key"] = row["prune_key"] or prune_key(cfg)
    frames = {}
    if result is not None:
        for table, cols in TABLES.items():
            df = getattr(result, table).copy()
            df.insert(0, "run_id", run_id)
            frames[table] = df[cols]
        frames.update(diagnostic_frames(run_id, result.diagnostics))
    with connect(results, write=True) as con:
        try:
            insert_run(con, row, frames, result.group_metrics if result is not None else None, cfg.dataset)
        except duckdb.Error as err:  # e.g. a full disk; the transaction was rolled back
            raise StoreError(f"could not write run {run_id} into {db_path(results)}: {err}. The run folder is "
                             "intact; `python -m ceag ls`, a grid that includes it, or the app ingests it "
                             "later.") from err
    return row["status"]


def insert_run(con, row: dict, frames: dict[str, pd.DataFrame], group_metrics: pd.DataFrame | None,
               dataset: str) -> None:
    """Replace one run's rows in one transaction (``frames``: table name -> rows with run_id)."""
    run_id = row["run_id"]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("runs", *TABLES, *DIAGNOSTIC_TABLES):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("incoming_run", pd.DataFrame([row])[RUN_COLUMNS])
        con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}, ingested_at) "
                    f"SELECT {', '.join(RUN_COLUMNS)}, now() FROM incoming_run")
        con.unregister("incoming_run")
        for table, df in frames.items():
            if df.empty:
                continue
            cols = ", ".join({**TABLES, **DIAGNOSTIC_TABLES}[table])
            con.register("incoming", df)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming")
            con.unregister("incoming")
        if group_metrics is not None:
            _upsert_groups(con, row["data_key"], dataset, group_metrics)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _upsert_groups(con, data_key: str, dataset: str, group_metrics: pd.DataFrame) -> None:
    first = group_metrics[group_metrics.epoch == group_metrics.epoch.min()]
    counts = first.pivot_table(index=["group_id", "group_name"], columns="split", values="n",
                               aggfunc="first").reset_index()
    groups = pd.DataFrame({
        "data_key": data_key, "dataset": dataset, "group_id": counts["group_id"].astype(int),
        "group_name": counts["group_name"],
        "n_train": counts.get("train"), "n_val": counts.get("val"), "n_test": counts.get("test"),
    })
    con.execute("DELETE FROM groups WHERE data_key = ?", [data_key])
    con.register("incoming_groups", groups)
    con.execute("INSERT INTO groups SELECT data_key, dataset, group_id, group_name, n_train, n_val, n_test "
                "FROM incoming_groups")
    con.unregister("incoming_groups")


def ingest_all(results: str | os.PathLike) -> dict[str, int]:
    """Ingest every run folder; returns how many runs of each status."""
    counts: dict[str, int] = {}
    runs = runs_dir(results)
    if not runs.is_dir():
        return counts
    for folder in sorted(runs.iterdir()):
        if (folder / CONFIG).exists():
            status = ingest_run(results, folder.name)
            counts[status] = counts.get(status, 0) + 1
    return counts


def sync(results: str | os.PathLike, *, problems: list[tuple[str, str]] | None = None) -> int:
    """Ingest run folders the store lacks or holds as unfinished; returns how many were ingested.

    ``problems``: when given, a run folder that cannot be read as a run (a hand-edited or foreign
    config.json, an unreadable file) is skipped, so the other runs still reach the store, and
    (run id, reason) is appended; without it the first such error is raised. A store that cannot
    be written raises StoreError either way.
    """
    from ceag.store.queries import sync_state

    folder = runs_dir(results)
    if not folder.is_dir():
        migrate_if_needed(results)
        return 0
    try:
        known, stale = sync_state(results)  # stale: ingested before the store kept diagnostics
    except StoreNeedsMigration:
        migrate_if_needed(results)
        known, stale = sync_state(results)
    n = 0
    for run in sorted(folder.iterdir()):
        if not (run / CONFIG).exists():
            continue
        if known.get(run.name) in ("finished", "diverged") and run.name not in stale:
            continue
        try:
            current = read_status(run).get("status")
            if known.get(run.name) == current and current != "running" and run.name not in stale:
                continue
            ingest_run(results, run.name)
        except (OSError, ValueError) as err:
            if problems is None:
                raise
            problems.append((run.name, f"{type(err).__name__}: {err}"))
            continue
        n += 1
    return n


def import_runs(source: str | os.PathLike, results: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Import a bundle (.tar.gz) or a run folder into ``results`` and its store; returns
    {'imported': [...], 'present': [...]}. A store this ceag cannot write is refused before anything
    is unpacked; BundleError names what cannot be imported (``ceag.results.bundle.unpack_runs``)."""
    results = resolve_results(results)
    out = unpack_runs(source, results, check_store=lambda: verify(results))
    for rid in out["imported"]:
        ingest_run(results, rid)
    return out
