"""Exports (metric tables, per-sample predictions) and run bundles: round trips, and tampered
bundles or folders rejected before anything is written."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from ceag.config.grid_spec import GridSpec
from ceag.grid.driver import run_grid
from ceag.results.bundle import BundleError, export_bundle
from ceag.results.layout import run_dir
from ceag.store import db_path, import_runs, queries
from tests.helpers import ceag_cli

SETTINGS = {"dense_epochs": 2, "prune_epochs": 2, "finetune_epochs": 4, "device": "cpu"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT, NFT+ES and CEAG on synthetic data, finished and ingested."""
    results = tmp_path_factory.mktemp("source")
    configs = GridSpec(datasets=("synthetic",), methods=("nft", "nft_es", "ceag"), sparsities=(0.8,),
                       tolerances=(0.02,), seeds=(0,), settings=SETTINGS).configs()
    report = run_grid(configs, results, workers=1)
    assert report.finished == 3
    return results, {c.method: c.run_id for c in configs}


@pytest.fixture(scope="module")
def bundle(store, tmp_path_factory):
    results, ids = store
    return export_bundle(results, sorted(ids.values()), tmp_path_factory.mktemp("bundle") / "runs.tar.gz")


def assert_nothing_written(results: Path) -> None:
    """No store, no run folder, no leftover staging folder (an empty runs/ is allowed)."""
    assert not db_path(results).exists()
    if results.exists():
        assert [p.name for p in results.iterdir()] in ([], ["runs"])
        assert not (results / "runs").exists() or not any((results / "runs").iterdir())


# -- metric tables ------------------------------------------------------------------------
def test_export_final_table_as_csv_and_parquet(store, tmp_path):
    results, ids = store
    expected = queries.export_table(results, "final", list(queries.runs(results, status="finished").run_id))
    assert len(expected) == 3 * 3 * 4  # runs x splits x groups
    for name in ("final.csv", "final.parquet"):
        proc = ceag_cli("export", "--table", "final", "--out", tmp_path / name, results=results)
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {len(expected)} rows" in proc.stderr
    from_parquet = pd.read_parquet(tmp_path / "final.parquet")
    pd.testing.assert_frame_equal(from_parquet, expected)
    from_csv = pd.read_csv(tmp_path / "final.csv")
    assert list(from_csv.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(from_csv, expected, check_dtype=False, rtol=1e-12, atol=0)


def test_export_one_run_to_stdout(store, tmp_path):
    results, ids = store
    proc = ceag_cli("export", "--table", "run_metrics", "--run", ids["ceag"], results=results)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(io.StringIO(proc.stdout))
    expected = queries.export_table(results, "run_metrics", [ids["ceag"]])
    assert set(got.run_id) == {ids["ceag"]} and len(got) == len(expected)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["ceag", "nft_es"])
def test_exported_predictions_give_the_stored_group_accuracies(store, tmp_path, method):
    results, ids = store
    rid = ids[method]
    out = tmp_path / "pred.csv"
    proc = ceag_cli("export", "--run", rid, "--predictions", "--split", "test", "--out", out, results=results)
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["y_true", "y_pred", "group", "group_name", "sample_id", "file", "p_pred",
                                  "dense_pred", "dense_p_pred"]
    assert list(pred.sample_id) == list(range(len(pred)))
    assert pred.p_pred.between(0, 1).all() and pred.dense_p_pred.between(0, 1).all()
    stored = queries.group_metrics(results, rid)  # at the reported epoch (the best one for NFT+ES)
    stored = stored[stored.split == "test"].set_index("group_id")
    correct = (pred.y_true == pred.y_pred).groupby(pred.group)
    assert list(correct.size()) == list(stored.n)
    for group, acc in correct.mean().items():
        assert acc == pytest.approx(stored.loc[group, "accuracy"], abs=1e-12), group
    assert dict(zip(pred.group, pred.group_name, strict=True)) == stored.group_name.to_dict()
    dense_correct = (pred.y_true == pred.dense_pred).groupby(pred.group).mean()
    assert dense_correct.to_dict() == stored.dense_accuracy.to_dict()


def test_predictions_need_exactly_one_run(store):
    results, ids = store
    proc = ceag_cli("export", "--predictions", results=results)
    assert proc.returncode == 2 and "error: invalid --run" in proc.stderr


# -- bundles ------------------------------------------------------------------------------
def test_bundle_round_trip_through_the_command_line(store, tmp_path):
    results, ids = store
    out, target = tmp_path / "all.tar.gz", tmp_path / "elsewhere"
    proc = ceag_cli("export", "--bundle", "--out", out, results=results)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote 3 runs")
    proc = ceag_cli("import", out, "--json", results=target)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["imported"]) == sorted(ids.values())
    run_ids = sorted(ids.values())
    for table in ("final", "runs", "run_metrics", "group_metrics", "duals"):
        pd.testing.assert_frame_equal(queries.export_table(target, table, run_ids),
                                      queries.export_table(results, table, run_ids), obj=table)
    proc = ceag_cli("import", out, "--json", results=target)
    assert json.loads(proc.stdout) == {"imported": [], "present": sorted(ids.values())}


def test_bundle_round_trip_in_process(bundle, store, tmp_path):
    results, ids = store
    target = tmp_path / "new"
    out = import_runs(bundle, target)
    assert sorted(out["imported"]) == sorted(ids.values()) and out["present"] == []
    front_old = queries.frontier(results, dataset="synthetic").set_index("run_id").sort_index()
    front_new = queries.frontier(target, dataset="synthetic").set_index("run_id").sort_index()
    cols = ["accuracy", "max_excess_gap", "psi_pw", "reported_epoch", "method", "tolerance"]
    pd.testing.assert_frame_equal(front_new[cols], front_old[cols])
    for rid in ids.values():  # per-sample predictions travel with their runs
        assert (run_dir(target, rid) / "predictions.parquet").read_bytes() == (
            run_dir(results, rid) / "predictions.parquet").read_bytes()
    again = import_runs(bundle, target)
    assert again["imported"] == [] and sorted(again["present"]) == sorted(ids.values())


def test_run_folder_import(store, tmp_path):
    results, ids = store
    target = tmp_path / "new"
    assert import_runs(run_dir(results, ids["nft"]), target) == {"imported": [ids["nft"]], "present": []}
    assert list(queries.runs(target).run_id) == [ids["nft"]]


def test_an_import_replaces_an_unfinished_local_attempt(bundle, store, tmp_path):
    results, ids = store
    target = tmp_path / "new"
    attempt = run_dir(target, ids["ceag"])
    attempt.mkdir(parents=True)
    shutil.copy(run_dir(results, ids["ceag"]) / "config.json", attempt / "config.json")
    (attempt / "checkpoint.pt").write_bytes(b"half a run")
    out = import_runs(bundle, target)
    assert ids["ceag"] in out["imported"]
    assert (attempt / "summary.json").exists() and not (attempt / "checkpoint.pt").exists()
    assert queries.runs(target).set_index("run_id").loc[ids["ceag"], "status"] == "finished"


def test_only_finished_runs_are_bundled(store, tmp_path):
    results, _ = store
    with pytest.raises(BundleError, match="is not finished"):
        export_bundle(results, ["0123456789abcdef"], tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


# -- tampering ----------------------------------------------------------------------------
def unpack(bundle: Path, dest: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    return dest


def pack(src: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src / "manifest.json", arcname="manifest.json")
        for path in sorted((src / "runs").rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(src).as_posix())
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def test_a_modified_file_fails_its_hash(bundle, store, tmp_path):
    _, ids = store
    src = unpack(bundle, tmp_path / "x")
    target = src / "runs" / ids["ceag"] / "run_metrics.parquet"
    target.write_bytes(target.read_bytes() + b"\0")
    bad = pack(src, tmp_path / "bad.tar.gz")
    results = tmp_path / "results"
    with pytest.raises(BundleError, match=rf"runs/{ids['ceag']}/run_metrics.parquet does not match its manifest"):
        import_runs(bad, results)
    assert_nothing_written(results)


def test_a_newer_bundle_version_asks_to_upgrade(bundle, tmp_path):
    src = unpack(bundle, tmp_path / "x")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["version"] = 99
    (src / "manifest.json").write_text(json.dumps(manifest))
    results = tmp_path / "results"
    with pytest.raises(BundleError, match="bundle version 99 is newer than this ceag reads.*upgrade ceag"):
        import_runs(pack(src, tmp_path / "v99.tar.gz"), results)
    assert_nothing_written(results)


def test_a_member_outside_the_bundle_is_refused(bundle, tmp_path):
    src = unpack(bundle, tmp_path / "x")
    info = tarfile.TarInfo("../evil")
    info.size = 4
    results = tmp_path / "results"
    with pytest.raises(BundleError, match=r"member '../evil' would be written outside the bundle"):
        import_runs(pack(src, tmp_path / "evil.tar.gz", [(info, b"boo\n")]), results)
    assert not (tmp_path / "evil").exists() and not (results / "evil").exists()
    assert_nothing_written(results)


def test_a_link_member_is_refused(bundle, tmp_path):
    src = unpack(bundle, tmp_path / "x")
    info = tarfile.TarInfo("runs/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    results = tmp_path / "results"
    with pytest.raises(BundleError, match="is not a plain file or folder"):
        import_runs(pack(src, tmp_path / "link.tar.gz", [(info, None)]), results)
    assert_nothing_written(results)


def test_a_file_missing_from_the_manifest_is_refused(bundle, store, tmp_path):
    _, ids = store
    src = unpack(bundle, tmp_path / "x")
    (src / "runs" / ids["nft"] / "notes.txt").write_text("smuggled")
    results = tmp_path / "results"
    with pytest.raises(BundleError, match="is not in the manifest"):
        import_runs(pack(src, tmp_path / "extra.tar.gz"), results)
    assert_nothing_written(results)


def test_a_run_folder_whose_config_was_edited_is_refused(store, tmp_path):
    results, ids = store
    folder = tmp_path / "copy" / ids["ceag"]
    shutil.copytree(run_dir(results, ids["ceag"]), folder)
    config = json.loads((folder / "config.json").read_text())
    config["tolerance"] = 0.5  # the numbers no longer belong to the settings
    (folder / "config.json").write_text(json.dumps(config))
    target = tmp_path / "results"
    with pytest.raises(BundleError, match=rf"run {ids['ceag']}: config.json hashes to [0-9a-f]{{16}}, not to its "
                                          "folder name"):
        import_runs(folder, target)
    assert_nothing_written(target)


def test_the_command_line_reports_a_bad_bundle(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar archive at all")
    proc = ceag_cli("import", bad, results=tmp_path / "results")
    assert proc.returncode != 0
    assert proc.stderr.startswith("error:") and "not a readable tar archive" in proc.stderr
    assert proc.stdout == ""
    assert_nothing_written(tmp_path / "results")
