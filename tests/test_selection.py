"""CEAG+VS: the tolerance selected on validation, on hand-made runs and stores."""

import json
import math

import pandas as pd
import pytest

from ceag.config.derived import candidate_configs
from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.config.run_config import RunConfig
from ceag.grid.plan import count_epochs, plan
from ceag.results.files import write_json, write_parquet
from ceag.results.layout import run_dir
from ceag.run.derived import select_tolerance
from ceag.run.pipeline import run


def _frame(rows):
    return pd.DataFrame(rows, columns=["run_id", "tolerance", "status", "accuracy", "max_excess_gap"])


def test_best_validation_accuracy_among_runs_within_the_target():
    rows = [("a", 0.02, "finished", 0.90, 0.025),   # best accuracy but above eps
            ("b", 0.01, "finished", 0.88, 0.015),
            ("c", 0.005, "finished", 0.89, 0.019),  # the best that qualifies
            ("d", 0.0025, "diverged", 0.99, 0.0)]   # diverged: never a candidate
    chosen = select_tolerance(_frame(rows), 0.02)
    assert chosen["run_id"] == "c" and chosen["qualified"]
    assert "2 of 3" in chosen["rule"]


def test_when_none_qualifies_the_smallest_validation_gap():
    rows = [("a", 0.02, "finished", 0.90, 0.06), ("b", 0.01, "finished", 0.80, 0.03),
            ("c", 0.005, "finished", 0.85, 0.04)]
    chosen = select_tolerance(_frame(rows), 0.02)
    assert chosen["run_id"] == "b" and not chosen["qualified"]


def test_ties_and_missing_values():
    rows = [("a", 0.02, "finished", 0.9, 0.01), ("b", 0.01, "finished", 0.9, 0.01),
            ("c", 0.005, "finished", math.nan, 0.0)]
    assert select_tolerance(_frame(rows), 0.02)["run_id"] == "a"  # equal accuracy: the larger tolerance
    with pytest.raises(ValueError, match="no candidate"):
        select_tolerance(_frame([("a", 0.02, "diverged", 0.9, 0.0)]), 0.02)


def test_candidates_default_to_eps_halves_quarters_unless_listed():
    cfg = RunConfig(method="ceag_vs", tolerance=0.02)
    assert cfg.vs_tolerances == (0.02, 0.01, 0.005)
    assert [c.tolerance for c in candidate_configs(cfg)] == [0.02, 0.01, 0.005]
    assert all(c.method == "ceag" and c.vs_tolerances is None for c in candidate_configs(cfg))
    held = RunConfig(method="ceag_vs", tolerance=0.02, constraint_data="val")
    assert all(c.constraint_data == "val" for c in candidate_configs(held))
    listed = RunConfig(method="ceag_vs", tolerance=0.05, vs_tolerances=[0.01, 0.05])
    assert listed.vs_tolerances == (0.05, 0.01) and listed.run_id != RunConfig(method="ceag_vs", tolerance=0.05).run_id
    with pytest.raises(ConfigError, match="vs_tolerances.*at most the target"):
        RunConfig(method="ceag_vs", tolerance=0.02, vs_tolerances=[0.05])
    with pytest.raises(ConfigError, match="val_fraction"):
        RunConfig(method="ceag_vs", tolerance=0.02, val_fraction=0.0)


def test_a_grid_cell_selects_among_its_tolerance_and_the_grids_below_it():
    spec = GridSpec(methods=("ceag", "ceag_vs"), tolerances=(0.01, 0.02, 0.05))
    cells = {c.tolerance: c for c in spec.configs() if c.method == "ceag_vs"}
    assert cells[0.01].vs_tolerances == (0.01,)
    assert cells[0.05].vs_tolerances == (0.05, 0.02, 0.01)
    tasks = plan(spec.configs())
    trained = {t.cfg.run_id for t in tasks.values() if t.kind == "run"}
    ceag = {c.run_id for c in spec.configs() if c.method == "ceag"}
    assert trained == ceag  # no extra training: the grid's CEAG cells are the candidates
    derived = [t for t in tasks.values() if t.kind == "derive"]
    assert {t.cfg.method for t in derived} == {"ceag_vs"}
    top = next(t for t in derived if t.cfg.tolerance == 0.05)
    assert {tasks[d].cfg.tolerance for d in top.deps} == {0.05, 0.02, 0.01}  # starts once its runs exist
    alone = GridSpec(methods=("ceag_vs",), tolerances=(0.01, 0.02))
    trained = {t.cfg.tolerance for t in plan(alone.configs()).values() if t.kind == "run"}
    assert trained == {0.01, 0.02} and all(t.cfg.method == "ceag" for t in plan(alone.configs()).values()
                                           if t.kind == "run")
    assert count_epochs(alone.configs())["shared"] == count_epochs(
        GridSpec(methods=("ceag",), tolerances=(0.01, 0.02)).configs())["shared"]


def _fake_run(results, cfg, *, val, test, status="finished"):
    """A finished run folder with chosen final (accuracy, max excess gap) on val and test."""
    folder = run_dir(results, cfg.run_id)
    folder.mkdir(parents=True)
    write_json(folder / "config.json", cfg.to_dict())
    rows, groups = [], []
    for split, (acc, gap) in (("train", (0.99, 0.0)), ("val", val), ("test", test)):
        rows.append({"epoch": 5, "split": split, "accuracy": acc, "loss": 0.1, "dense_accuracy": 0.95,
                     "acc_gap": 0.95 - acc, "max_excess_gap": gap, "psi_pw": gap, "sparsity": 0.9})
        for g in range(2):
            groups.append({"epoch": 5, "split": split, "group_id": g, "group_name": f"g{g}", "n": 10,
                           "accuracy": acc, "loss": 0.1, "dense_accuracy": 0.95, "acc_gap": 0.95 - acc,
                           "excess_gap": gap if g else -gap})
    write_parquet(folder / "run_metrics.parquet", pd.DataFrame(rows))
    write_parquet(folder / "group_metrics.parquet", pd.DataFrame(groups))
    write_parquet(folder / "duals.parquet", pd.DataFrame({c: pd.Series(dtype="float64") for c in
                                                          ("step", "epoch", "group_id", "multiplier", "violation")}))
    (folder / "model.pt").write_bytes(cfg.run_id.encode())
    write_json(folder / "summary.json", {
        "run_id": cfg.run_id, "status": status, "reason": None, "reported_epoch": 5, "best_epoch": None,
        "selection_split": "val", "achieved_sparsity": 0.9, "model_sparsity": 0.9, "group_names": ["g0", "g1"],
        "device": "cpu", "wall_seconds": 1.0, "epochs_trained": 5, "dense_trained": False,
        "constraint_data": {"split": "train"}, "finished_at": "2026-01-01T00:00:00+00:00"})


def test_derived_from_existing_runs_without_training(tmp_path):
    base = RunConfig(method="ceag_vs", tolerance=0.04, dataset="synthetic", device="cpu")
    cand = {c.tolerance: c for c in candidate_configs(base)}  # 0.04, 0.02, 0.01
    _fake_run(tmp_path, cand[0.04], val=(0.93, 0.05), test=(0.92, 0.06))
    _fake_run(tmp_path, cand[0.02], val=(0.91, 0.03), test=(0.90, 0.045))
    _fake_run(tmp_path, cand[0.01], val=(0.90, 0.02), test=(0.89, 0.03))
    result = run(base, tmp_path)  # would train (and fail to find a dense model quickly) if anything were missing
    j = result.to_json()
    assert j["method"] == "ceag_vs" and j["tolerance"] == 0.04
    assert j["selected_tolerance"] == 0.02  # 0.04's validation gap 0.05 > eps; of the rest, the more accurate
    assert j["test"]["accuracy"] == 0.90 and j["test"]["max_excess_gap"] == 0.045
    assert j["selection"]["qualified"] and len(j["selection"]["candidates"]) == 3
    assert result.summary["epochs_trained"] == 0 and result.summary["derived_from"] == cand[0.02].run_id
    assert (run_dir(tmp_path, base.run_id) / "model.pt").read_bytes() == cand[0.02].run_id.encode()
    again = run(base, tmp_path)
    assert again.cached and again.to_json()["selected_tolerance"] == 0.02
    json.dumps(j)


def test_ceag_vs_is_its_own_method_in_the_store_and_exports(tmp_path):
    from ceag.config.vocabulary import METHOD_LABELS
    from ceag.store import queries
    from ceag.store.ingest import ingest_run

    base = RunConfig(method="ceag_vs", tolerance=0.02, dataset="synthetic", device="cpu")
    for c, gap in zip(candidate_configs(base), (0.03, 0.01, 0.0), strict=True):
        _fake_run(tmp_path, c, val=(0.9 - gap, gap), test=(0.9, gap))
    run(base, tmp_path)
    for rid in [base.run_id, *(c.run_id for c in candidate_configs(base))]:
        ingest_run(tmp_path, rid)
    runs = queries.runs(tmp_path)
    assert set(runs["method"]) == {"ceag", "ceag_vs"}
    front = queries.frontier_summary(tmp_path, dataset="synthetic")
    assert "ceag_vs" in set(front["method"]) and METHOD_LABELS["ceag_vs"] == "CEAG+VS"
    exported = queries.export_table(tmp_path, "final", [base.run_id])
    assert set(exported["method"]) == {"ceag_vs"}


def test_cli_runs_ceag_vs_and_held_out_multipliers(tmp_path, capsys, one_thread):
    from ceag.cli import main

    tiny = ["--dataset", "synthetic", "--dense-epochs", "2", "--prune-epochs", "1", "--epochs", "2",
            "--sparsity", "0.8", "--device", "cpu", "--results", str(tmp_path), "--json"]
    assert main(["run", "--method", "ceag_vs", "--tolerance", "0.04", "--constraint-data", "val", *tiny]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["method"] == "ceag_vs" and j["selected_tolerance"] in (0.04, 0.02, 0.01)
    assert j["constraint_data"]["split"] == "val"
    assert [c["tolerance"] for c in j["selection"]["candidates"]] == [0.04, 0.02, 0.01]
    chosen = next(c for c in j["selection"]["candidates"] if c["tolerance"] == j["selected_tolerance"])
    assert j["val"]["accuracy"] == chosen["accuracy"]  # per-split numbers are the selected run's
    assert main(["run", "--method", "ceag", "--tolerance", "0.02", "--set", 'constraint_data="val"', *tiny]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"]  # trained as one of CEAG+VS's candidates
    assert again["constraint_data"]["split"] == "val"
