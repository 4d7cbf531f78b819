"""Bad input gets a clear message, a non-zero exit and leaves the results folder as it was.

docs/troubleshooting.md, "Bad input": a bad setting exits 2 naming the setting, the value
and what is allowed; data, store and bundle problems exit 1 with ``error:`` and no traceback;
nothing is written. Most cases call ``ceag.cli.main`` in this process (an exception escaping
it fails the test, as a traceback would); a few go through ``python -m ceag`` to prove the real
exit status. Every case compares the results folder's listing and the store's run count before
and after.
"""

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image

from ceag.config.registry import DATASETS
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import METHODS, MODELS
from ceag.datasets.layouts import CIFAR_FOLDERS, UTK_FOLDERS
from ceag.results.bundle import export_bundle
from ceag.results.layout import run_dir
from ceag.results.record import load_result
from ceag.run.pipeline import run
from ceag.store import connect, db_path, ingest_run, queries
from tests.helpers import ROOT, ceag_main, subprocess_env

TINY = ["--set", "dense_epochs=1", "--set", "prune_epochs=1", "--set", "finetune_epochs=1"]


# -- helpers ----------------------------------------------------------------------------------------
def ceag_process(*args) -> subprocess.CompletedProcess:
    env = subprocess_env()
    return subprocess.run([sys.executable, "-m", "ceag", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def listing(folder: Path) -> dict[str, tuple] | None:
    """Every path under ``folder``: files with size and mtime, folders by name (None: no folder)."""
    if not folder.exists():
        return None
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        st = path.lstat()
        out[rel] = ("dir",) if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def run_count(results: Path) -> int:
    return len(queries.runs(results))


class Unchanged:
    """Records a results folder (listing and store run count) so a test can check it is the same after."""

    def __init__(self, results: Path):
        self.results = results
        self.before = listing(results)
        self.runs = run_count(results)

    def check(self) -> None:
        assert listing(self.results) == self.before
        assert run_count(self.results) == self.runs


def assert_error(code: int, err: str, status: int, *patterns: str) -> None:
    assert code == status, err
    assert "error:" in err and "Traceback" not in err, err
    for pattern in patterns:
        assert pattern.lower() in err.lower(), (pattern, err)


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, str]:
    """A results folder with one finished, ingested run (synthetic data, well under a second)."""
    results = tmp_path_factory.mktemp("seeded")
    cfg = RunConfig(dataset="synthetic", model="mlp", method="nft", sparsity=0.8, dense_epochs=1, prune_epochs=1,
                    finetune_epochs=1, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(cfg, results).status == "finished"
    finally:
        torch.set_num_threads(threads)
    ingest_run(results, cfg.run_id)
    return results, cfg.run_id


@pytest.fixture
def results(seeded, tmp_path) -> Path:
    """A private copy of the seeded results folder (one run in the store)."""
    target = tmp_path / "results"
    shutil.copytree(seeded[0], target)
    assert run_count(target) == 1
    return target


# -- bad settings: exit 2, the setting, the value and what is allowed ---------------------------------
RUN_CASES = [
    (["--sparsity", "1.0"], ["sparsity=1.0", "[0.0, 1.0)"]),
    (["--sparsity=-0.1"], ["sparsity=-0.1", "[0.0, 1.0)"]),
    (["--sparsity", "x"], ["--sparsity", "invalid float value: 'x'"]),
    (["--set", "sparsity=true"], ["sparsity=True", "[0.0, 1.0)"]),
    (["--method", "ceag", "--tolerance=-0.1"], ["tolerance=-0.1", "[0.0, 1.0]"]),
    (["--method", "nft", "--tolerance=-0.1"], ["tolerance=-0.1", "[0.0, 1.0]"]),  # checked even when unused
    (["--method", "ceag", "--tolerance", "abc"], ["--tolerance", "invalid float value: 'abc'"]),
    (["--method", "ceag", "--set", 'tolerance="abc"'], ["tolerance='abc'", "[0.0, 1.0]"]),
    (["--method", "ceag", "--set", "tolerance=NaN"], ["tolerance=nan", "[0.0, 1.0]"]),
    (["--dataset", "imagenet"], ["--dataset", "'imagenet'", *DATASETS]),
    (["--set", "dataset=imagenet"], ["dataset='imagenet'", *DATASETS]),
    (["--model", "vgg"], ["--model", "'vgg'", *MODELS]),
    (["--set", "model=vgg"], ["model='vgg'", *MODELS]),
    (["--method", "magic"], ["--method", "'magic'", *METHODS]),
    (["--set", "method=magic"], ["method='magic'", *METHODS]),
    (["--set", "colour=1"], ["colour=1", "unknown setting", "sparsity", "tolerance"]),
    (["--set", "nonsense"], ["--set", "KEY=VALUE"]),
    (["--image-size", "4"], ["image_size=4", "[8, 1024]"]),
    (["--dataset", "utkface", "--groups", "race,race"], ["groups=['race', 'race']", "distinct", "gender"]),
    (["--groups", "colour"], ["groups=['colour']", "class"]),
    (["--target", "age"], ["target='age'", "dataset digits offers targets class"]),
    (["--epochs=-1"], ["finetune_epochs=-1", "integer >= 0"]),
    (["--epochs", "0", "--prune-epochs", "0"], ["finetune_epochs=0", "prune_epochs + finetune_epochs must be >= 1"]),
    (["--dual-lr", "0"], ["dual_lr=0.0", "(0.0, 1000.0]"]),
    (["--seed=-1"], ["seed=-1", "integer >= 0"]),
    (["--set", "lr_milestones=[0.8, 0.6]"], ["lr_milestones=(0.8, 0.6)", "increasing"]),
    (["--dense-checkpoint", "/nonexistent/w.pt"], ["dense_checkpoint='/nonexistent/w.pt'", "existing file"]),
]
GRID_CASES = [
    (["--sparsities", "1.0"], ["sparsity=1.0", "[0.0, 1.0)"]),
    (["--sparsities=-0.1"], ["sparsity=-0.1", "[0.0, 1.0)"]),
    (["--sparsities", "x"], ["--sparsities", "float", "'x'"]),
    (["--tolerances=-0.1"], ["tolerance=-0.1", "[0.0, 1.0]"]),
    (["--tolerances", "abc"], ["--tolerances", "float", "'abc'"]),
    (["--datasets", "imagenet"], ["dataset='imagenet'", *DATASETS]),
    (["--models", "vgg"], ["model='vgg'", *MODELS]),
    (["--methods", "magic"], ["method='magic'", *METHODS]),
    (["--methods", ""], ["methods=[]", "at least one value"]),
    (["--seeds", ""], ["seeds=[]", "at least one value"]),
    (["--max-cells", "3"], ["4 cells", "at most 3 cells"]),  # the default grid: 4 methods
    (["--methods", "nft,ceag", "--tolerances", "0.01,0.02", "--seeds", "0,1", "--max-cells", "5"],
     ["6 cells", "at most 5 cells"]),
    (["--workers", "0"], ["--workers=0", "at least 1"]),
    (["--preset", "nope"], ["preset='nope'", "demo", "utkface"]),
]


BAD_SETTINGS = [("run", a, e) for a, e in RUN_CASES] + [("grid", a, e) for a, e in GRID_CASES]


@pytest.mark.parametrize(("command", "args", "expected"), BAD_SETTINGS,
                         ids=[f"{c} {' '.join(a) or 'empty'}" for c, a, _ in BAD_SETTINGS])
def test_a_bad_setting_exits_2_and_writes_nothing(results, command, args, expected):
    before = Unchanged(results)
    code, out, err = ceag_main(command, *args, "--results", results)
    assert_error(code, err, 2, *expected)
    assert out == ""
    before.check()


def test_a_bad_group_given_as_a_string_is_named_in_the_message(results):
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "utkface", "--set", 'groups="race,colour"', "--results", results)
    assert code == 2
    assert "colour" in err and "race, gender, age" in err
    before.check()


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--sparsity", "1.0"], "invalid sparsity=1.0: must be a number in [0.0, 1.0)"),
    (["grid", "--methods", "nft,magic"], "invalid method='magic': must be one of nft, nft_es, el_rb, ceag, ceag_vs"),
    (["grid", "--max-cells", "2"], "invalid grid='4 cells': at most 2 cells per grid"),
])
def test_the_real_command_line_exits_2_without_a_traceback(results, args, expected):
    before = Unchanged(results)
    proc = ceag_process(*args, "--results", results)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    before.check()


# -- grid spec files ----------------------------------------------------------------------------------
SPEC_CASES = [
    ('{"methods": ["nft",', ["spec=", "not valid JSON", "line 1"]),
    ("", ["not valid JSON"]),
    ('{"methods": ["nft"], "colour": "red"}', ["colour='red'", "unknown grid key", "methods", "settings"]),
    ('{"method": "nft"}', ["method='nft'", "unknown grid key", "methods"]),
    ('{"settings": {"bogus": 1}}', ["bogus=1", "unknown setting", "dense_epochs"]),
    ('{"settings": [1, 2]}', ["settings=[1, 2]", "JSON object"]),
    ("[1, 2]", ["spec='list'", "JSON object"]),
    ('{"methods": []}', ["methods=[]", "at least one value"]),
    ('{"sparsities": [], "methods": ["nft"]}', ["sparsities=[]", "at least one value"]),
    ('{"sparsities": [1.5]}', ["sparsity=1.5", "[0.0, 1.0)"]),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_CASES, ids=[f"spec{i}" for i in range(len(SPEC_CASES))])
def test_a_bad_spec_file_exits_2_and_writes_nothing(results, tmp_path, text, expected):
    spec = tmp_path / "spec.json"
    spec.write_text(text)
    before = Unchanged(results)
    code, out, err = ceag_main("grid", "--spec", spec, "--results", results)
    assert_error(code, err, 2, *expected)
    before.check()


def test_a_missing_spec_file_exits_2(results, tmp_path):
    before = Unchanged(results)
    code, _, err = ceag_main("grid", "--spec", tmp_path / "nowhere.json", "--results", results)
    assert_error(code, err, 2, "nowhere.json", "cannot read the spec file")
    before.check()


@pytest.mark.parametrize("axis", [
    "dataset", "model", "method", "seed", "tolerance",
    "sparsity",
])
def test_a_spec_setting_that_is_an_axis_names_the_real_axis(results, tmp_path, axis):
    from ceag.config.grid_spec import AXES

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"settings": {axis: 0}}))
    code, _, err = ceag_main("grid", "--spec", spec, "--results", results)
    assert code == 2
    [named] = [a for a in AXES if a.startswith(axis[:4])]
    assert f"settings.{axis}=0: use the grid axis '{named}' instead" in err


# -- data problems: exit 1, the folders looked in, the layout expected ---------------------------------
def random_jpeg(path: Path, rng: np.random.Generator, size: int = 8) -> None:
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(path, "JPEG")


def test_a_missing_data_folder_names_the_folders_looked_in(results, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "utkface", "--model", "cnn", "--data-dir", empty, *TINY,
                             "--results", results)
    assert_error(code, err, 1, "UTKFace", "not found", "data/README.md",
                 *(str(empty / folder) for folder in UTK_FOLDERS))
    before.check()


def test_a_missing_cifar_folder_names_the_folders_looked_in(results, tmp_path):
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "cifar100", "--model", "cnn", "--data-dir", tmp_path / "nowhere",
                             *TINY, "--results", results)
    assert_error(code, err, 1, "CIFAR-100", *(str(tmp_path / "nowhere" / f) for f in CIFAR_FOLDERS))
    before.check()


def test_a_grid_on_a_missing_data_folder_stops_with_an_error_and_writes_nothing(results, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    before = Unchanged(results)
    proc = ceag_process("grid", "--datasets", "utkface", "--models", "cnn", "--methods", "nft", "--data-dir",
                        empty, "--workers", "1", *TINY, "--results", results)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and str(empty / "UTKFace") in proc.stderr
    before.check()


def test_a_utkface_folder_without_images_is_not_taken_for_one(results, tmp_path):
    folder = tmp_path / "data" / "UTKFace"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{20 + i}_0_1_2017010100000000{i}.txt").write_text("not an image")
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "utkface", "--model", "cnn", "--data-dir", tmp_path / "data", *TINY,
                             "--results", results)
    assert_error(code, err, 1, "not found", str(folder), "age_gender_race_datetime.jpg")
    before.check()


def test_a_utkface_folder_where_no_name_parses_says_so(results, tmp_path):
    folder = tmp_path / "data" / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("face.jpg", "39_1_20170116174525125.jpg.chip.jpg", "x_y_z_w.jpg"):
        random_jpeg(folder / name, rng)
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "utkface", "--model", "cnn", "--data-dir", tmp_path / "data", *TINY,
                             "--results", results)
    assert_error(code, err, 1, f"no file in {folder}", "age_gender_race_datetime.jpg")
    before.check()


def test_utkface_images_of_different_sizes_ask_for_an_image_size(results, tmp_path):
    folder = tmp_path / "data" / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    random_jpeg(folder / "20_0_0_20170101000000001.jpg.chip.jpg", rng, size=8)
    random_jpeg(folder / "30_1_1_20170101000000002.jpg.chip.jpg", rng, size=12)
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "utkface", "--model", "cnn", "--data-dir", tmp_path / "data", *TINY,
                             "--results", results)
    assert_error(code, err, 1, "different sizes", "--image-size")
    before.check()


@pytest.mark.parametrize("header", ["file,age,gender,service_test", "file,age,gender,ethnicity,service_test"])
def test_a_fairface_csv_without_the_race_column_names_it(results, tmp_path, header):
    folder = tmp_path / "data" / "fairface"
    (folder / "train").mkdir(parents=True)
    random_jpeg(folder / "train" / "1.jpg", np.random.default_rng(0))
    for name in ("fairface_label_train.csv", "fairface_label_val.csv"):
        (folder / name).write_text(f"{header}\ntrain/1.jpg,20-29,Male,{'White,' if 'eth' in header else ''}True\n")
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "fairface", "--model", "cnn", "--data-dir", tmp_path / "data", *TINY,
                             "--results", results)
    assert_error(code, err, 1, "fairface_label_train.csv", "lacks column race", "needs file, age, gender, race",
                 "found 'file', 'age', 'gender'")
    before.check()


CIFAR_GARBAGE = [
    pytest.param(b"this is not a pickle\n", id="text"),
    pytest.param(b"", id="empty"),
    pytest.param(pickle.dumps({"data": 1}), id="a-dict-without-the-keys"),
    pytest.param(b"\x80\x04\x8d" + b"\xff" * 8, id="huge-length-field"),
    pytest.param(pickle.dumps([1, 2, 3]), id="a-list"),
    pytest.param(pickle.dumps(None), id="none"),
    pytest.param(pickle.dumps({b"fine_label_names": [b"a"], b"data": [[1]], b"fine_labels": [0]}),
                 id="wrong-shape"),
    pytest.param(pickle.dumps({b"fine_label_names": [b"a"], b"data": np.zeros((2, 3072), np.uint8),
                               b"fine_labels": [0, 5]}), id="label-out-of-range"),
]


@pytest.mark.parametrize("content", CIFAR_GARBAGE)
def test_a_cifar_folder_of_garbage_is_a_dataset_error(results, tmp_path, content):
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(content)
    before = Unchanged(results)
    code, _, err = ceag_main("run", "--dataset", "cifar100", "--model", "cnn", "--data-dir", tmp_path / "data", *TINY,
                             "--results", results)
    assert_error(code, err, 1, f"the files in {folder} are not the python version of CIFAR-100")
    before.check()


# -- corrupt files are skipped and counted; empty groups are NaN with n 0 ---------------------------
ABSENT = (4, 1)  # Others x Female: no file at all
MALFORMED = ("39_1_20170116174525125.jpg.chip.jpg",  # the published folder's files that lack a field
             "61_1_20170109142408075.jpg.chip.jpg", "face.jpg", "200_0_0_20170101000000000.jpg",
             "30_2_0_20170101000000000.jpg", "30_0_9_20170101000000000.jpg")
UNREADABLE = ("30_0_1_20170101999999991.jpg.chip.jpg", "31_1_2_20170101999999992.jpg.chip.jpg",
              "32_0_3_20170101999999993.jpg.chip.jpg")


@pytest.fixture(scope="module")
def utk_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, int]:
    """``run --json`` on a UTKFace folder of random-pixel faces with bad files mixed in; (process, good images)."""
    root = tmp_path_factory.mktemp("utk")
    folder = root / "data" / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = 0
    for race in range(5):
        for gender in range(2):
            if (race, gender) == ABSENT:
                continue
            for _ in range(8):
                random_jpeg(folder / f"{int(rng.integers(1, 90))}_{gender}_{race}_2017010{good:09d}.jpg.chip.jpg", rng)
                good += 1
    for name in MALFORMED:
        random_jpeg(folder / name, rng)
    (folder / UNREADABLE[0]).write_bytes(b"\xff\xd8 these bytes are not a JPEG \x00\x01\x02")
    whole = (folder / "25_0_0_20170102000000000.jpg.chip.jpg")
    random_jpeg(whole, rng)
    (folder / UNREADABLE[1]).write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])  # truncated
    (folder / UNREADABLE[2]).write_bytes(b"")
    proc = ceag_process("run", "--dataset", "utkface", "--model", "mlp", "--data-dir", root / "data",
                        "--image-size", "8", "--groups", "race,gender", "--dense-epochs", "1", "--prune-epochs", "1",
                        "--epochs", "1", "--json", "--results", root / "results")
    return proc, good + 1


def test_corrupt_and_misnamed_images_are_skipped_and_counted(utk_run):
    proc, good = utk_run
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "finished"
    assert out["skipped_files"] == {"malformed file name": len(MALFORMED), "unreadable image": len(UNREADABLE)}
    # every readable, well-named image is in exactly one split, and nothing else is
    assert sum(g["n"] for split in ("train", "val", "test") for g in out[split]["groups"]) == good


def test_a_group_without_samples_is_null_with_n_0_never_a_silent_zero(utk_run):
    proc, _ = utk_run
    out = json.loads(proc.stdout)
    absent = f"{['White', 'Black', 'Asian', 'Indian', 'Others'][ABSENT[0]]} × {['Male', 'Female'][ABSENT[1]]}"
    empty_seen = 0
    for split in ("train", "val", "test"):
        groups = out[split]["groups"]
        assert len(groups) == 10  # race x gender, empty groups included
        [row] = [g for g in groups if g["name"] == absent]
        assert row["n"] == 0
        for g in groups:
            values = (g["accuracy"], g["dense_accuracy"], g["excess_gap"])
            if g["n"] == 0:
                empty_seen += 1
                assert values == (None, None, None), g
            else:
                assert None not in values, g
        # the run-level disparities are over the groups that have samples, not poisoned by the empty ones
        assert out[split]["max_excess_gap"] is not None and out[split]["psi_pw"] is not None
    assert empty_seen >= 3


# -- results folder problems ------------------------------------------------------------------------
def below_a_file(tmp_path: Path) -> Path:
    """A results path that cannot be created even by root: a folder below a regular file."""
    blocker = tmp_path / "afile"
    blocker.write_text("I am a file")
    return blocker / "sub"


WRITE_COMMANDS = {
    "run": ["run", "--dataset", "synthetic", *TINY],
    "grid": ["grid", "--datasets", "synthetic", "--methods", "nft", "--workers", "1", *TINY],
}


@pytest.mark.parametrize("command", [
    "run",
    "grid",
    "import",
])
def test_a_results_path_that_cannot_be_created_is_refused_clearly(tmp_path, bundle, command):
    target = below_a_file(tmp_path)
    before = listing(tmp_path)
    args = [*WRITE_COMMANDS[command]] if command != "import" else ["import", bundle]
    code, _, err = ceag_main(*args, "--results", target)
    assert_error(code, err, 1, f"cannot write to the results folder {target}")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", [
    "run",
    "grid",
    "import",
])
def test_a_read_only_results_folder_is_refused_clearly(results, bundle, command):
    mode = results.stat().st_mode
    results.chmod(0o555)
    try:
        if os.access(results, os.W_OK):
            pytest.skip("this user (root) can write to a 0o555 folder; the results-below-a-file test covers it")
        before = Unchanged(results)
        args = [*WRITE_COMMANDS[command]] if command != "import" else ["import", bundle]
        code, _, err = ceag_main(*args, "--results", results)
        assert_error(code, err, 1, f"cannot write to the results folder {results}")
        before.check()
    finally:
        results.chmod(stat.S_IMODE(mode))


class DiskFull:
    """From the first write of a file named ``first`` under ``folder`` on, every atomic file write
    there fails with ENOSPC (leaving a half-written temp file) while ``on``: a disk that filled up."""

    def __init__(self, monkeypatch, folder: Path, first: str):
        import ceag.results.files

        self.on, self.full, real = True, False, ceag.results.files.atomic_write

        def atomic_write(path, write, **kwargs):
            self.full = self.full or (Path(path).name == first and Path(path).is_relative_to(folder))
            if self.on and self.full and Path(path).is_relative_to(folder):
                def failing(tmp):
                    Path(tmp).write_bytes(b"partial")  # what a half-written file would leave
                    raise OSError(28, "No space left on device", str(tmp))
                return real(path, failing, **kwargs)
            return real(path, write, **kwargs)

        monkeypatch.setattr(ceag.results.files, "atomic_write", atomic_write)


@pytest.mark.parametrize("filled_at", ["config.json", "checkpoint.pt", "summary.json"])
def test_a_full_disk_fails_the_run_clearly_and_loses_nothing(tmp_path, monkeypatch, filled_at):
    from ceag.config.grid_spec import GridSpec
    from ceag.grid.driver import run_grid

    results = tmp_path / "results"
    spec = GridSpec(datasets=("synthetic",), methods=("nft", "ceag"), sparsities=(0.8,), tolerances=(0.02,),
                    seeds=(0,), settings={"dense_epochs": 1, "prune_epochs": 1, "finetune_epochs": 2,
                                          "checkpoint_every": 1, "device": "cpu"})
    first, second = spec.configs()
    run(first, results)  # finished before the disk filled up
    before = (run_dir(results, first.run_id) / "summary.json").read_bytes()
    full = DiskFull(monkeypatch, results / "runs" / second.run_id, filled_at)
    report = run_grid([first, second], results, workers=1, job_id="full")
    assert report.cached == 1 and report.failed == 1
    assert "No space left on device" in report.runs[second.run_id]["reason"]
    assert not (run_dir(results, second.run_id) / "summary.json").exists()
    assert (run_dir(results, first.run_id) / "summary.json").read_bytes() == before
    assert not list((results / "runs").rglob("*.tmp")), "a half-written temp file was left behind"
    assert queries.runs(results, status="finished").run_id.tolist() == [first.run_id]
    code, _, err = ceag_main("run", "--set", f"method={json.dumps(second.method)}", "--results", results,
                             *[a for k, v in second.to_dict().items() if k not in ("method", "data_dir")
                               for a in ("--set", f"{k}={json.dumps(v)}")])
    assert_error(code, err, 1, "No space left on device")
    full.on = False  # space freed: the same grid finishes the run, the other stays cached
    again = run_grid([first, second], results, workers=1)
    assert again.cached == 1 and again.finished == 1
    assert sorted(queries.runs(results, status="finished").run_id) == sorted([first.run_id, second.run_id])
    # training done before the disk filled is kept: the last checkpoint, else the shared pruned state
    resumed = load_result(results, second.run_id).summary["resumed_from"]
    assert resumed == ("checkpoint" if filled_at == "summary.json" else "pruned")


# -- store problems -----------------------------------------------------------------------------------
def foreign_duckdb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = db_path(folder)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE invoices (id INTEGER, amount DOUBLE)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5), (2, 12.0)")
    con.close()
    return path


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["export", "--out", "-"]])
def test_a_duckdb_file_that_is_not_a_ceag_store_is_refused_and_left_alone(tmp_path, command):
    results = tmp_path / "results"
    path = foreign_duckdb(results)
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    before = listing(results)
    proc = ceag_process(*command, "--results", results)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "is a DuckDB file but not a ceag store" in proc.stderr and str(path) in proc.stderr
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    assert listing(results) == before
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT sum(amount) FROM invoices").fetchone() == (21.5,)
    con.close()


def test_ls_on_a_foreign_duckdb_with_run_folders_still_refuses_and_changes_nothing(results):
    db_path(results).unlink()
    path = foreign_duckdb(results)  # beside the seeded run folder, which ls would otherwise ingest
    data = path.read_bytes()
    before = listing(results)
    code, _, err = ceag_main("ls", "--results", results)
    assert_error(code, err, 1, "not a ceag store")
    assert path.read_bytes() == data
    assert listing(results) == before


def test_a_grid_on_a_foreign_duckdb_file_fails_before_training(tmp_path):
    results = tmp_path / "results"
    path = foreign_duckdb(results)
    data = path.read_bytes()
    before = listing(results)
    proc = ceag_process("grid", "--datasets", "synthetic", "--methods", "nft", "--workers", "1", *TINY,
                        "--results", results)
    assert proc.returncode == 1 and "not a ceag store" in proc.stderr
    assert path.read_bytes() == data
    assert listing(results) == before


def test_an_import_into_a_foreign_duckdb_file_is_refused_before_unpacking(tmp_path, bundle):
    results = tmp_path / "results"
    path = foreign_duckdb(results)
    data = path.read_bytes()
    before = listing(results)
    code, _, err = ceag_main("import", bundle, "--results", results)
    assert_error(code, err, 1, "not a ceag store")
    assert path.read_bytes() == data
    assert listing(results) == before


def test_a_store_from_a_newer_ceag_is_refused_and_left_alone(results):
    con = duckdb.connect(str(db_path(results)))
    con.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', now())")
    con.close()
    data = db_path(results).read_bytes()
    before = listing(results)
    code, _, err = ceag_main("ls", "--results", results)
    assert_error(code, err, 1, "written by a newer ceag", "schema 999", "upgrade ceag")
    assert db_path(results).read_bytes() == data
    assert listing(results) == before


def test_a_store_file_that_is_not_duckdb_is_refused(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    db_path(results).write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    before = listing(results)
    proc = ceag_process("ls", "--results", results)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and "as a ceag store" in proc.stderr
    assert listing(results) == before


# -- imported bundles ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(seeded, tmp_path_factory) -> Path:
    source, run_id = seeded
    return export_bundle(source, [run_id], tmp_path_factory.mktemp("bundle") / "runs.tar.gz")


def unpack(bundle: Path, dest: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    return dest


def repack(src: Path, out: Path, *, rehash: bool = False, skip_manifest: bool = False) -> Path:
    """Pack an unpacked bundle again; ``rehash``: make the manifest's hashes match the edited files."""
    import hashlib

    if rehash:
        manifest = json.loads((src / "manifest.json").read_text())
        manifest["sha256"] = {rel: hashlib.sha256((src / rel).read_bytes()).hexdigest() for rel in manifest["sha256"]}
        (src / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(out, "w:gz") as tar:
        if not skip_manifest:
            tar.add(src / "manifest.json", arcname="manifest.json")
        for path in sorted((src / "runs").rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(src).as_posix())
    return out


class Payload:
    """Unpickling this creates a folder: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _bad_bundle(kind: str, bundle: Path, run_id: str, tmp: Path) -> tuple[Path, list[str]]:
    """A broken copy of ``bundle`` and the phrases the error must contain."""
    out = tmp / f"{kind}.tar.gz"
    if kind == "not-a-tar":
        out.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
        return out, ["not a readable tar archive"]
    if kind == "empty-file":
        out.write_bytes(b"")
        return out, ["not a readable tar archive"]
    if kind == "truncated":  # a copy cut short: the gzip stream ends mid-file
        data = bundle.read_bytes()
        out.write_bytes(data[: len(data) * 2 // 3])
        return out, [str(out), "truncated or corrupt"]
    src = unpack(bundle, tmp / "unpacked")
    manifest_path, run = src / "manifest.json", src / "runs" / run_id
    if kind == "newer-schema":
        manifest = json.loads(manifest_path.read_text())
        manifest["version"] = 99
        manifest_path.write_text(json.dumps(manifest))
        return repack(src, out), ["bundle version 99 is newer than this ceag reads", "upgrade ceag"]
    if kind == "tampered-metrics":
        frame = run / "run_metrics.parquet"
        frame.write_bytes(frame.read_bytes()[:-16] + b"\0" * 16)
        return repack(src, out), [f"runs/{run_id}/run_metrics.parquet does not match its manifest hash"]
    if kind == "tampered-summary":
        summary = json.loads((run / "summary.json").read_text())
        summary["wall_seconds"] = 0.001
        (run / "summary.json").write_text(json.dumps(summary))
        return repack(src, out), [f"runs/{run_id}/summary.json does not match its manifest hash"]
    if kind == "no-manifest":
        return repack(src, out, skip_manifest=True), ["no manifest.json", "not a ceag bundle"]
    if kind == "manifest-not-json":
        manifest_path.write_text("{ not json")
        return repack(src, out), ["manifest.json is not valid JSON"]
    if kind == "edited-config-rehashed":
        config = json.loads((run / "config.json").read_text())
        config["sparsity"] = 0.5
        (run / "config.json").write_text(json.dumps(config))
        return repack(src, out, rehash=True), [f"run {run_id}: config.json hashes to", "not to its folder name"]
    if kind == "code-in-model-rehashed":
        torch.save({"weight": Payload(tmp / "pwned")}, run / "model.pt")
        return repack(src, out, rehash=True), [f"run {run_id}: model.pt is not a weights-only PyTorch state dict"]
    if kind == "metrics-missing-columns-rehashed":
        import pandas as pd

        pd.DataFrame({"epoch": [0]}).to_parquet(run / "group_metrics.parquet")
        return repack(src, out, rehash=True), ["group_metrics.parquet lacks columns", "accuracy"]
    raise AssertionError(kind)


BUNDLE_KINDS = ["not-a-tar", "empty-file", "truncated", "newer-schema", "tampered-metrics", "tampered-summary",
                "no-manifest", "manifest-not-json", "edited-config-rehashed", "code-in-model-rehashed",
                "metrics-missing-columns-rehashed"]


@pytest.mark.parametrize("kind", BUNDLE_KINDS)
def test_a_bad_bundle_is_refused_before_anything_is_written(seeded, bundle, tmp_path, kind):
    (tmp_path / "work").mkdir()
    bad, phrases = _bad_bundle(kind, bundle, seeded[1], tmp_path / "work")
    results = tmp_path / "results"  # a migrated store without the bundle's run: an import would change it
    with connect(results, write=True):
        pass
    (results / "runs").mkdir()
    before = Unchanged(results)
    code, out, err = ceag_main("import", bad, "--results", results)
    assert_error(code, err, 1, *phrases)
    assert out == ""
    before.check()
    assert not (tmp_path / "work" / "pwned").exists()  # the model file's code never ran


def test_the_real_command_line_refuses_a_bundle_from_a_newer_ceag(results, seeded, bundle, tmp_path):
    bad, _ = _bad_bundle("newer-schema", bundle, seeded[1], tmp_path)
    empty = tmp_path / "fresh"
    proc = ceag_process("import", bad, "--results", empty)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and "bundle version 99 is newer" in proc.stderr
    assert not db_path(empty).exists()
    assert not (empty / "runs").exists() or not any((empty / "runs").iterdir())
