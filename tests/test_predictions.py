"""Per-sample predictions kept with each run: they reproduce the stored per-group metrics exactly."""

import numpy as np
import pandas as pd
import pytest

from ceag.config.vocabulary import PREDICTION_COLUMNS
from ceag.results.layout import PREDICTIONS as PREDICTIONS_FILE
from ceag.results.layout import run_dir
from ceag.results.predictions import RunNotFound, predictions, run_predictions
from ceag.run.pipeline import run
from tests.conftest import fast_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """NFT, its NFT+ES twin (a different reported iterate) and CEAG, with a validation split."""
    import torch

    results = tmp_path_factory.mktemp("pred")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {m: run(fast_config(method=m, val_fraction=0.2, finetune_epochs=5), results)
               for m in ("nft", "nft_es", "ceag")}
    finally:
        torch.set_num_threads(before)
    return results, out


def group_accuracy(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    correct = (frame[column].astype("int64") == frame["y_true"]).astype(float)
    return correct.groupby([frame["split"], frame["group_id"]]).agg(["mean", "size"])


@pytest.mark.parametrize("method", ["nft", "nft_es", "ceag"])
def test_stored_predictions_reproduce_the_reported_group_accuracies(finished, method):
    results, out = finished
    result = out[method]
    assert (run_dir(results, result.run_id) / PREDICTIONS_FILE).exists()
    frame = run_predictions(results, result.run_id)
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert set(frame["split"]) == {"train", "val", "test"}
    sparse, dense = group_accuracy(frame, "y_pred"), group_accuracy(frame, "dense_pred")
    for split in ("train", "val", "test"):
        _, groups = result.final(split)
        for row in groups.itertuples():
            assert sparse.loc[(split, row.group_id), "size"] == row.n
            assert sparse.loc[(split, row.group_id), "mean"] == row.accuracy  # exactly
            assert dense.loc[(split, row.group_id), "mean"] == row.dense_accuracy
    assert frame["p_pred"].between(0, 1).all() and frame["dense_p_pred"].between(0, 1).all()
    # every sample of a split once, in order
    for _, part in frame.groupby("split"):
        assert list(part["sample_id"]) == list(range(len(part)))


def test_nft_es_reports_the_best_iterate_not_the_last(finished):
    results, out = finished
    nft, es = out["nft"], out["nft_es"]
    assert es.summary["reported_epoch"] != nft.summary["reported_epoch"]  # else the test proves nothing
    a, b = run_predictions(results, nft.run_id), run_predictions(results, es.run_id)
    assert not np.array_equal(a["y_pred"], b["y_pred"]) or not np.array_equal(a["p_pred"], b["p_pred"])
    np.testing.assert_array_equal(a["dense_pred"], b["dense_pred"])


def test_older_runs_without_the_file_are_computed_on_demand(finished):
    results, out = finished
    rid = out["ceag"].run_id
    stored = run_predictions(results, rid)
    path = run_dir(results, rid) / PREDICTIONS_FILE
    saved = path.read_bytes()
    path.unlink()
    try:
        computed = run_predictions(results, rid)
    finally:
        path.write_bytes(saved)
    pd.testing.assert_frame_equal(computed, stored, check_dtype=False)


def test_export_frame_adds_sample_id_and_scores(finished):
    results, out = finished
    frame = predictions(results, out["ceag"].run_id, "val")
    assert list(frame.columns) == ["y_true", "y_pred", "group", "group_name", "sample_id", "file", "p_pred",
                                   "dense_pred", "dense_p_pred"]
    assert frame["file"].isna().all()  # built-in data: samples are named by their index
    assert frame["group_name"].iloc[0].startswith("group ")
    with pytest.raises(ValueError, match="split 'bogus' does not exist for this run; it has train, val, test"):
        predictions(results, out["ceag"].run_id, "bogus")
    with pytest.raises(RunNotFound, match="has no finished model"):
        run_predictions(results, "0" * 16)
