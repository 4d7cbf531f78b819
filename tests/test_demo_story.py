"""The embedded demo tells the paper's story on every seed checked: pruning hurts the rare group
under NFT, CEAG (eps = 2 %) repairs it on train, and on test CEAG's disparity stays below NFT's
on average.

A handful of seeds in one process with one thread (the grid's workers use one thread too);
the scan over 50 seeds is ``python -m bench --only demo_seeds``. Seeds 1 and 9 are ones on which
the demo's earlier defaults (6 rare images, constant fine-tuning lr) showed no disparity at all
under NFT; the seeds checked end at least half a point inside both thresholds, so a CPU that
rounds differently does not flip them.
"""

import math
import statistics

import pytest

from ceag.config.presets import preset
from ceag.config.run_config import from_dict
from ceag.run.pipeline import run

SEEDS = (0, 1, 2, 3, 9)
NFT_FLOOR = 0.10     # NFT's train max_g psi_g at least 10 points
CEAG_CEILING = 0.03  # CEAG's (eps = 2 %) at most 3 points


def demo_configs(seed: int):
    """The demo's NFT and CEAG runs at its headline sparsity: RunConfig defaults plus the demo preset."""
    base = {**preset("demo").settings, "seed": seed}
    return from_dict({**base, "method": "nft"}), from_dict({**base, "method": "ceag", "tolerance": 0.02})


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    results = tmp_path_factory.mktemp("demo-results")
    try:
        yield {seed: tuple(run(cfg, results) for cfg in demo_configs(seed)) for seed in SEEDS}
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_nft_hurts_the_rare_group_and_ceag_meets_its_tolerance_on_train(demo_runs, seed):
    nft, ceag = demo_runs[seed]
    assert (nft.status, ceag.status) == ("finished", "finished")
    nft_train, _ = nft.final("train")
    ceag_train, _ = ceag.final("train")
    assert nft.summary["achieved_sparsity"] == pytest.approx(nft.config.sparsity, abs=0.005)
    # NFT: some group loses far more accuracy than the model as a whole.
    assert nft_train["max_excess_gap"] >= NFT_FLOOR
    # CEAG: every group's excess gap ends within a point of the tolerance on train ...
    assert ceag_train["max_excess_gap"] <= CEAG_CEILING
    # ... without collapsing the model (a collapsed model can look "feasible").
    assert ceag_train["accuracy"] >= nft_train["accuracy"] - 0.02
    # The multipliers did the work: some multiplier is positive at the end.
    last = ceag.duals[ceag.duals.step == ceag.duals.step.max()]
    assert 0 < float(last.multiplier.max()) < math.inf


@pytest.mark.slow
def test_ceag_test_disparity_is_below_nfts_on_average(demo_runs):
    def mean_test_gap(index: int) -> float:
        return statistics.fmean(runs[index].final("test")[0]["max_excess_gap"] for runs in demo_runs.values())

    assert mean_test_gap(1) < mean_test_gap(0)
