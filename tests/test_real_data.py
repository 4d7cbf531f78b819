"""The real-dataset loaders against tiny copies of their published on-disk layouts."""

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ceag.config.run_config import RunConfig
from ceag.datasets import DatasetError, available
from ceag.datasets.cifar import load_cifar100
from ceag.datasets.faces import load_fairface, load_utkface, parse_utkface_name

RNG = np.random.default_rng(0)


def jpeg(path, size=24):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def utk_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    folder = root / "UTKFace"
    i = 0
    for race in range(5):
        for gender in range(2):
            for k in range(6):
                age = [5, 25, 45, 70][k % 4]
                jpeg(folder / f"{age}_{gender}_{race}_2017010{i:010d}.jpg.chip.jpg")
                i += 1
    # The published folder's known malformed names (a field missing), and an undecodable file.
    for bad in ("39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                "61_3_20170109150557335.jpg.chip.jpg"):
        jpeg(folder / bad)
    (folder / "30_0_0_20170117999999999.jpg.chip.jpg").write_bytes(b"not a jpeg at all")
    return root


def utk_cfg(root, **kw):
    return RunConfig(dataset="utkface", model="cnn", data_dir=str(root), val_fraction=0.0, **kw)


def test_utkface_names_parse_and_malformed_ones_are_rejected():
    assert parse_utkface_name("26_0_2_20170104023102422.jpg.chip.jpg") == (26, 0, 2)
    assert parse_utkface_name("26_1_4_20170104023102422.jpg") == (26, 1, 4)
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") is None
    assert parse_utkface_name("61_3_20170109150557335.jpg.chip.jpg") is None
    assert parse_utkface_name("26_0_9_20170104023102422.jpg") is None  # race out of range


def test_utkface_groups_split_and_skipped_files(utk_root):
    data = load_utkface(utk_cfg(utk_root))
    assert data.group_names == ["White", "Black", "Asian", "Indian", "Others"]
    assert data.skipped == {"malformed file name": 3, "unreadable image": 1}
    total = sum(len(s) for s in data.splits.values())
    assert total == 60 and set(data.splits) == {"train", "test"}
    assert len(data.splits["test"]) == 12  # the fixed 80/20 split
    assert data.splits["train"].x.dtype == torch.uint8 and data.splits["train"].x.shape[1:] == (3, 24, 24)
    assert data.flip is True
    counts = data.group_counts("train") + data.group_counts("test")
    assert counts.tolist() == [12] * 5


def test_utkface_split_is_stable_across_calls(utk_root):
    a, b = load_utkface(utk_cfg(utk_root)), load_utkface(utk_cfg(utk_root))
    for split in ("train", "test"):
        assert torch.equal(a.splits[split].inputs(), b.splits[split].inputs())
        assert torch.equal(a.splits[split].g, b.splits[split].g)


def test_utkface_intersectional_group_index(utk_root):
    data = load_utkface(utk_cfg(utk_root, groups=("race", "gender"), image_size=16))
    assert len(data.group_names) == 10
    assert data.group_names[:3] == ["White × Male", "White × Female", "Black × Male"]
    assert data.splits["train"].x.shape[-1] == 16
    # group id = race * 2 + gender; every (race, gender) pair has 6 images in all
    counts = data.group_counts("train") + data.group_counts("test")
    assert counts.tolist() == [6] * 10
    # the target (race) agrees with the group index
    for split in data.splits.values():
        assert torch.equal(split.y, split.g // 2)


def test_utkface_age_target_uses_the_authors_buckets(utk_root):
    data = load_utkface(utk_cfg(utk_root, target="age", groups=("gender",)))
    # edges 10, 15, 20, 25, 30, 40, 50, 60 (balancing-act src/datasets/utkface.py): nine buckets
    assert data.num_classes == 9 and data.group_names == ["Male", "Female"]
    ys = torch.cat([s.y for s in data.splits.values()])
    # ages 5, 25, 45, 70, 5, 25 per (race, gender) pair fall in buckets 0, 4, 6 and 8
    assert torch.bincount(ys, minlength=9).tolist() == [20, 0, 0, 0, 20, 0, 10, 0, 10]


def test_utkface_split_is_the_authors_rule(utk_root):
    """Sorted *.jpg names, the files without labels dropped, RandomState(1357), first int(0.2 N) test."""
    names = sorted(p.name for p in (utk_root / "UTKFace").glob("*.jpg"))
    labelled = [n for n in names if len(n.split(".")[0].split("_")) == 4]
    perm = np.random.RandomState(seed=1357).permutation(len(labelled))
    n_test = int(0.2 * len(labelled))
    unreadable = "30_0_0_20170117999999999.jpg.chip.jpg"
    want = {"test": sorted(labelled[i] for i in perm[:n_test] if labelled[i] != unreadable),
            "train": sorted(labelled[i] for i in perm[n_test:] if labelled[i] != unreadable)}
    data = load_utkface(utk_cfg(utk_root))
    images = {n: np.asarray(Image.open(utk_root / "UTKFace" / n).convert("RGB")).transpose(2, 0, 1)
              for n in labelled if n != unreadable}
    for split, expected in want.items():
        got = data.splits[split].inputs().numpy()
        assert len(got) == len(expected)
        for row, name in zip(got, expected, strict=True):
            assert np.array_equal(row, images[name]), (split, name)


def test_missing_or_incomplete_folders_say_what_was_expected_where(tmp_path):
    with pytest.raises(DatasetError, match=r"UTKFace .* not found\. Looked in: .*UTKFace"):
        load_utkface(utk_cfg(tmp_path))
    (tmp_path / "fairface").mkdir()
    (tmp_path / "fairface" / "fairface_label_train.csv").write_text("file,age\n")
    with pytest.raises(DatasetError, match=r"fairface_label_train\.csv and fairface_label_val\.csv"):
        load_fairface(RunConfig(dataset="fairface", model="cnn", data_dir=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"cifar-100-python"):
        load_cifar100(RunConfig(dataset="cifar100", model="resnet20", data_dir=str(tmp_path)))
    assert available(tmp_path) == []


def write_fairface(root):
    folder = root / "fairface"
    races = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
    for split, n in (("train", 28), ("val", 14)):
        rows = []
        for i in range(n):
            name = f"{split}/{i + 1}.jpg"
            jpeg(folder / name, size=20)
            rows.append({"file": name, "age": ["20-29", "3-9", "more than 70"][i % 3],
                         "gender": ["Male", "Female"][i % 2], "race": races[i % 7], "service_test": "True"})
        rows.append({"file": f"{split}/missing.jpg", "age": "20-29", "gender": "Male", "race": "White",
                     "service_test": "False"})
        with open(folder / f"fairface_label_{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["file", "age", "gender", "race", "service_test"])
            writer.writeheader()
            writer.writerows(rows)
    return folder


def test_fairface_val_is_the_test_split_and_groups_are_race_gender(tmp_path):
    write_fairface(tmp_path)
    cfg = RunConfig(dataset="fairface", model="cnn", data_dir=str(tmp_path), val_fraction=0.0,
                    groups=("race", "gender"))
    data = load_fairface(cfg)
    assert len(data.group_names) == 14 and data.group_names[0] == "East Asian × Male"
    assert len(data.splits["train"]) == 28 and len(data.splits["test"]) == 14
    assert data.skipped["missing image"] == 2
    assert data.num_classes == 7
    assert available(tmp_path) == ["fairface"]


def test_cifar100_reads_the_python_pickles_with_class_groups(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"class{i}".encode() for i in range(100)]
    for split, n in (("train", 200), ("test", 100)):
        labels = list(range(100)) * (n // 100)
        with open(folder / split, "wb") as fh:
            pickle.dump({b"data": RNG.integers(0, 255, (n, 3072), dtype=np.uint8), b"fine_labels": labels}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": names}, fh)
    data = load_cifar100(RunConfig(dataset="cifar100", model="resnet20", data_dir=str(tmp_path), val_fraction=0.0))
    assert data.num_groups == 100 and data.group_names[3] == "class3"
    assert len(data.splits["train"]) == 200 and len(data.splits["test"]) == 100
    assert data.splits["train"].x.shape[1:] == (3, 32, 32)
    assert torch.equal(data.splits["train"].y, data.splits["train"].g)
    assert data.flip is False


def test_cifar100_refuses_pickles_that_carry_code(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": Image.new("RGB", (1, 1))}, fh)  # an arbitrary class instance
    with pytest.raises(DatasetError, match="not the python version of CIFAR-100"):
        load_cifar100(RunConfig(dataset="cifar100", model="resnet20", data_dir=str(tmp_path)))


def test_a_short_cpu_run_on_real_layout_data(utk_root, tmp_path):
    from ceag.run.pipeline import run

    cfg = utk_cfg(utk_root, image_size=16, dense_epochs=2, prune_epochs=1, finetune_epochs=1, batch_size=16,
                  method="ceag", tolerance=0.05)
    result = run(cfg, tmp_path)
    assert result.status == "finished"
    assert result.summary["skipped_files"] == {"malformed file name": 3, "unreadable image": 1}
    _, groups = result.final("test")
    assert list(groups.group_name) == ["White", "Black", "Asian", "Indian", "Others"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_with_mixed_precision_records_the_device(utk_root, tmp_path):
    from ceag.run.pipeline import run

    cfg = utk_cfg(utk_root, image_size=16, dense_epochs=1, prune_epochs=1, finetune_epochs=1, batch_size=16,
                  device="cuda", amp=True)
    result = run(cfg, tmp_path)
    assert result.summary["device"].startswith("cuda")
    row, _ = result.final("test")
    assert 0.0 <= row["accuracy"] <= 1.0
