"""Groups with no samples in a split: every method trains, and every part that reads the run (diagnostics,
the JSON contract, the store, intervals, sentences, plots, the report) treats the group as undefined there.

The data is a custom folder with a ``split`` column and intersectional groups (a × b); the cell
``q × y`` has no rows in the splits a case names, in turn: train, val, test, and all three.
"""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from ceag.config.run_config import RunConfig
from ceag.run.pipeline import run

SPLITS = ("train", "val", "test")
PER_SPLIT = {"train": 12, "val": 6, "test": 6}
EMPTY = "q × y"
CASES = [("train",), ("val",), ("test",), SPLITS]
METHODS = [("nft", {}), ("nft_es", {}), ("el_rb", {}), ("ceag", {}), ("ceag_vs", {}),
           ("ceag", {"constraint_data": "val"})]


def grouped_folder(root, empty_in) -> str:
    """labels.csv (file, cls, a, b, split): two classes that differ in brightness; no ``q × y`` rows in ``empty_in``."""
    rng = np.random.default_rng(7)
    rows = []
    for split in SPLITS:
        for a in ("p", "q"):
            for b in ("x", "y"):
                if f"{a} × {b}" == EMPTY and split in empty_in:
                    continue
                for i in range(PER_SPLIT[split]):
                    cls = i % 2
                    name = f"img/{split}-{a}{b}-{i}.png"
                    pixels = np.clip(rng.normal(70 + 110 * cls, 25, (8, 8, 3)), 0, 255).astype(np.uint8)
                    (root / "img").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(root / name)
                    rows.append({"file": name, "cls": ["dark", "bright"][cls], "a": a, "b": b, "split": split})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(root)


def config(data_dir, method, **extra) -> RunConfig:
    return RunConfig(dataset="custom", data_dir=data_dir, target="cls", groups=("a", "b"), model="mlp",
                     method=method, sparsity=0.5, dense_epochs=2, prune_epochs=1, finetune_epochs=3, batch_size=16,
                     dual_lr=0.05, buffer_size=4, device="cpu", **extra)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "empty-in-" + "-".join(c))
def trained(request, tmp_path_factory):
    """(results folder, the case's empty splits, {label: RunResult}) for every method on one folder."""
    import torch

    root = tmp_path_factory.mktemp("empty")
    data_dir = grouped_folder(root / "data", request.param)
    results = root / "results"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = {}
        for method, extra in METHODS:
            label = method + ("_heldout" if extra else "")
            found[label] = run(config(data_dir, method, **extra), results)
    finally:
        torch.set_num_threads(threads)
    return results, request.param, found


def test_every_method_finishes_and_leaves_the_group_undefined_where_it_has_no_samples(trained):
    _, empty_in, found = trained
    for label, result in found.items():
        assert result.status == "finished", (label, result.summary.get("reason"))
        out = result.to_json()
        json.dumps(out, allow_nan=False)  # the JSON contract: null, never NaN
        for split in SPLITS:
            group = next(g for g in out[split]["groups"] if g["name"] == EMPTY)
            if split in empty_in:
                assert group["n"] == 0 and group["accuracy"] is None and group["excess_gap"] is None, (label, split)
            else:
                assert group["n"] == PER_SPLIT[split] and group["accuracy"] is not None, (label, split)
            assert out[split]["max_excess_gap"] is not None


def test_the_run_says_which_groups_had_no_samples_where(trained):
    _, empty_in, found = trained
    for label, result in found.items():
        report = result.summary["data_report"]
        assert report["empty_groups"] == {EMPTY: list(empty_in)}, label
        assert any(EMPTY in note and all(s in note for s in empty_in) for note in report["notes"]), report["notes"]


def test_diagnostics_hold_for_a_group_the_multipliers_never_saw(trained):
    _, empty_in, found = trained
    for label in ("el_rb", "ceag", "ceag_heldout"):
        diag = found[label].diagnostics
        assert diag["converged"] is not None, label
        groups = {g["name"]: g for g in diag["constraints"]["groups"]}
        assert set(groups) == {"p × x", "p × y", "q × x", EMPTY}
        drive = "val" if label == "ceag_heldout" else "train"
        if drive in empty_in:
            assert groups[EMPTY]["dual_steps"] == 0 and groups[EMPTY]["train_excess_gap"] is None, label
        for g in groups.values():
            assert g["max_multiplier"] is not None and math.isfinite(g["max_multiplier"])


def test_the_store_the_audit_and_the_report_read_every_such_run(trained, tmp_path):
    from ceag.analysis.audit import audit
    from ceag.present.plots.groups import group_interval_bars
    from ceag.present.report import render_html
    from ceag.present.sentences.compare import audit_sentences, headline_sentences
    from ceag.store import queries, sync

    results, empty_in, found = trained
    sync(results)
    ids = [r.run_id for r in found.values()]
    assert queries.finished_ids(results, ids) == set(ids)
    result = audit(results, ids)
    assert not [n for n in result.notes if "no intervals" in n], result.notes
    rows = result.groups[result.groups["group_name"] == EMPTY]
    for split in SPLITS:
        part = rows[rows["split"] == split]
        if split in empty_in:
            assert (part["n"] == 0).all() and part["excess_gap"].isna().all()
            assert part["excess_gap_low"].isna().all() and part["excess_gap_high"].isna().all()
        else:
            assert (part["n"] > 0).all()
    text = " ".join(audit_sentences(result) + headline_sentences(result.groups))
    assert "nan" not in text.lower()
    for metric in ("excess_gap", "accuracy"):
        group_interval_bars(result.groups, metric)
    html = render_html(result)
    assert EMPTY in html and ">nan<" not in html.lower()


PAGES = ["overview", "frontiers", "multipliers", "curves", "generalization", "compare", "runs"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_such_runs(trained, page, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ceag.store import sync
    from tests.helpers import ROOT

    results, empty_in, found = trained
    if empty_in != ("train",):
        pytest.skip("the pages are read on one case: the group the multipliers never saw")
    sync(results)
    monkeypatch.setenv("CEAG_RESULTS", str(results))
    ids = [r.run_id for r in found.values()]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(runs=",".join(ids), run=found["ceag"].run_id, dataset="custom", model="mlp")
    at.run()
    if page != "overview":
        at.switch_page(f"dashboard/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(str(m.value) for m in [*at.markdown, *at.caption, *at.info, *at.warning])
    assert "nan" not in shown.replace("nano", "").lower().split(), shown
