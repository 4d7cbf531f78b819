"""The speed–fairness frontier and each run's footprint: the store's query, the cells and chart, the pages that
show them and the report's section, on hand-made stores whose footprints are known.

Two machines time the runs of the mixed store (an AMD EPYC with 1 thread, an Intel Xeon with 4): their latencies
are never on one chart. One run has no footprint (made before runs measured one): it is counted, never drawn.
"""

import json

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.audit import Audit
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.config.run_config import RunConfig
from ceag.present.footprint import (
    available_measures,
    export_command,
    footprint_lines,
    footprint_table,
    ratios,
    speed_cells,
    timing_groups,
)
from ceag.present.plots.speed import speed_frontier, speed_table
from ceag.present.report import render_html, speed_section
from ceag.store import connect, queries
from ceag.store.ingest import RUN_COLUMNS, footprint_columns, insert_run
from tests.helpers import ROOT

EPYC = {"processor": "AMD EPYC", "cpu_count": 2, "threads": 1}
XEON = {"processor": "Intel Xeon", "cpu_count": 16, "threads": 4}
DENSE = {"params": 8000, "macs": 8000, "size_bytes": 32000, "cpu_b1": 0.04, "cpu_b64": 0.4}


def record(pruning: str, keep: float, machine: dict, speed: float = 2.0) -> dict:
    """A footprint as ``ceag.run.measure`` writes it: the pruned model keeps ``keep`` of the dense model's
    parameters and MACs and runs ``speed`` times faster (unstructured pruning: all of them, as fast)."""
    shrinks = pruning.startswith("channels")
    keep, speed = (keep, speed) if shrinks else (1.0, 1.0)
    pruned = {"params": int(DENSE["params"] * keep), "macs": int(DENSE["macs"] * keep),
              "size_bytes": int(DENSE["size_bytes"] * keep), "cpu_b1": DENSE["cpu_b1"] / speed,
              "cpu_b64": DENSE["cpu_b64"] / speed}

    def figures(f):
        return {"params": f["params"], "macs": f["macs"], "ops": f["macs"], "size_bytes": f["size_bytes"],
                "latency_ms": {"cpu_b1": f["cpu_b1"], "cpu_b64": f["cpu_b64"]}}

    return {"pruning": pruning, "model": "rebuilt" if shrinks else "masked", "input_shape": [1, 8, 8],
            "weight_sparsity": 0.5, "channel_sparsity": 1 - keep if shrinks else 0.0,
            "channels": {"total": 128, "removed": round(128 * (1 - keep)) if shrinks else 0,
                         "pruned": round(128 * (1 - keep)) if shrinks else 0},
            "dense": figures(DENSE), "pruned": figures(pruned),
            "latencies": [{"model": m, "batch": b, "device": "cpu", "threads": machine["threads"],
                           "median_ms": f[f"cpu_b{b}"]} for m, f in (("dense", DENSE), ("pruned", pruned))
                          for b in (1, 64)],
            "machine": {"platform": "Linux", "processor": machine["processor"], "cpu_count": machine["cpu_count"],
                        "torch_version": "2.4.1", "threads": machine["threads"], "cuda_device": None},
            "files": None, "error": None, "seconds": {"rebuild": 0.01, "measure": 0.02}}


def add_run(con, method: str, sparsity: float, *, pruning: str = "channels", seed: int = 0, footprint=None,
            gap: float = 0.05, accuracy: float = 0.85) -> str:
    cfg = RunConfig(dataset="digits", model="mlp", method=method, sparsity=sparsity, seed=seed, pruning=pruning,
                    tolerance=0.02 if method == "ceag" else None)
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(run_id=cfg.run_id, status="finished", dataset="digits", model="mlp", method=method,
               sparsity=sparsity, achieved_sparsity=sparsity, tolerance=cfg.tolerance, seed=seed, reported_epoch=4,
               config=cfg.canonical_json(), data_key="d", dense_key="d", prune_key=f"p{sparsity}",
               **footprint_columns(footprint))
    metrics, groups = [], []
    for split in ("train", "test"):
        metrics.append({"run_id": cfg.run_id, "epoch": 4, "split": split, "accuracy": accuracy, "loss": 0.1,
                        "dense_accuracy": 0.9, "acc_gap": 0.9 - accuracy, "max_excess_gap": gap, "psi_pw": 2 * gap,
                        "sparsity": sparsity})
        for gid, psi in enumerate((gap, -gap)):
            groups.append({"run_id": cfg.run_id, "epoch": 4, "split": split, "group_id": gid,
                           "group_name": f"digit {gid}", "n": 50, "accuracy": accuracy - psi, "loss": 0.1,
                           "dense_accuracy": 0.9, "acc_gap": 0.9 - accuracy + psi, "excess_gap": psi})
    insert_run(con, row, {"run_metrics": pd.DataFrame(metrics), "group_metrics": pd.DataFrame(groups)}, None,
               "digits")
    return cfg.run_id


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Channel runs of NFT and CEAG at 0.5 and 0.75 on the EPYC, two more on the Xeon (seed 1), two unstructured
    runs on the EPYC and one CEAG run without a footprint."""
    results = tmp_path_factory.mktemp("speed")
    ids = {}
    with connect(results, write=True) as con:
        for method, gap in (("nft", 0.12), ("ceag", 0.02)):
            for sparsity, keep, speed in ((0.5, 0.3, 1.6), (0.75, 0.1, 2.5)):
                ids[(method, sparsity, "epyc")] = add_run(con, method, sparsity, footprint=record(
                    "channels", keep, EPYC, speed), gap=gap)
            ids[(method, 0.5, "xeon")] = add_run(con, method, 0.5, seed=1, footprint=record("channels", 0.3, XEON,
                                                                                              4.0), gap=gap)
            ids[(method, 0.5, "unstructured")] = add_run(con, method, 0.5, pruning="unstructured", seed=2,
                                                         footprint=record("unstructured", 1.0, EPYC), gap=gap)
        ids["old"] = add_run(con, "ceag", 0.9, seed=3)
    return results, ids


def test_the_query_returns_footprint_columns_and_leaves_out_runs_without_one(mixed):
    results, ids = mixed
    frame, unmeasured = queries.speed_frontier(results, dataset="digits", split="test")
    assert unmeasured == 1 and ids["old"] not in set(frame.run_id)
    assert len(frame) == len(ids) - 1
    for column in queries.FOOTPRINT_FIGURES:
        assert column in frame and f"dense_{column}" in frame
    row = frame.set_index("run_id").loc[ids[("nft", 0.75, "epyc")]]
    assert (row.pruning, row.params, row.dense_params, row.macs) == ("channels", 800, 8000, 800)
    assert row.latency_cpu_b64_ms == pytest.approx(0.4 / 2.5) and row.dense_latency_cpu_b64_ms == 0.4
    assert (row.processor, str(row.cpu_count), row.torch_version, row.latency_threads) == ("AMD EPYC", "2", "2.4.1",
                                                                                            1)
    assert row.channel_sparsity == pytest.approx(0.9) and row.max_excess_gap == pytest.approx(0.12)
    assert pd.isna(row.cuda_device) and pd.isna(row.latency_gpu_b64_ms)
    assert set(frame.set_index("run_id").loc[[ids[("ceag", 0.5, "unstructured")]], "pruning"]) == {"unstructured"}
    assert queries.speed_frontier(results, dataset="digits", model="cnn")[0].empty


def test_a_store_of_older_runs_only_counts_them(tmp_path):
    with connect(tmp_path, write=True) as con:
        add_run(con, "nft", 0.5)
        add_run(con, "ceag", 0.5)
    frame, unmeasured = queries.speed_frontier(tmp_path, dataset="digits")
    assert frame.empty and unmeasured == 2 and "params" in frame.columns


def test_run_detail_and_footprints_carry_the_record(mixed):
    results, ids = mixed
    run = ids[("ceag", 0.5, "epyc")]
    assert json.loads(queries.run_detail(results, run)["footprint"])["channels"]["removed"] == 90
    assert queries.run_detail(results, ids["old"])["footprint"] is None
    rows = queries.footprints(results, [run, ids["old"]])
    assert list(rows.run_id) == [run]


def test_one_series_per_method_with_the_dense_model_at_one(mixed):
    results, ids = mixed
    frame, _ = queries.speed_frontier(results, dataset="digits")
    channels = frame[(frame.pruning == "channels") & (frame.processor == "AMD EPYC")]
    cells = speed_cells(channels, "macs")
    assert len(cells) == 4 and set(cells.seeds) == {1}
    fig = speed_frontier(cells, "macs")
    data = [t for t in fig.data if t.customdata is not None]
    assert sorted({t.name for t in data}) == ["CEAG", "NFT"]  # one kind of pruning: not named
    assert len(data) == 4  # each series in both panels: max_g ψ_g, accuracy
    for trace in data:
        part = cells[cells.method == trace.name.lower()]
        np.testing.assert_allclose(np.asarray(trace.x, dtype=float), [1 / 0.3, 1 / 0.1], rtol=1e-3)
        assert [row[0] for row in trace.customdata] == [",".join(r) for r in part.run_ids]
        assert "channel sparsity 70.0 %" in trace.customdata[0][2]
        assert "weight sparsity 50.0 %" in trace.customdata[0][2]
    dense = [t for t in fig.data if t.name == "dense model"]
    assert [(list(t.x), list(t.y)) for t in dense] == [([1.0], [0.0]), ([1.0], [90.0])]
    assert fig.layout.xaxis.type == "log"  # 10× fewer MACs
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert sorted(legend[:2]) == ["CEAG", "NFT"]


def test_pruning_kinds_are_series_of_their_own(mixed):
    results, _ = mixed
    frame, _ = queries.speed_frontier(results, dataset="digits")
    frame = frame[frame.processor == "AMD EPYC"]
    cells = speed_cells(frame, "latency_cpu_b64")
    fig = speed_frontier(cells, "latency_cpu_b64")
    names = {t.name for t in fig.data if t.customdata is not None}
    assert names == {"NFT · channels", "CEAG · channels", "NFT · unstructured", "CEAG · unstructured"}
    unstructured = [t for t in fig.data if t.name == "NFT · unstructured" and t.customdata is not None]
    assert all(s.endswith("-open") for t in unstructured for s in t.marker.symbol)
    assert [list(t.x) for t in unstructured] == [[1.0], [1.0]]
    table = speed_table(cells, "latency_cpu_b64", "test")
    assert {"speed-up (×)", "max_g ψ_g (points)", "channel sparsity (%)", "weight sparsity (%)"} <= set(table)
    assert sorted(table["pruning"].unique()) == ["channels", "unstructured"]


def test_latencies_of_two_machines_are_never_one_group(mixed):
    results, ids = mixed
    frame, _ = queries.speed_frontier(results, dataset="digits")
    groups = timing_groups(frame, "latency_cpu_b64")
    assert groups.nunique() == 2
    by_run = dict(zip(frame.run_id, groups, strict=True))
    assert by_run[ids[("nft", 0.5, "xeon")]] == "Intel Xeon (16 logical CPUs) · torch 2.4.1 · 4 threads"
    assert by_run[ids[("nft", 0.5, "epyc")]] == "AMD EPYC (2 logical CPUs) · torch 2.4.1 · 1 thread"
    assert timing_groups(frame, "macs").nunique() == 1  # a count is the same on every machine
    assert available_measures(frame) == ["latency_cpu_b64", "latency_cpu_b1", "macs", "size"]
    np.testing.assert_allclose(ratios(frame.set_index("run_id").loc[[ids[("nft", 0.5, "xeon")]]],
                                      "latency_cpu_b64"), [4.0])


def test_a_runs_footprint_in_words_and_its_export_command(mixed):
    results, ids = mixed
    fp = json.loads(queries.run_detail(results, ids[("ceag", 0.75, "epyc")])["footprint"])
    table = footprint_table(fp).set_index("figure")
    assert table.loc["parameters", "pruned model"] == "800" and table.loc["parameters", "dense model"] == "8,000"
    assert table.loc["parameters", "dense / pruned"] == "10.00×"
    assert table.loc["CPU latency, batch 64", "pruned model"] == "160 µs"
    assert table.loc["CPU latency, batch 64", "dense / pruned"] == "2.50×"
    text = " ".join(footprint_lines(fp))
    assert "115 of 128 channels" in text and "channel sparsity 90.0 %" in text and "weight sparsity 50.0 %" in text
    assert "AMD EPYC (2 logical CPUs), torch 2.4.1, 1 thread" in text
    masked = " ".join(footprint_lines(record("unstructured", 1.0, EPYC)))
    assert "keeps the dense model's parameters, MACs, size and speed" in masked
    assert export_command("abc", "/r") == "python -m ceag export --model abc --out model_abc.pt --results /r"


def open_app(monkeypatch, results, page: str, **params):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CEAG_RESULTS", str(results))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(f"dashboard/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def speed_chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[-1].proto.spec)


def shown_ids(spec: dict) -> set[str]:
    return {i for t in spec["data"] if t.get("customdata") for row in t["customdata"] for i in row[0].split(",")}


def test_frontiers_page_shows_one_machine_at_a_time_and_says_so(mixed, monkeypatch):
    results, ids = mixed
    at = open_app(monkeypatch, results, "frontiers")
    warning = " ".join(w.value for w in at.warning)
    assert "timed on 2 machines or thread counts" in warning
    [timed] = [s for s in at.selectbox if s.label == "Timed on"]
    assert timed.value.startswith("AMD EPYC")  # the group with the most runs
    epyc = {v for k, v in ids.items() if k != "old" and k[2] != "xeon"}
    assert shown_ids(speed_chart(at)) == epyc
    assert any("1 finished run of digits has no footprint" in c.value for c in at.caption)
    timed.set_value(timed.options[1]).run()
    assert not at.exception and at.query_params["speed_timing"].startswith("Intel Xeon")
    assert shown_ids(speed_chart(at)) == {ids[("nft", 0.5, "xeon")], ids[("ceag", 0.5, "xeon")]}
    [axis] = [r for r in at.radio if r.label == "x axis: against the dense model"]
    axis.set_value("macs").run()  # MACs do not depend on the machine: every run, no warning
    assert not at.exception and not [s for s in at.selectbox if s.label == "Timed on"]
    assert shown_ids(speed_chart(at)) == {v for k, v in ids.items() if k != "old"}
    assert "MAC reduction" in speed_chart(at)["layout"]["xaxis"]["title"]["text"]


def test_the_run_detail_shows_the_footprint_and_the_export_command(mixed, monkeypatch):
    results, ids = mixed
    run = ids[("ceag", 0.75, "epyc")]
    at = open_app(monkeypatch, results, "multipliers", run=run)
    tables = [d.value for d in at.dataframe if "figure" in d.value.columns]
    assert tables and tables[0].set_index("figure").loc["MACs per sample", "dense / pruned"] == "10.00×"
    assert any(f"--model {run} --out model_{run}.pt" in c.value for c in at.code)
    assert any("channel sparsity 90.0 %" in c.value for c in at.caption)
    at = open_app(monkeypatch, results, "multipliers", run=ids["old"])
    assert any("has no footprint" in c.value for c in at.caption)


def test_the_report_has_a_speed_section_per_machine(mixed):
    results, ids = mixed
    chosen = [ids[("nft", 0.5, "epyc")], ids[("ceag", 0.5, "epyc")], ids[("nft", 0.5, "xeon")], ids["old"]]
    groups = queries.audit_groups(results, chosen)
    for col in ("accuracy", "acc_gap", "excess_gap"):
        groups[f"{col}_low"], groups[f"{col}_high"] = groups[col], groups[col]
    groups["min_detectable_gap"], groups["verdict"] = 0.01, None
    result = Audit(groups, queries.audit_runs(results, chosen), BootstrapSettings())
    section = speed_section(results, result)
    assert section is not None
    assert section.count('id="speed-') == 2  # one chart per machine and thread count
    assert "1 of the audited runs has no footprint" in section
    assert "timed on 2 machines or thread counts" in section
    assert section.count("<tr>") == 1 + 3  # the header and the three measured runs
    assert '2,400 <span class="note">(3.33×)</span>' in section  # 30 % of the parameters kept
    html = render_html(result, speed=section)
    assert "<h2>Speed and fairness</h2>" in html
    only_old = Audit(groups[groups.run_id == ids["old"]], queries.audit_runs(results, [ids["old"]]),
                     BootstrapSettings())
    assert speed_section(results, only_old) is None
