"""Named queries: each opens a short read connection, binds its parameters, returns a DataFrame.

Values at a run's *reported* epoch (the last one, or the best iterate for NFT+ES) are what
frontiers and tables show; per-epoch values serve the trajectories.

Runs that differ only in how their weights were chosen are never merged: every query that groups runs or
names their setting reads ``criterion`` (the pruning criterion, from the run's config; magnitude where the
config leaves it out, as configs do at the default) and ``pruning`` (the pruning kind: unstructured where an
old config leaves it out) and keeps each apart, as CEAG with held-out multipliers (``constraint_data`` "val") is
kept apart as its own method, ``<method>_heldout``.
"""

from __future__ import annotations

import os

import pandas as pd

from ceag.store.db import connect

# The run's pruning criterion: its config names it only away from the default (magnitude).
CRITERION = "coalesce(json_extract_string(r.config, '$.criterion'), 'magnitude')"
# The run's pruning kind (config.vocabulary.PRUNING): unstructured, the default, where a config leaves it out.
PRUNING = "coalesce(json_extract_string(r.config, '$.pruning'), 'unstructured')"
# CEAG whose multipliers were driven by validation data is its own method on the frontier and against NFT.
METHOD = "CASE WHEN json_extract_string(r.config, '$.constraint_data') = 'val' THEN r.method || '_heldout' " \
         "ELSE r.method END"

FINAL_RUN_METRICS = f"""
    SELECT r.run_id, r.status, r.dataset, r.model, {METHOD} AS method, {CRITERION} AS criterion,
           {PRUNING} AS pruning, r.sparsity, r.achieved_sparsity,
           r.tolerance, r.seed, m.split, m.accuracy, m.dense_accuracy, m.acc_gap,
           m.max_excess_gap, m.psi_pw, m.loss, r.reported_epoch, r.data_fingerprint, r.skipped_rows,
           r.data_warning, d.converged, d.constraints_active
    FROM runs r JOIN run_metrics m ON m.run_id = r.run_id AND m.epoch = r.reported_epoch
    LEFT JOIN run_diagnostics d ON d.run_id = r.run_id
"""


def _query(results, sql: str, params: list | None = None) -> pd.DataFrame:
    with connect(results) as con:
        return con.execute(sql, params or []).df()


# The columns of ``runs`` (and the first ones of ``runs_table``): a run's settings, status and diagnostics.
RUN_COLUMNS = f"""r.run_id, status, reason, dataset, model, method, {CRITERION} AS criterion, sparsity,
               achieved_sparsity, tolerance, seed, reported_epoch, progress_epoch, total_epochs, device,
               wall_seconds, started_at, finished_at, diverged_step, data_fingerprint, skipped_rows,
               CAST(data_report AS VARCHAR) AS data_report, data_warning, d.converged, d.constraints_active,
               d.max_multiplier, d.advice, d.warnings"""


def runs(results: str | os.PathLike, *, status: str | None = None, dataset: str | None = None,
         method: str | None = None) -> pd.DataFrame:
    """One row per run with its settings (``criterion``: the pruning criterion) and status, newest first.

    ``converged`` and ``constraints_active`` come from the run's diagnostics (NULL when unknown or,
    for the latter, for methods without multipliers); ``advice`` says what to change when a run
    did not settle, ``warnings`` lists the constraint warnings.
    """
    return _query(results, f"""
        SELECT {RUN_COLUMNS}
        FROM runs r LEFT JOIN run_diagnostics d ON d.run_id = r.run_id
        WHERE (? IS NULL OR status = ?) AND (? IS NULL OR dataset = ?) AND (? IS NULL OR method = ?)
        ORDER BY finished_at DESC NULLS FIRST, r.run_id
    """, [status, status, dataset, dataset, method, method])


def run_config(results: str | os.PathLike, run_id: str) -> str | None:
    df = _query(results, "SELECT config FROM runs WHERE run_id = ?", [run_id])
    return None if df.empty else str(df.iloc[0, 0])


def finished_configs(results: str | os.PathLike) -> dict[str, str]:
    """{run_id: config JSON} of every finished run, newest first: one query, however many runs."""
    df = _query(results, """SELECT run_id, CAST(config AS VARCHAR) AS config FROM runs WHERE status = 'finished'
                            ORDER BY finished_at DESC NULLS FIRST, run_id""")
    return dict(zip(df["run_id"], df["config"], strict=True))


def frontier(results: str | os.PathLike, *, dataset: str, model: str | None = None,
             split: str = "test", include_diverged: bool = False) -> pd.DataFrame:
    """One row per run at its reported epoch: accuracy, max excess gap and Psi_PW on ``split``, with its method
    (``<method>_heldout`` for held-out multipliers), ``criterion`` and ``pruning``."""
    return _query(results, f"""
        SELECT * FROM ({FINAL_RUN_METRICS}) f
        WHERE dataset = ? AND (? IS NULL OR model = ?) AND split = ?
          AND (status = 'finished' OR (? AND status = 'diverged'))
        ORDER BY method, criterion, pruning, sparsity, tolerance, seed
    """, [dataset, model, model, split, include_diverged])


def frontier_summary(results: str | os.PathLike, *, dataset: str, model: str | None = None,
                     split: str = "test", include_diverged: bool = False) -> pd.DataFrame:
    """Mean and standard deviation across seeds for each (model, method, criterion, pruning, sparsity, tolerance):
    runs that differ only in their pruning criterion, or only in their pruning kind, are two cells."""
    return _query(results, f"""
        SELECT model, method, criterion, pruning, sparsity, tolerance, count(*) AS seeds,
               avg(accuracy) AS accuracy, stddev_samp(accuracy) AS accuracy_std,
               avg(max_excess_gap) AS max_excess_gap, stddev_samp(max_excess_gap) AS max_excess_gap_std,
               avg(psi_pw) AS psi_pw, stddev_samp(psi_pw) AS psi_pw_std,
               avg(dense_accuracy) AS dense_accuracy, list(run_id ORDER BY seed) AS run_ids,
               count(*) FILTER (WHERE status = 'diverged') AS diverged,
               count(*) FILTER (WHERE converged = false) AS unsettled
        FROM ({FINAL_RUN_METRICS}) f
        WHERE dataset = ? AND (? IS NULL OR model = ?) AND split = ?
          AND (status = 'finished' OR (? AND status = 'diverged'))
        GROUP BY model, method, criterion, pruning, sparsity, tolerance
        ORDER BY model, method, criterion, pruning, sparsity, tolerance NULLS FIRST
    """, [dataset, model, model, split, include_diverged])


# What a model costs (``speed_frontier``): the pruned model's figures, each with the dense one's (``dense_<figure>``).
FOOTPRINT_FIGURES = ("params", "macs", "size_bytes", "latency_cpu_b1_ms", "latency_cpu_b64_ms", "latency_gpu_b1_ms",
                     "latency_gpu_b64_ms")
MACHINE = ("processor", "cpu_count", "torch_version", "cuda_device")  # where the latencies were measured (one parse)
SPEED_FRONTIER = f"""
    WITH f AS (
        SELECT r.run_id, r.model, {METHOD} AS method, {CRITERION} AS criterion, {PRUNING} AS pruning, r.sparsity,
               r.achieved_sparsity, r.channel_sparsity, r.tolerance, r.seed, m.accuracy, m.dense_accuracy,
               m.max_excess_gap, m.psi_pw, r.footprint_model, r.latency_threads,
               {", ".join(f"r.{c}, r.dense_{c}" for c in FOOTPRINT_FIGURES)},
               json_extract_string(r.footprint, [{", ".join(f"'$.machine.{k}'" for k in MACHINE)}]) AS machine,
               r.footprint IS NOT NULL AS measured
        FROM runs r JOIN run_metrics m ON m.run_id = r.run_id AND m.epoch = r.reported_epoch AND m.split = ?
        WHERE r.status = 'finished' AND r.dataset = ? AND (? IS NULL OR r.model = ?)
    )
    SELECT f.* EXCLUDE (measured, machine), {", ".join(f"f.machine[{i}] AS {k}" for i, k in enumerate(MACHINE, 1))},
           c.unmeasured
    FROM (SELECT count(*) FILTER (WHERE NOT measured) AS unmeasured FROM f) c LEFT JOIN f ON f.measured
    ORDER BY method, criterion, pruning, sparsity, tolerance, seed
"""


def speed_frontier(results: str | os.PathLike, *, dataset: str, model: str | None = None,
                   split: str = "test") -> tuple[pd.DataFrame, int]:
    """(per finished run with a footprint: setting, ``pruning``, ``split`` metrics at the reported epoch, the pruned
    and dense ``FOOTPRINT_FIGURES``, where the latencies were measured; how many runs lack a footprint)."""
    frame = _query(results, SPEED_FRONTIER, [split, dataset, model, model])
    unmeasured = int(frame["unmeasured"].iloc[0]) if len(frame) else 0
    return frame[frame["run_id"].notna()].drop(columns="unmeasured").reset_index(drop=True), unmeasured


def footprints(results: str | os.PathLike, run_ids: list[str]) -> pd.DataFrame:
    """(run_id, footprint JSON text) of the given runs that have a footprint."""
    return _query(results, "SELECT run_id, CAST(footprint AS VARCHAR) AS footprint FROM runs WHERE "
                           "list_contains(?, run_id) AND footprint IS NOT NULL ORDER BY run_id", [list(run_ids)])


RUN_METRICS = "SELECT * FROM run_metrics WHERE run_id = ? ORDER BY split, epoch"
GROUP_METRICS = """
    SELECT g.* FROM group_metrics g JOIN runs r ON r.run_id = g.run_id
    WHERE g.run_id = ? AND g.epoch = coalesce(?, r.reported_epoch)
    ORDER BY g.split, g.group_id
"""
DUALS = """
    SELECT d.step, d.epoch, d.group_id, coalesce(g.group_name, CAST(d.group_id AS VARCHAR)) AS group_name,
           d.multiplier, d.violation
    FROM duals d
    LEFT JOIN (SELECT DISTINCT group_id, group_name FROM group_metrics WHERE run_id = ? AND epoch = 0) g
           ON g.group_id = d.group_id
    WHERE d.run_id = ? ORDER BY d.step, d.group_id
"""


def run_metrics(results: str | os.PathLike, run_id: str) -> pd.DataFrame:
    """Per-epoch overall metrics of one run, every split."""
    return _query(results, RUN_METRICS, [run_id])


def group_metrics(results: str | os.PathLike, run_id: str, *, epoch: int | None = None) -> pd.DataFrame:
    """Per-group metrics of one run; at the reported epoch unless ``epoch`` is given."""
    return _query(results, GROUP_METRICS, [run_id, epoch])


def duals(results: str | os.PathLike, run_id: str) -> pd.DataFrame:
    """The multiplier and constraint-violation trace of one run (empty for NFT)."""
    return _query(results, DUALS, [run_id, run_id])


def run_detail(results: str | os.PathLike, run_id: str) -> dict[str, object]:
    """Everything one run's page shows, through one connection (opening the store is the slow part).

    Keys: ``config`` (JSON text or None), ``footprint`` (the run's footprint record as JSON text; None for a run
    made before it was measured), ``run_metrics``, ``group_metrics`` (at the reported epoch) and ``duals``, as
    the functions of the same names return them.
    """
    with connect(results) as con:
        config = con.execute("SELECT config, CAST(footprint AS VARCHAR) FROM runs WHERE run_id = ?",
                             [run_id]).fetchone()
        return {"config": None if config is None else str(config[0]),
                "footprint": None if config is None else config[1],
                "run_metrics": con.execute(RUN_METRICS, [run_id]).df(),
                "group_metrics": con.execute(GROUP_METRICS, [run_id, None]).df(),
                "duals": con.execute(DUALS, [run_id, run_id]).df()}


def diagnostics(results: str | os.PathLike, run_id: str) -> dict[str, object]:
    """One run's diagnostics: ``run`` (the run_diagnostics row as a dict, or None when the run has
    none), ``spreads`` (per split) and ``constraint_groups`` (per group, with group names)."""
    with connect(results) as con:
        run = con.execute("SELECT * FROM run_diagnostics WHERE run_id = ?", [run_id]).df()
        spreads = con.execute("SELECT * FROM run_spreads WHERE run_id = ? ORDER BY split", [run_id]).df()
        groups = con.execute("""
            SELECT c.*, coalesce(g.group_name, CAST(c.group_id AS VARCHAR)) AS group_name
            FROM constraint_groups c
            LEFT JOIN (SELECT DISTINCT group_id, group_name FROM group_metrics WHERE run_id = ? AND epoch = 0) g
                   ON g.group_id = c.group_id
            WHERE c.run_id = ? ORDER BY c.group_id
        """, [run_id, run_id]).df()
    return {"run": None if run.empty else run.iloc[0].to_dict(), "spreads": spreads, "constraint_groups": groups}


def group_curves(results: str | os.PathLike, run_id: str) -> pd.DataFrame:
    """Per-group metrics of one run at every evaluated epoch (epoch, split, group, accuracy, excess_gap)."""
    return _query(results, """
        SELECT epoch, split, group_id, group_name, n, accuracy, dense_accuracy, excess_gap
        FROM group_metrics WHERE run_id = ? ORDER BY split, group_id, epoch
    """, [run_id])


def generalization(results: str | os.PathLike, run_ids: list[str]) -> pd.DataFrame:
    """Per run and group at the reported epoch: train and test psi_g and Delta_g, with sizes and the run's setting
    (method, criterion, pruning, sparsity, tolerance, seed)."""
    return _query(results, f"""
        SELECT r.run_id, r.method, {CRITERION} AS criterion, {PRUNING} AS pruning, r.sparsity, r.tolerance, r.seed,
               g.group_id, g.group_name,
               max(CASE WHEN g.split = 'train' THEN g.n END) AS n_train,
               max(CASE WHEN g.split = 'test' THEN g.n END) AS n_test,
               max(CASE WHEN g.split = 'train' THEN g.excess_gap END) AS train_excess_gap,
               max(CASE WHEN g.split = 'test' THEN g.excess_gap END) AS test_excess_gap,
               max(CASE WHEN g.split = 'train' THEN g.acc_gap END) AS train_acc_gap,
               max(CASE WHEN g.split = 'test' THEN g.acc_gap END) AS test_acc_gap
        FROM runs r JOIN group_metrics g ON g.run_id = r.run_id AND g.epoch = r.reported_epoch
        WHERE list_contains(?, r.run_id)
        GROUP BY ALL ORDER BY r.method, criterion, pruning, r.sparsity, r.tolerance, r.seed, g.group_id
    """, [list(run_ids)])


def overview(results: str | os.PathLike) -> pd.DataFrame:
    """Run counts per dataset, model, method, pruning criterion and status."""
    return _query(results, f"""
        SELECT dataset, model, method, {CRITERION} AS criterion, status, count(*) AS runs,
               list(DISTINCT sparsity ORDER BY sparsity) AS sparsities,
               list(DISTINCT tolerance ORDER BY tolerance) FILTER (WHERE tolerance IS NOT NULL) AS tolerances,
               count(DISTINCT seed) AS seeds
        FROM runs r GROUP BY ALL ORDER BY dataset, model, method, criterion, status
    """)


def groups(results: str | os.PathLike, dataset: str) -> pd.DataFrame:
    return _query(results, "SELECT * FROM groups WHERE dataset = ? ORDER BY data_key, group_id", [dataset])


def finished_ids(results: str | os.PathLike, run_ids: list[str]) -> set[str]:
    df = _query(results, "SELECT run_id FROM runs WHERE list_contains(?, run_id) "
                         "AND status IN ('finished', 'diverged')", [list(run_ids)])
    return set(df["run_id"])


def run_trust(results: str | os.PathLike, run_ids: list[str]) -> pd.DataFrame:
    """Per run (those with diagnostics): ``converged``, ``advice`` (what to change when it did not settle),
    ``constraints_active`` and ``warnings`` (the models learned nothing or collapsed; constraint warnings)."""
    return _query(results, "SELECT run_id, converged, advice, constraints_active, warnings FROM run_diagnostics "
                           "WHERE list_contains(?, run_id) ORDER BY run_id", [list(run_ids)])


def runs_without_diagnostics(results: str | os.PathLike) -> set[str]:
    """Finished or diverged runs ingested before the store kept diagnostics."""
    df = _query(results, "SELECT run_id FROM runs WHERE status IN ('finished', 'diverged') AND run_id NOT IN "
                         "(SELECT run_id FROM run_diagnostics)")
    return set(df["run_id"])


def sync_state(results: str | os.PathLike) -> tuple[dict[str, str], set[str]]:
    """({run id: status}, the runs of ``runs_without_diagnostics``) read over one connection, for ``sync``.

    Raises ``StoreNeedsMigration`` for a store of an older schema (reading never migrates)."""
    with connect(results) as con:
        statuses = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
        stale = {r[0] for r in con.execute(
            "SELECT run_id FROM runs WHERE status IN ('finished', 'diverged') AND run_id NOT IN "
            "(SELECT run_id FROM run_diagnostics)").fetchall()}
    return statuses, stale


def run_statuses(results: str | os.PathLike) -> dict[str, str]:
    df = _query(results, "SELECT run_id, status FROM runs")
    return dict(zip(df["run_id"], df["status"], strict=True))


EXPORT_TABLES = ("final", "runs", "run_metrics", "group_metrics", "duals")


def export_table(results: str | os.PathLike, table: str, run_ids: list[str]) -> pd.DataFrame:
    """Rows of ``table`` for the given runs: 'final' is per-group metrics at the reported epoch
    joined with the run's settings; 'runs' is the stored table with each run's ``criterion`` after its method;
    the others are the stored tables as they are."""
    if table == "final":
        return _query(results, f"""
            SELECT r.run_id, r.dataset, r.model, r.method, {CRITERION} AS criterion, r.sparsity,
                   r.achieved_sparsity, r.tolerance,
                   r.seed, r.status, g.epoch, g.split, g.group_id, g.group_name, g.n, g.accuracy,
                   g.dense_accuracy, g.acc_gap, g.excess_gap, m.accuracy AS overall_accuracy,
                   m.dense_accuracy AS overall_dense_accuracy, m.max_excess_gap, m.psi_pw
            FROM runs r
            JOIN group_metrics g ON g.run_id = r.run_id AND g.epoch = r.reported_epoch
            JOIN run_metrics m ON m.run_id = r.run_id AND m.epoch = r.reported_epoch AND m.split = g.split
            WHERE list_contains(?, r.run_id)
            ORDER BY r.run_id, g.split, g.group_id
        """, [list(run_ids)])
    if table == "runs":
        frame = _query(results, f"SELECT r.* EXCLUDE (ingested_at), {CRITERION} AS criterion FROM runs r "
                                "WHERE list_contains(?, run_id) ORDER BY run_id", [list(run_ids)])
        columns = [c for c in frame.columns if c != "criterion"]
        columns.insert(columns.index("method") + 1, "criterion")
        return frame[columns]
    if table in ("run_metrics", "group_metrics", "duals"):
        order = {"duals": "step, group_id", "group_metrics": "epoch, split, group_id"}.get(table, "epoch, split")
        return _query(results, f"SELECT * FROM {table} WHERE list_contains(?, run_id) ORDER BY run_id, {order}",
                      [list(run_ids)])
    raise ValueError(f"unknown table {table!r}; choose one of {', '.join(EXPORT_TABLES)}")


# -- the audit view: per-group tables of chosen runs, and the Overview's story -----------------------
AUDIT_GROUPS = f"""
    SELECT r.run_id, r.dataset, r.model, r.method, {CRITERION} AS criterion, {PRUNING} AS pruning, r.sparsity,
           r.tolerance, r.seed, r.status, r.reported_epoch, g.split, g.group_id, g.group_name, g.n, g.accuracy,
           g.dense_accuracy, g.acc_gap, g.excess_gap
    FROM runs r JOIN group_metrics g ON g.run_id = r.run_id AND g.epoch = r.reported_epoch
    WHERE r.status IN ('finished', 'diverged') AND {{where}}
    ORDER BY r.method, criterion, pruning, r.tolerance NULLS FIRST, r.sparsity, r.seed, r.run_id,
             CASE g.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, g.group_id
"""
AUDIT_RUNS = f"""
    SELECT r.run_id, r.dataset, r.model, r.method, {CRITERION} AS criterion, {PRUNING} AS pruning, r.sparsity,
           r.achieved_sparsity, r.tolerance, r.seed, r.status, r.reason, r.reported_epoch, r.best_epoch,
           r.selection_split, r.total_epochs, r.device, r.threads, r.wall_seconds, r.finished_at, r.config,
           r.data_fingerprint, r.skipped_rows, CAST(r.data_report AS VARCHAR) AS data_report, m.split, m.accuracy,
           m.dense_accuracy, m.acc_gap, m.max_excess_gap, m.psi_pw
    FROM runs r JOIN run_metrics m ON m.run_id = r.run_id AND m.epoch = r.reported_epoch
    WHERE list_contains(?, r.run_id)
    ORDER BY r.method, criterion, pruning, r.tolerance NULLS FIRST, r.sparsity, r.seed, r.run_id,
             CASE m.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END
"""


def audit_groups(results: str | os.PathLike, run_ids: list[str]) -> pd.DataFrame:
    """Per finished (or diverged) run, split and group at the reported epoch, with the run's settings."""
    return _query(results, AUDIT_GROUPS.format(where="list_contains(?, r.run_id)"), [list(run_ids)])


def audit_runs(results: str | os.PathLike, run_ids: list[str]) -> pd.DataFrame:
    """Per run and split at the reported epoch: settings (``config`` JSON included) and run-level metrics."""
    return _query(results, AUDIT_RUNS, [list(run_ids)])


def story_groups(results: str | os.PathLike, *, dataset: str, model: str | None = None) -> pd.DataFrame:
    """Per-group rows (train, val, test) at the reported epoch of every finished run of ``dataset``."""
    return _query(results, AUDIT_GROUPS.format(where="r.status = 'finished' AND r.dataset = ? AND (? IS NULL OR "
                                                     "r.model = ?)"), [dataset, model, model])


RUNS_TABLE_METRICS = ("accuracy", "max_excess_gap", "psi_pw")


def runs_table(results: str | os.PathLike) -> pd.DataFrame:
    """``runs`` (the same columns, the same order) with each run's reported-epoch metrics on train and test.

    Adds ``train_<m>`` and ``test_<m>`` for m in accuracy, max_excess_gap, psi_pw (fractions; NULL
    for a run with no metrics on that split, e.g. one still running).
    """
    metrics = ",\n".join(f"max(CASE WHEN m.split = '{split}' THEN m.{m} END) AS {split}_{m}"
                         for split in ("train", "test") for m in RUNS_TABLE_METRICS)
    return _query(results, f"""
        WITH met AS (
            SELECT m.run_id, {metrics}
            FROM run_metrics m JOIN runs r ON r.run_id = m.run_id AND m.epoch = r.reported_epoch
            GROUP BY m.run_id
        )
        SELECT {RUN_COLUMNS}, met.* EXCLUDE (run_id)
        FROM runs r LEFT JOIN run_diagnostics d ON d.run_id = r.run_id LEFT JOIN met ON met.run_id = r.run_id
        ORDER BY finished_at DESC NULLS FIRST, r.run_id
    """)


def comparison_runs(results: str | os.PathLike, *, dataset: str | None = None) -> pd.DataFrame:
    """Finished runs with what pairs a mitigation's run with an NFT run (``analysis.seeds.pair_runs``): run_id,
    status, dataset, model, method (``<method>_heldout`` for held-out multipliers, as on the frontier), criterion,
    pruning, sparsity, tolerance, seed, dense_key, finished_at."""
    return _query(results, f"""
        SELECT run_id, status, dataset, model, {METHOD} AS method, {CRITERION} AS criterion, {PRUNING} AS pruning,
               sparsity, tolerance, seed, dense_key, finished_at
        FROM runs r WHERE status = 'finished' AND (? IS NULL OR dataset = ?)
        ORDER BY finished_at DESC NULLS FIRST, run_id
    """, [dataset, dataset])
