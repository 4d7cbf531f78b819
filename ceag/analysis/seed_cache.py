"""The comparisons of a store across seeds (``ceag.analysis.seeds``), computed once and kept: per comparison,
split and settings in ``<results>/cache/verdicts/``, and each whole answer a page asks for beside them,
served again only while the store file is unchanged. Also the frontier's cells with their comparison.

Rows are ``seeds.COLUMNS`` with each cell's dataset, model, sparsity, method, tolerance, pruning criterion,
pruning kind and run ids (fractions). Only stored predictions are read; a comparison that cannot be made is named
in a note.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.seeds import (
    CACHE_VERSION,
    COLUMNS,
    DEFAULT_CRITERION,
    DEFAULT_PRUNING,
    Comparison,
    compare,
    pair_runs,
)
from ceag.config.vocabulary import CRITERION_LABELS, MASK_METHODS


def _label(comp: Comparison) -> str:
    tol = "" if comp.tolerance is None else f" (ε = {100 * comp.tolerance:g} %)"
    pruned = ("" if comp.criterion == DEFAULT_CRITERION or comp.method in MASK_METHODS
              else f" pruned by {CRITERION_LABELS.get(comp.criterion, comp.criterion)}")
    if comp.pruning != DEFAULT_PRUNING:
        pruned += f", {comp.pruning} pruning" if pruned else f" with {comp.pruning} pruning"
    return f"{comp.method}{tol}{pruned} at sparsity {comp.sparsity:g} ({comp.dataset}/{comp.model})"


def _cache_file(results: Path, settings: BootstrapSettings) -> Path:
    from ceag.results.layout import verdict_cache

    name = f"{settings.n_boot}-{settings.confidence:g}-{settings.seed}-{settings.correction}.parquet"
    return verdict_cache(results) / name


def seed_comparisons(results: str | os.PathLike, comparisons: list[Comparison], splits: tuple[str, ...] = ("test",),
                     settings: BootstrapSettings | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The comparisons on ``splits``: COLUMNS rows with ``key`` (``Comparison.key``, per split) added, and notes
    on those that could not be made (no predictions, different samples); a split a run lacks is left out.

    Results are kept in ``<results>/cache/verdicts/`` keyed by the runs (and when they finished), the
    split and the settings, so a page shows them without resampling again; an unreadable cache is
    recomputed. Each run's predictions are read once per call; only stored predictions are read (a run
    made before they were kept is named in a note, never recomputed here).
    """
    from ceag.results.files import atomic_write
    from ceag.results.predictions import stored_predictions

    settings = settings or BootstrapSettings()
    results = Path(results)
    path = _cache_file(results, settings)
    try:
        cached = pd.read_parquet(path)
    except (OSError, ValueError):
        cached = pd.DataFrame(columns=["key", *COLUMNS])
    wanted = {(c.key(split, settings)): (c, split) for c in comparisons for split in splits}
    missing = [k for k in wanted if k not in set(cached["key"])]
    new: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    preds: dict[str, pd.DataFrame | None] = {}
    for key in missing:
        comp, split = wanted[key]
        try:
            frames: dict[str, pd.DataFrame] = {}
            for rid in comp.run_ids:
                if rid not in preds:
                    preds[rid] = stored_predictions(results, rid)
                frame = preds[rid]
                if frame is None:
                    raise LookupError(f"run {rid} has no stored predictions")
                frames[rid] = frame
            if any(split not in set(f["split"]) for f in frames.values()):
                continue
            new.append(compare(comp, frames, split, settings).assign(key=key))
        except (LookupError, ValueError, OSError) as err:
            failed.setdefault(_label(comp), str(err))
    notes = []
    if failed:
        (first, why), more = next(iter(failed.items())), len(failed) - 1
        notes.append(f"{first} could not be compared with NFT across seeds ({why})"
                     + (f"; nor could {more} other setting{'s' if more > 1 else ''}" if more else "") + ".")
    if new:
        cached = pd.concat([cached, *new], ignore_index=True) if len(cached) else pd.concat(new, ignore_index=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p: cached.to_parquet(p, index=False), durable=False)
        except OSError:
            pass  # a read-only results folder: the comparisons are still returned
    return cached[cached["key"].isin(set(wanted))].reset_index(drop=True), notes


def comparisons_frame(results: str | os.PathLike, comparisons: list[Comparison], splits: tuple[str, ...] = ("test",),
                      settings: BootstrapSettings | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``seed_comparisons`` with each row's cell: dataset, model, sparsity, method, tolerance, criterion and pruning
    (the pruning criterion and kind of the mitigation's runs and of the NFT runs they are paired with), the
    mitigation's run ids
    (comma-separated, by seed) and the NFT runs'."""
    settings = settings or BootstrapSettings()
    rows, notes = seed_comparisons(results, comparisons, splits, settings)
    cells = pd.DataFrame([{"key": c.key(split, settings), "dataset": c.dataset, "model": c.model,
                           "sparsity": c.sparsity, "method": c.method, "tolerance": c.tolerance,
                           "criterion": c.criterion, "pruning": c.pruning, "run_ids": ",".join(c.mitigation_ids),
                           "baseline_ids": ",".join(b for _, b, _ in c.pairs)}
                          for c in comparisons for split in splits])
    if rows.empty or cells.empty:
        return pd.DataFrame(columns=[*cells.columns, *COLUMNS]), notes
    return cells.merge(rows, on="key").drop(columns="key"), notes


def store_comparisons(results: str | os.PathLike, *, dataset: str | None = None,
                      splits: tuple[str, ...] = ("test",), n_boot: int = 1000, confidence: float = 0.95,
                      run_ids: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every comparison of the store (of ``dataset``, or all; with ``run_ids``, only the cells holding one of
    them as a mitigation) on ``splits``: ``comparisons_frame`` rows and notes.

    The answer is kept beside the comparisons (``cache/verdicts/answers``) with the store file's size and
    modification time, and served again only while the store file is unchanged: a page built in a new
    process then reads one file instead of querying the store and pairing its runs again.
    """
    from ceag.results.files import atomic_write, write_json
    from ceag.results.layout import verdict_cache
    from ceag.store import queries
    from ceag.store.db import db_path

    settings = BootstrapSettings(n_boot=n_boot, confidence=confidence)
    try:
        stat = db_path(results).stat()
        stamp = [stat.st_mtime_ns, stat.st_size]
    except OSError:
        stamp = None
    wanted = json.dumps([CACHE_VERSION, dataset, list(splits), n_boot, confidence, sorted(run_ids or []),
                         run_ids is None])
    folder = verdict_cache(results) / "answers"
    name = hashlib.sha256(wanted.encode()).hexdigest()[:20]
    frame_path, about_path = folder / f"{name}.parquet", folder / f"{name}.json"
    if stamp is not None:
        try:
            about = json.loads(about_path.read_text())
            if about.get("stamp") == stamp and about.get("wanted") == wanted:
                return pd.read_parquet(frame_path), list(about.get("notes", []))
        except (OSError, ValueError):
            pass  # no answer kept, or an unreadable one: compute it
    comps = pair_runs(queries.comparison_runs(results, dataset=dataset))
    if run_ids is not None:
        comps = [c for c in comps if set(c.mitigation_ids) & set(run_ids)]
    frame, notes = comparisons_frame(results, comps, tuple(splits), settings)
    if stamp is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _forget_stale_answers(folder, stamp)
            atomic_write(frame_path, lambda p: frame.to_parquet(p, index=False), durable=False)
            write_json(about_path, {"stamp": stamp, "wanted": wanted, "notes": notes}, durable=False)
        except OSError:
            pass  # a read-only results folder: the answer is still returned
    return frame, notes


def _forget_stale_answers(folder: Path, stamp: list[int]) -> None:
    """Remove the answers kept for an earlier state of the store: they can never be served again (the store
    file only changes forward), so the folder holds at most the answers given since the store last changed."""
    for about in folder.glob("*.json"):
        try:
            if json.loads(about.read_text()).get("stamp") == stamp:
                continue
        except (OSError, ValueError):
            pass  # unreadable: as stale
        about.unlink(missing_ok=True)
        about.with_suffix(".parquet").unlink(missing_ok=True)


def attach_to_cells(summary: pd.DataFrame, frame: pd.DataFrame, split: str,
                    metrics: tuple[str, ...] = ("max_excess_gap", "psi_pw")) -> pd.DataFrame:
    """``summary`` (cells by model, method, criterion, pruning, sparsity, tolerance: ``queries.frontier_summary``;
    without a criterion column, every cell is magnitude's, without a pruning column unstructured) with, per metric,
    ``<metric>_vs_nft`` (mitigation − NFT, mean over the paired seeds), ``<metric>_vs_nft_low`` / ``_high``
    and ``vs_nft_seeds`` (the number of paired seeds) from ``comparisons_frame`` rows on ``split``; NaN
    for NFT itself and for cells without a paired NFT run."""
    out = summary.copy()
    rows = frame[(frame["split"] == split) & frame["metric"].isin(metrics)] if not frame.empty else frame
    for metric in metrics:
        for col in ("", "_low", "_high"):
            out[f"{metric}_vs_nft{col}"] = np.nan
    out["vs_nft_seeds"] = np.nan
    if rows.empty:
        return out
    tol = out["tolerance"].astype(float).fillna(-1.0).round(9)
    criteria = out["criterion"].fillna(DEFAULT_CRITERION) if "criterion" in out else [DEFAULT_CRITERION] * len(out)
    kinds = out["pruning"].fillna(DEFAULT_PRUNING) if "pruning" in out else [DEFAULT_PRUNING] * len(out)
    keys = list(zip(out["model"], out["method"], out["sparsity"].astype(float).round(9), tol, criteria, kinds,
                    strict=True))
    for metric in metrics:
        part = rows[rows["metric"] == metric]
        lookup = {(r.model, r.method, round(float(r.sparsity), 9),
                   -1.0 if pd.isna(r.tolerance) else round(float(r.tolerance), 9),
                   getattr(r, "criterion", DEFAULT_CRITERION), getattr(r, "pruning", DEFAULT_PRUNING)): r
                  for r in part.itertuples()}
        found = [lookup.get(k) for k in keys]
        out[f"{metric}_vs_nft"] = [np.nan if r is None else r.diff for r in found]
        out[f"{metric}_vs_nft_low"] = [np.nan if r is None else r.diff_low for r in found]
        out[f"{metric}_vs_nft_high"] = [np.nan if r is None else r.diff_high for r in found]
        out["vs_nft_seeds"] = [s if r is None else r.seeds for s, r in zip(out["vs_nft_seeds"], found, strict=True)]
    return out
