"""The DuckDB results store: exact schema, migrations, foreign files, idempotent ingest, the named
queries on a small real store, a reader beside a writing process, and no torch on the app's path."""

import json
import shutil
import socket
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pandas as pd
import pytest

from ceag.config.grid_spec import GridSpec
from ceag.config.run_config import RunConfig
from ceag.grid.driver import run_grid
from ceag.results.files import write_json
from ceag.results.layout import run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from ceag.store import StoreError, connect, db_path, ingest_all, ingest_run, migrate, queries, sync
from ceag.store.migrations import MIGRATIONS
from tests.helpers import ROOT, subprocess_env

TINY = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 2, "device": "cpu"}

EXPECTED_COLUMNS = {
    "runs": ["run_id", "status", "reason", "dataset", "model", "method", "sparsity", "achieved_sparsity",
             "tolerance", "seed", "reported_epoch", "best_epoch", "selection_split", "progress_epoch",
             "total_epochs", "config", "data_key", "dense_key", "prune_key", "device", "threads",
             "wall_seconds", "diverged_step", "started_at", "finished_at", "ingested_at", "data_fingerprint",
             "skipped_rows", "data_report", "data_warning", "channel_sparsity", "footprint_model", "params", "macs",
             "size_bytes", "latency_cpu_b1_ms", "latency_cpu_b64_ms", "latency_gpu_b1_ms", "latency_gpu_b64_ms",
             "dense_params", "dense_macs", "dense_size_bytes", "dense_latency_cpu_b1_ms", "dense_latency_cpu_b64_ms",
             "dense_latency_gpu_b1_ms", "dense_latency_gpu_b64_ms", "latency_threads", "footprint"],
    "run_metrics": ["run_id", "epoch", "split", "accuracy", "loss", "dense_accuracy", "acc_gap",
                    "max_excess_gap", "psi_pw", "sparsity"],
    "group_metrics": ["run_id", "epoch", "split", "group_id", "group_name", "n", "accuracy", "loss",
                      "dense_accuracy", "acc_gap", "excess_gap"],
    "duals": ["run_id", "step", "epoch", "group_id", "multiplier", "violation"],
    "groups": ["data_key", "dataset", "group_id", "group_name", "n_train", "n_val", "n_test"],
    "schema_migrations": ["version", "name", "applied_at"],
    "run_diagnostics": ["run_id", "converged", "window_first", "window_last", "advice", "constraints_active",
                        "max_multiplier", "multiplier_ratio", "estimates_agree", "warnings", "diagnostics"],
    "run_spreads": ["run_id", "split", "accuracy", "max_excess_gap", "accuracy_limit", "max_excess_gap_limit"],
    "constraint_groups": ["run_id", "group_id", "max_multiplier", "multiplier_ratio", "dual_steps", "violated_share",
                          "last_estimate", "train_excess_gap", "window_estimate", "window_train_excess_gap",
                          "disagree"],
}
TABLES = ("runs", "run_metrics", "group_metrics", "duals", "groups", "schema_migrations", "run_diagnostics",
          "run_spreads", "constraint_groups")


def columns(con) -> dict[str, list[str]]:
    rows = con.execute("SELECT table_name, column_name FROM information_schema.columns "
                       "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def row_counts(results) -> dict[str, int]:
    with connect(results) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


# -- a small real store, shared by the query tests ------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Every method on synthetic data, two CEAG tolerances, two seeds: 10 finished runs."""
    results = tmp_path_factory.mktemp("store")
    spec = GridSpec(datasets=("synthetic",), methods=("nft", "nft_es", "el_rb", "ceag"), sparsities=(0.8,),
                    tolerances=(0.01, 0.05), seeds=(0, 1), settings=TINY)
    configs = spec.configs()
    report = run_grid(configs, results, workers=1)
    assert report.finished == len(configs) == 10
    results_by_id = {c.run_id: load_result(results, c.run_id) for c in configs}
    return results, configs, results_by_id


# -- schema and migrations ------------------------------------------------------------------
def test_migrations_on_an_empty_database_give_the_exact_schema(tmp_path):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    try:
        assert migrate(con) == [v for v, _, _ in MIGRATIONS]
        assert columns(con) == EXPECTED_COLUMNS
        versions = con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert versions == [(v, name) for v, name, _ in MIGRATIONS]
    finally:
        con.close()


def test_migrating_twice_changes_nothing(tmp_path):
    path = tmp_path / "twice.duckdb"
    con = duckdb.connect(str(path))
    try:
        migrate(con)
        before = (columns(con), con.execute("SELECT * FROM schema_migrations").fetchall())
        assert migrate(con) == []
        after = (columns(con), con.execute("SELECT * FROM schema_migrations").fetchall())
        assert after == before
    finally:
        con.close()
    # connect() on the migrated file applies nothing either
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(path, db_path(results))
    with connect(results, write=True) as con:
        assert columns(con) == EXPECTED_COLUMNS
        assert con.execute("SELECT * FROM schema_migrations").fetchall() == before[1]


def test_connect_for_writing_creates_a_migrated_store(tmp_path):
    results = tmp_path / "new"
    with connect(results, write=True) as con:
        assert columns(con) == EXPECTED_COLUMNS
    assert db_path(results).exists()


def test_reading_a_missing_store_writes_nothing(tmp_path):
    df = queries.runs(tmp_path / "nowhere")
    assert df.empty and list(df.columns)[:2] == ["run_id", "status"]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("write", [False, True])
def test_a_duckdb_file_that_is_not_a_store_is_refused(tmp_path, write):
    con = duckdb.connect(str(db_path(tmp_path)))
    con.execute("CREATE TABLE customers (id INTEGER, name VARCHAR)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.close()
    with pytest.raises(StoreError, match="not a ceag store"), connect(tmp_path, write=write):
        pass
    with pytest.raises(StoreError, match="not a ceag store"):
        queries.runs(tmp_path)
    # and the foreign file was left alone
    con = duckdb.connect(str(db_path(tmp_path)), read_only=True)
    try:
        assert {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()} \
            == {"customers"}
    finally:
        con.close()


def test_a_file_that_is_not_duckdb_is_a_store_error(tmp_path):
    db_path(tmp_path).write_text("this is not a database\n")
    with pytest.raises(StoreError, match="cannot open"):
        queries.runs(tmp_path)


@pytest.mark.parametrize("write", [False, True])
def test_a_store_from_a_newer_ceag_asks_to_upgrade(tmp_path, write):
    with connect(tmp_path, write=True) as con:
        newest = max(v for v, _, _ in MIGRATIONS)
        con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [newest + 1])
    with pytest.raises(StoreError, match=r"newer ceag.*upgrade ceag"), connect(tmp_path, write=write):
        pass


def test_an_older_store_is_migrated_on_write_and_refused_read_only(tmp_path):
    # A store whose marker table exists but lacks every migration (an older schema).
    con = duckdb.connect(str(db_path(tmp_path)))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMP NOT NULL)")
    con.close()
    with pytest.raises(StoreError, match="older schema"), connect(tmp_path):
        pass
    with connect(tmp_path, write=True) as con:
        assert columns(con) == EXPECTED_COLUMNS
    with connect(tmp_path) as con:  # now readable
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


# -- ingest -------------------------------------------------------------------------------
def test_ingest_is_idempotent(store, tmp_path):
    source, configs, _ = store
    results = tmp_path / "copy"
    shutil.copytree(source / "runs", results / "runs")
    rid = next(c.run_id for c in configs if c.method == "ceag")
    assert ingest_run(results, rid) == "finished"
    once = row_counts(results)
    assert once["runs"] == 1 and once["run_metrics"] > 0 and once["group_metrics"] > 0 and once["duals"] > 0
    ingest_run(results, rid)
    assert row_counts(results) == once
    counts = ingest_all(results)
    assert counts == {"finished": len(configs)}
    everything = row_counts(results)
    assert ingest_all(results) == counts
    assert row_counts(results) == everything
    assert everything["runs"] == len(configs)
    expected_metrics = sum(len(pd.read_parquet(run_dir(results, c.run_id) / "run_metrics.parquet"))
                           for c in configs)
    assert everything["run_metrics"] == expected_metrics


def test_unfinished_run_is_ingested_as_interrupted_then_replaced(store, tmp_path):
    source, configs, _ = store
    cfg = next(c for c in configs if c.method == "el_rb")
    results = tmp_path / "partial"
    folder = run_dir(results, cfg.run_id)
    folder.mkdir(parents=True)
    shutil.copy(run_dir(source, cfg.run_id) / "config.json", folder / "config.json")
    # 'running' on this host with a pid that does not exist: a killed worker
    write_json(folder / "status.json", {"status": "running", "pid": 2**22 + 12345, "host": socket.gethostname(),
                                        "epoch": 3, "total": cfg.total_epochs})
    assert sync(results) == 1
    df = queries.runs(results)
    assert df.set_index("run_id").loc[cfg.run_id, "status"] == "interrupted"
    assert df.set_index("run_id").loc[cfg.run_id, "progress_epoch"] == 3
    assert queries.run_metrics(results, cfg.run_id).empty
    assert sync(results) == 0  # nothing changed: nothing to ingest
    # the run finishes (its folder is replaced by the finished one) and sync picks it up
    shutil.rmtree(folder)
    shutil.copytree(run_dir(source, cfg.run_id), folder)
    assert sync(results) == 1
    assert queries.runs(results).set_index("run_id").loc[cfg.run_id, "status"] == "finished"
    assert len(queries.run_metrics(results, cfg.run_id)) == len(load_result(source, cfg.run_id).run_metrics)
    assert sync(results) == 0


# -- named queries on the small store -------------------------------------------------------
def test_runs_query(store):
    results, configs, by_id = store
    df = queries.runs(results)
    assert {"run_id", "status", "reason", "dataset", "model", "method", "sparsity", "achieved_sparsity",
            "tolerance", "seed", "reported_epoch", "progress_epoch", "total_epochs", "device", "wall_seconds",
            "started_at", "finished_at", "diverged_step"} <= set(df.columns)
    assert sorted(df.run_id) == sorted(c.run_id for c in configs)
    assert set(df.status) == {"finished"}
    row = df.set_index("run_id")
    for cfg in configs:
        r = row.loc[cfg.run_id]
        assert (r.method, r.sparsity, r.seed, r.dataset) == (cfg.method, cfg.sparsity, cfg.seed, "synthetic")
        assert r.reported_epoch == by_id[cfg.run_id].summary["reported_epoch"]
        if cfg.tolerance is None:
            assert pd.isna(r.tolerance)
        else:
            assert r.tolerance == cfg.tolerance
    assert sorted(queries.runs(results, method="ceag").tolerance) == [0.01, 0.01, 0.05, 0.05]
    assert queries.runs(results, status="failed").empty
    assert queries.runs(results, dataset="digits").empty
    cfg = configs[0]
    assert json.loads(queries.run_config(results, cfg.run_id)) == cfg.canonical()
    assert queries.run_config(results, "0" * 16) is None


@pytest.mark.parametrize("split", ["test", "val", "train"])
def test_frontier_matches_each_runs_final_metrics(store, split):
    results, configs, by_id = store
    df = queries.frontier(results, dataset="synthetic", split=split)
    assert {"run_id", "method", "sparsity", "tolerance", "seed", "split", "accuracy", "dense_accuracy",
            "max_excess_gap", "psi_pw", "reported_epoch"} <= set(df.columns)
    assert sorted(df.run_id) == sorted(c.run_id for c in configs)
    assert set(df.split) == {split}
    for r in df.itertuples():
        final, _ = by_id[r.run_id].final(split)
        assert r.accuracy == final["accuracy"]
        assert r.max_excess_gap == final["max_excess_gap"]
        assert r.psi_pw == final["psi_pw"]
        assert r.dense_accuracy == final["dense_accuracy"]
        assert r.reported_epoch == by_id[r.run_id].summary["reported_epoch"]
    assert queries.frontier(results, dataset="synthetic", model="cnn").empty
    assert queries.frontier(results, dataset="digits").empty


def test_speed_frontier_carries_each_runs_footprint(store):
    results, configs, by_id = store
    frame, unmeasured = queries.speed_frontier(results, dataset="synthetic", split="test")
    assert unmeasured == 0 and sorted(frame.run_id) == sorted(c.run_id for c in configs)
    for r in frame.itertuples():
        footprint = by_id[r.run_id].summary["footprint"]
        assert (r.pruning, r.footprint_model) == ("unstructured", "masked")
        assert (r.params, r.dense_params, r.macs) == (footprint["pruned"]["params"], footprint["dense"]["params"],
                                                      footprint["pruned"]["macs"])
        assert r.latency_cpu_b64_ms == footprint["pruned"]["latency_ms"]["cpu_b64"]
        assert r.processor == footprint["machine"]["processor"] and r.latency_threads == footprint["machine"]["threads"]
        assert r.max_excess_gap == by_id[r.run_id].final("test")[0]["max_excess_gap"]


def test_frontier_of_nft_es_is_at_the_best_epoch(store):
    results, configs, by_id = store
    df = queries.frontier(results, dataset="synthetic", split="test").set_index("run_id")
    for cfg in configs:
        if cfg.method != "nft_es":
            continue
        nft = by_id[cfg.replace(method="nft").run_id]
        assert df.loc[cfg.run_id, "reported_epoch"] == nft.summary["best_epoch"]
        m = nft.run_metrics
        at_best = m[(m.split == "test") & (m.epoch == nft.summary["best_epoch"])].accuracy.iloc[0]
        assert df.loc[cfg.run_id, "accuracy"] == at_best


def test_frontier_summary_averages_over_seeds(store):
    results, configs, by_id = store
    df = queries.frontier_summary(results, dataset="synthetic")
    assert {"model", "method", "sparsity", "tolerance", "seeds", "accuracy", "accuracy_std", "max_excess_gap",
            "max_excess_gap_std", "psi_pw", "psi_pw_std", "dense_accuracy", "run_ids"} <= set(df.columns)
    if "diverged" in df.columns:
        assert (df.diverged == 0).all()
    # nft, nft_es, el_rb and two CEAG tolerances
    assert len(df) == 5 and (df.seeds == 2).all()
    for r in df.itertuples():
        accs = [by_id[rid].final("test")[0]["accuracy"] for rid in r.run_ids]
        assert r.accuracy == pytest.approx(np.mean(accs), abs=1e-12)
        assert r.accuracy_std == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
        seeds = [by_id[rid].config.seed for rid in r.run_ids]
        assert seeds == [0, 1]
        assert {by_id[rid].config.method for rid in r.run_ids} == {r.method}
    ceag = df[df.method == "ceag"]
    assert sorted(ceag.tolerance) == [0.01, 0.05]
    assert df[df.method != "ceag"].tolerance.isna().all()


def test_run_metrics_and_group_metrics_queries(store):
    results, configs, by_id = store
    cfg = next(c for c in configs if c.method == "ceag")
    result = by_id[cfg.run_id]
    rm = queries.run_metrics(results, cfg.run_id)
    assert list(rm.columns) == EXPECTED_COLUMNS["run_metrics"]
    expected = result.run_metrics.sort_values(["split", "epoch"]).reset_index(drop=True)
    got = rm.drop(columns="run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)

    gm = queries.group_metrics(results, cfg.run_id)
    assert list(gm.columns) == EXPECTED_COLUMNS["group_metrics"]
    assert set(gm.epoch) == {result.summary["reported_epoch"]}
    for split in ("train", "val", "test"):
        _, groups = result.final(split)
        part = gm[gm.split == split]
        assert list(part.group_id) == list(groups.group_id)
        assert list(part.accuracy) == list(groups.accuracy)
        assert list(part.excess_gap) == list(groups.excess_gap)
    first = queries.group_metrics(results, cfg.run_id, epoch=0)
    assert set(first.epoch) == {0} and (first.excess_gap == 0).all()


def test_duals_query(store):
    results, configs, by_id = store
    ceag = next(c for c in configs if c.method == "ceag")
    df = queries.duals(results, ceag.run_id)
    assert {"step", "epoch", "group_id", "group_name", "multiplier", "violation"} <= set(df.columns)
    assert len(df) == len(by_id[ceag.run_id].duals) > 0
    assert set(df.group_name) == {f"group {i}" for i in range(ceag.num_groups)}
    assert (df.multiplier >= 0).all()
    assert list(df.step) == sorted(df.step)
    nft = next(c for c in configs if c.method == "nft")
    assert queries.duals(results, nft.run_id).empty


@pytest.mark.parametrize("method", ["ceag", "nft"])
def test_run_detail_is_the_separate_queries_in_one_connection(store, method):
    results, configs, _ = store
    rid = next(c for c in configs if c.method == method).run_id
    detail = queries.run_detail(results, rid)
    assert detail["config"] == queries.run_config(results, rid)
    pd.testing.assert_frame_equal(detail["run_metrics"], queries.run_metrics(results, rid))
    pd.testing.assert_frame_equal(detail["group_metrics"], queries.group_metrics(results, rid))
    pd.testing.assert_frame_equal(detail["duals"], queries.duals(results, rid))
    assert queries.run_detail(results, "no-such-run")["config"] is None


def test_generalization_query(store):
    results, configs, by_id = store
    ids = [c.run_id for c in configs if c.method in ("nft", "ceag") and c.seed == 0]
    df = queries.generalization(results, ids)
    assert {"run_id", "method", "sparsity", "tolerance", "seed", "group_id", "group_name", "n_train", "n_test",
            "train_excess_gap", "test_excess_gap", "train_acc_gap", "test_acc_gap"} <= set(df.columns)
    assert sorted(set(df.run_id)) == sorted(ids)
    assert len(df) == len(ids) * 4
    for rid in ids:
        _, train = by_id[rid].final("train")
        _, test = by_id[rid].final("test")
        part = df[df.run_id == rid].sort_values("group_id")
        assert list(part.n_train) == list(train.n) and list(part.n_test) == list(test.n)
        assert list(part.train_excess_gap) == list(train.excess_gap)
        assert list(part.test_excess_gap) == list(test.excess_gap)
    assert queries.generalization(results, []).empty


def test_overview_query(store):
    results, configs, _ = store
    df = queries.overview(results)
    assert {"dataset", "model", "method", "status", "runs", "sparsities", "tolerances", "seeds"} <= set(df.columns)
    by_method = df.set_index("method")
    assert by_method.runs.to_dict() == {"ceag": 4, "el_rb": 2, "nft": 2, "nft_es": 2}
    assert (by_method.seeds == 2).all()
    assert list(by_method.loc["ceag", "sparsities"]) == [0.8]
    assert list(by_method.loc["ceag", "tolerances"]) == [0.01, 0.05]
    assert set(df.status) == {"finished"}


def test_groups_and_status_queries(store):
    results, configs, _ = store
    g = queries.groups(results, "synthetic")
    assert list(g.group_name) == [f"group {i}" for i in range(4)]
    assert (g.n_train > 0).all() and (g.n_test > 0).all() and (g.n_val > 0).all()
    ids = [c.run_id for c in configs]
    assert queries.finished_ids(results, ids + ["0" * 16]) == set(ids)
    assert queries.run_statuses(results) == dict.fromkeys(ids, "finished")


def test_export_table_query(store):
    results, configs, by_id = store
    ids = [c.run_id for c in configs]
    final = queries.export_table(results, "final", ids)
    assert len(final) == len(ids) * 3 * 4  # runs x splits x groups
    for r in final.itertuples():
        run_row, groups = by_id[r.run_id].final(r.split)
        g = groups[groups.group_id == r.group_id].iloc[0]
        assert r.accuracy == g.accuracy and r.excess_gap == g.excess_gap and r.n == g.n
        assert r.overall_accuracy == run_row["accuracy"] and r.psi_pw == run_row["psi_pw"]
        assert r.epoch == by_id[r.run_id].summary["reported_epoch"]
    one = queries.export_table(results, "final", ids[:1])
    assert set(one.run_id) == {ids[0]}
    runs = queries.export_table(results, "runs", ids)
    stored = [c for c in EXPECTED_COLUMNS["runs"] if c != "ingested_at"]
    after = stored.index("method") + 1  # the run's pruning criterion follows its method
    assert list(runs.columns) == [*stored[:after], "criterion", *stored[after:]]
    assert set(runs.criterion) == {"magnitude"}  # the default, which configs leave unsaid
    for table in ("run_metrics", "group_metrics", "duals"):
        df = queries.export_table(results, table, ids)
        assert list(df.columns) == EXPECTED_COLUMNS[table]
        assert len(df) == sum(len(getattr(by_id[i], table)) for i in ids)
    with pytest.raises(ValueError, match="unknown table"):
        queries.export_table(results, "secrets", ids)


def test_diverged_runs_stay_off_the_frontier_unless_asked(tmp_path):
    cfg = RunConfig(dataset="synthetic", method="el_rb", sparsity=0.8, dual_lr=1000.0, divergence_threshold=1.0,
                    **TINY)
    result = run(cfg, tmp_path)
    assert result.status == "diverged"
    assert ingest_run(tmp_path, cfg.run_id) == "diverged"
    row = queries.runs(tmp_path).iloc[0]
    assert row.status == "diverged" and row.diverged_step == result.summary["diverged_step"]
    assert "lower dual_lr" in row.reason
    assert queries.frontier(tmp_path, dataset="synthetic").empty
    assert queries.frontier_summary(tmp_path, dataset="synthetic").empty
    shown = queries.frontier(tmp_path, dataset="synthetic", include_diverged=True)
    assert list(shown.run_id) == [cfg.run_id]
    assert shown.accuracy.iloc[0] == result.final("test")[0]["accuracy"]


# -- concurrency: a reader process beside an ingesting process ------------------------------
READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from ceag.store import connect, queries

    results, expected_file, done_file, out_file, ready_file = sys.argv[1:6]
    expected = json.loads(Path(expected_file).read_text())
    SQL = '''SELECT r.run_id, r.status,
                    (SELECT count(*) FROM run_metrics m WHERE m.run_id = r.run_id),
                    (SELECT count(*) FROM group_metrics g WHERE g.run_id = r.run_id)
             FROM runs r'''
    errors, partial, seen, loops, nonempty, sizes = [], [], set(), 0, 0, set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = Path(done_file).exists()
        try:
            with connect(results) as con:
                rows = con.execute(SQL).fetchall()
            frontier = queries.frontier(results, dataset="synthetic")
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
        else:
            nonempty += bool(rows)
            sizes.add(len(rows))
            for rid, status, n_run, n_group in rows:
                seen.add(rid)
                if [n_run, n_group] != expected[rid]:
                    partial.append([rid, status, n_run, n_group])
            bad = set(frontier.run_id) - set(expected)
            if bad:
                partial.append(sorted(bad))
        loops += 1
        Path(ready_file).touch()
        if done:
            break
    Path(out_file).write_text(json.dumps({"errors": errors, "partial": partial, "seen": sorted(seen),
                                          "loops": loops, "nonempty": nonempty,
                                          "sizes": sorted(sizes)}))
""")

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ceag.store import ingest_all

    results, done_file, rounds, ready_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    try:
        deadline = time.monotonic() + 60
        while not Path(ready_file).exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # start once the reader reads, so it sees the first ingest too
        for _ in range(rounds):
            ingest_all(results)
    finally:
        Path(done_file).touch()
""")


@pytest.mark.slow
def test_reader_never_sees_a_partial_run_while_another_process_ingests(store, tmp_path):
    source, configs, _ = store
    results = tmp_path / "busy"
    shutil.copytree(source / "runs", results / "runs")
    expected = {c.run_id: [len(pd.read_parquet(run_dir(results, c.run_id) / "run_metrics.parquet")),
                           len(pd.read_parquet(run_dir(results, c.run_id) / "group_metrics.parquet"))]
                for c in configs}
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    (tmp_path / "reader.py").write_text(READER)
    (tmp_path / "writer.py").write_text(WRITER)
    done, out, ready = tmp_path / "done", tmp_path / "reader.json", tmp_path / "ready"
    env = subprocess_env()
    reader = subprocess.Popen([sys.executable, str(tmp_path / "reader.py"), str(results),
                               str(tmp_path / "expected.json"), str(done), str(out), str(ready)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(results), str(done), "2", str(ready)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, werr = writer.communicate(timeout=150)
        _, rerr = reader.communicate(timeout=150)
    finally:
        for p in (writer, reader):
            if p.poll() is None:
                p.kill()
    assert writer.returncode == 0, werr
    assert reader.returncode == 0, rerr
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["partial"] == []
    assert report["seen"] == sorted(expected)
    # it read before the first ingest and while runs were present
    assert report["sizes"][0] == 0 and report["sizes"][-1] == len(configs) and report["nonempty"] >= 1
    assert row_counts(results)["runs"] == len(configs)


# -- the app's path does not import torch ---------------------------------------------------
def test_store_and_plots_do_not_import_torch(store, tmp_path):
    source, configs, _ = store
    results = tmp_path / "light"
    shutil.copytree(source / "runs", results / "runs")
    code = textwrap.dedent(f"""
        import sys
        import ceag.store, ceag.present.plots.frontier
        assert 'torch' not in sys.modules, 'importing ceag.store / the plots imported torch'
        from ceag.store import ingest_all, queries
        ingest_all({str(results)!r})
        assert len(queries.frontier({str(results)!r}, dataset='synthetic')) == {len(configs)}
        queries.runs({str(results)!r}); queries.overview({str(results)!r})
        queries.speed_frontier({str(results)!r}, dataset='synthetic')
        assert 'torch' not in sys.modules, 'ingest or a query imported torch'
        print('ok')
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"



def test_ingest_keys_everything_by_the_folder_run_id(store, tmp_path):
    source, configs, _ = store
    cfg = next(c for c in configs if c.method == "nft")
    results = tmp_path / "renamed"
    shutil.copytree(run_dir(source, cfg.run_id), run_dir(results, cfg.run_id))
    config_file = run_dir(results, cfg.run_id) / "config.json"
    data = json.loads(config_file.read_text())
    data["max_trace_points"] += 1  # a setting NFT ignores; the config now hashes to another id
    config_file.write_text(json.dumps(data))
    try:
        ingest_run(results, cfg.run_id)
        ingest_run(results, cfg.run_id)
    except (StoreError, ValueError) as err:  # refusing the folder with a clear message is fine too
        assert cfg.run_id in str(err)
        return
    assert list(queries.runs(results).run_id) == [cfg.run_id]
    assert list(queries.frontier(results, dataset="synthetic").run_id) == [cfg.run_id]


def test_a_store_that_cannot_be_written_keeps_the_run_folder_for_the_next_ingest(store, tmp_path, monkeypatch):
    import duckdb

    import ceag.store.ingest as ingest

    source, configs, _ = store
    cfg = configs[0]
    results = tmp_path / "results"
    shutil.copytree(run_dir(source, cfg.run_id), run_dir(results, cfg.run_id))
    real = ingest.insert_run

    def full(con, row, *args):
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM runs WHERE run_id = ?", [row["run_id"]])
        con.execute("ROLLBACK")
        raise duckdb.IOException("could not write to file: No space left on device")

    monkeypatch.setattr(ingest, "insert_run", full)
    with pytest.raises(StoreError, match=f"could not write run {cfg.run_id} into .*No space left on device.*"
                                         "The run folder is intact"):
        ingest_run(results, cfg.run_id)
    assert queries.runs(results).empty
    monkeypatch.setattr(ingest, "insert_run", real)
    assert sync(results) == 1 and list(queries.runs(results).run_id) == [cfg.run_id]


# -- diagnostics (migration 3) ----------------------------------------------------------------
def test_diagnostics_are_stored_with_each_run(store):
    results, configs, by_id = store
    df = queries.runs(results).set_index("run_id")
    for cfg in configs:
        diag = by_id[cfg.run_id].diagnostics
        r = df.loc[cfg.run_id]
        assert (None if pd.isna(r.converged) else bool(r.converged)) == diag["converged"]
        if cfg.method in ("ceag", "el_rb"):
            assert bool(r.constraints_active) == diag["constraints_active"]
            assert r.max_multiplier == pytest.approx(diag["max_multiplier"])
        else:
            assert pd.isna(r.constraints_active) and pd.isna(r.max_multiplier)
        stored = queries.diagnostics(results, cfg.run_id)
        assert json.loads(stored["run"]["diagnostics"]) == json.loads(json.dumps(diag))
        spreads = stored["spreads"].set_index("split")
        assert set(spreads.index) == set(diag["spread"])
        for split, v in diag["spread"].items():
            assert spreads.loc[split, "accuracy"] == pytest.approx(v["accuracy"])
            limit = diag["spread_limit"][split]["max_excess_gap"]
            assert spreads.loc[split, "max_excess_gap_limit"] == pytest.approx(limit)
        groups = stored["constraint_groups"]
        if cfg.method in ("ceag", "el_rb"):
            expected = diag["constraints"]["groups"]
            assert list(groups.group_id) == [g["group"] for g in expected]
            assert list(groups.group_name) == [g["name"] for g in expected]
            assert list(groups.dual_steps) == [g["dual_steps"] for g in expected]
        else:
            assert groups.empty


def test_frontier_counts_unsettled_runs(store):
    results, configs, by_id = store
    summary = queries.frontier_summary(results, dataset="synthetic", split="test")
    unsettled = sum(by_id[c.run_id].diagnostics["converged"] is False for c in configs)
    assert int(summary["unsettled"].sum()) == unsettled
    front = queries.frontier(results, dataset="synthetic", split="test")
    assert "converged" in front.columns


def test_sync_adds_diagnostics_to_runs_ingested_without_them(store, tmp_path):
    results, configs, _ = store
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    with connect(copy, write=True) as con:  # as a store written before diagnostics existed
        for table in ("run_diagnostics", "run_spreads", "constraint_groups"):
            con.execute(f"DELETE FROM {table}")
    assert queries.runs_without_diagnostics(copy) == {c.run_id for c in configs}
    assert sync(copy) == len(configs)
    assert queries.runs_without_diagnostics(copy) == set()
    assert queries.runs(copy)["converged"].notna().all()
    assert sync(copy) == 0
