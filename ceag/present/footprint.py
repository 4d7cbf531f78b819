"""What a pruned model costs against its dense model, as the pages and the report write it, and the cells of the
speed–fairness frontier.

A run's footprint (``summary.json``'s ``footprint``, the store's footprint columns: ``ceag.run.measure``) holds
the pruned and the dense model's parameters, MACs per sample, saved size and median latencies, measured side by
side in one process. The frontier's x axis is a *ratio* against the dense model (speed-up, fewer MACs, smaller):
the dense model sits at 1× whatever the dataset or model, and a latency ratio comes from two models timed in turns
on the same machine, so a load that slows both cancels out. Latencies still compare only within one machine, torch
version and thread count (``timing_groups``): the pages show one such group at a time, never a mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ceag.config.vocabulary import CHANNEL_PRUNING, STRUCTURED_PRUNING


@dataclass(frozen=True)
class Measure:
    """An x axis of the speed–fairness frontier: ``column`` of ``queries.speed_frontier`` (the dense model's is
    ``dense_<column>``); ``device`` "cpu" or "gpu" for a latency (its runs grouped by where it was timed), None
    for a count that does not depend on the machine."""

    label: str       # what the pruned model's figure is
    column: str
    device: str | None
    ratio: str       # what dense / pruned is called on the axis


MEASURES = {
    "latency_cpu_b64": Measure("CPU latency, batch 64", "latency_cpu_b64_ms", "cpu", "speed-up"),
    "latency_cpu_b1": Measure("CPU latency, batch 1", "latency_cpu_b1_ms", "cpu", "speed-up"),
    "latency_gpu_b64": Measure("GPU latency, batch 64", "latency_gpu_b64_ms", "gpu", "speed-up"),
    "latency_gpu_b1": Measure("GPU latency, batch 1", "latency_gpu_b1_ms", "gpu", "speed-up"),
    "macs": Measure("MACs per sample", "macs", None, "MAC reduction"),
    "size": Measure("saved size", "size_bytes", None, "compression"),
}
# The figures a run's footprint table shows, in order: (key of the record's "pruned"/"dense", label, kind)
FIGURES = (("params", "parameters", "count"), ("macs", "MACs per sample", "count"),
           ("size_bytes", "saved size", "bytes"), ("cpu_b1", "CPU latency, batch 1", "ms"),
           ("cpu_b64", "CPU latency, batch 64", "ms"), ("gpu_b1", "GPU latency, batch 1", "ms"),
           ("gpu_b64", "GPU latency, batch 64", "ms"))
CELL = ["model", "method", "criterion", "pruning", "sparsity", "tolerance"]
SHRINKS = tuple(CHANNEL_PRUNING)  # kinds whose every pruned channel leaves the model


def count_text(n) -> str:
    """8970 -> "8,970"; 3_504_872 -> "3.50 M"; 2.2e9 -> "2.20 G"."""
    if n is None or pd.isna(n):
        return "n/a"
    n = float(n)
    for size, unit in ((1e9, "G"), (1e6, "M")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:,.0f}"


def bytes_text(n) -> str:
    """Bytes as kB / MB (1000s, as file sizes are listed)."""
    if n is None or pd.isna(n):
        return "n/a"
    for size, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(float(n)) >= size:
            return f"{float(n) / size:.1f} {unit}"
    return f"{float(n):.0f} B"


def ms_text(ms) -> str:
    if ms is None or pd.isna(ms):
        return "n/a"
    return f"{ms:.3g} ms" if ms >= 1 else f"{1000 * ms:.3g} µs"


def ratio_text(r) -> str:
    return "n/a" if r is None or pd.isna(r) or not np.isfinite(r) else f"{r:.2f}×"


def available_measures(frame: pd.DataFrame) -> list[str]:
    """The ``MEASURES`` some row of ``frame`` (``queries.speed_frontier``) has, CPU latency at batch 64 first."""
    return [k for k, m in MEASURES.items() if m.column in frame and frame[m.column].notna().any()]


def ratios(frame: pd.DataFrame, measure: str) -> pd.Series:
    """Dense over pruned of ``measure`` per row: how many times faster, fewer MACs, smaller (NaN where missing)."""
    column = MEASURES[measure].column
    pruned = pd.to_numeric(frame[column], errors="coerce")
    return pd.to_numeric(frame[f"dense_{column}"], errors="coerce") / pruned.where(pruned > 0)


def timing_groups(frame: pd.DataFrame, measure: str) -> pd.Series:
    """Where each row's ``measure`` was timed, as words ("AMD EPYC (2 logical CPUs), torch 2.4.1, 1 thread");
    one empty group for a count (MACs, size), which is the same on every machine."""
    device = MEASURES[measure].device
    if device is None or frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    torch = " · torch " + frame["torch_version"].fillna("?").astype(str)
    if device == "gpu":
        return frame["cuda_device"].fillna("unknown GPU").astype(str) + torch
    threads = pd.to_numeric(frame["latency_threads"], errors="coerce")
    return (frame["processor"].fillna("unknown CPU").astype(str) + " (" + frame["cpu_count"].fillna("?").astype(str)
            + " logical CPUs)" + torch + " · " + threads.map(lambda t: "? threads" if pd.isna(t) else
                                                              f"{t:.0f} thread" + "s" * (t != 1)))


def speed_cells(frame: pd.DataFrame, measure: str) -> pd.DataFrame:
    """One row per (model, method, criterion, pruning, sparsity, tolerance) of ``frame`` (rows of one timing
    group): the mean across seeds of the metrics, of ``ratio`` (dense / pruned of ``measure``) and of the figures
    the tooltips show, the standard deviation of ``ratio`` and of the metrics, ``seeds`` and ``run_ids``. Rows
    without ``measure`` are left out."""
    frame = frame.assign(ratio=ratios(frame, measure))
    frame = frame[frame["ratio"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=[*CELL, "seeds", "ratio", "run_ids"])
    figures = ["params", "macs", "size_bytes", "latency_cpu_b1_ms", "latency_cpu_b64_ms", "latency_gpu_b1_ms",
               "latency_gpu_b64_ms", "dense_params", "dense_macs", "dense_size_bytes", "channel_sparsity",
               "achieved_sparsity"]
    means = {c: (c, "mean") for c in ["accuracy", "dense_accuracy", "max_excess_gap", "psi_pw", "ratio",
                                      *[f for f in figures if f in frame]]}
    spreads = {f"{c}_std": (c, "std") for c in ("ratio", "accuracy", "max_excess_gap", "psi_pw")}
    numeric = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c, _ in means.values()})
    cells = numeric.groupby(CELL, dropna=False, sort=True).agg(
        seeds=("run_id", "size"), run_ids=("run_id", list), **means, **spreads).reset_index()
    return cells


def pruning_label(kind: str | None) -> str:
    """How a pruning kind is written beside a method."""
    return {"unstructured": "unstructured", "global": "global unstructured", "structured": "structured (per layer)",
            "channels": "channels", "channels_global": "channels (global)"}.get(kind or "", str(kind))


# -- one run's footprint ----------------------------------------------------------------------------------------
def parse(footprint) -> dict | None:
    """A footprint record from its JSON text or dict (None: the run has none)."""
    if footprint is None or (isinstance(footprint, float) and pd.isna(footprint)):
        return None
    return json.loads(footprint) if isinstance(footprint, str) else dict(footprint)


def footprint_table(footprint: dict) -> pd.DataFrame:
    """One row per figure the record has: the pruned model's, the dense model's and dense / pruned, as text."""
    rows = []
    for key, label, kind in FIGURES:
        pruned, dense = _figure(footprint, "pruned", key), _figure(footprint, "dense", key)
        if pruned is None and dense is None:
            continue
        write = {"count": count_text, "bytes": bytes_text, "ms": ms_text}[kind]
        ratio = dense / pruned if pruned and dense is not None else float("nan")
        rows.append({"figure": label, "pruned model": write(pruned), "dense model": write(dense),
                     "dense / pruned": ratio_text(ratio)})
    return pd.DataFrame(rows, columns=["figure", "pruned model", "dense model", "dense / pruned"])


def _figure(footprint: dict, which: str, key: str):
    figures = footprint.get(which) or {}
    return (figures.get("latency_ms") or {}).get(key) if key.startswith(("cpu_", "gpu_")) else figures.get(key)


def footprint_lines(footprint: dict) -> list[str]:
    """What the record says beyond its figures: what was removed (channel and weight sparsity) and where and how
    the latencies were timed (why a model of a structured kind was measured masked: ``footprint_problem``)."""
    kind = footprint.get("pruning")
    weights = footprint.get("weight_sparsity")
    weight_text = "n/a" if weights is None else f"{100 * weights:.1f} %"
    dense, pruned = footprint.get("dense") or {}, footprint.get("pruned") or {}
    gone = (1 - pruned["params"] / dense["params"]) if dense.get("params") and pruned.get("params") is not None \
        else None
    params_text = "" if gone is None else f": {100 * gone:.1f} % fewer parameters"
    lines = []
    if footprint.get("model") == "rebuilt":
        ch = footprint.get("channels") or {}
        lines.append(f"Rebuilt without its pruned channels: {ch.get('removed', 0):,} of {ch.get('total', 0):,} "
                     f"channels of the prunable channel groups removed (channel sparsity "
                     f"{100 * (footprint.get('channel_sparsity') or 0):.1f} %{params_text}); weight sparsity "
                     f"{weight_text} of the prunable weights.")
        if kind == "structured" and ch.get("pruned", 0) > ch.get("removed", 0):
            lines.append(f"Pruning 'structured' zeroed {ch['pruned'] - ch['removed']:,} more channels in every layer "
                         "of their group, which still output a constant (a batch norm's shift or a bias) and so stay "
                         "in the model; 'channels' prunes coupled layers together and removes every pruned channel.")
    elif kind in STRUCTURED_PRUNING:
        lines.append(f"Measured masked (full size): weight sparsity {weight_text}.")
    else:
        lines.append(f"Pruned weights are zeros in a full-size model ({kind} pruning, weight sparsity {weight_text}): "
                     "it keeps the dense model's parameters, MACs, size and speed.")
    machine = footprint.get("machine") or {}
    cpu = [lat for lat in footprint.get("latencies") or [] if lat.get("device") == "cpu"]
    if cpu or machine:
        threads = cpu[0].get("threads") if cpu else machine.get("threads")
        lines.append(f"Latency: median eval forward pass of the dense and the pruned model timed in turns in one "
                     f"process on {machine.get('processor') or 'an unknown CPU'} ({machine.get('cpu_count', '?')} "
                     f"logical CPUs), torch {machine.get('torch_version', '?')}, {threads} thread"
                     f"{'s' * (threads != 1)}" + (f"; GPU {machine['cuda_device']}" if machine.get("cuda_device")
                                                   else "") + ". Compare latencies only within one machine and "
                     "thread count.")
    return lines


def footprint_problem(footprint: dict) -> str | None:
    """Why the model was measured masked although its kind removes channels, as a sentence (None: no problem)."""
    error = footprint.get("error")
    return f"{error[:1].upper()}{error[1:]}." if error else None


def export_command(run_id: str, results: str | None = None) -> str:
    """The command that writes ``run_id``'s model to a file (its small model for a structured kind)."""
    where = f" --results {results}" if results else ""
    return f"python -m ceag export --model {run_id} --out model_{run_id}.pt{where}"


def footprint_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """``queries.footprints`` rows (run_id, footprint JSON) flattened to ``queries.speed_frontier``'s footprint
    columns, for runs chosen by id (the report)."""
    out = []
    for run_id, text in zip(rows["run_id"], rows["footprint"], strict=True):
        fp = parse(text) or {}
        row = {"run_id": run_id, "pruning": fp.get("pruning"), "channel_sparsity": fp.get("channel_sparsity"),
               "footprint_model": fp.get("model")}
        for key, _, _ in FIGURES:
            column = key if key in ("params", "macs", "size_bytes") else f"latency_{key}_ms"
            row[column], row[f"dense_{column}"] = _figure(fp, "pruned", key), _figure(fp, "dense", key)
        machine = fp.get("machine") or {}
        cpu = [lat for lat in fp.get("latencies") or [] if lat.get("device") == "cpu"]
        row.update(latency_threads=cpu[0].get("threads") if cpu else None, processor=machine.get("processor"),
                   cpu_count=machine.get("cpu_count"), torch_version=machine.get("torch_version"),
                   cuda_device=machine.get("cuda_device"))
        out.append(row)
    return pd.DataFrame(out)
