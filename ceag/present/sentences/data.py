"""How the data was read and what loading left out, in lines for a terminal, a page or a report."""

from __future__ import annotations

import pandas as pd


def skip_lines(report: dict | None) -> list[str]:
    """What loading left out, as lines: by reason, then by group where the group is known.

    ``report`` is a run's ``data_report`` (ceag.datasets.base.LoadReport.to_dict), or the same
    keys (``skipped``, ``lost_by_group``, ``rows_read``) from ``run --json``. [] when nothing was
    left out.
    """
    report = report or {}
    by_reason = {k: int(v) for k, v in (report.get("skipped") or {}).items() if v}
    if not by_reason:
        return []
    total = sum(by_reason.values())
    of = f" of {report['rows_read']:,}" if report.get("rows_read") else ""
    lines = [f"{total:,}{of} rows left out while loading: "
             + ", ".join(f"{n:,} {reason}" for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))]
    lost = report.get("lost_by_group") or {}
    if lost:
        parts = [f"{group} {v['skipped']:,} of {v['of']:,} ({100 * v['share']:.1f} %)"
                 for group, v in sorted(lost.items(), key=lambda kv: -kv[1]["share"])]
        unknown = total - sum(v["skipped"] for v in lost.values())
        lines.append("by group: " + ", ".join(parts)
                     + (f"; {unknown:,} more whose group is unknown" if unknown > 0 else ""))
    return lines


def data_accounts(runs: pd.DataFrame) -> list[dict]:
    """What loading left out and how it read the data, once per data instance and load report among
    ``runs`` (columns run_id, dataset, data_fingerprint, data_report as JSON text, skipped_rows): a list
    of {dataset, fingerprint, run_ids, lines (``skip_lines``), notes (how the data was read: encodings,
    pixel formats, groups without samples, ...), warnings}, only where there is something to say."""
    import json

    runs = runs.drop_duplicates("run_id")
    out = []
    keys = [runs["dataset"], runs["data_fingerprint"].fillna("fingerprint unknown"), runs["data_report"].fillna("{}")]
    for (dataset, fingerprint, text), part in runs.groupby(keys, sort=False):
        report = json.loads(text)
        skipped = int(part["skipped_rows"].fillna(0).max())
        notes, warnings = list(report.get("notes") or []), list(report.get("warnings") or [])
        if not (skipped or notes or warnings):
            continue
        lines = skip_lines(report) or ([f"{skipped:,} rows left out while loading"] if skipped else [])
        out.append({"dataset": dataset, "fingerprint": fingerprint, "run_ids": list(part["run_id"]),
                    "lines": lines, "notes": notes, "warnings": warnings})
    return out


def data_notes(runs: pd.DataFrame) -> list[str]:
    """What loading left out of the audited runs' data and how it read it, once per data instance and
    report: by reason, by group, the notes (encodings, pixel formats, groups without samples) and the
    warnings (a group that lost more than a few percent of its rows, images that look alike)."""

    return [f"data {item['dataset']} {item['fingerprint']} (runs {', '.join(item['run_ids'])}): "
            + "; ".join(item["lines"] + item["notes"]) + "".join(f". WARNING: {w}" for w in item["warnings"])
            for item in data_accounts(runs)]
