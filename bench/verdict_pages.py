"""Verdicts on the pages: a store of 1,000 runs x 10 groups with per-sample predictions, every mitigation compared
with NFT across its seeds, and the time to build Frontiers, Overview and Compare with those verdicts.

The store is synthetic (``ceag.store.synthetic.fill``) and each run gets a predictions file of 1,000 samples
per split, so the comparisons are real computations on plausible data, not results. Three figures per page:

- *cold*: nothing cached anywhere, so the page resamples every comparison it shows (once per store);
- *warm*: the comparisons kept in ``cache/verdicts`` by the cold build, Streamlit's caches cleared (a new
  server process on a store whose verdicts were computed before): the target, under 300 ms;
- *rebuild*: the same page again in the same session;

and, for scale, the warm build of the same page with the comparisons left out (an empty answer), on the same
store. The target (under 300 ms) is Frontiers', where every point carries its verdict.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Result, page_build_times
from ceag.results.layout import PREDICTIONS, run_dir
from ceag.store.db import connect
from ceag.store.synthetic import fill

PAGES = ["frontiers", "overview", "compare"]
SAMPLES = 1_000  # per split
REPEAT = 5  # warm builds timed per page (the median is reported)


def write_predictions(results: Path, groups: int, seed: int = 0) -> int:
    """A predictions file per run of the synthetic store (every split, SAMPLES samples each); the runs of one
    seed share a dense model, as NFT and its mitigations do. Returns the number of runs."""
    rng = np.random.default_rng(seed)
    with connect(results, write=True) as con:
        runs = con.execute("SELECT run_id, seed, method, sparsity FROM runs").df()
        con.execute("UPDATE runs SET dense_key = 'bench-' || CAST(seed AS VARCHAR)")
    frames = []
    for split in ("train", "val", "test"):
        y = rng.integers(0, 10, SAMPLES)
        frames.append(pd.DataFrame({"split": split, "sample_id": np.arange(SAMPLES), "file": None, "y_true": y,
                                    "group_id": rng.integers(0, groups, SAMPLES)}))
    base = pd.concat(frames, ignore_index=True)
    y = base["y_true"].to_numpy()
    dense = {s: np.where(rng.random(len(base)) < 0.95, y, (y + 1) % 10) for s in runs["seed"].unique()}
    for row in runs.itertuples():
        accuracy = 0.9 - 0.3 * float(row.sparsity - 0.85) - (0.1 if row.method == "nft" else 0.0) * (
            base["group_id"].to_numpy() == 0)
        right = rng.random(len(base)) < accuracy
        frame = base.assign(y_pred=np.where(right, y, (y + 1) % 10), p_pred=0.9, dense_pred=dense[row.seed],
                            dense_p_pred=0.9)
        folder = run_dir(results, row.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / PREDICTIONS, index=False)
    return len(runs)


def run(quick: bool = False) -> list[Result]:
    import shutil

    from ceag.results.layout import verdict_cache

    n_runs, groups = (200 if quick else 1_000), 10
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        fill(results, runs=n_runs, groups=groups)
        start = time.perf_counter()
        write_predictions(results, groups)
        os.environ["CEAG_RESULTS"] = str(results)
        out.append(Result(f"write the predictions of {n_runs:,} synthetic runs", time.perf_counter() - start, "s",
                          "", None, f"{SAMPLES:,} samples per split, {groups} groups"))
        with connect(results) as con:
            first = con.execute("SELECT run_id FROM runs WHERE method = 'nft' ORDER BY run_id LIMIT 1").fetchone()[0]
            partner = con.execute("SELECT run_id FROM runs WHERE method = 'ceag' ORDER BY run_id LIMIT 1").fetchone()[0]
        params = {"compare": f"{first},{partner}"}
        for page in PAGES:
            shutil.rmtree(verdict_cache(results), ignore_errors=True)
            mine = params if page == "compare" else {}
            cold, _ = page_build_times(page, mine, timeout=300)
            builds = [page_build_times(page, mine, timeout=300) for _ in range(REPEAT)]
            warm, rebuild = float(np.median([b[0] for b in builds])), float(np.median([b[1] for b in builds]))
            without = float(np.median([_without_verdicts(page, mine) for _ in range(REPEAT)]))
            frontiers = page == "frontiers"
            out.append(Result(f"page build with verdicts: {page}, {n_runs:,} runs x {groups} groups", 1000 * warm,
                              "ms", "< 300" if frontiers else "", (1000 * warm < 300) if frontiers else None,
                              f"median of {REPEAT}, comparisons kept from an earlier build; {1000 * without:.0f} ms "
                              "without the "
                              f"comparisons; {1000 * cold:.0f} ms the first time (resampling every comparison), "
                              f"{1000 * rebuild:.0f} ms rebuilt in the session"))
    return out


def _without_verdicts(page: str, params: dict[str, str]) -> float:
    """The warm build of ``page`` with the comparisons replaced by an empty answer: the page's own cost."""
    import dashboard._store as store
    from ceag.analysis.seeds import COLUMNS

    real = store.seed_comparisons
    empty = pd.DataFrame(columns=["dataset", "model", "sparsity", "method", "tolerance", "run_ids", "baseline_ids",
                                  *COLUMNS])
    store.seed_comparisons = lambda **kwargs: (empty, [])  # type: ignore[assignment]
    try:
        return page_build_times(page, params, timeout=300)[0]
    finally:
        store.seed_comparisons = real


if __name__ == "__main__":
    for result in run():
        print(result.line())
