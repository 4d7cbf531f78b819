"""The gallery page, the casualty export and the report's section on runs of a folder of face images."""

import csv
import re
import shutil

import pandas as pd
import pytest

from ceag.analysis.casualties import cell_counts, ranked
from ceag.analysis.verdicts import detectable_gaps
from ceag.config.run_config import RunConfig
from ceag.results.predictions import run_names, run_predictions
from tests.helpers import ceag_main, open_app_page, write_utkface

SETTINGS = dict(dataset="utkface", model="cnn", image_size=12, dense_epochs=3, prune_epochs=1, finetune_epochs=1,
                val_fraction=0.0, sparsity=0.9, batch_size=16)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    import torch

    from ceag.run.pipeline import run

    root = write_utkface(tmp_path_factory.mktemp("data"), per_race=12)
    results = tmp_path_factory.mktemp("results")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ids = {m: run(RunConfig(method=m, tolerance=t, data_dir=str(root), **SETTINGS), results).run_id
               for m, t in (("nft", None), ("ceag", 0.02))}
    finally:
        torch.set_num_threads(before)
    return root, results, ids


def gallery(monkeypatch, data, results, **params):
    return open_app_page(monkeypatch, "casualties", "What pruning broke", results, data, **params)


def pictures(at) -> list[str]:
    return [h.proto.body for h in at.get("html")]


def test_the_gallery_shows_a_groups_lost_faces_with_their_files_beside_the_other_method(faces, monkeypatch):
    root, results, ids = faces
    frame = run_predictions(results, ids["nft"])
    groups, _ = run_names(results, ids["nft"])
    counts = cell_counts(frame, "test", groups)  # the page opens on test, as the other pages do
    hit = counts.sort_values(["casualty_rate", "casualty"], ascending=False).iloc[0]
    at = gallery(monkeypatch, root, results, gallery=ids["nft"])
    assert [s.value for s in at.selectbox if s.label == "Group"] == [hit.group_name]
    assert [s.value for s in at.selectbox if s.label == "Beside it"] == ["CEAG ε=2%"]
    table = at.dataframe[0].value.set_index("group")
    assert table.loc[hit.group_name, "n"] == hit.n
    assert table.loc[hit.group_name, "casualties"] == hit.casualty
    gaps = detectable_gaps(frame[frame.split == "test"]).set_index("group_id")["min_detectable_gap"]
    assert table.loc[hit.group_name, "min detectable gap (points)"] == pytest.approx(100 * gaps[hit.group_id])
    mine = pictures(at)[0]
    lost = ranked(frame, "test", "casualty", int(hit.group_id))
    assert mine.count("data:image/jpeg;base64,") == min(24, len(lost)) > 0
    first = lost.file.iloc[0]
    assert first.rsplit("/", 1)[1][:12] in mine and f"{first};" in mine  # caption and hover text name the file
    assert "CEAG ε=2%: right" in mine or "CEAG ε=2%: wrong" in mine
    text = " ".join(m.value for m in at.markdown)
    assert f"{hit.group_name}: {hit.casualty} of the" in text

    # what is shown is part of the link: pictures per run and which cell
    at = gallery(monkeypatch, root, results, gallery=ids["nft"], gallery_pictures="6", gallery_show="recovered")
    assert [s.value for s in at.selectbox if s.label == "Pictures"] == ["6"]
    assert [r.value for r in at.radio if r.label == "Show"] == ["recovered"]
    recovered = ranked(frame, "test", "recovered", int(hit.group_id))
    assert " ".join(pictures(at)).count("data:image/jpeg") <= 2 * 6
    assert any(f"{len(recovered):,} recovered in {hit.group_name}" in m.value for m in at.markdown)

    # a file moved since the run: a grey box with the reason, the rest as before
    moved = root / first
    shutil.move(moved, moved.with_suffix(".bak"))
    try:
        at = gallery(monkeypatch, root, results, gallery=ids["nft"])
        assert "no picture: " in pictures(at)[0] and "is not in the data folder" in pictures(at)[0]
        assert any("could not be shown" in c.value for c in at.caption)
    finally:
        shutil.move(moved.with_suffix(".bak"), moved)
    # no data folder at all: the counts still show
    empty = root.parent / "elsewhere"
    empty.mkdir(exist_ok=True)
    at = gallery(monkeypatch, empty, results, gallery=ids["nft"])
    assert at.dataframe[0].value.set_index("group").loc[hit.group_name, "n"] == hit.n
    assert "data:image" not in " ".join(pictures(at))


def test_export_casualties_and_the_reports_section(faces, tmp_path):
    root, results, ids = faces
    out = tmp_path / "lost.csv"
    code, _, err = ceag_main("export", "--run", ids["nft"], "--casualties", "--split", "train", "--out", out,
                             "--results", results)
    assert code == 0, err
    table = pd.read_csv(out)
    frame = run_predictions(results, ids["nft"])
    assert len(table) == len(ranked(frame, "train", "casualty")) and table.file.str.startswith("UTKFace/").all()
    assert table.confidence.is_monotonic_decreasing and set(table.group) <= {"White", "Black", "Asian", "Indian",
                                                                            "Others"}
    with open(out, newline="") as fh:
        assert next(csv.reader(fh))[:4] == ["split", "sample_id", "file", "group"]
    code, _, err = ceag_main("export", "--run", ids["nft"], "--casualties", "--split", "nope", "--results", results)
    assert code == 2 and "invalid --split='nope': a split of run" in err

    report = tmp_path / "r.html"
    code, _, err = ceag_main("report", "--runs", f"{ids['nft']},{ids['ceag']}", "--out", report, "--n-boot", "100",
                             "--thumbnails", "2", "--thumbnails-split", "train", "--data-dir", root,
                             "--results", results)
    assert code == 0, err
    page = report.read_text()
    assert "<h2>What pruning broke</h2>" in page
    section = page.split("<h2>What pruning broke</h2>", 1)[1]
    strips = re.findall(r'<td class="text"><div style="display:flex.*?</div></td>', section, re.S)
    assert strips and all(s.count("data:image/jpeg") <= 2 for s in strips)
    for part in section.split("<h3>")[1:]:  # pictures on the chosen split only
        assert ("data:image/jpeg" in part) == (part.split("</h3>")[0].endswith(", train") and "<img" in part)
    code, _, err = ceag_main("report", "--runs", f"{ids['nft']},{ids['ceag']}", "--out", report, "--n-boot", "100",
                             "--thumbnails", "0", "--data-dir", root, "--results", results)
    assert code == 0 and "data:image/jpeg" not in report.read_text() and "No pictures." in report.read_text()
    code, _, err = ceag_main("report", "--runs", ids["nft"], "--out", report, "--thumbnails", "-1",
                             "--results", results)
    assert code == 2 and "--thumbnails" in err and "Traceback" not in err
