"""Limits for shared machines: launch caps, the Launch password, the data folder sandbox, no shell,
weights-only checkpoints (docs/dashboard.md, "On a shared machine")."""

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.grid import jobs
from ceag.grid.jobs import LaunchLimits, check_limits
from ceag.results.files import load_torch, write_json

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIMIT_VARS = ("CEAG_MAX_GRID_CELLS", "CEAG_MAX_EPOCHS", "CEAG_MAX_JOBS")
SMALL = {"dense_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1}


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """No limit variables set; results and data folders of this test."""
    for name in LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CEAG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("CEAG_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    return tmp_path / "results"


# -- LaunchLimits.from_env ---------------------------------------------------------------------------
def test_limits_default_to_the_documented_values(env):
    assert LaunchLimits.from_env() == LaunchLimits(max_cells=200, max_epochs=500, max_jobs=2)


def test_limits_are_read_from_the_environment(env, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_GRID_CELLS", "7")
    monkeypatch.setenv("CEAG_MAX_EPOCHS", "30")
    monkeypatch.setenv("CEAG_MAX_JOBS", "1")
    assert LaunchLimits.from_env() == LaunchLimits(max_cells=7, max_epochs=30, max_jobs=1)


@pytest.mark.parametrize("name", LIMIT_VARS)
@pytest.mark.parametrize("raw", ["abc", "2.5", "", "0", "-3", "1e3"])
def test_a_limit_that_is_not_a_positive_integer_names_the_variable(env, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=rf"invalid {name}='{raw}': must be a positive integer") as info:
        LaunchLimits.from_env()
    assert info.value.field == name


# -- check_limits -------------------------------------------------------------------------------------
def test_check_limits_refuses_a_grid_with_more_cells_than_allowed():
    spec = GridSpec(methods=("nft", "ceag"), sparsities=(0.9, 0.95), tolerances=(0.01, 0.02), settings=SMALL)
    assert spec.size() == 6
    check_limits(spec, LaunchLimits(max_cells=6), running_jobs=0)  # at the limit: allowed
    with pytest.raises(ConfigError, match=r"invalid grid='6 cells': at most 5 cells per grid"):
        check_limits(spec, LaunchLimits(max_cells=5), running_jobs=0)


def test_check_limits_refuses_a_run_with_more_epochs_than_allowed():
    spec = GridSpec(methods=("nft",), settings={"dense_epochs": 10, "prune_epochs": 5, "finetune_epochs": 6})
    check_limits(spec, LaunchLimits(max_epochs=21), running_jobs=0)  # dense + pruning + fine-tuning = 21
    with pytest.raises(ConfigError, match=r"invalid epochs=21: at most 20 epochs per run"):
        check_limits(spec, LaunchLimits(max_epochs=20), running_jobs=0)


def test_check_limits_refuses_a_launch_while_max_jobs_run():
    spec = GridSpec(methods=("nft",), settings=SMALL)
    check_limits(spec, LaunchLimits(max_jobs=2), running_jobs=1)
    with pytest.raises(ConfigError, match=r"invalid jobs=2: at most 2 jobs may run at once; wait or cancel one"):
        check_limits(spec, LaunchLimits(max_jobs=2), running_jobs=2)
    with pytest.raises(ConfigError, match=r"at most 1 jobs"):
        check_limits(spec, LaunchLimits(max_jobs=1), running_jobs=3)


# -- the Launch page ------------------------------------------------------------------------------------
def launch_page(*, secrets: dict | None = None, session: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page("dashboard/launch.py").run()
    return at


def recorder(calls: list):
    def launch(spec, results, **kwargs):
        calls.append(spec)
        return "recorded0001"

    return launch


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def buttons(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def test_launch_page_shows_an_error_box_for_a_grid_over_the_cell_limit(env, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_GRID_CELLS", "2")
    calls = []
    monkeypatch.setattr(jobs, "launch", recorder(calls))
    at = launch_page()
    assert not at.exception, [e.value for e in at.exception]
    # the default widgets: four methods at two sparsities, 8 runs
    assert errors(at) == ["invalid grid='8 cells': at most 2 cells per grid; split it or raise the limit"]
    assert "Launch" not in buttons(at)  # nothing to launch
    assert calls == []
    assert not (env / "jobs").exists()


def test_launch_page_refuses_a_run_over_the_epoch_limit_when_launch_is_clicked(env, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_EPOCHS", "50")  # inputs are capped at 50 each, but 50 + 20 + 40 > 50
    calls = []
    monkeypatch.setattr(jobs, "launch", recorder(calls))
    at = launch_page()
    [button] = [b for b in at.button if b.label == "Launch"]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == ["invalid epochs=110: at most 50 epochs per run (dense + pruning + fine-tuning) from the "
                          "browser"]
    assert calls == [] and not at.success


def test_launch_page_refuses_a_launch_while_max_jobs_run(env, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_JOBS", "1")
    jdir = env / "jobs" / "busyjob00001"
    write_json(jdir / "progress.json", {"job_id": "busyjob00001", "state": "running", "total": 3, "finished": 1,
                                        "runs": {}})
    write_json(jdir / "launcher.json", {"pid": os.getpid()})  # alive, so the job counts as running
    calls = []
    monkeypatch.setattr(jobs, "launch", recorder(calls))
    at = launch_page()
    widget = [t for t in at.text_input if t.label == "Sparsities"][0]
    widget.set_value("0.9").run()
    [button] = [b for b in at.button if b.label == "Launch"]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == ["invalid jobs=1: at most 1 jobs may run at once; wait or cancel one"]
    assert calls == []


def test_launch_page_under_the_limits_does_launch(env, monkeypatch):
    """The control for the refusals above: the same page with room to spare calls launch once."""
    calls = []
    monkeypatch.setattr(jobs, "launch", recorder(calls))
    at = launch_page()
    [button] = [b for b in at.button if b.label == "Launch"]
    button.click().run()
    assert not at.exception and not errors(at)
    assert len(calls) == 1 and calls[0].size() == 8


def test_launch_page_with_misconfigured_limits_says_so(env, monkeypatch):
    monkeypatch.setenv("CEAG_MAX_JOBS", "many")
    at = launch_page()
    assert not at.exception
    assert errors(at) == ["The server's launch limits are misconfigured: invalid CEAG_MAX_JOBS='many': must be a "
                          "positive integer"]
    assert "Launch" not in buttons(at) and not at.multiselect


def test_launch_page_asks_for_the_password_before_showing_the_form(env, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "launch", recorder(calls))
    at = launch_page(secrets={"launch_password": "pw"})
    assert not at.exception
    assert [t.label for t in at.main.text_input] == ["Password to launch runs"]
    assert not at.multiselect and "Launch" not in buttons(at) and not at.info

    at.text_input[0].set_value("PW").run()
    assert errors(at) == ["Wrong password."]
    assert not at.multiselect and "Launch" not in buttons(at)

    [t for t in at.text_input if t.label == "Password to launch runs"][0].set_value("pw").run()
    assert not errors(at)
    assert {m.label for m in at.multiselect} == {"Models", "Methods", "Pruning criteria"} and "Launch" in buttons(at)
    assert at.session_state["launch_unlocked"] is True
    assert calls == []


def test_without_a_password_secret_the_form_shows_at_once(env):
    at = launch_page()
    assert "Password to launch runs" not in [t.label for t in at.text_input]
    assert "Launch" in buttons(at)


# -- the data folder typed in the sidebar stays inside CEAG_DATA --------------------------------------
# AppTest runs app.py's sidebar only on the first run of a multipage app (later runs execute the page
# alone), so the typed value comes in the URL (the view's "data" field), as a copied link would bring it.
@pytest.mark.parametrize("typed", ["../../etc", "/etc", "inside/../../..", "link-to-etc"])
def test_a_data_folder_outside_ceag_data_is_refused(env, typed):
    root = (env.parent / "data").resolve()
    (root / "inside").mkdir()
    (root / "link-to-etc").symlink_to("/etc")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["data"] = typed
    at.run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [f"The data folder must be {root} or inside it."]
    assert [t.value for t in at.sidebar.text_input if t.label == "Data folder"] == [typed]  # kept as typed


def test_a_data_folder_inside_ceag_data_is_accepted(env):
    root = (env.parent / "data").resolve()
    (root / "inside").mkdir()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["data"] = "inside"
    at.run()
    assert not at.exception and not at.error
    from dashboard._shared import confine

    assert at.session_state["_view"]["data"] == "inside"  # what the pages read, resolved inside the root:
    assert confine(root, "inside", "data") == root / "inside"


# -- no shell -----------------------------------------------------------------------------------------------
class FakeProcess:
    pid = 424242


def test_jobs_start_processes_with_an_argument_list_never_a_shell(env, monkeypatch):
    seen = []

    def popen(*args, **kwargs):
        seen.append((args, kwargs))
        return FakeProcess()

    monkeypatch.setattr(jobs.subprocess, "Popen", popen)
    hostile = "; touch /tmp/ceag-pwned #"
    spec = GridSpec(methods=("nft",), seeds=(0,), settings={**SMALL, "data_dir": hostile})
    job_id = jobs.launch(spec, env, workers=1)
    [(args, kwargs)] = seen
    cmd = args[0] if args else kwargs["args"]
    assert isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)
    assert kwargs.get("shell", False) is not True
    assert cmd[:4] == [sys.executable, "-m", "ceag", "grid"]
    assert "--job-id" in cmd and cmd[cmd.index("--job-id") + 1] == job_id
    assert not any(hostile in a for a in cmd)  # settings travel in the spec file, not on a command line
    assert kwargs.get("start_new_session") is True  # detached: closing the app does not stop it
    spec_file = Path(cmd[cmd.index("--spec") + 1])
    assert GridSpec.from_file(spec_file) == spec


def test_no_module_of_the_package_or_pages_asks_for_a_shell():
    sources = [*(ROOT / "ceag").rglob("*.py"), *(ROOT / "dashboard").glob("*.py"), ROOT / "app.py"]
    offenders = [str(p) for p in sources
                 if "shell=True" in p.read_text() or "os.system(" in p.read_text() or "os.popen(" in p.read_text()]
    assert offenders == []


# -- checkpoints load weights-only -----------------------------------------------------------------------------
class Gadget:
    """Any object that is not a tensor or a plain container."""

    def __init__(self):
        self.value = 3


class Payload:
    """Unpickling this creates a folder: proof that the loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_load_torch_refuses_an_arbitrary_object(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Gadget()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_torch(path)


def test_load_torch_never_runs_code_from_a_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_torch(path)
    assert not marker.exists()
    # the payload is live: a plain torch.load would have run it
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_load_torch_still_loads_real_checkpoints(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"model": {"w": torch.arange(3.0)}, "state": {"epoch": 2, "history": [0.5, 0.25]}, "method": None}
    torch.save(state, path)
    loaded = load_torch(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["state"] == state["state"]


def test_a_run_resumes_only_from_a_weights_only_checkpoint(tmp_path):
    """A checkpoint.pt planted in a run folder is loaded weights-only by ``run``: the run fails, no code runs."""
    from ceag.config.run_config import RunConfig
    from ceag.results.files import read_status
    from ceag.results.layout import run_dir
    from ceag.run.pipeline import run

    cfg = RunConfig(dataset="synthetic", model="mlp", method="nft", sparsity=0.8, device="cpu", **SMALL)
    marker = tmp_path / "pwned"
    folder = run_dir(tmp_path / "results", cfg.run_id)
    folder.mkdir(parents=True)
    torch.save({"model": Payload(marker)}, folder / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):
        run(cfg, tmp_path / "results")
    assert not marker.exists()
    assert not (folder / "summary.json").exists()
    status = read_status(folder)
    assert status["status"] == "failed" and "UnpicklingError" in status["reason"]
