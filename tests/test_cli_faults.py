"""Faults at the command line's edges: every reading command sees every finished run, imports copy
regular files only, batch sizes a model cannot train on are refused, spreadsheet formulas never
reach a CSV file, a grid logging to a file says what it finished, and a checkpoint refused for the
run's image size says which size keeps its stem."""

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig
from ceag.results.bundle import BundleError
from ceag.results.layout import run_dir
from ceag.run.pipeline import run
from ceag.store import StoreError, import_runs, queries
from tests.conftest import fast_config
from tests.helpers import ROOT, ceag_main

TINY = ["--dataset", "synthetic", "--model", "mlp", "--dense-epochs", "2", "--prune-epochs", "1", "--epochs", "3",
        "--device", "cpu"]
UNKNOWN = "0123456789abcdef"
FORMULA = '=HYPERLINK("http://x","y")'


def run_cli(results: Path, *args) -> dict:
    code, out, err = ceag_main("run", *TINY, *args, "--json", "--results", results)
    assert code == 0, err
    return json.loads(out)


def listing(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its size (folders 0): what a refused command must leave alone."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): (0 if p.is_dir() else p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


# -- every command that reads the store sees every finished run ------------------------------------
def test_run_ingests_its_run_so_export_finds_it(tmp_path, one_thread):
    results = tmp_path / "results"
    rid = run_cli(results)["run_id"]
    assert list(queries.runs(results).run_id) == [rid]  # in the store as soon as `run` ends
    out = tmp_path / "final.csv"
    code, _, err = ceag_main("export", "--run", rid, "--out", out, "--results", results)
    assert code == 0, err
    frame = pd.read_csv(out)
    assert set(frame.run_id) == {rid} and len(frame) > 0
    assert f"wrote {len(frame)} rows" in err


def test_every_reading_command_sees_a_run_the_store_lacks(tmp_path, one_thread):
    results = tmp_path / "results"
    first = run_cli(results)["run_id"]
    # A run made by another process that never reached the store (killed before it ingested it).
    second = run(fast_config(method="nft", seed=1), results).run_id
    assert second not in set(queries.runs(results).run_id)

    code, out, err = ceag_main("export", "--bundle", "--out", tmp_path / "all.tar.gz", "--results", results)
    assert code == 0, err
    assert out.startswith("wrote 2 runs")
    code, out, err = ceag_main("export", "--table", "runs", "--results", results)
    assert code == 0, err
    assert set(pd.read_csv(io.StringIO(out)).run_id) == {first, second}
    code, out, err = ceag_main("export", "--run", second, "--predictions", "--results", results)
    assert code == 0, err
    assert len(pd.read_csv(io.StringIO(out))) > 0
    code, out, _ = ceag_main("ls", "--json", "--results", results)
    assert {r["run_id"] for r in json.loads(out)} == {first, second}
    code, _, err = ceag_main("report", "--runs", f"{first},{second}", "--n-boot", "20", "--out",
                             tmp_path / "groups.csv", "--results", results)
    assert code == 0, err


def test_a_run_folder_that_cannot_be_read_does_not_hide_the_others(tmp_path, one_thread):
    results = tmp_path / "results"
    good = run(fast_config(method="nft"), results).run_id
    broken = run_dir(results, UNKNOWN)
    broken.mkdir()
    (broken / "config.json").write_text('{"method": "nft", "from_a_newer_ceag": 1}')
    for command in (["ls", "--json"], ["export", "--table", "runs"]):
        code, out, err = ceag_main(*command, "--results", results)
        assert code == 0, err
        assert good in out and UNKNOWN in err and "left out" in err


def test_a_run_whose_store_cannot_be_written_still_finishes(tmp_path, monkeypatch, one_thread):
    import ceag.store

    def refuse(*args, **kwargs):
        raise StoreError("the disk is full")

    monkeypatch.setattr(ceag.store, "ingest_run", refuse)
    results = tmp_path / "results"
    code, out, err = ceag_main("run", *TINY, "--json", "--results", results)
    assert code == 0, err
    rid = json.loads(out)["run_id"]
    assert (run_dir(results, rid) / "summary.json").exists()
    assert "the disk is full" in err and rid in err and "error" not in err.lower()


@pytest.mark.parametrize("mode", [["--table", "final"], ["--table", "duals"], ["--predictions"], ["--bundle"]],
                         ids=["final", "duals", "predictions", "bundle"])
def test_exporting_a_run_that_is_not_in_the_store_names_it(tmp_path, mode, one_thread):
    results = tmp_path / "results"
    run_cli(results)
    out = tmp_path / ("x.tar.gz" if "--bundle" in mode else "x.csv")
    before = listing(results)
    code, stdout, err = ceag_main("export", "--run", UNKNOWN, *mode, "--out", out, "--results", results)
    assert code == 2, err
    assert err.startswith("error:") and UNKNOWN in err and "ls" in err and "Traceback" not in err
    assert "wrote" not in err + stdout and not out.exists()
    assert listing(results) == before


# -- imports copy regular files only ---------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_folder(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("source")
    torch.set_num_threads(1)
    return run_dir(results, run(fast_config(method="nft"), results).run_id)


def with_link(finished_folder: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A copy of a finished run folder holding one entry that is not a regular file; (folder, its name)."""
    src = tmp_path / "copy" / finished_folder.name
    shutil.copytree(finished_folder, src)
    if kind == "link to a folder outside":
        outside = tmp_path / "system"
        outside.mkdir()
        (outside / "secret.bin").write_bytes(os.urandom(4096))
        os.symlink(outside, src / "extra")
        return src, "extra"
    if kind == "link loop":
        os.symlink("b", src / "a")
        os.symlink("a", src / "b")
        return src, "a"
    if kind == "link to a file":
        (tmp_path / "weights.pt").write_bytes((src / "model.pt").read_bytes())
        (src / "model.pt").unlink()
        os.symlink(tmp_path / "weights.pt", src / "model.pt")
        return src, "model.pt"
    if kind == "link inside a subfolder":
        (src / "notes").mkdir()
        os.symlink("/etc", src / "notes" / "etc")
        return src, "notes/etc"
    assert kind == "named pipe"
    os.mkfifo(src / "pipe")
    return src, "pipe"


KINDS = ["link to a folder outside", "link loop", "link to a file", "link inside a subfolder", "named pipe"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_folder_holding_a_link_is_refused_before_anything_is_copied(finished_folder, tmp_path, kind):
    src, name = with_link(finished_folder, tmp_path, kind)
    results = tmp_path / "results"
    with pytest.raises(BundleError) as refused:
        import_runs(src, results)
    message = str(refused.value)
    assert name in message and "regular files" in message
    assert not results.exists()  # not even the results folder was made


def test_a_refused_import_leaves_an_existing_results_folder_as_it_was(finished_folder, tmp_path):
    src, name = with_link(finished_folder, tmp_path, "link to a folder outside")
    results = tmp_path / "results"
    rid = run(fast_config(method="nft", seed=2), results).run_id
    before = listing(results)
    code, out, err = ceag_main("import", src, "--results", results)
    assert code == 1 and err.startswith("error:") and name in err and "Traceback" not in err
    assert listing(results) == before and rid in {p.name for p in (results / "runs").iterdir()}


def test_a_run_folder_of_regular_files_still_imports(finished_folder, tmp_path):
    results = tmp_path / "results"
    assert import_runs(finished_folder, results) == {"imported": [finished_folder.name], "present": []}
    assert sorted(p.name for p in run_dir(results, finished_folder.name).iterdir()) == sorted(
        p.name for p in finished_folder.iterdir())


# -- batch sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["batch_size", "dense_batch_size"])
@pytest.mark.parametrize("model", ["cnn", "resnet20"])
def test_a_batch_of_one_is_refused_for_a_model_with_batch_norm(field, model):
    with pytest.raises(ConfigError) as refused:
        RunConfig(model=model, **{field: 1})
    assert refused.value.field == field and refused.value.value == 1
    text = str(refused.value)
    assert f"invalid {field}=1" in text and model in text and "batch norm" in text and "at least 2" in text


def test_the_command_line_refuses_a_batch_of_one_for_a_batch_norm_model(tmp_path):
    results = tmp_path / "results"
    code, _, err = ceag_main("run", "--model", "cnn", "--set", "batch_size=1", "--results", results)
    assert code == 2 and "invalid batch_size=1" in err and "batch norm" in err
    assert not results.exists()


def test_an_mlp_trains_on_batches_of_one(one_thread):
    from ceag.datasets.loading import load_dataset
    from ceag.training.engine import _train_batches, train_dense
    from ceag.training.evaluation import evaluate

    cfg = fast_config(method="nft", batch_size=1, lr=0.005, dense_epochs=2)
    data = load_dataset(cfg)
    train = data.splits["train"]
    assert sum(len(b) for b in _train_batches(train, 1, torch.Generator().manual_seed(0))) == len(train)
    model = train_dense(cfg, data, torch.device("cpu"))
    chance = 1 / data.num_classes
    assert evaluate(model, data.splits["test"], data.num_groups).overall_accuracy > chance + 0.3


def test_the_models_without_batch_norm_are_the_ones_the_config_knows():
    from ceag.config.vocabulary import BATCH_NORM_FREE_MODELS, MODELS
    from ceag.training.models import build_model

    for name in MODELS:
        shape = (64,) if name == "mlp" else (3, 32, 32)
        model = build_model(name, shape, 10, seed=0)
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        assert has_bn == (name not in BATCH_NORM_FREE_MODELS), name


# -- spreadsheet formulas in CSV files --------------------------------------------------------------
def test_text_cells_that_start_a_formula_are_neutralised_and_numbers_stay_numbers():
    from ceag.present.csv_export import for_spreadsheets

    frame = pd.DataFrame({"name": ["=1+1", "+1", "-x", "@SUM(A1)", "\tx", "\rx", "plain", None],
                          "gap": [-0.5, 0.1, -1.0, 2.0, 0.0, -3.0, 1.0, np.nan],
                          "n": [-1, 2, 3, 4, 5, 6, 7, 8]})
    safe = for_spreadsheets(frame)
    assert list(safe["name"][:7]) == ["'=1+1", "'+1", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "plain"]
    assert pd.isna(safe["name"][7])
    pd.testing.assert_frame_equal(safe[["gap", "n"]], frame[["gap", "n"]])
    assert list(frame["name"][:1]) == ["=1+1"]  # the frame given is left as it was


def formula_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        name = f"img/{i:03d}.png"
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name)
        rows.append({"file": name, "label": ["cat", "dog"][i % 2], "grp": [FORMULA, "plain"][(i // 2) % 2]})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def formula_run(tmp_path_factory) -> tuple[Path, str]:
    """A finished run whose protected group is named by a spreadsheet formula."""
    root = tmp_path_factory.mktemp("formula")
    results = root / "results"
    torch.set_num_threads(1)
    code, out, err = ceag_main("run", "--dataset", "custom", "--data-dir", formula_folder(root / "data"), "--target",
                               "label", "--groups", "grp", "--model", "mlp", "--dense-epochs", "2", "--prune-epochs",
                               "1", "--epochs", "3", "--device", "cpu", "--json", "--results", results)
    assert code == 0, err
    return results, json.loads(out)["run_id"]


def cells(text: str, column: str) -> set[str]:
    return {row[column] for row in csv.DictReader(io.StringIO(text))}


@pytest.mark.parametrize("args, column", [
    (["--table", "final"], "group_name"),
    (["--table", "group_metrics"], "group_name"),
    (["--predictions"], "group_name"),
], ids=["final", "group_metrics", "predictions"])
@pytest.mark.parametrize("to", ["file", "stdout"])
def test_exported_csv_neutralises_formulas(formula_run, tmp_path, args, column, to):
    results, rid = formula_run
    target = tmp_path / "out.csv" if to == "file" else "-"
    code, out, err = ceag_main("export", "--run", rid, *args, "--out", target, "--results", results)
    assert code == 0, err
    text = target.read_text() if to == "file" else out
    assert cells(text, column) == {"'" + FORMULA, "plain"}
    frame = pd.read_csv(io.StringIO(text))
    for col in ("accuracy", "excess_gap", "p_pred"):  # numbers stay numbers
        if col in frame:
            assert pd.api.types.is_float_dtype(frame[col]), col


def test_parquet_keeps_the_raw_names(formula_run, tmp_path):
    results, rid = formula_run
    code, _, err = ceag_main("export", "--run", rid, "--out", tmp_path / "final.parquet", "--results", results)
    assert code == 0, err
    assert set(pd.read_parquet(tmp_path / "final.parquet").group_name) == {FORMULA, "plain"}


def test_the_report_table_neutralises_formulas(formula_run, tmp_path):
    results, rid = formula_run
    out = tmp_path / "groups.csv"
    code, _, err = ceag_main("report", "--runs", rid, "--n-boot", "20", "--out", out, "--results", results)
    assert code == 0, err
    text = out.read_text()
    assert FORMULA not in text.replace("'" + FORMULA, "")
    frame = pd.read_csv(out)
    [name] = [c for c in frame.columns if frame[c].astype(str).str.contains("HYPERLINK").any()]
    assert set(frame[name]) == {"'" + FORMULA, "plain"}
    assert pd.api.types.is_float_dtype(frame["excess_gap"])


def test_every_csv_for_people_goes_through_the_one_helper():
    """Every ``to_csv`` call in the package and the pages is the helper's own (exports, report, downloads)."""
    offenders = []
    for path in sorted([*(ROOT / "ceag").rglob("*.py"), *(ROOT / "dashboard").glob("*.py")]):
        if path.name == "csv_export.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.to_csv\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# -- a grid logging to a file -----------------------------------------------------------------------
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  (\d+)/(\d+) runs done  (.+) \[([0-9a-f]+)\]: (\w+)(.*)$")


def test_a_grid_whose_stderr_is_a_file_prints_a_line_per_task_and_run(tmp_path, one_thread):
    results = tmp_path / "results"
    grid = ["grid", "--datasets", "synthetic", "--models", "mlp", "--methods", "nft,nft_es", "--sparsities", "0.8",
            "--seeds", "3", "--set", "dense_epochs=2", "--set", "prune_epochs=1", "--epochs", "2", "--set",
            "device=cpu", "--workers", "1", "--results", results]
    code, out, err = ceag_main(*grid, "--json")
    assert code == 0, err
    report = json.loads(out)
    lines = [line for line in err.splitlines() if line.strip()]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert len(lines) == len(report["phases"])  # the NFT run is a task and a cell: one line for both
    what = [m.group(3) for m in parsed]
    assert what[:2] == ["dense synthetic/mlp seed 3", "pruning synthetic/mlp sparsity 0.8 seed 3"]
    assert what[2:] == ["run nft synthetic/mlp sparsity 0.8 seed 3", "derived nft_es synthetic/mlp sparsity 0.8 seed 3"]
    assert [int(m.group(1)) for m in parsed] == [0, 0, 1, 2] and {m.group(2) for m in parsed} == {"2"}
    assert {m.group(5) for m in parsed} == {"finished"}
    assert all(re.fullmatch(r" in \d+\.\ds", m.group(6)) for m in parsed), lines
    ids = {m.group(4) for m in parsed}
    assert set(report["runs"]) <= ids

    code, out, err = ceag_main(*grid)  # everything cached: one line says so
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  2/2 runs done  2 runs loaded from the "
                                        r"cache$", lines[0]), lines


def test_a_terminal_keeps_its_progress_bar(tmp_path):
    from ceag.present.progress import GridProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class Report:
        total, pending, running = 2, 1, 0
        runs = {"a": {"status": "finished"}, "b": {"status": "pending"}}
        phases = [{"task": "a", "kind": "run", "status": "finished", "seconds": 1.0}]

    stream = Terminal()
    progress = GridProgress(2, stream=stream)
    progress(Report())
    progress.close()
    assert "[" in stream.getvalue() and "1/2" in stream.getvalue() and "runs done" not in stream.getvalue()


# -- checkpoints at small image sizes ---------------------------------------------------------------
@pytest.mark.parametrize("model, outputs", [("resnet34", 18), ("resnet18", 7)])
def test_a_checkpoint_refused_for_a_small_image_size_names_the_size_that_keeps_its_stem(tmp_path, model, outputs):
    from types import SimpleNamespace

    from ceag.training.checkpoints import CheckpointError, dense_checkpoint_for
    from ceag.training.models import SMALL_INPUT, build_model

    path = tmp_path / "released.pt"
    torch.save(build_model(model, (3, 224, 224), outputs, seed=0).state_dict(), path)
    cfg = RunConfig(dataset="fairface", model=model, target="race", image_size=32, dense_checkpoint=str(path),
                    dense_epochs=0)
    with pytest.raises(CheckpointError) as refused:
        dense_checkpoint_for(cfg, SimpleNamespace(input_shape=(3, 32, 32), num_classes=7))
    text = str(refused.value)
    assert "in the checkpoint and" in text  # the stem's shapes, as before
    assert f"{SMALL_INPUT + 1} px or more" in text and "--image-size" in text and "32" in text
    big = SMALL_INPUT + 1
    fitted = dense_checkpoint_for(cfg.replace(image_size=big), SimpleNamespace(input_shape=(3, big, big),
                                                                               num_classes=7))
    assert not fitted.needs_training


def test_a_checkpoint_that_fits_no_image_size_gets_no_size_advice(tmp_path):
    from types import SimpleNamespace

    from ceag.training.checkpoints import CheckpointError, dense_checkpoint_for
    from ceag.training.models import build_model

    path = tmp_path / "other.pt"
    torch.save(build_model("resnet18", (3, 224, 224), 7, seed=0).state_dict(), path)  # another depth
    cfg = RunConfig(dataset="fairface", model="resnet34", target="race", image_size=32, dense_checkpoint=str(path))
    with pytest.raises(CheckpointError) as refused:
        dense_checkpoint_for(cfg, SimpleNamespace(input_shape=(3, 32, 32), num_classes=7))
    assert "--image-size" not in str(refused.value)
