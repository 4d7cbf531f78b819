"""The audit of a checked predictions file (``ceag.analysis.predictions_file``) and stored audits.

``audit_frames`` turns a PredictionsFile into the (groups, runs, predictions) frames ``attach_intervals``
takes: one run per sparse column (run id and method: the column's name, status ``from file``), every split of
the file, every group in each split; accuracies and gaps are fractions. ``audit_predictions`` adds the paired
bootstrap intervals and, with a tolerance ε (a fraction), each group's verdict.

A stored audit lives in ``<results>/audits/<audit_id>/`` (``ceag.results.layout.AUDITS``; the id: 12 hex
digits of the SHA-256 of the normalized content, the options and the bootstrap settings): the normalized
predictions as Parquet (AUDIT_PREDICTIONS) and ``audit.json`` (AUDIT_RECORD) with the options, the settings,
the file's name, SHA-256 and rows, and when it was made. ``open_audit`` computes it again from there, with
the same numbers, and raises UnknownAudit for an id that is malformed, not stored or unreadable;
``settings_from`` raises PredictionsFileError for bootstrap settings that are not allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ceag.analysis.audit import Audit, attach_intervals
from ceag.analysis.bootstrap import CORRECTIONS, BootstrapSettings, cell_metrics
from ceag.analysis.predictions_file import (
    DEFAULT_SPLIT,
    DENSE_COLUMN,
    SPLIT_COLUMN,
    SPLITS,
    TRUE_COLUMN,
    AuditOptions,
    PredictionsFile,
    prepare,
)
from ceag.analysis.table_file import listing
from ceag.config.errors import PredictionsFileError, UnknownAudit
from ceag.results.layout import AUDIT_PREDICTIONS, AUDIT_RECORD, AUDITS, resolve_results

STATUS = "from file"                        # the status column of an audited file's runs
AUDIT_ID = re.compile(r"[0-9a-f]{12}")


# -- the audit ---------------------------------------------------------------------------------------------------
GROUP_FRAME_COLUMNS = ["run_id", "dataset", "model", "method", "sparsity", "tolerance", "seed", "status",
                       "reported_epoch", "split", "group_id", "group_name", "n", "accuracy", "dense_accuracy",
                       "acc_gap", "excess_gap"]
RUN_FRAME_COLUMNS = ["run_id", "dataset", "model", "method", "sparsity", "achieved_sparsity", "tolerance", "seed",
                     "status", "reason", "reported_epoch", "best_epoch", "selection_split", "total_epochs", "device",
                     "threads", "wall_seconds", "finished_at", "config", "data_fingerprint", "skipped_rows",
                     "data_report", "split", "accuracy", "dense_accuracy", "acc_gap", "max_excess_gap", "psi_pw"]


def audit_config(pf: PredictionsFile, column: str) -> dict[str, Any]:
    """The settings of one audited sparse column, as the report's settings table shows them."""
    return {"source": "predictions file", "file": pf.name, "file_sha256": pf.sha256, "rows": pf.rows,
            "group_columns": list(pf.options.groups), "group_names_from": pf.group_names_from,
            "groups": len(pf.group_names), "sparse_column": column, "dense_column": DENSE_COLUMN,
            "tolerance": pf.options.tolerance,
            "splits": [s for s in SPLITS if s in set(pf.split)] if SPLIT_COLUMN in pf.frame.columns
            else f"none in the file: every row is {DEFAULT_SPLIT}"}


def audit_frames(pf: PredictionsFile) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(groups, runs, predictions) as ``attach_intervals`` takes them: one run per sparse column (its run id and
    method are the column's name), every split of the file, every group in each split (n = 0 where it has no
    samples). Accuracies and gaps are fractions, computed as ``bootstrap`` computes its point values."""
    num_groups = len(pf.group_names)
    tolerance = np.nan if pf.options.tolerance is None else pf.options.tolerance
    y_true = pf.codes[TRUE_COLUMN]
    dense_ok = (pf.codes[DENSE_COLUMN] == y_true).astype(np.int64)
    splits = [s for s in SPLITS if s in set(pf.split)]
    masks = {s: pf.split == s for s in splits}
    group_rows, run_rows, predictions = [], [], {}
    for col in pf.sparse_columns:
        sparse_ok = (pf.codes[col] == y_true).astype(np.int64)
        cell = pf.group_id * 4 + 2 * sparse_ok + dense_ok
        settings = {"run_id": col, "dataset": pf.name, "model": None, "method": col, "sparsity": np.nan,
                    "tolerance": tolerance, "seed": np.nan, "status": STATUS, "reported_epoch": None}
        config = json.dumps(audit_config(pf, col), sort_keys=True)
        for split in splits:
            m = cell_metrics(np.bincount(cell[masks[split]], minlength=num_groups * 4), num_groups)
            group_rows.append(pd.DataFrame({
                **settings, "split": split, "group_id": np.arange(num_groups), "group_name": pf.group_names,
                "n": m["n"].astype(np.int64), "accuracy": m["accuracy"], "dense_accuracy": m["dense_accuracy"],
                "acc_gap": m["acc_gap"], "excess_gap": m["excess_gap"]}))
            run_rows.append({**settings, "achieved_sparsity": np.nan, "reason": None, "best_epoch": None,
                             "selection_split": None, "total_epochs": None, "device": None, "threads": None,
                             "wall_seconds": np.nan, "finished_at": None, "config": config,
                             "data_fingerprint": pf.sha256[:16], "skipped_rows": 0, "data_report": None,
                             "split": split, "accuracy": float(m["overall_accuracy"]),
                             "dense_accuracy": float(m["overall_dense_accuracy"]),
                             "acc_gap": float(m["overall_gap"]), "max_excess_gap": float(m["max_excess_gap"]),
                             "psi_pw": float(m["psi_pw"])})
        predictions[col] = pd.DataFrame({"split": pf.split, "y_true": y_true, "group_id": pf.group_id,
                                         "y_pred": pf.codes[col], "dense_pred": pf.codes[DENSE_COLUMN]})
    groups = pd.concat(group_rows, ignore_index=True)[GROUP_FRAME_COLUMNS]
    runs = pd.DataFrame(run_rows)[RUN_FRAME_COLUMNS]
    return groups, runs, predictions


def audit_predictions(pf: PredictionsFile, settings: BootstrapSettings | None = None) -> Audit:
    """The audit of a checked file: per sparse column, split and group, the values and paired bootstrap
    intervals ceag gives its own runs (``attach_intervals``), with a tolerance each group's verdict against it.
    ``Audit.notes`` carries the file's notes."""
    groups, runs, predictions = audit_frames(pf)
    result = attach_intervals(groups, runs, predictions, settings)
    result.notes = [*pf.notes, *result.notes]
    return result


# -- stored audits ----------------------------------------------------------------------------------------------
@dataclass
class StoredAudit:
    """A stored audit: ``audit_id``, its ``folder``, ``record`` (``audit.json``: options, settings, the file's
    name, SHA-256 and rows, when it was made) and ``result`` (the Audit, computed from the stored predictions)."""

    audit_id: str
    folder: Path
    record: dict[str, Any]
    result: Audit


def audits_dir(results: str | os.PathLike | None) -> Path:
    """``<results>/audits``: one folder per stored audit."""
    return resolve_results(results) / AUDITS


def settings_dict(settings: BootstrapSettings) -> dict[str, Any]:
    return {"n_boot": settings.n_boot, "confidence": settings.confidence, "seed": settings.seed,
            "correction": settings.correction}


def audit_id(pf: PredictionsFile, settings: BootstrapSettings) -> str:
    """12 hex digits of the SHA-256 of the normalized content (column names and every value) and the options."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(pf.frame.columns), [str(t) for t in pf.frame.dtypes]]).encode())
    try:
        hashed = pd.util.hash_pandas_object(pf.frame, index=False)
    except TypeError:  # cells pandas cannot hash (lists, say, in a kept column): their text
        hashed = pd.util.hash_pandas_object(pf.frame.astype(str), index=False)
    digest.update(hashed.to_numpy().tobytes())
    digest.update(json.dumps({**pf.options.to_dict(), **settings_dict(settings)}, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def store_audit(results: str | os.PathLike | None, pf: PredictionsFile,
                settings: BootstrapSettings | None = None) -> str:
    """Keep ``pf`` and its options under ``<results>/audits/<audit_id>/`` (the same file and options give the
    same id, kept once); returns the id. Raises OSError (ResultsNotWritable) when the folder cannot be written."""
    from ceag.results.files import ensure_writable, now, write_json, write_parquet

    settings = settings or BootstrapSettings()
    aid = audit_id(pf, settings)
    folder = audits_dir(results) / aid
    if (folder / AUDIT_RECORD).is_file():
        return aid
    ensure_writable(resolve_results(results))
    write_parquet(folder / AUDIT_PREDICTIONS, pf.frame)
    write_json(folder / AUDIT_RECORD, {"audit_id": aid, "file": pf.name, "file_sha256": pf.sha256, "rows": pf.rows,
                                       "created": now(), "read_notes": pf.read_notes, **pf.options.to_dict(),
                                       **settings_dict(settings)})
    return aid


def open_audit(results: str | os.PathLike | None, aid: str) -> StoredAudit:
    """The stored audit ``aid``, computed again from its stored predictions and options (the same numbers).

    Raises UnknownAudit for a malformed id, an id that is not stored, or a folder that cannot be read."""
    aid = str(aid).strip()
    if not AUDIT_ID.fullmatch(aid):
        raise UnknownAudit(f"{aid!r} is not an audit id: an id is 12 hex digits (0-9, a-f), as `python -m ceag "
                           "audit` prints it")
    folder = audits_dir(results) / aid
    if not (folder / AUDIT_RECORD).is_file():
        known = list_audits(results)["audit_id"].tolist()
        where = f"stored audits: {listing(known)}" if known else "it holds no stored audits"
        raise UnknownAudit(f"no stored audit {aid} in {audits_dir(results)}; {where}")
    try:
        record = json.loads((folder / AUDIT_RECORD).read_text())
        frame = pd.read_parquet(folder / AUDIT_PREDICTIONS)
        options = AuditOptions(tuple(record["groups"]), tuple(record["sparse"]), record.get("tolerance"))
        settings = BootstrapSettings(**{k: record[k] for k in ("n_boot", "confidence", "seed", "correction")})
        pf = prepare(frame, options, name=record["file"], sha256=record["file_sha256"],
                     read_notes=list(record.get("read_notes") or []))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UnknownAudit(f"stored audit {aid} in {folder} cannot be read ({err})") from None
    return StoredAudit(aid, folder, record, audit_predictions(pf, settings))


def list_audits(results: str | os.PathLike | None) -> pd.DataFrame:
    """One row per stored audit, newest first: audit_id, created, file, rows, groups, sparse (comma-separated
    column names), tolerance, n_boot, confidence. Folders without a readable ``audit.json`` are left out."""
    cols = ["audit_id", "created", "file", "rows", "groups", "sparse", "tolerance", "n_boot", "confidence"]
    rows = []
    folder = audits_dir(results)
    for path in sorted(folder.glob(f"*/{AUDIT_RECORD}")) if folder.is_dir() else []:
        if not AUDIT_ID.fullmatch(path.parent.name):
            continue
        try:
            record = json.loads(path.read_text())
            rows.append({"audit_id": path.parent.name, "created": record.get("created"), "file": record.get("file"),
                         "rows": record.get("rows"), "groups": ", ".join(record.get("groups") or []),
                         "sparse": ", ".join(record.get("sparse") or []), "tolerance": record.get("tolerance"),
                         "n_boot": record.get("n_boot"), "confidence": record.get("confidence")})
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["created", "audit_id"], ascending=[False, True], na_position="last",
                           ignore_index=True)


def settings_from(n_boot: Any, confidence: Any, seed: Any = 0, correction: str = "bonferroni") -> BootstrapSettings:
    """BootstrapSettings, or PredictionsFileError naming the value that is not allowed."""
    if correction not in CORRECTIONS:
        raise PredictionsFileError(f"invalid correction {correction!r}: one of {', '.join(CORRECTIONS)}")
    try:
        return BootstrapSettings(n_boot=n_boot, confidence=confidence, seed=seed, correction=correction)
    except ValueError as err:
        raise PredictionsFileError(str(err)) from None
