"""The "Run one experiment" page runs the demo setting and shows per-group numbers."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.mark.slow
def test_run_page_runs_the_demo_and_shows_group_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("CEAG_RESULTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("dashboard/run_one.py").run()
    assert not at.exception
    assert at.title[0].value == "Run one experiment"
    assert "Press **Run**" in at.info[0].value or "press **Run**" in at.info[0].value

    at.button[0].click().run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) >= {"train accuracy", "test accuracy", "train max ψ_g", "test Ψ_PW"}
    table = at.dataframe[0].value
    assert len(table) == 10 * 3  # ten groups on train, val and test
    assert set(table["split"]) == {"train", "val", "test"}
    assert (tmp_path / "runs").is_dir()
    # beside each group, the smallest gap its size can tell from zero: larger for the rare digit 8 on train
    gaps = table.set_index(["split", "group_name"])["min_detectable_gap"]
    assert gaps.notna().all() and gaps[("train", "digit 8")] > gaps[("train", "digit 0")]
