"""The store queries the pages read: each a named query of ``ceag.store.queries`` on the view's results folder,
cached until the store changes, after the store has taken in run folders it lacks (so every page sees every
finished run). A store problem becomes an error box naming it. Call them as the queries, without the folder:
``store.runs(status="finished")``.
"""

from __future__ import annotations

from ceag.analysis import seed_cache
from ceag.store import queries
from dashboard._shared import store_query

runs = store_query(queries.runs)
runs_table = store_query(queries.runs_table)
run_config = store_query(queries.run_config)
finished_configs = store_query(queries.finished_configs)
run_detail = store_query(queries.run_detail)
group_metrics = store_query(queries.group_metrics)
diagnostics = store_query(queries.diagnostics)
group_curves = store_query(queries.group_curves)
overview = store_query(queries.overview)
frontier_summary = store_query(queries.frontier_summary)
speed_frontier = store_query(queries.speed_frontier)
footprints = store_query(queries.footprints)
generalization = store_query(queries.generalization)
story_groups = store_query(queries.story_groups)
finished_ids = store_query(queries.finished_ids)
export_table = store_query(queries.export_table)
seed_comparisons = store_query(seed_cache.store_comparisons)
