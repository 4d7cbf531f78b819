"""The view's URL format and merge rules, the results folder's confinement, numeric fields and job feeds:
pure functions, no running app."""

import json
import os
from pathlib import Path

import pytest

from ceag.config.errors import ConfigError
from ceag.grid import jobs
from ceag.results.files import write_json
from dashboard import _state
from dashboard._forms import parse_number
from dashboard._shared import FolderError, check_results_folder, confine

# -- the view in the URL ---------------------------------------------------------------------------------


def test_encode_and_decode_round_trip_every_kind_of_field():
    view = {"runs": ["a1", "b2"], "split": "train", "diverged": True, "clip": False, "methods": [],
            "launch_dense_epochs": "100000", "results": "sub/folder"}
    params = _state.encode(view)
    assert params == {"runs": "a1,b2", "split": "train", "diverged": "1", "clip": "0", "methods": "",
                      "launch_dense_epochs": "100000", "results": "sub/folder"}
    assert _state.decode(params) == view


def test_decode_ignores_unknown_parameters_and_bad_booleans():
    assert _state.decode({"embed": "true", "diverged": "maybe", "split": "val"}) == {"split": "val"}


def test_a_new_session_takes_its_view_from_the_url():
    view, changed = _state.merge(None, {"runs": "a1", "split": "train"}, None)
    assert view == {"runs": ["a1"], "split": "train"} and changed == set()


def test_an_emptied_url_after_a_sidebar_click_keeps_the_sessions_view():
    session = {"runs": ["a1"], "split": "train"}
    view, changed = _state.merge(session, {}, _state.encode(session))
    assert view == session and changed == set()


def test_a_link_with_parameters_sets_those_fields_and_keeps_the_others():
    session = {"runs": ["a1"], "split": "train"}
    view, changed = _state.merge(session, {"runs": "b2,c3"}, _state.encode(session))
    assert view == {"runs": ["b2", "c3"], "split": "train"} and changed == {"runs"}


def test_the_url_the_session_wrote_itself_changes_nothing():
    session = {"runs": ["a1"], "split": "val"}
    assert _state.merge(session, {"runs": "a1", "split": "val"}, {"runs": "a1", "split": "val"}) == (session, set())


def test_the_compared_runs_are_a_field_of_their_own_beside_the_selection():
    view, _ = _state.merge({"runs": ["a1"]}, {"runs": "a1", "compare": "b2,c3"}, {"runs": "a1"})
    assert view == {"runs": ["a1"], "compare": ["b2", "c3"]}
    assert _state.encode(view) == {"runs": "a1", "compare": "b2,c3"}


def test_only_the_view_module_touches_query_params():
    root = Path(__file__).resolve().parents[1]
    pages = [*(root / "dashboard").glob("*.py"), root / "app.py"]
    users = [p.name for p in pages if "st.query_params" in p.read_text()]
    assert users == ["_state.py"]


# -- folders -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["../elsewhere", "/etc", "inside/../../x"])
def test_a_results_folder_outside_the_root_is_refused(tmp_path, typed):
    root = tmp_path / "results"
    (root / "inside").mkdir(parents=True)
    with pytest.raises(FolderError, match=f"The results folder must be {root} or inside it"):
        confine(root, typed, "results")


def test_a_results_folder_inside_the_root_is_resolved(tmp_path):
    root = tmp_path / "results"
    assert confine(root, "a/b", "results") == root / "a" / "b"
    assert confine(root, str(root / "a"), "results") == root / "a"
    assert confine(root, "", "results") == root


def test_a_file_an_unreadable_folder_and_a_foreign_store_are_named(tmp_path, monkeypatch):
    import duckdb

    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(FolderError, match="is a file, not a folder"):
        check_results_folder(file)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with duckdb.connect(str(foreign / "ceag.duckdb")) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(FolderError, match="not a ceag store"):
        check_results_folder(foreign)
    check_results_folder(tmp_path / "missing")  # not there yet: an empty store, no error
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(FolderError, match="cannot be read"):
        check_results_folder(locked)


# -- numeric fields -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "lo", "hi", "message"), [
    ("100000", int, 1, 500, "invalid Dense epochs='100000': must be a whole number from 1 to 500"),
    ("-5", int, 1, 500, "invalid Dense epochs='-5': must be a whole number from 1 to 500"),
    ("2.5", int, 1, 500, "invalid Dense epochs='2.5': must be a whole number from 1 to 500"),
    ("", int, 1, 500, "invalid Dense epochs='': must be a whole number from 1 to 500"),
    ("nan", float, 0, 1, "invalid Dense epochs='nan': must be a number in [0, 1]"),
])
def test_an_invalid_number_names_the_field_the_value_and_the_range(text, kind, lo, hi, message):
    with pytest.raises(ConfigError) as err:
        parse_number("Dense epochs", text, kind=kind, lo=lo, hi=hi)
    assert str(err.value) == message


def test_a_valid_number_is_parsed_and_an_open_bound_excluded():
    assert parse_number("Seed", " 7 ", kind=int, lo=0, hi=10) == 7
    assert parse_number("Sparsity", "0.95", kind=float, lo=0, hi=1, hi_open=True) == 0.95
    with pytest.raises(ConfigError, match=r"a number in \[0, 1\)"):
        parse_number("Sparsity", "1", kind=float, lo=0, hi=1, hi_open=True)


# -- job feeds ----------------------------------------------------------------------------------------------


def feed(results: Path, job_id: str, body: dict, pid: int | None = None) -> Path:
    jdir = results / "jobs" / job_id
    write_json(jdir / "progress.json", {"job_id": job_id, **body})
    if pid is not None:
        write_json(jdir / "launcher.json", {"pid": pid})
    return jdir


def entry(status: str, **extra) -> dict:
    return {"method": "ceag", "dataset": "digits", "model": "mlp", "sparsity": 0.9, "tolerance": 0.02, "seed": 0,
            "status": status, **extra}


@pytest.mark.parametrize("job_id", ["nosuchjob000", "../../etc", "", "a/b"])
def test_a_job_without_a_feed_is_unknown(tmp_path, job_id):
    state = jobs.job_state(tmp_path, job_id)
    assert state["state"] == "unknown" and state["total"] == 0 and state["runs"] == {}


def test_a_job_with_an_unreadable_feed_is_unknown(tmp_path):
    (tmp_path / "jobs" / "broken000001").mkdir(parents=True)
    (tmp_path / "jobs" / "broken000001" / "progress.json").write_text("[1, 2")
    assert jobs.job_state(tmp_path, "broken000001")["state"] == "unknown"


def test_a_running_job_whose_process_is_gone_is_lost(tmp_path):
    feed(tmp_path, "deadjob00001", {"state": "running", "total": 1, "runs": {"r1": entry("running")}},
         pid=2**22 + 12345)
    assert jobs.job_state(tmp_path, "deadjob00001")["state"] == "lost"


def test_counts_add_up_from_the_runs_of_a_cancelled_job(tmp_path):
    # Today's feed shape: per-run statuses, no pending/running counts, cancelled runs marked at the end.
    runs = {f"r{i}": entry("finished" if i < 4 else "cancelled") for i in range(12)}
    feed(tmp_path, "cancel000001", {"state": "cancelled", "total": 12, "finished": 4, "cancelled": 8, "runs": runs,
                                    "updated_at": "2026-01-01T00:00:10+00:00"})
    state = jobs.job_state(tmp_path, "cancel000001")
    assert (state["finished"], state["cancelled"], state["pending"], state["running"]) == (4, 8, 0, 0)
    assert sum(state[s] for s in jobs.RUN_STATES) == state["total"] == 12


def test_runs_a_feed_does_not_list_yet_count_as_pending(tmp_path):
    feed(tmp_path, "starting0001", {"state": "starting", "total": 5, "runs": {"r1": entry("running")}},
         pid=os.getpid())
    state = jobs.job_state(tmp_path, "starting0001")
    assert (state["running"], state["pending"], state["total"]) == (1, 4, 5)


def test_what_a_job_is_comes_from_its_spec_when_the_feed_lacks_it(tmp_path):
    jdir = feed(tmp_path, "described001", {"state": "running", "total": 1, "runs": {}}, pid=os.getpid())
    write_json(jdir / "spec.json", {"datasets": ["digits"], "models": ["mlp"], "methods": ["nft", "ceag"]})
    state = jobs.job_state(tmp_path, "described001")
    assert (state["datasets"], state["models"], state["methods"]) == (["digits"], ["mlp"], ["nft", "ceag"])
    assert state["started_at"] and state["seconds"] is not None and state["seconds"] >= 0


def test_a_running_runs_epoch_comes_from_the_feed_or_else_its_folder(tmp_path):
    import socket

    runs = {"r1": entry("running", phase="fine-tuning", epoch=3, total_epochs=40), "r2": entry("running")}
    feed(tmp_path, "epochs000001", {"state": "running", "total": 2, "runs": runs}, pid=os.getpid())
    write_json(tmp_path / "runs" / "r2" / "status.json", {"status": "running", "pid": os.getpid(),
                                                          "host": socket.gethostname(), "epoch": 5, "total": 60})
    state = jobs.job_state(tmp_path, "epochs000001")
    assert (state["runs"]["r1"]["epoch"], state["runs"]["r1"]["total_epochs"]) == (3, 40)
    assert (state["runs"]["r2"]["epoch"], state["runs"]["r2"]["total_epochs"]) == (5, 60)
    assert json.loads((tmp_path / "jobs" / "epochs000001" / "progress.json").read_text())["runs"]["r2"].get(
        "epoch") is None  # reading never writes the feed
