"""Every sample read from a file is named by its path relative to the data folder, from the loaders through a
run's predictions to the export and bundles; built-in data keeps its index; runs made before keep working."""

import csv
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ceag.config.run_config import RunConfig
from ceag.datasets.custom import load_custom
from ceag.datasets.faces import load_fairface, load_utkface, parse_utkface_name
from ceag.datasets.layouts import sample_files
from ceag.results.layout import PREDICTIONS, run_dir
from ceag.results.predictions import files_note, predictions, stored_predictions
from tests.helpers import ceag_cli, ceag_main, write_utkface

RNG = np.random.default_rng(7)
UTK_RACES = ["White", "Black", "Asian", "Indian", "Others"]


def jpeg(path, size=12):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


utk_folder = write_utkface


def test_utkface_samples_are_named_by_their_file_and_the_file_says_their_labels(tmp_path):
    root = utk_folder(tmp_path)
    data = load_utkface(RunConfig(dataset="utkface", model="cnn", data_dir=str(root), val_fraction=0.0,
                                  image_size=8))
    seen = []
    for split in data.splits.values():
        assert split.files is not None and len(split.files) == len(split)
        for name, y, g in zip(split.files, split.y.tolist(), split.g.tolist(), strict=True):
            assert name.startswith("UTKFace/") and (root / name).is_file()
            race = parse_utkface_name(name.split("/", 1)[1])[2]
            assert race == y == g  # the file's own name carries the sample's labels
            seen.append(name)
    assert len(seen) == len(set(seen)) == 30


def test_utkface_in_a_nested_folder_and_fairface_name_the_path_under_the_data_folder(tmp_path):
    nested = tmp_path / "faces"
    utk_folder(tmp_path / "tmp")
    shutil.move(tmp_path / "tmp" / "UTKFace", tmp_path / "tmp" / "UTKFace_inthewild")
    (nested / "utkface").mkdir(parents=True)
    shutil.move(tmp_path / "tmp" / "UTKFace_inthewild", nested / "utkface" / "UTKFace")
    data = load_utkface(RunConfig(dataset="utkface", model="cnn", data_dir=str(nested), val_fraction=0.0,
                                  image_size=8))
    files = [f for s in data.splits.values() for f in s.files]
    assert all((nested / f).is_file() for f in files) and files[0].startswith("utkface/UTKFace/")

    root = tmp_path / "ff"
    races = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
    for split, n in (("train", 14), ("val", 7)):
        rows = []
        for i in range(n):
            jpeg(root / "fairface" / split / f"{i + 1}.jpg")
            rows.append({"file": f"{split}/{i + 1}.jpg", "age": "20-29", "gender": "Male", "race": races[i % 7],
                         "service_test": "True"})
        with open(root / "fairface" / f"fairface_label_{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    data = load_fairface(RunConfig(dataset="fairface", model="cnn", data_dir=str(root), val_fraction=0.0,
                                   image_size=8))
    assert sorted(data.splits["test"].files) == sorted(f"fairface/val/{i + 1}.jpg" for i in range(7))
    for split in data.splits.values():
        for name, y in zip(split.files, split.y.tolist(), strict=True):
            index = int(name.rsplit("/", 1)[1].split(".")[0]) - 1
            assert y == index % 7  # the CSV row of that file gave the sample its label


def test_custom_samples_keep_the_path_their_labels_row_names(tmp_path):
    rows = []
    for i in range(16):
        jpeg(tmp_path / "img" / f"{i:02d}.png")
        rows.append({"file": f"img/{i:02d}.png", "label": ["cat", "dog"][i % 2], "skin": ["a", "b"][i // 8]})
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = load_custom(RunConfig(dataset="custom", model="cnn", data_dir=str(tmp_path), target="label",
                                 groups=("skin",), image_size=8, val_fraction=0.0))
    label = {r["file"]: r for r in rows}
    for split in data.splits.values():
        for name, y, g in zip(split.files, split.y.tolist(), split.g.tolist(), strict=True):
            assert data.class_names[y] == label[name]["label"] and data.group_names[g] == label[name]["skin"]


def test_names_that_are_not_utf8_are_shown_escaped_and_separators_are_posix(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    names = sample_files(tmp_path, tmp_path / "UTKFace", ["a\udce9.jpg", "sub\\b.jpg"])
    assert names == ["UTKFace/a\\xe9.jpg", "UTKFace/sub/b.jpg"]


def test_a_runs_predictions_and_export_carry_the_files_and_old_runs_say_they_have_indices(tmp_path):
    root = utk_folder(tmp_path / "data")
    results = tmp_path / "results"
    proc = ceag_cli("run", "--dataset", "utkface", "--model", "cnn", "--data-dir", root, "--image-size", "8",
                    "--set", "dense_epochs=1", "--set", "prune_epochs=1", "--set", "finetune_epochs=1",
                    "--set", "val_fraction=0.0", "--sparsity", "0.5", "--json", results=results)
    assert proc.returncode == 0, proc.stderr
    import json

    rid = json.loads(proc.stdout)["run_id"]
    stored = stored_predictions(results, rid)
    assert stored["file"].notna().all() and stored["file"].str.startswith("UTKFace/").all()
    test = predictions(results, rid, "test")
    assert (test["file"].map(lambda f: UTK_RACES[parse_utkface_name(f.split("/")[1])[2]])
            == test["group_name"]).all()
    out = tmp_path / "pred.csv"
    code, _, err = ceag_main("export", "--run", rid, "--predictions", "--out", out, "--results", results)
    assert code == 0 and "note:" not in err, err
    assert list(pd.read_csv(out)["file"]) == list(test["file"])

    # a run made before predictions named their files: the column is null and the export says so once
    path = run_dir(results, rid) / PREDICTIONS
    pd.read_parquet(path).drop(columns=["file"]).to_parquet(path)
    old = stored_predictions(results, rid)
    assert old["file"].isna().all() and list(old.columns) == list(stored.columns)
    assert "sample_id" in files_note(results, rid, old)
    code, _, err = ceag_main("export", "--run", rid, "--predictions", "--out", out, "--results", results)
    assert code == 0 and err.count("made before predictions named their image files") == 1
    # ... and it still travels in a bundle
    bundle = tmp_path / "runs.tar.gz"
    assert ceag_main("export", "--bundle", "--out", bundle, "--results", results)[0] == 0
    code, _, err = ceag_main("import", bundle, "--results", tmp_path / "elsewhere")
    assert code == 0, err


@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_built_in_data_keeps_its_index(dataset):
    from ceag.datasets.loading import load_dataset

    data = load_dataset(RunConfig(dataset=dataset, model="mlp"))
    assert all(s.files is None for s in data.splits.values())
