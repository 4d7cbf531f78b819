"""The report's section on whom pruning hurt: per run and split, each group's casualty counts beside its ψ_g, a
generated sentence, and on one split (test by default) a strip of up to N pictures per group (the most confidently
lost first; 0 leaves pictures out, e.g. faces an auditor may not share). Pictures are small JPEGs inside the HTML,
so the report stays one file: faces at 56 px, about 1.7 KB each with their caption, 16 per group for 10 groups
about 0.3 MB per run, beside the 4.6 MB of the charts' embedded plotly.js."""

from __future__ import annotations

import html
import os
from pathlib import Path

from ceag.analysis.casualties import CasualtyError, cell_counts, ranked
from ceag.present.sentences.casualties import casualty_sentences
from ceag.present.thumbnails import DIGIT_SIZE, gallery_html, sample_thumb, tiles_for

SPLITS = ("train", "test")
DEFAULT_THUMBNAILS = 8
REPORT_SIZE = 56  # pixels per side of a face picture in a report


def _pt(x) -> str:
    return "" if x != x else f"{100 * x:.1f}"  # NaN: empty


def casualty_section(results: str | os.PathLike, run_ids: list[str], data_root: str | os.PathLike,
                     thumbnails: int = DEFAULT_THUMBNAILS, splits: tuple[str, ...] = SPLITS,
                     excess_gap: dict | None = None, picture_split: str = "test") -> str:
    """HTML: for each run and split in ``splits``, the cells per group; on ``picture_split``, up to ``thumbnails``
    pictures per group.

    ``excess_gap``: {(run_id, split, group_id): ψ_g} to set beside the counts (the audit's). Runs whose
    predictions lack the dense model's get a line saying so."""
    from ceag.analysis.casualties import run_label
    from ceag.results.layout import run_dir
    from ceag.results.predictions import RunNotFound, run_names, run_predictions
    from ceag.results.record import read_config

    if thumbnails < 0:
        raise ValueError(f"thumbnails {thumbnails}: give 0 (no pictures) or more")
    parts = []
    for run_id in run_ids:
        try:
            frame = run_predictions(results, run_id)
            cfg = read_config(run_dir(results, run_id))
        except (RunNotFound, OSError, ValueError) as err:
            parts.append(f'<p class="note">{html.escape(run_id)}: no predictions to show ({html.escape(str(err))})</p>')
            continue
        group_names, class_names = run_names(results, run_id)
        label = run_label(cfg)
        size = DIGIT_SIZE if cfg.dataset == "digits" else REPORT_SIZE
        for split in splits:
            if split not in set(frame["split"]):
                continue
            try:
                counts = cell_counts(frame, split, group_names)
            except CasualtyError as err:
                parts.append(f'<p class="note">{html.escape(label)} <code>{run_id}</code>: {html.escape(str(err))}</p>')
                break
            lines = "".join(f"<li>{html.escape(s)}</li>" for s in casualty_sentences(label, split, counts))
            rows = []
            for row in counts.itertuples():
                psi = (excess_gap or {}).get((run_id, split, row.group_id), float("nan"))
                strip = ""
                if thumbnails and row.casualty and split == picture_split:
                    lost = ranked(frame, split, "casualty", row.group_id).head(thumbnails)
                    tiles = tiles_for(lost, class_names, lambda r, c=cfg, s=split, px=size: sample_thumb(
                        c, data_root, s, int(r.sample_id), r.file, px))
                    strip = gallery_html(tiles, size)
                rows.append(f'<tr><td class="text">{html.escape(str(row.group_name))}</td><td>{row.n}</td>'
                            f"<td>{row.casualty}</td><td>{row.recovered}</td><td>{_pt(row.casualty_rate)}</td>"
                            f'<td>{_pt(psi)}</td><td class="text">{strip}</td></tr>')
            head = ("<tr><th class='text'>group</th><th>n</th><th>casualties</th><th>recovered</th>"
                    "<th>casualty rate</th><th>ψ_g</th><th class='text'>the most confidently lost</th></tr>")
            parts.append(f"<h3>{html.escape(label)} <code>{run_id}</code>, {split}</h3><ul>{lines}</ul>"
                         f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")
    where = html.escape(str(Path(data_root)))
    intro = ('<p class="note">Casualties: samples the dense model got right and the pruned model gets wrong; '
             "recovered: the other way round. Casualty rate in percent of the group, ψ_g in points. "
             + (f"Pictures of the {html.escape(picture_split)} split read from {where}, up to {thumbnails} per group."
                if thumbnails else "No pictures.")
             + "</p>")
    return intro + "".join(parts)

