"""Auditing predictions made anywhere: reading and checking the file, groups, several sparse models, the exact
reproduction of a run's report from its export, the command line, stored audits and the Audit predictions page."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.audit import CSV_COLUMNS
from ceag.analysis.bootstrap import BootstrapSettings
from ceag.analysis.predictions_file import MAX_GROUPS, AuditOptions, load_predictions
from ceag.analysis.stored_audits import audit_predictions, list_audits, open_audit, store_audit
from ceag.config.errors import PredictionsFileError, UnknownAudit
from ceag.present.audit_table import group_display_table
from ceag.present.words import audit_run_labels
from ceag.results.predictions import predictions
from tests.conftest import fast_config
from tests.helpers import ceag_main, finished_runs, open_app_page

FAST = BootstrapSettings(n_boot=200)
GROUP = AuditOptions(("group",))


def frame(n: int = 400, groups: int = 4, seed: int = 0, splits: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    out = pd.DataFrame({"y_true": y, "group": rng.integers(0, groups, n),
                        "dense_pred": np.where(rng.random(n) < 0.9, y, (y + 1) % 3),
                        "y_pred": np.where(rng.random(n) < 0.8, y, (y + 2) % 3), "score": rng.random(n)})
    if splits:
        out.insert(0, "split", rng.choice(["train", "val", "test"], n))
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The frame as a CSV file written by another tool (values as they are: no spreadsheet quoting)."""
    return df.to_csv(index=False).encode()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def refused(data: bytes, options: AuditOptions = GROUP, **kwargs) -> str:
    with pytest.raises(PredictionsFileError) as err:
        load_predictions(data, options, name="p.csv", **kwargs)
    return str(err.value)


# -- what is refused, and how it is said ----------------------------------------------------------------------
def test_a_missing_column_is_named_with_the_columns_the_file_has():
    text = refused(csv_bytes(frame().drop(columns="dense_pred")))
    assert text == ("column 'dense_pred' is missing from p.csv; it has y_true, group, y_pred, score. An audit needs "
                    "y_true, the group column(s), dense_pred and the sparse column(s)")
    assert "columns 'race', 'gender' are missing" in refused(csv_bytes(frame()), AuditOptions(("race", "gender")))
    text = refused(csv_bytes(frame().drop(columns="y_pred")))
    assert "no column of sparse predictions: the file has neither sparse_pred nor y_pred" in text
    assert "--sparse" in text
    pipes = b"y_true|group|dense_pred|y_pred\n1|0|1|1\n"
    assert "it looks separated by '|'" in refused(pipes)


def test_a_spreadsheets_csv_is_read_as_the_label_files_are_and_says_how():
    """Semicolons or tabs, UTF-16 (Excel's "Unicode Text") and Windows-1252: read as ``ceag.datasets.labels``
    reads label files, with the same numbers as the plain UTF-8 file, and a note saying how."""
    df = frame(200).assign(group=lambda d: d.group.map({0: "Café", 1: "Ñandú", 2: "Zoë", 3: "Åsa"}))
    plain = load_predictions(csv_bytes(df), GROUP, name="p.csv")
    assert plain.read_notes == []
    for data, note in ((df.to_csv(index=False, sep=";").encode(), "separated by semicolons"),
                       (df.to_csv(index=False, sep="\t").encode("utf-16"), "UTF-16 text"),
                       (df.to_csv(index=False).encode("cp1252"), "Windows-1252 text")):
        pf = load_predictions(data, GROUP, name="p.csv")
        assert pf.group_names == plain.group_names and (pf.group_id == plain.group_id).all()
        assert any(note in n for n in pf.notes), pf.notes
    assert "its encoding cannot be told" in refused(b"y_true,group\n1,\x81\x81\n")


def test_how_a_file_was_read_stays_with_its_stored_audit(tmp_path):
    data = frame(200).to_csv(index=False, sep=";").encode("utf-16")
    pf = load_predictions(data, AuditOptions(("group",), tolerance=0.05), name="excel.csv")
    aid = store_audit(tmp_path, pf, FAST)
    notes = open_audit(tmp_path, aid).result.notes
    assert any("UTF-16 text" in n for n in notes) and any("semicolons" in n for n in notes)


def test_an_unknown_label_names_the_column_the_value_and_its_first_row():
    df = frame()
    df.loc[6, "y_pred"] = 7
    df.loc[9, "y_pred"] = 7
    assert refused(csv_bytes(df)) == ("column 'y_pred' has '7' at row 7, which is not a label of y_true (2 row(s) "
                                      "like it); predictions must be among y_true's labels: 0, 1, 2")
    words = pd.DataFrame({"y_true": ["cat", "dog", "cat"], "group": ["a", "b", "a"],
                          "dense_pred": ["cat", "Dog", "cat"], "y_pred": ["cat", "dog", "dog"]})
    assert "column 'dense_pred' has 'Dog' at row 2" in refused(csv_bytes(words))


@pytest.mark.parametrize("to_bytes", [csv_bytes, parquet_bytes], ids=["csv", "parquet"])
def test_an_empty_value_names_the_column_and_its_row(to_bytes):
    df = frame().astype({"group": object})
    df.loc[[4, 11], "group"] = None
    assert refused(to_bytes(df)) == ("column 'group' is empty at row 5 (and 1 other row(s)); every row needs a "
                                     "value there")
    df = frame().astype({"y_true": float})
    df.loc[2, "y_true"] = np.nan
    assert refused(to_bytes(df)).startswith("column 'y_true' is empty at row 3;")
    spaces = b"y_true,group,dense_pred,y_pred\n1,0,1,1\n1,  ,1,1\n"  # spaces only: empty as well
    assert refused(spaces) == "column 'group' is empty at row 2; every row needs a value there"


def test_a_split_outside_train_val_test_is_refused():
    df = frame(splits=True)
    df.loc[3, "split"] = "validation"
    assert refused(csv_bytes(df)) == ("column 'split' has 'validation' at row 4: a split is train, val or test "
                                      "(1 other value(s): 'validation')")


def test_a_row_with_too_many_or_too_few_fields_is_named_with_its_line():
    head = b"y_true,group,dense_pred,y_pred\n1,0,1,1\n"
    assert refused(head + b"1,0,1,1,9\n") == ("p.csv: row 2 (line 3 of the file) has 5 fields but the header has 4 "
                                              "(y_true, group, dense_pred, y_pred); every row needs one value per "
                                              "column")
    assert "row 3 (line 4 of the file) has 3 fields" in refused(head + b"0,1,0,0\n1,0,1\n")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    data = csv_bytes(frame(20_000))
    assert len(data) > 2 ** 19
    assert refused(data, max_bytes=2 ** 19) == (f"p.csv is {len(data) / 2 ** 20:.1f} MB; files of predictions are "
                                               "audited up to 0.5 MB (keep the columns the audit needs, or save it "
                                               "as Parquet, which is smaller)")
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with pytest.raises(PredictionsFileError, match=r"^big.csv is 0\.\d MB; files of predictions are audited up to"):
        load_predictions(path, GROUP, max_bytes=2 ** 19)


def test_a_file_without_rows_is_refused():
    assert refused(b"y_true,group,dense_pred,y_pred\n") == "p.csv has no rows: a header, but no predictions under it"
    assert refused(b"").startswith("p.csv is empty")
    assert refused(parquet_bytes(frame().iloc[:0])) == "p.csv has no rows: a header, but no predictions under it"


def test_other_bad_files_and_options_get_a_message_too(tmp_path):
    assert "starts with a UTF-16 byte-order mark but is not UTF-16 text" in refused(b"\xff\xfe\x00y_true")
    assert "column 'group' appears twice" in refused(b"y_true,group,group,dense_pred,y_pred\n1,0,0,1,1\n")
    assert f"an audit takes at most {MAX_GROUPS} groups" in refused(csv_bytes(frame(1500)), AuditOptions(("score",)))
    assert "cannot be a group column: it holds the true class" in refused(csv_bytes(frame()), AuditOptions(("y_true",)))
    assert "named both as a group column and as a sparse column" in refused(
        csv_bytes(frame()), AuditOptions(("group",), ("group",)))
    with pytest.raises(PredictionsFileError, match="invalid tolerance 2: ε is a fraction"):
        AuditOptions(("group",), tolerance=2)
    with pytest.raises(PredictionsFileError, match="no such file"):
        load_predictions(tmp_path / "nope.csv", GROUP)
    assert "cannot be read as one" in refused(b"PAR1 not really")


# -- groups, labels and several models ------------------------------------------------------------------------------
def test_groups_are_numbered_in_numeric_order_and_every_split_has_every_group():
    df = frame(300, splits=True)
    df["group"] = df["group"].map({0: "10", 1: "2", 2: "x", 3: "-1"})
    pf = load_predictions(csv_bytes(df), GROUP, name="p.csv")
    assert pf.group_names == ["-1", "2", "10", "x"]
    result = audit_predictions(pf, FAST)
    g = result.groups
    assert list(g.split.unique()) == ["train", "val", "test"]
    assert len(g) == 3 * 4 and list(g.group_id[:4]) == [0, 1, 2, 3]
    for (split, name), part in df.assign(ok=df.y_pred == df.y_true).groupby(["split", "group"]):
        row = g[(g.split == split) & (g.group_name == name)].iloc[0]
        assert row.n == len(part) and row.accuracy == pytest.approx(part.ok.mean())
    runs = result.runs
    assert list(runs.split) == ["train", "val", "test"] and runs.max_excess_gap_low.notna().all()
    assert result.csv_table().columns.tolist() == CSV_COLUMNS


def test_two_group_columns_make_intersectional_groups_in_the_order_given():
    df = frame(400)
    df["race"] = np.where(df.group % 2 == 0, "b", "a")
    df["gender"] = np.where(df.group < 2, "F", "M")
    pf = load_predictions(csv_bytes(df), AuditOptions(("race", "gender")), name="p.csv")
    assert pf.group_names == ["a × F", "a × M", "b × F", "b × M"]
    swapped = load_predictions(csv_bytes(df), AuditOptions(("gender", "race")), name="p.csv")
    assert swapped.group_names == ["F × a", "F × b", "M × a", "M × b"]
    g = audit_predictions(pf, FAST).groups
    assert (g.set_index("group_name").n.to_dict()
            == {f"{r} × {s}": int(((df.race == r) & (df.gender == s)).sum()) for r in "ab" for s in "FM"})


def test_several_sparse_columns_are_audited_as_one_run_each_named_by_the_column():
    df = frame(600)
    rng = np.random.default_rng(5)
    df["modelA"] = df.y_pred
    df["modelB"] = np.where(rng.random(len(df)) < 0.6, df.y_true, (df.y_true + 1) % 3)
    pf = load_predictions(csv_bytes(df), AuditOptions(("group",), ("modelA", "modelB"), 0.02), name="p.csv")
    result = audit_predictions(pf, FAST)
    assert result.run_ids == ["modelA", "modelB"]
    assert audit_run_labels(result.groups) == {"modelA": "modelA ε=2%", "modelB": "modelB ε=2%"}
    g = result.groups
    assert g.verdict.isin(["meets ε", "exceeds ε", "cannot tell"]).all()  # verdicts against the tolerance
    assert (g.small_for_tolerance == (g.min_detectable_gap > 0.02)).all()
    a = g[g.run_id == "modelA"].reset_index(drop=True)
    alone = audit_predictions(load_predictions(csv_bytes(df), AuditOptions(("group",), ("y_pred",), 0.02),
                                               name="p.csv"), FAST).groups
    for col in ("n", "accuracy", "excess_gap", "excess_gap_low", "excess_gap_corrected_high"):
        np.testing.assert_array_equal(a[col], alone[col])  # each model's numbers do not depend on the others
    assert audit_predictions(load_predictions(csv_bytes(df), GROUP, name="p.csv"), FAST).groups.verdict.isna().all()


def test_text_labels_and_a_parquet_file_audit_like_the_same_csv():
    df = frame(500, splits=True)
    names = {0: "cat", 1: "dog", 2: "emu"}
    words = df.assign(**{c: df[c].map(names) for c in ("y_true", "dense_pred", "y_pred")})
    a = audit_predictions(load_predictions(csv_bytes(df), GROUP, name="p.csv"), FAST).csv_table()
    b = audit_predictions(load_predictions(csv_bytes(words), GROUP, name="p.csv"), FAST).csv_table()
    c = audit_predictions(load_predictions(parquet_bytes(df), GROUP, name="p.parquet"), FAST).csv_table()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_a_group_name_column_names_integer_groups_when_it_maps_one_to_one():
    df = frame(200)
    df["group_name"] = df.group.map({0: "zero", 1: "one", 2: "two", 3: "three"})
    pf = load_predictions(csv_bytes(df), GROUP, name="p.csv")
    assert pf.group_names == ["zero", "one", "two", "three"] and pf.group_names_from == "group_name"
    df.loc[0, "group_name"] = "other"
    pf = load_predictions(csv_bytes(df), GROUP, name="p.csv")
    assert pf.group_names == ["0", "1", "2", "3"]
    assert pf.notes and "does not name each value of 'group' with one name of its own" in pf.notes[0]


# -- a run's own export, audited, reproduces its report ----------------------------------------------------------
@pytest.fixture(scope="module")
def ceag_run(tmp_path_factory):
    """A finished CEAG run (ε = 5 %) with train, val and test, in its own results folder."""
    results = tmp_path_factory.mktemp("audit_predictions")
    [rid] = finished_runs(results, [fast_config(method="ceag", tolerance=0.05, val_fraction=0.2)])
    return results, rid


def test_export_of_every_split_has_a_split_column_first_and_one_split_is_unchanged(ceag_run):
    results, rid = ceag_run
    every = predictions(results, rid, "all")
    test = predictions(results, rid, "test")
    assert every.columns.tolist() == ["split", *test.columns]
    assert list(dict.fromkeys(every.split)) == ["train", "val", "test"]
    pd.testing.assert_frame_equal(every[every.split == "test"].drop(columns="split").reset_index(drop=True), test)
    with pytest.raises(ValueError, match="it has train, val, test \\(or all: every split\\)"):
        predictions(results, rid, "bogus")


def test_auditing_a_runs_export_reproduces_its_report_table_exactly(ceag_run, tmp_path):
    results, rid = ceag_run
    exported, report, audited = tmp_path / "p.csv", tmp_path / "report.csv", tmp_path / "audit.csv"
    code, _, err = ceag_main("export", "--run", rid, "--predictions", "--split", "all", "--out", exported,
                             "--results", results)
    assert code == 0, err
    code, _, err = ceag_main("report", "--runs", rid, "--out", report, "--n-boot", 200, "--results", results)
    assert code == 0, err
    code, out, err = ceag_main("audit", "--predictions", exported, "--groups", "group", "--tolerance", "0.05",
                               "--n-boot", 200, "--out", audited, "--results", results)
    assert code == 0, err
    assert "wrote the audit of 1 sparse model (y_pred) in p.csv" in out
    mine, theirs = pd.read_csv(audited), pd.read_csv(report)
    assert mine.columns.tolist() == theirs.columns.tolist() == CSV_COLUMNS
    assert set(mine.run_id) == set(mine.method) == {"y_pred"} and set(theirs.run_id) == {rid}
    assert mine.split.tolist() == theirs.split.tolist() and set(mine.split) == {"train", "val", "test"}
    assert theirs.verdict.notna().all()  # a CEAG run: verdicts are compared too
    for col in [c for c in CSV_COLUMNS if c not in ("run_id", "method")]:
        pd.testing.assert_series_equal(mine[col], theirs[col], check_exact=True, obj=col)


# -- the command line -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--groups", "race"], "error: column 'race' is missing from p.csv; it has y_true, group, dense_pred, y_pred, "
                           "score."),
    (["--groups", "group", "--tolerance", "two"], "error: invalid --tolerance 'two': ε is a fraction"),
    (["--groups", "group", "--tolerance", "2"], "error: invalid tolerance 2: ε is a fraction from 0 to below 1"),
    (["--groups", "group", "--ci", "95"], "error: invalid --ci 95.0: must be a fraction strictly between 0 and 1"),
    (["--groups", "group", "--n-boot", "0"], "error: invalid --n-boot 0: the number of resamples must be"),
    (["--groups", "group", "--sparse", "y_pred,y_pred"], "error: sparse column 'y_pred' is named twice"),
    (["--groups", "group", "--out", "a.txt"], "error: invalid --out 'a.txt': the audit is written as FILE.html"),
], ids=["missing-column", "tolerance-text", "tolerance-range", "ci", "n-boot", "sparse-twice", "out-suffix"])
def test_bad_input_exits_2_with_one_error_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_bytes(csv_bytes(frame(100)))
    code, out, err = ceag_main("audit", "--predictions", "p.csv", "--n-boot", 20, "--out", "a.csv", *args,
                               "--results", "results")
    assert code == 2, (out, err)
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "a.csv").exists()  # nothing written


def test_a_missing_file_and_a_bad_row_exit_2_naming_them(tmp_path):
    code, _, err = ceag_main("audit", "--predictions", tmp_path / "none.csv", "--groups", "group", "--out",
                             tmp_path / "a.csv", "--results", tmp_path)
    assert code == 2 and err == f"error: no such file: {tmp_path / 'none.csv'}\n"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"y_true,group,dense_pred,y_pred\n1,0,1,1\n1,0,,1\n")
    code, _, err = ceag_main("audit", "--predictions", bad, "--groups", "group", "--out", tmp_path / "a.csv",
                             "--results", tmp_path)
    assert code == 2 and err == "error: column 'dense_pred' is empty at row 2; every row needs a value there\n"


def test_the_cli_writes_html_and_json_and_stores_the_audit(tmp_path):
    path = tmp_path / "p.csv"
    df = frame(300, splits=True).assign(modelB=lambda d: d.dense_pred)
    path.write_bytes(csv_bytes(df))
    results = tmp_path / "results"
    code, out, err = ceag_main("audit", "--predictions", path, "--groups", "group", "--sparse", "y_pred,modelB",
                               "--tolerance", "0.02", "--n-boot", 50, "--out", tmp_path / "a.html", "--results",
                               results, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["sparse"] == ["y_pred", "modelB"] and info["groups"] == ["0", "1", "2", "3"]
    html = (tmp_path / "a.html").read_text()
    assert "<title>ceag audit of p.csv</title>" in html and "modelB ε=2%" in html
    assert list_audits(results).audit_id.tolist() == [info["audit_id"]]
    again = ceag_main("audit", "--predictions", path, "--groups", "group", "--sparse", "y_pred,modelB",
                      "--tolerance", "0.02", "--n-boot", 50, "--out", tmp_path / "b.csv", "--results", results,
                      "--json")
    assert json.loads(again[1])["audit_id"] == info["audit_id"]  # the same file and options: the same audit


def test_report_takes_the_correction(ceag_run, tmp_path):
    results, rid = ceag_run
    tables = {}
    for correction in ("bonferroni", "none"):
        out = tmp_path / f"{correction}.csv"
        code, _, err = ceag_main("report", "--runs", rid, "--out", out, "--n-boot", 100, "--correction", correction,
                                 "--results", results)
        assert code == 0, err
        tables[correction] = pd.read_csv(out)
    none, bonferroni = tables["none"], tables["bonferroni"]
    # not widened for the groups: the wider of the shown interval and ψ_g ± the detectable gap
    np.testing.assert_allclose(none.excess_gap_corrected_low,
                               np.minimum(none.excess_gap_low, none.excess_gap - none.min_detectable_gap))
    assert (bonferroni.excess_gap_corrected_low <= none.excess_gap_corrected_low + 1e-12).all()
    assert (bonferroni.excess_gap_corrected_low < none.excess_gap_corrected_low).any()
    code, _, err = ceag_main("report", "--runs", rid, "--out", tmp_path / "x.csv", "--correction", "holm",
                             "--results", results)
    assert code == 2 and "invalid choice: 'holm'" in err


# -- stored audits ---------------------------------------------------------------------------------------------------
def test_a_stored_audit_reopens_by_id_with_the_same_numbers(tmp_path):
    results = tmp_path / "results"
    df = frame(300, splits=True)
    pf = load_predictions(csv_bytes(df), AuditOptions(("group",), tolerance=0.05), name="mine.csv")
    aid = store_audit(results, pf, FAST)
    assert len(aid) == 12 and (results / "audits" / aid / "audit.json").is_file()
    assert (results / "audits" / aid / "predictions.parquet").is_file()
    stored = open_audit(results, aid)
    assert stored.record["file"] == "mine.csv" and stored.record["tolerance"] == 0.05
    assert stored.record["n_boot"] == 200 and stored.record["file_sha256"] == pf.sha256
    pd.testing.assert_frame_equal(stored.result.csv_table(), audit_predictions(pf, FAST).csv_table())
    assert store_audit(results, pf, FAST) == aid  # kept once
    other = store_audit(results, pf, BootstrapSettings(n_boot=100))
    assert other != aid and set(list_audits(results).audit_id) == {aid, other}
    with pytest.raises(UnknownAudit, match="'nope' is not an audit id: an id is 12 hex digits"):
        open_audit(results, "nope")
    with pytest.raises(UnknownAudit, match=f"no stored audit 0123456789ab in .*; stored audits: .*{aid}"):
        open_audit(results, "0123456789ab")
    with pytest.raises(UnknownAudit, match="it holds no stored audits"):
        open_audit(tmp_path / "elsewhere", "0123456789ab")


# -- the page ----------------------------------------------------------------------------------------------------------
TITLE = "Audit predictions"


def test_the_page_opened_with_an_audit_id_shows_its_table_chart_and_downloads(tmp_path, monkeypatch):
    results = tmp_path / "results"
    df = frame(400, splits=True).assign(modelB=lambda d: d.dense_pred)
    pf = load_predictions(csv_bytes(df), AuditOptions(("group",), ("y_pred", "modelB"), 0.05), name="mine.csv")
    aid = store_audit(results, pf, FAST)
    at = open_app_page(monkeypatch, "audit_predictions", TITLE, results, audit=aid)
    expected = open_audit(results, aid).result
    table = at.dataframe[0].value
    shown, _ = group_display_table(expected)
    assert len(table) == len(shown) == 2 * 3 * 4
    np.testing.assert_allclose(table["ψ_g"], shown["ψ_g"])
    assert set(table["run"]) == {"y_pred ε=5%", "modelB ε=5%"}
    assert [s.value for s in at.subheader] == ["mine.csv"]
    headline = at.markdown[0].value
    assert "- Under y_pred (ε = 5 %), the worst group on test is" in headline
    assert "- Under modelB (ε = 5 %), the worst group on test is" in headline  # the dense model itself: no gap
    assert [b.proto.label for b in at.get("download_button")] == ["Audit report (HTML, opens offline)",
                                                                   "Per-group table (CSV)"]
    assert len(at.get("plotly_chart")) == 1
    assert at.query_params["audit"] in (aid, [aid])
    assert not at.error


def test_the_page_with_an_unknown_audit_id_says_so(tmp_path, monkeypatch):
    at = open_app_page(monkeypatch, "audit_predictions", TITLE, tmp_path / "results", audit="0123456789ab")
    assert [e.value for e in at.error] == [f"no stored audit 0123456789ab in {tmp_path / 'results' / 'audits'}; it "
                                           "holds no stored audits"]
    assert not at.dataframe


def test_an_upload_is_checked_stored_and_opened(tmp_path, monkeypatch):
    results = tmp_path / "results"
    at = open_app_page(monkeypatch, "audit_predictions", TITLE, results)
    assert [i.value for i in at.info] == ["Upload a file of predictions under **Audit a file**, choose its columns and "
                                         "press **Audit**, or open a stored audit."]
    lacking = frame(50)[["y_true", "group", "dense_pred"]]
    at.file_uploader[0].set_value(("lacking.csv", csv_bytes(lacking), "text/csv")).run()
    assert [e.value for e in at.error] == [  # said at once, before the Audit button
        "lacking.csv has no column left to audit as a pruned model's predictions: besides y_true, dense_pred and "
        "the group column(s) it has none (its columns: y_true, group, dense_pred). Add one column of predictions "
        "per pruned model, e.g. `sparse_pred`."]
    bad = frame(200)
    bad.loc[3, "y_pred"] = 9
    at.file_uploader[0].set_value(("bad.csv", csv_bytes(bad), "text/csv")).run()
    assert [m.label for m in at.multiselect][:2] == ["Group column(s)", "Sparse predictions"]
    assert at.multiselect[0].value == ["group"] and at.multiselect[1].value == ["y_pred"]
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["column 'y_pred' has '9' at row 4, which is not a label of y_true (1 "
                                           "row(s) like it); predictions must be among y_true's labels: 0, 1, 2"]
    assert list_audits(results).empty
    at.file_uploader[0].set_value(("good.csv", csv_bytes(frame(200)), "text/csv")).run()
    at.number_input[1].set_value(200).run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    [aid] = list_audits(results).audit_id
    assert at.query_params["audit"] in (aid, [aid])
    assert [s.value for s in at.subheader] == ["good.csv"] and len(at.dataframe[0].value) == 4
