"""Whom pruning hurt: the four cells per group, the casualties ranked, across seeds and against NFT, their pictures,
the gallery page, the export and the report's section."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ceag.analysis.casualties import (
    CasualtyError,
    casualty_export,
    cell_counts,
    cells,
    consistent_casualties,
    kept_by,
    ranked,
    related_runs,
)
from ceag.config.run_config import RunConfig
from ceag.present.sentences.casualties import casualty_sentences, consistency_sentence, kept_sentence
from ceag.present.thumbnails import Thumb, file_thumb, gallery_html, sample_thumb, tiles_for
from ceag.results.predictions import run_predictions
from ceag.store import queries


def frame(y, dense, sparse, groups, split="test", p=None, dense_p=None, files=None):
    n = len(y)
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(n), "file": files if files is not None else [None] * n,
        "y_true": y, "group_id": groups, "y_pred": sparse,
        "p_pred": np.asarray(p if p is not None else [0.9] * n, dtype=np.float32),
        "dense_pred": pd.array(dense, dtype="Int64"),
        "dense_p_pred": np.asarray(dense_p if dense_p is not None else [0.8] * n, dtype=np.float32)})


def test_every_sample_falls_in_one_cell_and_the_cells_give_both_accuracies():
    f = frame(y=[0, 0, 1, 1, 1, 0], dense=[0, 0, 1, 0, 0, 1], sparse=[0, 1, 0, 1, 0, 1], groups=[0, 0, 0, 1, 1, 1])
    assert list(cells(f)) == ["kept", "casualty", "casualty", "recovered", "both_wrong", "both_wrong"]
    counts = cell_counts(f, "test", ["a", "b", "empty"])
    assert list(counts.n) == [3, 3, 0]
    assert counts[["kept", "casualty", "recovered", "both_wrong"]].sum(axis=1).tolist() == [3, 3, 0]
    a = counts.iloc[0]
    assert (a.kept, a.casualty, a.casualty_rate) == (1, 2, pytest.approx(2 / 3))  # of the 3 the dense model knew
    b = counts.iloc[1]
    assert (b.recovered, b.both_wrong) == (1, 2) and np.isnan(b.casualty_rate)  # the dense model knew none of b
    assert a.dense_accuracy == pytest.approx(1.0) and a.accuracy == pytest.approx(1 / 3)
    assert np.isnan(counts.iloc[2].casualty_rate)  # no samples: undefined, not zero


def test_casualties_are_ranked_by_how_sure_both_models_were_and_exported_with_names():
    f = frame(y=[1, 1, 1, 0], dense=[1, 1, 1, 0], sparse=[0, 0, 0, 0], groups=[0, 0, 1, 0],
              p=[0.6, 0.9, 0.99, 0.9], dense_p=[0.9, 0.9, 0.5, 0.9], files=["d/a.jpg", "d/b.jpg", "d/c.jpg", "d/e.jpg"])
    order = ranked(f, "test", "casualty")
    assert list(order.file) == ["d/b.jpg", "d/a.jpg", "d/c.jpg"]  # 0.81, 0.54, 0.495
    assert list(ranked(f, "test", "casualty", group_id=1).file) == ["d/c.jpg"]
    out = casualty_export(f, "test", ["men", "women"], ["cat", "dog"])
    assert list(out.columns) == ["split", "sample_id", "file", "group", "true", "dense_pred", "dense_p", "pruned_pred",
                                 "pruned_p", "confidence"]
    assert out.iloc[0][["file", "group", "true", "dense_pred", "pruned_pred"]].tolist() == [
        "d/b.jpg", "men", "dog", "dog", "cat"]
    with pytest.raises(CasualtyError, match="is not one of"):
        ranked(f, "test", "lost")
    unknown = f.assign(dense_pred=pd.array([pd.NA] * 4, dtype="Int64"))
    with pytest.raises(CasualtyError, match="no dense model's predictions"):
        cell_counts(unknown, "test", ["men", "women"])


def test_across_seeds_pie_and_what_a_mitigation_kept():
    y = [0, 0, 1, 1]
    seeds = {0: frame(y, dense=[0, 0, 1, 1], sparse=[1, 0, 0, 1], groups=[0, 0, 1, 1]),
             1: frame(y, dense=[0, 0, 1, 1], sparse=[1, 0, 1, 1], groups=[0, 0, 1, 1]),
             2: frame(y, dense=[0, 1, 1, 1], sparse=[1, 1, 0, 1], groups=[0, 0, 1, 1])}
    out = consistent_casualties(seeds, "test").set_index("sample_id")
    assert out.loc[0, "lost"] == 3 and out.loc[2, "lost"] == 2 and out.loc[1, "lost"] == 0
    assert out.loc[0, "pie"] and not out.loc[1, "pie"]  # modal dense 0 vs modal sparse 1; both modal 0
    assert out.loc[2, "pie"] == (out.loc[2, "sparse_modal"] != out.loc[2, "dense_modal"])
    text = consistency_sentence(out.reset_index(), ["a", "b"], "test")
    assert text.startswith("2 samples of the test data were lost by at least 2 of the 3 seeds' pruned models")
    mitigation = {0: frame(y, dense=[0, 0, 1, 1], sparse=[0, 0, 0, 1], groups=[0, 0, 1, 1]),
                  1: frame(y, dense=[0, 0, 1, 1], sparse=[1, 0, 1, 1], groups=[0, 0, 1, 1])}
    kept = kept_by(seeds, mitigation, "test", ["a", "b"])
    # seed 0: NFT lost samples 0 and 2, the mitigation keeps 0; seed 1: NFT lost 0, the mitigation too
    assert kept.casualties.tolist() == [2, 1] and kept.kept.tolist() == [1, 0] and set(kept.seeds) == {2}
    one = kept_by({0: seeds[0]}, {0: mitigation[0]}, "test", ["a", "b"])
    assert kept_sentence("CEAG ε=2%", "NFT", one, "a", "test", 0, kept) == (
        "On the test data, seed 0, CEAG ε=2% kept 1 of NFT's 1 casualty in a. Over the 2 seeds both methods have: "
        "1 of 2.")
    assert kept_sentence("CEAG ε=2%", "NFT", one, "b", "test", 0) == (
        "On the test data, seed 0, CEAG ε=2% kept 0 of NFT's 1 casualty in b.")
    other = {0: frame([0, 1, 1, 1], dense=[0, 0, 1, 1], sparse=[1, 0, 0, 1], groups=[0, 0, 1, 1])}
    with pytest.raises(CasualtyError, match="holds other samples"):
        consistent_casualties({**seeds, 3: other[0]}, "test")
    with pytest.raises(CasualtyError, match="no seed has runs of both"):
        kept_by(seeds, {7: mitigation[0]}, "test", ["a", "b"])


# -- on the demo ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import torch

    from ceag.run.pipeline import run

    results = tmp_path_factory.mktemp("casualties")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ids = {(m, s): run(RunConfig(method=m, sparsity=0.95, tolerance=t, seed=s), results).run_id
               for m, t in (("nft", None), ("ceag", 0.02)) for s in (0, 1)}
    finally:
        torch.set_num_threads(before)
    return results, ids


def test_the_cells_add_up_to_each_group_and_give_the_stored_accuracies(demo):
    results, ids = demo
    for rid in ids.values():
        f = run_predictions(results, rid)
        stored = queries.group_metrics(results, rid)
        names = list(stored.drop_duplicates("group_id").sort_values("group_id").group_name)
        for split in ("train", "val", "test"):
            counts = cell_counts(f, split, names).set_index("group_id")
            mine = stored[stored.split == split].set_index("group_id")
            assert (counts.n == mine.n).all()
            assert (counts[["kept", "casualty", "recovered", "both_wrong"]].sum(axis=1) == mine.n).all()
            np.testing.assert_allclose(counts.accuracy, mine.accuracy, atol=1e-9)
            np.testing.assert_allclose(counts.dense_accuracy, mine.dense_accuracy, atol=1e-9)


def test_the_demo_shows_the_rare_digits_lost_images_and_ceag_keeping_them(demo):
    results, ids = demo
    names = [f"digit {d}" for d in range(10)]
    nft = {s: run_predictions(results, ids[("nft", s)]) for s in (0, 1)}
    ceag = {s: run_predictions(results, ids[("ceag", s)]) for s in (0, 1)}
    counts = cell_counts(nft[0], "train", names)
    worst = counts.sort_values("casualty_rate", ascending=False).iloc[0]
    sentences = casualty_sentences("NFT", "train", counts)
    assert sentences[1].startswith(f"{worst.group_name}: {worst.casualty} of the ")
    kept = kept_by(nft, ceag, "train", names).set_index("group_name")
    lost = ranked(nft[0], "train", "casualty", group_id=int(worst.group_id))
    assert len(lost) == worst.casualty > 0
    assert kept.loc[worst.group_name, "kept"] <= kept.loc[worst.group_name, "casualties"]
    cfg = RunConfig(method="nft", sparsity=0.95)
    thumb = sample_thumb(cfg, "nowhere", "train", int(lost.sample_id.iloc[0]), None)
    image = Image.open(__import__("io").BytesIO(thumb.jpeg))
    assert image.size == (64, 64)
    # the picture is the sample's own input: dark where the digit's 8x8 values are high
    from ceag.datasets.loading import load_dataset

    x = load_dataset(cfg).splits["train"].x[int(lost.sample_id.iloc[0]), 0].numpy()
    grey = np.asarray(image.convert("L"), dtype=float)[4::8, 4::8]
    assert np.corrcoef(grey.ravel(), x.ravel())[0, 1] < -0.9
    from ceag.store import sync

    sync(results)
    rel = related_runs(queries.finished_configs(results), ids[("nft", 0)])
    assert rel["seeds"] == {0: ids[("nft", 0)], 1: ids[("nft", 1)]}
    assert rel["CEAG ε=2%"] == {0: ids[("ceag", 0)], 1: ids[("ceag", 1)]} and rel["NFT"] == rel["seeds"]


def test_pictures_never_raise_and_say_why_they_are_missing(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    Image.new("RGB", (200, 200), (200, 30, 30)).save(tmp_path / "UTKFace" / "ok.jpg")
    (tmp_path / "UTKFace" / "broken.jpg").write_bytes(b"not an image")
    ok = file_thumb(tmp_path, "UTKFace/ok.jpg")
    assert Image.open(__import__("io").BytesIO(ok.jpeg)).size == (96, 96)
    assert "not in the data folder" in file_thumb(tmp_path, "UTKFace/moved.jpg").reason
    assert "could not be read" in file_thumb(tmp_path, "UTKFace/broken.jpg").reason
    assert "outside the data folder" in file_thumb(tmp_path, "../etc/passwd").reason
    assert "do not name the sample's file" in file_thumb(tmp_path, None).reason
    synthetic = sample_thumb(RunConfig(dataset="synthetic"), tmp_path, "test", 0, None)
    assert synthetic.jpeg is None and "vectors" in synthetic.reason
    rows = frame([0, 1], dense=[0, 1], sparse=[1, 0], groups=[0, 0], files=['UTKFace/ok.jpg', 'a"<b>.jpg'])
    page = gallery_html(tiles_for(rows, ["x", "y"], lambda r: file_thumb(tmp_path, r.file)))
    assert page.count("data:image/jpeg;base64,") == 1 and "<b>" not in page and "&lt;b&gt;" in page
    assert "no picture: a&quot;&lt;b&gt;.jpg is not in the data folder" in page
    assert Thumb(None, "x").data_uri is None
