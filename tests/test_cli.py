"""The command line's JSON contract and its error messages."""

import json
import subprocess
import sys

import pytest

from ceag.config.run_config import RunConfig
from tests.helpers import ROOT, ceag_cli, subprocess_env


@pytest.mark.slow
def test_run_json_contract(tmp_path):
    proc = ceag_cli("run", "--method", "ceag", "--sparsity", "0.95", "--tolerance", "0.02", "--json",
                    results=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("run_id", "method", "sparsity", "achieved_sparsity", "tolerance"):
        assert key in out
    assert out["method"] == "ceag" and out["sparsity"] == 0.95 and out["tolerance"] == 0.02
    assert 0.94 <= out["achieved_sparsity"] <= 0.96
    assert out["cached"] is False
    for split in ("train", "val", "test"):
        s = out[split]
        for key in ("accuracy", "dense_accuracy", "max_excess_gap", "psi_pw"):
            assert 0 <= s[key] <= 1 if key != "max_excess_gap" else -1 <= s[key] <= 1
        assert [g["group"] for g in s["groups"]] == list(range(10))
        g8 = s["groups"][8]
        assert set(g8) == {"group", "name", "n", "accuracy", "dense_accuracy", "excess_gap"}
        assert g8["name"] == "digit 8"
        # the excess gap is the group's gap minus the overall gap
        overall_gap = s["dense_accuracy"] - s["accuracy"]
        assert g8["excess_gap"] == pytest.approx(g8["dense_accuracy"] - g8["accuracy"] - overall_gap)
    assert out["train"]["groups"][8]["n"] == RunConfig().rare_train_count  # the rare group in train
    diag = out["diagnostics"]
    assert diag["converged"] is True and set(diag["spread"]) == {"train", "val", "test"}
    assert set(diag["spread"]["test"]) == {"accuracy", "max_excess_gap"}
    assert diag["constraints_active"] is True and diag["max_multiplier"] > 0

    again = ceag_cli("run", "--method", "ceag", "--sparsity", "0.95", "--tolerance", "0.02", "--json",
                     results=tmp_path)
    cached = json.loads(again.stdout)
    assert cached["cached"] is True and cached["run_id"] == out["run_id"]
    assert cached["train"] == out["train"] and cached["diagnostics"] == out["diagnostics"]

    # the table output says whether the run settled and whether its constraints acted
    table = ceag_cli("run", "--method", "ceag", "--sparsity", "0.95", "--tolerance", "0.02", results=tmp_path)
    assert "settled over epochs 53–60" in table.stdout and "constraints acted" in table.stdout
    listing = ceag_cli("ls", results=tmp_path)
    header, row = listing.stdout.splitlines()[:2]
    assert header.split()[-2:] == ["settled", "constraints"] and row.split()[-2:] == ["yes", "acted"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "1.0"], r"invalid sparsity=1\.0: must be a number in \[0\.0, 1\.0\)"),
        (["--method", "ceag", "--tolerance", "-0.1"], r"invalid tolerance=-0\.1"),
        (["--method", "magic"], r"invalid choice: 'magic'.*nft.*ceag"),
        (["--tolerance", "abc"], r"invalid float value: 'abc'"),
        (["--set", "nonsense=1"], r"unknown setting; known: .*sparsity"),
        (["--set", "batch_size"], r"expected KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    import re

    proc = ceag_cli("run", *args, results=tmp_path)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_help_explains_every_option():
    proc = ceag_cli("run", "--help")
    assert proc.returncode == 0
    for option in ("--method", "--sparsity", "--tolerance", "--seed", "--dataset", "--model",
                   "--epochs", "--results", "--json"):
        assert option in proc.stdout


def test_output_piped_into_a_command_that_stops_reading_is_no_error(tmp_path):
    """``ceag ls | head -1`` closes the pipe early: the command ends quietly, without ``error: Broken pipe``."""


    code = ("import sys\nfrom ceag.cli import main\n"
            "class Closed:\n"
            "    def write(self, text): raise BrokenPipeError(32, 'Broken pipe')\n"
            "    def flush(self): pass\n"
            "    def fileno(self): return sys.__stdout__.fileno()\n"
            "sys.stdout = Closed()\n"
            "sys.exit(main(['run', '--dense-epochs', '1', '--prune-epochs', '1', '--epochs', '1', '--results', "
            f"{str(tmp_path)!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=subprocess_env())
    assert out.returncode == 0, out.stderr
    assert "Broken pipe" not in out.stderr and "error" not in out.stderr
