"""A large synthetic store for benchmarks: runs x groups of plausible, generated rows.

Rows are generated inside DuckDB (generate_series), sorted by run id as ingest writes them.
Values are random, not results: such a store is only for measuring query and page times.
"""

from __future__ import annotations

import os

from ceag.store.db import connect


def fill(results: str | os.PathLike, *, runs: int, groups: int, trace_points: int = 40, seeds: int = 5) -> None:
    """Create ``runs`` finished runs on dataset 'bench' with ``groups`` groups each."""
    with connect(results, write=True) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("""
            CREATE TEMP TABLE r AS
            SELECT i, printf('bench%011d', i) AS run_id,
                   ['nft', 'nft_es', 'el_rb', 'ceag'][1 + i % 4] AS method,
                   [0.85, 0.9, 0.925, 0.95, 0.99][1 + (i // 4) % 5] AS sparsity,
                   CASE WHEN i % 4 = 3 THEN [0.005, 0.01, 0.02][1 + (i // 20) % 3] END AS tolerance,
                   (i // 60) % ? AS seed
            FROM generate_series(0, ? - 1) t(i)
        """, [seeds, runs])
        con.execute("""
            INSERT INTO runs (run_id, status, dataset, model, method, sparsity, achieved_sparsity, tolerance, seed,
                              reported_epoch, best_epoch, selection_split, progress_epoch, total_epochs, config,
                              data_key, dense_key, prune_key, device, threads, wall_seconds, started_at,
                              finished_at, ingested_at)
            SELECT run_id, 'finished', 'bench', 'resnet56', method, sparsity, sparsity, tolerance, seed, 50, 50,
                   'test', 50, 50, '{}', 'bench', 'bench', 'bench', 'cpu', 1, 1.0, '', '', now()
            FROM r
        """)
        con.execute("""
            INSERT INTO run_metrics
            SELECT run_id, e.epoch, s.split, 0.5 + 0.4 * random(), 1.0, 0.9, 0.1 * random(), 0.3 * random(),
                   0.5 * random(), sparsity
            FROM r, (VALUES (0), (50)) e(epoch), (VALUES ('train'), ('test'), ('val')) s(split)
            ORDER BY run_id
        """)
        con.execute("""
            INSERT INTO group_metrics
            SELECT run_id, 50, s.split, g.g, printf('class %d', g.g), 100, 0.5 + 0.5 * random(), 1.0, 0.9,
                   0.2 * random() - 0.05, 0.2 * random() - 0.1
            FROM r, (VALUES ('train'), ('test'), ('val')) s(split), generate_series(0, ? - 1) g(g)
            ORDER BY run_id
        """, [groups])
        con.execute("""
            INSERT INTO duals
            SELECT run_id, p.p * 100, p.p, g.g, random(), random() - 0.5
            FROM r, generate_series(0, ? - 1) p(p), generate_series(0, ? - 1) g(g)
            WHERE method IN ('el_rb', 'ceag')
            ORDER BY run_id, p.p, g.g
        """, [trace_points, groups])
        con.execute("INSERT OR REPLACE INTO groups SELECT 'bench', 'bench', g, printf('class %d', g), 500, 0, 100 "
                    "FROM generate_series(0, ? - 1) t(g)", [groups])
        con.execute("COMMIT")


def run_ids(results: str | os.PathLike, method: str, limit: int) -> list[str]:
    with connect(results) as con:
        rows = con.execute("SELECT run_id FROM runs WHERE method = ? ORDER BY run_id LIMIT ?", [method, limit])
        return [r[0] for r in rows.fetchall()]
