"""The Curves page and the diagnostics on the Frontiers and Multipliers pages, under ``AppTest``."""

import json

import pytest

from ceag.config.grid_spec import GridSpec
from ceag.store import queries
from tests.test_app_pages import charts, open_page, seed, values

SETTINGS = {"dense_epochs": 20, "prune_epochs": 5, "finetune_epochs": 5}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """NFT and CEAG with the default schedule, and NFT with a constant lr (which does not settle here)."""
    results = tmp_path_factory.mktemp("curves")
    seed(results, GridSpec(methods=("nft", "ceag"), sparsities=(0.95,), tolerances=(0.02,), settings=SETTINGS))
    # six rare training images: at this short schedule the constant lr 0.5 swings the rare digit's ψ_g
    seed(results, GridSpec(methods=("nft",), sparsities=(0.95,), settings={**SETTINGS, "lr_milestones": [],
                                                                            "lr": 0.5, "rare_train_count": 6}))
    return results


@pytest.fixture
def seeded(store, monkeypatch):
    monkeypatch.setenv("CEAG_RESULTS", str(store))
    return store


def open_curves(**params):
    at = open_page("overview", **params)
    at.switch_page("dashboard/curves.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Per-group curves"]
    return at


def test_curves_page_plots_every_group_per_split_and_says_whether_the_run_settled(seeded):
    runs = queries.runs(seeded)
    assert set(runs.converged.astype(bool)) == {True, False}  # the store has both kinds
    for r in runs.itertuples():
        at = open_curves(runs=r.run_id)
        assert at.selectbox[0].value == r.run_id
        fig = charts(at)[0]
        curves = queries.group_curves(seeded, r.run_id)
        train = curves[(curves.split == "train") & (curves.group_name == "digit 8")].sort_values("epoch")
        trace = next(t for t in fig["data"] if t["name"] == "digit 8" and t["xaxis"] == "x")
        assert list(values(trace["x"])) == list(train.epoch)
        assert values(trace["y"]) == pytest.approx(100 * train.accuracy.to_numpy())
        assert len(fig["data"]) == 2 * 2 * 10  # two splits x two metrics x ten groups
        warnings = " ".join(w.value for w in at.warning)
        if r.converged:
            assert "did not settle" not in warnings
            assert any(s.value.startswith("Settled over epochs") for s in at.success)
        else:
            assert "This run did not settle" in warnings and "lower lr (now 0.5)" in warnings
        if r.method == "ceag":
            assert any(shape.get("y0") == pytest.approx(2.0) for shape in fig["layout"]["shapes"])  # ε marked


def test_frontiers_page_flags_unsettled_runs_with_advice(seeded):
    at = open_page("frontiers", split="test")
    text = " ".join(w.value for w in at.warning)
    assert "1 of 3 runs in this view did not settle" in text and "Lower lr (now 0.5)" in text


def test_multipliers_page_shows_the_constraint_diagnostic(seeded):
    ceag = queries.runs(seeded, method="ceag").run_id.iloc[0]
    at = open_page("multipliers", runs=ceag)
    stored = queries.diagnostics(seeded, ceag)
    diag = json.loads(stored["run"]["diagnostics"])
    assert any(c.value.startswith("Constraints acted" if diag["constraints_active"] else "Constraints never acted")
               for c in at.caption)
    table = at.dataframe[0].value
    assert list(table.index) == list(stored["constraint_groups"].group_name)
    expected = stored["constraint_groups"].violated_share.to_numpy()
    assert table["violated_share"].to_numpy() == pytest.approx(expected, nan_ok=True)


def test_launch_page_explains_the_utkface_cpu_preset_when_utkface_is_there(tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "data" / "UTKFace"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "26_0_2_20170104023102422.jpg.chip.jpg")
    monkeypatch.setenv("CEAG_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CEAG_RESULTS", str(tmp_path / "results"))
    at = open_page("launch")
    dataset = next(s for s in at.selectbox if s.label == "Dataset")
    dataset.select("utkface").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "149 steps per epoch and 2,235 dual steps" in text and "dual step 0.01" in text
    assert {"Launch utkface_cpu", "Launch utkface_cpu_intersectional"} <= {b.label for b in at.button}
    # the presets' model is offered by the form too
    models = next(s for s in at.multiselect if s.label == "Models")
    assert "cnn_fc" in models.options
