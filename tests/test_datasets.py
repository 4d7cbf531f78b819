"""The datasets package: fingerprints, the decode cache, label CSVs as spreadsheets save them,
the custom layout, and what loading skips, all on tiny folders generated here."""

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image

from ceag.config.keys import dense_key, prune_key
from ceag.config.run_config import RunConfig, from_dict
from ceag.datasets import DatasetError
from ceag.datasets import fingerprint as fp_module
from ceag.datasets.checks import check_data
from ceag.datasets.custom import load_custom
from ceag.datasets.faces import load_fairface
from ceag.datasets.fingerprint import fingerprint, save_cache
from ceag.datasets.images.cache import load_or_decode
from ceag.datasets.images.decode import decode
from ceag.run.data import resolve
from ceag.run.pipeline import run
from ceag.store import queries
from ceag.store.migrations import MIGRATIONS
from tests.helpers import ROOT, ceag_main, subprocess_env

TINY = dict(model="cnn", image_size=8, dense_epochs=1, prune_epochs=1, finetune_epochs=1, val_fraction=0.0,
            device="cpu", sparsity=0.5)
RACES = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]


def jpeg(path, seed, size=12):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, "JPEG")


def utk_folder(root, seed, per_group=4):
    folder = root / "UTKFace"
    i = 0
    for race in range(5):
        for gender in range(2):
            for k in range(per_group + (seed % 2) * (race == 0)):
                jpeg(folder / f"{20 + 10 * k}_{gender}_{race}_2017{seed:02d}{i:08d}.jpg.chip.jpg", seed * 1000 + i)
                i += 1
    return root


# -- fingerprints -----------------------------------------------------------------------------
def test_two_folders_never_share_a_run_id_a_dense_model_or_a_pruned_state(tmp_path):
    a, b = utk_folder(tmp_path / "a", 1), utk_folder(tmp_path / "b", 2)
    ca = resolve(RunConfig(dataset="utkface", data_dir=str(a), **TINY))
    cb = resolve(RunConfig(dataset="utkface", data_dir=str(b), **TINY))
    assert ca.data_fingerprint != cb.data_fingerprint
    assert ca.run_id != cb.run_id and dense_key(ca) != dense_key(cb) and prune_key(ca) != prune_key(cb)


def test_a_second_folder_trains_its_own_run(tmp_path, one_thread):
    a, b = utk_folder(tmp_path / "a", 1), utk_folder(tmp_path / "b", 2)
    results = tmp_path / "results"
    first = run(RunConfig(dataset="utkface", data_dir=str(a), **TINY), results)
    second = run(RunConfig(dataset="utkface", data_dir=str(b), **TINY), results)
    assert not second.cached and second.run_id != first.run_id
    assert (first.summary["data_report"]["rows_read"], second.summary["data_report"]["rows_read"]) == (42, 40)
    assert len(list((results / "dense").iterdir())) == 2
    again = run(RunConfig(dataset="utkface", data_dir=str(a), **TINY), results)
    assert again.cached and again.run_id == first.run_id


def test_a_copied_folder_keeps_its_fingerprint_and_a_changed_one_does_not(tmp_path):
    a = utk_folder(tmp_path / "a", 1)
    cfg = RunConfig(dataset="utkface", data_dir=str(a), **TINY)
    before = fingerprint(cfg, tmp_path / "cache")
    save_cache()
    stored = json.loads(next((tmp_path / "cache" / "fingerprints").glob("*.json")).read_text())
    assert len(stored) == 42 and all(len(v) == 3 for v in stored.values())  # size, mtime, content hash
    fp_module._MEMO.clear()
    assert fingerprint(cfg, tmp_path / "cache") == before  # from the hashes on disk
    time.sleep(0.01)
    copy = tmp_path / "copy"
    shutil.copytree(a, copy, copy_function=shutil.copyfile)  # new modification times
    moved = cfg.replace(data_dir=str(copy))
    assert fingerprint(moved, tmp_path / "cache") == before
    first = sorted((copy / "UTKFace").iterdir())[0]
    jpeg(first, 999)  # same name, other pixels
    assert fingerprint(moved, tmp_path / "cache") != before
    changed = fingerprint(moved)
    first.unlink()
    assert fingerprint(moved) not in (before, changed)


def test_datasets_without_a_folder_have_a_fingerprint_from_their_rule():
    digits, synthetic = RunConfig(dataset="digits"), RunConfig(dataset="synthetic")
    assert digits.data_fingerprint and synthetic.data_fingerprint
    assert digits.data_fingerprint != synthetic.data_fingerprint
    assert digits.replace(dataset="synthetic", groups=()).data_fingerprint == synthetic.data_fingerprint


def test_a_config_written_before_fingerprints_keeps_its_run_id():
    cfg = RunConfig(dataset="digits", method="nft")
    old = {k: v for k, v in cfg.to_dict().items() if k != "data_fingerprint"}
    legacy = from_dict(old, stored=True)
    canonical = {k: v for k, v in cfg.canonical().items() if k != "data_fingerprint"}
    old_id = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert legacy.data_fingerprint is None and legacy.run_id == old_id != cfg.run_id


def test_an_old_store_without_fingerprints_still_opens_and_says_unknown(tmp_path, one_thread):
    results = tmp_path / "results"
    results.mkdir()
    con = duckdb.connect(str(results / "ceag.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMP NOT NULL)")
    con.execute(MIGRATIONS[0][2])
    con.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', now())")
    con.execute("INSERT INTO runs (run_id, status, dataset, model, method, sparsity, seed, config, data_key, "
                "dense_key, prune_key, ingested_at) VALUES ('0123456789abcdef', 'failed', 'digits', 'mlp', 'nft', "
                "0.9, 0, '{}', 'k', 'k', 'k', now())")
    con.close()
    code, out, err = ceag_main("ls", "--results", results)
    assert code == 0, err
    assert "0123456789abcdef" in out and "unknown" in out and "before data fingerprints" in out
    df = queries.runs(results)
    assert df.data_fingerprint.isna().all()


# -- the decode cache ---------------------------------------------------------------------------
def _files(root, n=24, size=12):
    paths = [root / f"{i:03d}.jpg" for i in range(n)]
    for i, p in enumerate(paths):
        jpeg(p, i, size)
    (root / "broken.jpg").write_bytes(b"not an image")
    return [*paths, root / "broken.jpg"]


def test_the_cache_gives_the_arrays_of_a_fresh_decode(tmp_path):
    paths = _files(tmp_path / "img")
    root, names = paths[0].parent, [p.name for p in paths]
    fresh, ok = decode(paths, 10)
    first = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="f" * 16)
    second = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="f" * 16)
    assert (first[2], second[2]) == ("decoded", "cache")
    for pixels, mask, _ in (first, second):
        assert np.array_equal(mask, ok) and not mask[-1] and mask[:-1].all()
        assert np.array_equal(np.asarray(pixels)[ok], fresh[ok])
    # another size is another entry
    assert load_or_decode(root, names, 8, cache_dir=tmp_path / "cache", fingerprint="f" * 16)[2] == "decoded"


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory map holds ``tensor``'s data (from /proc/self/maps), or None."""
    ptr = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= ptr < hi:
            return fields[5] if len(fields) > 5 and fields[5].startswith("/") else None
    return None


def test_a_cached_load_maps_the_cache_and_copies_no_pixels(tmp_path):
    root = utk_folder(tmp_path / "data", seed=3, per_group=6)
    results = tmp_path / "results"
    cfg = resolve(RunConfig(dataset="utkface", model="cnn", data_dir=str(root), image_size=10), results)
    from ceag.datasets.faces import load_utkface

    first = load_utkface(cfg, results / "cache")
    again = load_utkface(cfg, results / "cache")
    assert (first.report["image_source"], again.report["image_source"]) == ("decoded", "cache")
    names = sorted(p.name for p in (root / "UTKFace").iterdir())
    fresh, ok = decode([root / "UTKFace" / n for n in names], 10)
    assert ok.all()
    for name in ("train", "val", "test"):
        split = again.splits[name]
        # every split is a view of the cache file: loading it read and copied no pixel
        assert (_mapped_file(split.x) or "").startswith(str(results / "cache" / "images"))
        assert torch.equal(split.inputs(), first.splits[name].inputs())
        assert len(split.inputs()) == len(split)
    # train and val are interleaved in the file (val is a stratified draw from train): rows pick them
    assert again.splits["train"].rows is not None and again.splits["val"].rows is not None
    picked = torch.cat([again.splits[n].inputs() for n in ("train", "val", "test")]).flatten(1).numpy()
    assert sorted(map(bytes, picked)) == sorted(map(bytes, fresh.reshape(len(fresh), -1)))


def test_writing_to_a_mapped_split_never_reaches_the_cache(tmp_path):
    paths = _files(tmp_path / "img")
    root, names = paths[0].parent, [p.name for p in paths]
    pixels, ok, _ = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="c" * 16)
    before = np.asarray(pixels).copy()
    block = torch.from_numpy(pixels.block(2, 6))
    block.fill_(7)  # copy-on-write: this process's pages only
    again, _, how = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="c" * 16)
    assert how == "cache" and np.array_equal(np.asarray(again), before)


def test_a_split_that_picks_rows_reads_and_moves_only_its_rows():
    from ceag.datasets.base import Split

    x = torch.arange(10 * 3, dtype=torch.uint8).reshape(10, 3)
    split = Split(x, torch.arange(4), torch.zeros(4, dtype=torch.int64), rows=torch.tensor([1, 4, 5, 9]))
    assert len(split) == 4 and split.input_shape == (3,)
    assert torch.equal(split.inputs(), x[[1, 4, 5, 9]])
    assert torch.equal(split.inputs(slice(1, 3)), x[[4, 5]])
    assert torch.equal(split.inputs(torch.tensor([3, 0])), x[[9, 1]])
    assert split.to("cpu") is split
    moved = split.to("meta")  # another device gets the split's own rows, no more
    assert moved.rows is None and moved.x.shape == (4, 3)


def test_a_truncated_cache_file_is_decoded_again_not_served(tmp_path):
    paths = _files(tmp_path / "img")
    root, names = paths[0].parent, [p.name for p in paths]
    pixels, _, _ = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="d" * 16)
    with open(pixels.path, "r+b") as fh:
        fh.truncate(pixels.offset + 100)
    again, ok, how = load_or_decode(root, names, 10, cache_dir=tmp_path / "cache", fingerprint="d" * 16)
    fresh, fresh_ok = decode(paths, 10)
    assert how == "decoded" and np.array_equal(ok, fresh_ok) and np.array_equal(np.asarray(again)[ok], fresh[ok])
    with pytest.raises(DatasetError, match="truncated; delete it to rebuild it"):
        with open(again.path, "r+b") as fh:
            fh.truncate(again.offset + 100)
        type(again)(again.path)  # read directly, a damaged file says what to do


_SLOW_WRITER = """
import sys, time
from pathlib import Path
import ceag.datasets.images.cache as images
import ceag.datasets.images.decode as decoding
read = decoding.read_image
def slow(path, size):
    time.sleep(0.05)
    return read(path, size)
decoding.read_image = slow
decoding.decode_workers = lambda: 1
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
images.load_or_decode(Path(sys.argv[1]), [p.name for p in paths], 10, cache_dir=Path(sys.argv[2]), fingerprint="a" * 16)
"""


def test_a_writer_killed_mid_write_leaves_no_entry_and_the_next_load_is_right(tmp_path):
    paths = sorted(_files(tmp_path / "img"))
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path / "img"), str(cache)],
                            env=subprocess_env(), cwd=ROOT)
    deadline = time.time() + 60
    while not list((cache / "images").glob(".*.tmp-*")) if (cache / "images").exists() else True:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not [p for p in (cache / "images").iterdir() if p.is_dir() and not p.name.startswith(".")]
    pixels, ok, how = load_or_decode(cache.parent / "img", [p.name for p in paths], 10, cache_dir=cache,
                                     fingerprint="a" * 16)
    fresh, fresh_ok = decode(paths, 10)
    assert how == "decoded" and np.array_equal(ok, fresh_ok) and np.array_equal(np.asarray(pixels)[ok], fresh[ok])
    assert not list((cache / "images").glob(".*.tmp-*"))  # the killed writer's leftovers are gone


_WRITER = """
import sys
from pathlib import Path
import numpy as np
from ceag.datasets.images.cache import load_or_decode
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
pixels, ok, how = load_or_decode(Path(sys.argv[1]), [p.name for p in paths], 10, cache_dir=Path(sys.argv[2]),
                                 fingerprint="b" * 16)
np.save(sys.argv[3], np.asarray(pixels)[ok])
print(how)
"""


def test_two_writers_at_once_decode_once_and_agree(tmp_path):
    paths = sorted(_files(tmp_path / "img", n=40))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "img"), str(tmp_path / "cache"),
                               str(tmp_path / f"out{i}.npy")], env=subprocess_env(), cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    hows = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    fresh, ok = decode(paths, 10)
    assert hows == ["cache", "decoded"]
    for i in range(2):
        assert np.array_equal(np.load(tmp_path / f"out{i}.npy"), fresh[ok])


# -- label CSVs ----------------------------------------------------------------------------------
def fairface(root, rows_by_split, *, bom=False, crlf=False, spaces=False, authors_layout=False):
    folder = root / "fairface"
    images = folder / "fairface-img-margin025-trainval" if authors_layout else folder
    for split, rows in rows_by_split.items():
        for i, row in enumerate(rows):
            jpeg(images / row["file"], hash((split, i)) % 10_000)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
        pad = " " if spaces else ""
        writer.writerow([f"{c}{pad}" for c in ("file", "age", "gender", "race", "service_test")])
        for row in rows:
            writer.writerow([row["file"], row["age"], f"{pad}{row['gender']}", row["race"], row.get("service_test",
                                                                                                       "TRUE")])
        data = buf.getvalue().encode()
        name = "fairface_label_train.csv" if split == "train" else "fairface_label_val.csv"
        (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return root


def ff_rows(split, n, ages=("20-29", "3-9", "10-19")):
    return [{"file": f"{split}/{i + 1}.jpg", "age": ages[i % len(ages)], "gender": ["Male", "Female"][i % 2],
             "race": RACES[i % 7]} for i in range(n)]


def test_a_spreadsheet_saved_fairface_csv_loads(tmp_path):
    root = fairface(tmp_path, {"train": ff_rows("train", 14), "val": ff_rows("val", 7)}, bom=True, crlf=True,
                    spaces=True)
    data = load_fairface(RunConfig(dataset="fairface", data_dir=str(root), **TINY))
    assert len(data.splits["train"]) == 14 and len(data.splits["test"]) == 7 and not data.skipped


def test_spreadsheet_dates_are_recognised_and_unused_unknown_values_drop_nothing(tmp_path):
    mangled = ("20-29", "03-Sep", "Sep-03", "9-Mar", "Oct-19", "19-Oct", "banana")
    root = fairface(tmp_path, {"train": ff_rows("train", 21, mangled), "val": ff_rows("val", 7, mangled)})
    by_race = load_fairface(RunConfig(dataset="fairface", data_dir=str(root), **TINY))
    assert len(by_race.splits["train"]) == 21 and len(by_race.splits["test"]) == 7 and not by_race.skipped
    notes = " ".join(by_race.report["notes"])
    assert "'03-Sep' as '3-9'" in notes or "'Sep-03' as '3-9'" in notes
    assert "banana" in notes  # reported, not used by this run
    by_age = load_fairface(RunConfig(dataset="fairface", data_dir=str(root), target="age", **TINY))
    assert by_age.skipped == {"unknown age value": 4}  # 'banana' in 3 train rows and 1 val row
    assert by_age.report["unknown_values"] == {"age": {"banana": 4}}
    ys = np.concatenate([s.y.numpy() for s in by_age.splits.values()])
    assert set(ys) == {1, 2, 3}  # 3-9, 10-19, 20-29: every mangled date became its range


def test_a_missing_column_lists_the_columns_found(tmp_path):
    root = fairface(tmp_path, {"train": ff_rows("train", 7), "val": ff_rows("val", 7)})
    path = root / "fairface" / "fairface_label_val.csv"
    path.write_text(path.read_text().replace("race", "ethnicity"))
    with pytest.raises(DatasetError, match=r"lacks column race .*found 'file', 'age', 'gender', 'ethnicity'"):
        load_fairface(RunConfig(dataset="fairface", data_dir=str(root), **TINY))


def test_the_authors_fairface_image_folder_is_accepted(tmp_path):
    root = fairface(tmp_path, {"train": ff_rows("train", 7), "val": ff_rows("val", 7)}, authors_layout=True)
    data = load_fairface(RunConfig(dataset="fairface", data_dir=str(root), **TINY))
    assert len(data.splits["train"]) == 7 and not data.skipped


def test_a_grid_checks_label_values_before_training(tmp_path):
    rows = ff_rows("train", 7)
    for r in rows:
        r["race"] = "Martian"
    root = fairface(tmp_path, {"train": rows, "val": ff_rows("val", 7)})
    cfg = RunConfig(dataset="fairface", data_dir=str(root), **TINY)
    with pytest.raises(DatasetError, match=r"no row of the train labels .*race: 7 unknown \('Martian' \(7\)"):
        check_data([cfg])
    check_data([cfg.replace(target="gender", groups=("gender",))])  # race is not used: fine


def test_a_cell_that_fails_loading_its_data_is_a_failed_run_in_ls(tmp_path):
    folder = tmp_path / "data"
    jpeg(folder / "a.jpg", 1, size=12)
    jpeg(folder / "b.jpg", 2, size=16)  # another size and no image_size: loading fails
    (folder / "labels.csv").write_text("file,y,g\na.jpg,0,x\nb.jpg,1,y\n")
    spec = tmp_path / "spec.json"
    settings = {k: v for k, v in TINY.items() if k not in ("image_size", "model", "sparsity")}
    spec.write_text(json.dumps({"datasets": ["custom"], "models": ["cnn"], "methods": ["nft"], "sparsities": [0.5],
                                "settings": {**settings, "target": "y", "groups": ["g"], "data_dir": str(folder)}}))
    code, out, err = ceag_main("grid", "--spec", spec, "--results", tmp_path / "results", "--workers", "1")
    listed = ceag_main("ls", "--results", tmp_path / "results")[1]
    assert "failed" in listed and "custom" in listed, (out, err, listed)
    reasons = queries.runs(tmp_path / "results").reason.tolist()
    assert any("different sizes" in r for r in reasons)


# -- custom ---------------------------------------------------------------------------------------
def custom_folder(root, *, split=False, n=24):
    rows = []
    for i in range(n):
        name = f"img/{i:03d}.jpg"
        jpeg(root / name, 500 + i)
        row = {"file": name, "label": ["cat", "dog"][i % 2], "skin": ["light", "dark"][(i // 2) % 2],
               "sex": ["f", "m"][(i // 4) % 2]}
        if split:
            row["split"] = ["train", "train", "test", "val"][i % 4] if i % 8 else "TEST"
        rows.append(row)
    rows.append({"file": "img/missing.jpg", "label": "cat", "skin": "light", "sex": "f",
                 **({"split": "train"} if split else {})})
    rows.append({"file": "img/000.jpg", "label": "", "skin": "dark", "sex": "m",
                 **({"split": "train"} if split else {})})
    (root / "img" / "broken.jpg").write_bytes(b"\x00" * 10)
    rows.append({"file": "img/broken.jpg", "label": "dog", "skin": "dark", "sex": "m",
                 **({"split": "test"} if split else {})})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("groups", [("skin",), ("skin", "sex")])
def test_the_custom_layout_loads_and_counts_bad_rows(tmp_path, split, groups):
    root = custom_folder(tmp_path, split=split)
    data = load_custom(RunConfig(dataset="custom", data_dir=str(root), target="label", groups=groups, **TINY))
    assert data.num_classes == 2
    expected_groups = ["dark", "light"] if groups == ("skin",) else ["dark × f", "dark × m", "light × f", "light × m"]
    assert data.group_names == expected_groups
    assert data.skipped == {"missing label value": 1, "missing image": 1, "unreadable image": 1}
    assert data.report["rows_read"] == 27
    assert sum(len(s) for s in data.splits.values()) == 24
    if split:
        # rows 0, 8, 16 say "TEST"; the others cycle train, train, test, val
        assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "test": 9, "val": 6}
        assert data.report["split_rule"].startswith("the labels' split column")
    else:
        assert "stratified" in data.report["split_rule"] and len(data.splits["test"]) > 0


def test_custom_needs_its_columns_named():
    with pytest.raises(ValueError, match="--target COLUMN"):
        RunConfig(dataset="custom")
    with pytest.raises(ValueError, match="--groups COLUMN"):
        RunConfig(dataset="custom", target="label")


def test_custom_runs_end_to_end_from_the_command_line(tmp_path):
    root = custom_folder(tmp_path / "data")
    code, out, err = ceag_main("run", "--dataset", "custom", "--data-dir", root, "--target", "label", "--groups",
                               "skin,sex", "--model", "cnn", "--image-size", 8, "--dense-epochs", 1,
                               "--prune-epochs", 1, "--epochs", 1, "--sparsity", 0.5, "--device", "cpu",
                               "--results", tmp_path / "results")
    assert code == 0, err
    assert ("3 of 27 rows left out while loading: 1 missing image, 1 missing label value, 1 unreadable image"
            in out)
    assert "by group: dark × m 2 of 8 (25.0 %), light × f 1 of 7 (14.3 %)" in out
    assert "light × m" in out


def _open(page):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(f"dashboard/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_custom_runs_from_the_app(tmp_path, monkeypatch, one_thread):
    root = custom_folder(tmp_path / "data")
    monkeypatch.setenv("CEAG_DATA", str(root))
    monkeypatch.setenv("CEAG_RESULTS", str(tmp_path / "results"))
    at = _open("launch")
    assert at.selectbox[0].options == ["digits", "synthetic", "custom"]
    at.selectbox[0].set_value("custom").run()
    assert not at.exception, [e.value for e in at.exception]
    targets = [s for s in at.selectbox if s.label == "Target"][0]
    assert targets.options == ["label", "skin", "sex"]
    assert any("This grid means" in i.value for i in at.info)
    at = _open("run_one")
    at.radio[0].set_value("custom").run()
    [s for s in at.number_input if s.label == "Image size (pixels)"][0].set_value(8).run()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    assert "missing image" in text and "unreadable image" in text and "by group: m 2 of 14 (14.3 %)" in text
    assert set(at.dataframe[0].value.group_name) == {"f", "m"}  # the default group column: the last one
    # the Runs page says, per data folder, what loading left out, by reason and by group
    at = _open("runs")
    shown = " ".join(m.value for m in at.markdown)
    assert "3 of 27 rows left out while loading: 1 missing image, 1 missing label value" in shown
    assert "by group: m 2 of 14 (14.3 %)" in shown


def test_a_grid_says_what_loading_skipped(tmp_path):
    root = custom_folder(tmp_path / "data")
    spec = tmp_path / "spec.json"
    settings = {k: v for k, v in TINY.items() if k not in ("model", "sparsity")}
    spec.write_text(json.dumps({"datasets": ["custom"], "models": ["cnn"], "methods": ["nft"], "sparsities": [0.5],
                                "settings": {**settings, "target": "label", "groups": ["skin"],
                                             "data_dir": str(root)}}))
    code, out, err = ceag_main("grid", "--spec", spec, "--results", tmp_path / "results", "--workers", "1")
    assert code == 0, err
    fp = resolve(RunConfig(dataset="custom", data_dir=str(root), target="label", groups=("skin",), **TINY))
    assert (f"data custom {fp.data_fingerprint}: 3 of 27 rows left out while loading: 1 missing image, "
            "1 missing label value, 1 unreadable image") in out
    assert "by group: dark 2 of 14 (14.3 %), light 1 of 13 (7.7 %)" in out
    listed = ceag_main("ls", "--results", tmp_path / "results")[1]
    assert fp.data_fingerprint in listed


def test_a_grid_fingerprints_each_folder_once(tmp_path, monkeypatch):
    import ceag.run.data as checks

    a = utk_folder(tmp_path / "a", 1)
    calls = []
    real = checks.fingerprint
    monkeypatch.setattr(checks, "fingerprint", lambda cfg, cache=None: calls.append(cfg.dataset) or real(cfg, cache))
    configs = [RunConfig(dataset="utkface", data_dir=str(a), seed=s, **TINY) for s in range(5)]
    resolved = checks.resolve_all([*configs, RunConfig(dataset="digits")])
    assert calls == ["utkface"] and len({c.data_fingerprint for c in resolved[:5]}) == 1


def test_the_audit_and_a_bundle_say_what_loading_left_out(tmp_path, one_thread):
    """Audit notes (the Compare page and the report) and an exported bundle name the skips by
    reason and by group, with the warning of a group that lost more than a few percent."""
    import tarfile

    from ceag.present.report import audited
    from ceag.results.bundle import export_bundle
    from ceag.store import ingest_all

    root = custom_folder(tmp_path / "data")
    cfg = RunConfig(dataset="custom", data_dir=str(root), target="label", groups=("skin",), **TINY)
    nft = run(cfg, tmp_path / "results")
    ceag = run(cfg.replace(method="ceag", tolerance=0.02), tmp_path / "results")
    ingest_all(tmp_path / "results")
    notes = audited(tmp_path / "results", [nft.run_id, ceag.run_id]).notes
    (note,) = [n for n in notes if "left out while loading" in n]
    assert f"runs {nft.run_id}, {ceag.run_id}" in note
    assert "3 of 27 rows left out while loading: 1 missing image, 1 missing label value, 1 unreadable image" in note
    assert "by group: dark 2 of 14 (14.3 %), light 1 of 13 (7.7 %)" in note
    assert "WARNING: dark lost 2 of 14 rows (14.3 %) while loading" in note
    out = export_bundle(tmp_path / "results", [nft.run_id], tmp_path / "b.tar.gz")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("manifest.json"))))
    (data,) = manifest["data"].values()
    assert data["skipped_by_group"]["dark"] == {"skipped": 2, "of": 14, "share": pytest.approx(2 / 14)}
    assert data["rows_read"] == 27
