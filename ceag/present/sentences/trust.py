"""What runs' diagnostics and data say about trusting their numbers, as sentences."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ceag.analysis.audit import Audit
from ceag.diagnostics.convergence import worst_spread
from ceag.store import queries


def summary_line(diag: dict[str, Any] | None) -> list[str]:
    """Sentences for a terminal or a page: settled or not, whether the models learned, the constraint warnings."""
    if not diag:
        return []
    lines = []
    conv = diag.get("converged")
    if conv is True:
        worst = worst_spread({"spread": diag["spread"], "limit": diag["spread_limit"]})
        tail = (f" (largest spread: {worst[1].replace('max_excess_gap', 'max_g ψ_g')} on {worst[0]}, "
                f"{100 * worst[2]:.1f} points)") if worst else ""
        lines.append(f"settled over epochs {diag['window'][0]}–{diag['window'][1]}{tail}")
    elif conv is False:
        lines.append(diag.get("advice") or "not settled")
    else:
        lines.append("convergence unknown: too few evaluations at the end of fine-tuning")
    lines += [f"warning: {w}" for w in (diag.get("learning") or {}).get("warnings", [])]
    constraints = diag.get("constraints")
    if constraints:
        lines.append(f"constraints {'acted' if constraints['constraints_active'] else 'never acted'}: largest "
                     f"multiplier {constraints['max_multiplier']:.3g} ({constraints['multiplier_group']}, "
                     f"{constraints['multiplier_ratio']:.2f}× its share of the "
                     f"{'validation' if constraints.get('split') == 'val' else 'training'} split)")
        lines += [f"warning: {w}" for w in constraints["warnings"]]
    return lines


def trust_notes(results: str | os.PathLike, run_ids: list[str], groups: pd.DataFrame) -> list[str]:
    """What the runs' own diagnostics say against trusting their numbers: a run that did not settle (with
    what to change), models that learned nothing or collapsed, constraints that misbehaved."""
    from ceag.present.words import audit_run_labels

    labels = audit_run_labels(groups)
    out = []
    for row in queries.run_trust(results, run_ids).itertuples():
        label = labels.get(row.run_id, row.run_id)
        if pd.notna(row.converged) and not bool(row.converged) and isinstance(row.advice, str):
            out.append(f"{label}: {row.advice}")
        for warning in row.warnings if isinstance(row.warnings, (list, tuple, np.ndarray)) else []:
            out.append(f"{label}: {warning}")
    return out


def audit_notes(result: Audit, results: str | os.PathLike) -> list[str]:
    """Everything an auditor should read before the numbers of ``result``: why a run has no intervals, how
    its data was read and what loading left out (``data_notes``), what its diagnostics warn (``trust_notes``)."""
    from ceag.present.sentences.data import data_notes

    return [*result.notes, *data_notes(result.runs), *trust_notes(results, result.run_ids, result.groups)]
