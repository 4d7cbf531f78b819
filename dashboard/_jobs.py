"""One job as the Overview and Launch pages show it: what it is, counts that add up, each running run."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from ceag.config.vocabulary import method_label
from ceag.grid import jobs

DONE = ("cached", "finished", "diverged", "failed", "cancelled")
ORDER = ("finished", "cached", "diverged", "failed", "cancelled", "running", "pending")  # as read: done, then not


def describe(job: dict) -> str:
    """"digits · mlp · NFT, CEAG · 8 cells · started 12:01:02 UTC · 14 s" from a normalized job state."""
    parts = [", ".join(job.get("datasets") or []) or "?", ", ".join(job.get("models") or []) or "?",
             ", ".join(method_label(m) for m in job.get("methods") or []) or "?",
             f"{job.get('total', 0)} cell" + ("" if job.get("total") == 1 else "s")]
    try:
        started = datetime.fromisoformat(str(job.get("started_at")))
        parts.append(f"started {started:%Y-%m-%d %H:%M:%S} UTC")
    except ValueError:
        pass
    if job.get("seconds") is not None:
        parts.append(_duration(float(job["seconds"])))
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def counts_text(job: dict) -> str:
    """"3 finished, 1 cached, ... of 8": every status with its count, in the feed's fixed order."""
    shown = [f"{job.get(s, 0)} {s}" for s in ORDER if job.get(s, 0) or s in ("finished", "pending")]
    return ", ".join(shown) + f" (of {job.get('total', 0)})"


def run_line(entry: dict) -> str:
    """"CEAG ε=2% · sparsity 0.9 · seed 0: fine-tuning, epoch 3 of 40" for a running run."""
    text = (f"{method_label(entry.get('method', '?'), entry.get('tolerance'))} · sparsity "
            f"{entry.get('sparsity', float('nan')):g} · seed {entry.get('seed', '?')}")
    where = [entry["phase"]] if entry.get("phase") else []
    if entry.get("epoch") is not None and entry.get("total_epochs"):
        where.append(f"epoch {entry['epoch']} of {entry['total_epochs']}")
    return text + ": " + (", ".join(where) if where else "starting")


def job_card(job: dict, results, *, cancel: bool = True, log: bool = True) -> None:
    """Render one job (a normalized ``jobs.job_state``) in a bordered box."""
    state, total = job.get("state"), max(int(job.get("total") or 0), 1)
    done = sum(int(job.get(s) or 0) for s in DONE)
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.progress(min(done / total, 1.0), text=f"job {job['job_id']}: {state}, {done} of {job.get('total', 0)} "
                                                  f"runs done")
        c1.caption(f"{describe(job)}  \n{counts_text(job)}")
        if cancel and state in jobs.ACTIVE and c2.button("Cancel", key=f"cancel_{job['job_id']}"):
            jobs.cancel(results, job["job_id"])
            st.toast(f"Cancelling job {job['job_id']}: running runs stop and are recorded as cancelled.")
        running = [e for e in job.get("runs", {}).values() if isinstance(e, dict) and e.get("status") == "running"]
        if state == "lost" and running:
            st.warning(f"The job's process is gone; {len(running)} run(s) it was training did not finish.")
        elif running:
            st.markdown("\n".join(f"- {run_line(e)}" for e in running))
        if job.get("error"):
            st.error(f"The grid stopped: {job['error']}")
        ids = jobs.job_run_ids(job)
        if ids and done:
            c2.page_link("dashboard/runs.py", label="Its runs", icon=":material/table_rows:",
                         query_params={"runs": ",".join(ids)})
        if log and (state in ("lost", "failed") or job.get("failed")):
            with st.expander("Log"):
                st.code(jobs.log_tail(results, job["job_id"]) or "(empty)")
