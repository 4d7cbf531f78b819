"""What Compare and Audit predictions both show of an audit: the per-group chart with its controls, and the
per-group table with the verdict counts above it."""

from __future__ import annotations

import streamlit as st

from ceag.analysis.audit import Audit
from ceag.present.audit_table import group_display_table, verdict_lines
from ceag.present.glossary import GLOSSARY
from ceag.present.plots.groups import group_interval_bars
from ceag.present.plots.style import AUDIT_METRICS
from ceag.present.words import confidence_label
from dashboard._shared import CHART_CONFIG


def audit_chart(result: Audit, splits: list[str], *, key: str | None = None) -> None:
    """The metric switch, the split panels (``splits`` offered, validation only on demand) and the bars with
    intervals; ``key``: a prefix for the widgets' keys, for a page that keeps them apart."""
    ci = confidence_label(result.settings)
    c = st.columns([3, 2])
    metric = c[0].radio("Show", list(AUDIT_METRICS), format_func=AUDIT_METRICS.get, horizontal=True,
                        key=key and f"{key}.metric",
                        help=f"**ψ_g**: {GLOSSARY['ψ_g']}\n\n**Δ_g**: {GLOSSARY['Δ_g']}\n\n**Error bars**: {ci} "
                             f"intervals. {GLOSSARY['interval']}")
    shown = c[1].multiselect("Splits", splits, default=[s for s in splits if s != "val"] or splits,
                             key=key and f"{key}.splits", help="The panels, top to bottom, in the order chosen.")
    st.plotly_chart(group_interval_bars(result.groups, metric, splits=shown), width="stretch", config=CHART_CONFIG)


def audit_table(result: Audit) -> None:
    """How many groups of each run meet ε, exceed it or cannot tell, then the per-group table."""
    table, helps = group_display_table(result)
    counted = verdict_lines(result)
    if counted:
        st.caption("Verdicts against ε: " + "; ".join(counted) + ".", help=GLOSSARY["verdict vs ε"])
    st.dataframe(table, hide_index=True, width="stretch", placeholder="",
                 column_config={k: st.column_config.NumberColumn(format="%.1f", help=text)
                                for k, text in helps.items()}
                 | {"verdict vs ε": st.column_config.TextColumn(help=GLOSSARY["verdict vs ε"])})
