"""Bootstrap intervals: an independent per-resample computation, Fairlearn's MetricFrame, bad settings."""

import math

import numpy as np
import pandas as pd
import pytest

from ceag.analysis.bootstrap import (
    BootstrapSettings,
    intervals,
    min_detectable_gap,
    resample_indices,
    run_intervals,
)
from ceag.analysis.verdicts import counts_text, tolerance_verdicts, verdict_counts

Z = 1.959963984540054  # standard normal 97.5 % quantile


def predictions(seed: int = 0, n: int = 800):
    """Four groups (the last one small and hurt by pruning), three classes."""
    rng = np.random.default_rng(seed)
    g = rng.choice(4, n, p=[0.4, 0.3, 0.22, 0.08])
    y = rng.integers(0, 3, n)
    dense = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
    sparse = np.where(rng.random(n) < np.where(g == 3, 0.5, 0.85), y, (y + 1) % 3)
    return y, g, sparse, dense


def masked_metrics(y, g, sparse, dense, groups):
    """Every metric of one sample set, group by group on boolean masks (no vectorization)."""
    s_ok, d_ok = sparse == y, dense == y
    gap = {k: d_ok[g == k].mean() - s_ok[g == k].mean() for k in range(groups) if (g == k).any()}
    overall = d_ok.mean() - s_ok.mean()
    return {"acc": {k: s_ok[g == k].mean() for k in gap}, "gap": gap,
            "excess": {k: v - overall for k, v in gap.items()}, "overall_acc": s_ok.mean(),
            "max_excess": max(gap.values()) - overall, "psi_pw": max(gap.values()) - min(gap.values())}


def test_point_estimates_and_intervals_match_a_plain_computation_on_the_same_resamples():
    y, g, sparse, dense = predictions()
    settings = BootstrapSettings(n_boot=200, seed=3)
    res = intervals(y, g, sparse, dense, 4, settings, split="train")
    point = masked_metrics(y, g, sparse, dense, 4)
    rows = res.groups.set_index("group_id")
    for k in range(4):
        assert rows.loc[k, "n"] == (g == k).sum()
        assert rows.loc[k, "accuracy"] == pytest.approx(point["acc"][k], abs=1e-15)
        assert rows.loc[k, "excess_gap"] == pytest.approx(point["excess"][k], abs=1e-15)
    assert res.overall["max_excess_gap"] == pytest.approx(point["max_excess"], abs=1e-15)
    assert res.overall["psi_pw"] == pytest.approx(point["psi_pw"], abs=1e-15)
    # The same resamples, metric by metric with masks: the percentiles agree exactly.
    boot = [masked_metrics(y[i], g[i], sparse[i], dense[i], 4)
            for chunk in resample_indices(len(y), settings, "train") for i in chunk]
    assert len(boot) == 200
    for k in range(4):
        for key, col in (("acc", "accuracy"), ("gap", "acc_gap"), ("excess", "excess_gap")):
            lo, hi = np.quantile([b[key][k] for b in boot], [0.025, 0.975])
            assert (rows.loc[k, f"{col}_low"], rows.loc[k, f"{col}_high"]) == pytest.approx((lo, hi), abs=1e-12)
    for key, col in (("max_excess", "max_excess_gap"), ("psi_pw", "psi_pw"), ("overall_acc", "accuracy")):
        lo, hi = np.quantile([b[key] for b in boot], [0.025, 0.975])
        assert (res.overall[f"{col}_low"], res.overall[f"{col}_high"]) == pytest.approx((lo, hi), abs=1e-12)


def test_intervals_are_seeded_and_paired():
    y, g, sparse, dense = predictions()
    a = intervals(y, g, sparse, dense, 4, BootstrapSettings(n_boot=100, seed=1))
    b = intervals(y, g, sparse, dense, 4, BootstrapSettings(n_boot=100, seed=1))
    c = intervals(y, g, sparse, dense, 4, BootstrapSettings(n_boot=100, seed=2))
    pd.testing.assert_frame_equal(a.groups, b.groups)
    assert not a.groups.equals(c.groups)
    # Paired: a sparse model identical to the dense one has Δ_g = 0 in every resample.
    same = intervals(y, g, dense, dense, 4, BootstrapSettings(n_boot=100))
    assert (same.groups[["acc_gap_low", "acc_gap_high", "excess_gap_low", "excess_gap_high"]] == 0).all().all()


def test_an_empty_group_is_nan_and_a_rare_one_uses_the_resamples_it_appears_in(monkeypatch):
    from ceag.analysis import bootstrap

    monkeypatch.setattr(bootstrap, "MIN_INTERVAL_SAMPLES", 1)  # the resampling itself, without the size rule
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 2])
    g = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 2])  # group 1 empty, group 2 a single sample
    res = intervals(y, g, y, y, 3, BootstrapSettings(n_boot=50))
    rows = res.groups.set_index("group_id")
    assert rows.loc[1, "n"] == 0 and rows.loc[1, ["accuracy", "accuracy_low", "excess_gap_high"]].isna().all()
    assert rows.loc[2, "accuracy_low"] == rows.loc[2, "accuracy_high"] == 1.0


def test_a_group_too_small_for_an_interval_gets_none_and_says_so():
    """One test sample gave a 95 % interval of 100 to 100 %; the glossary says small groups get wide ones."""
    from ceag.analysis.bootstrap import MIN_INTERVAL_SAMPLES

    y = np.array([0, 1] * 20 + [1] + [0] * (MIN_INTERVAL_SAMPLES - 1) + [1] * MIN_INTERVAL_SAMPLES)
    g = np.array([0] * 40 + [1] + [2] * (MIN_INTERVAL_SAMPLES - 1) + [3] * MIN_INTERVAL_SAMPLES)
    sparse = y.copy()
    sparse[:10] = 1 - sparse[:10]  # group 0: 30 of 40 right
    rows = intervals(y, g, sparse, y, 5, BootstrapSettings(n_boot=100)).groups.set_index("group_id")
    assert rows["too_small"].tolist() == [False, True, True, False, False]  # group 4: no samples, not "too small"
    for k in (1, 2):
        assert rows.loc[k, "accuracy"] == 1.0
        assert rows.loc[k, [c for c in rows.columns if c.endswith(("_low", "_high"))]].isna().all()
    assert rows.loc[3, "accuracy_low"] == 1.0 and rows.loc[0, "accuracy_low"] < rows.loc[0, "accuracy_high"]


@pytest.mark.slow
def test_intervals_agree_with_fairlearn_metricframe_within_monte_carlo_error():
    """Fairlearn resamples the same way (whole split, with replacement) with another random stream,
    so the percentiles agree up to Monte-Carlo error of a quantile from n_boot draws."""
    fairlearn = pytest.importorskip("fairlearn.metrics")
    y, g, sparse, dense = predictions(seed=7)
    n_boot, q = 250, [0.025, 0.975]
    ours = intervals(y, g, sparse, dense, 4, BootstrapSettings(n_boot=n_boot, seed=0))

    def acc(y_true, y_pred):
        return float(np.mean(y_true == y_pred))

    def dense_acc(y_true, y_pred, dense_pred):
        return float(np.mean(y_true == dense_pred))

    def acc_gap(y_true, y_pred, dense_pred):
        return float(np.mean(y_true == dense_pred) - np.mean(y_true == y_pred))

    mf = fairlearn.MetricFrame(
        metrics={"accuracy": acc, "dense_accuracy": dense_acc, "acc_gap": acc_gap}, y_true=y, y_pred=sparse,
        sensitive_features=pd.Series(g, name="group"),
        sample_params={"dense_accuracy": {"dense_pred": dense}, "acc_gap": {"dense_pred": dense}},
        n_boot=n_boot, ci_quantiles=q, random_state=0)
    # Standard error of a 2.5 % quantile from n_boot draws, in units of the statistic's spread,
    # for the difference of two independent estimates; 4 of them, plus the grid of one sample.
    se = math.sqrt(2) * math.sqrt(0.025 * 0.975 / n_boot) / (math.exp(-Z * Z / 2) / math.sqrt(2 * math.pi))

    def close(mine_lo, mine_hi, theirs_lo, theirs_hi, n):
        sigma = (mine_hi - mine_lo) / (2 * Z)
        slack = 4 * se * sigma + 0.5 / n
        assert abs(mine_lo - theirs_lo) <= slack and abs(mine_hi - theirs_hi) <= slack, (
            (mine_lo, mine_hi), (theirs_lo, theirs_hi), slack)

    rows = ours.groups.set_index("group_id")
    low, high = mf.by_group_ci
    for k in range(4):
        n_k = int(rows.loc[k, "n"])
        for col in ("accuracy", "dense_accuracy", "acc_gap"):
            close(rows.loc[k, f"{col}_low"], rows.loc[k, f"{col}_high"], low.loc[k, col], high.loc[k, col], n_k)
            assert rows.loc[k, col] == pytest.approx(mf.by_group.loc[k, col], abs=1e-12)
            assert rows.loc[k, f"{col}_low"] <= rows.loc[k, col] <= rows.loc[k, f"{col}_high"]  # covers it
        assert rows.loc[k, "excess_gap_low"] <= rows.loc[k, "excess_gap"] <= rows.loc[k, "excess_gap_high"]
    o_low, o_high = mf.overall_ci
    close(ours.overall["accuracy_low"], ours.overall["accuracy_high"], o_low["accuracy"], o_high["accuracy"], len(y))
    close(ours.overall["acc_gap_low"], ours.overall["acc_gap_high"], o_low["acc_gap"], o_high["acc_gap"], len(y))
    # Ψ_PW = max_g Δ_g − min_g Δ_g is Fairlearn's between-groups difference of Δ_g.
    d_low, d_high = mf.difference_ci(method="between_groups")
    n_min = int(rows["n"].min())
    close(ours.overall["psi_pw_low"], ours.overall["psi_pw_high"], d_low["acc_gap"], d_high["acc_gap"], n_min)
    # max_g ψ_g = max_g (Δ_g − Δ) is Fairlearn's to-overall difference of Δ_g (max_g |Δ_g − Δ|) when the
    # most-changed group is the hurt one, as group 3 is here by far.
    assert rows.loc[3, "excess_gap_low"] > 3 * rows.loc[:2, "excess_gap"].abs().max()
    t_low, t_high = mf.difference_ci(method="to_overall")
    close(ours.overall["max_excess_gap_low"], ours.overall["max_excess_gap_high"], t_low["acc_gap"],
          t_high["acc_gap"], n_min)
    for key in ("accuracy", "acc_gap", "max_excess_gap", "psi_pw"):
        assert ours.overall[f"{key}_low"] <= ours.overall[key] <= ours.overall[f"{key}_high"], key


def test_run_intervals_cover_every_split_and_flag_the_tolerance():
    y, g, sparse, dense = predictions()
    frame = pd.concat([pd.DataFrame({"split": s, "y_true": y, "group_id": g, "y_pred": sparse, "dense_pred": dense})
                       for s in ("test", "train")])
    groups, overall = run_intervals(frame, 4, BootstrapSettings(n_boot=50))
    assert list(overall["split"]) == ["train", "test"] and list(groups.columns[:3]) == ["split", "group_id", "n"]
    verdicts = tolerance_verdicts(groups["excess_gap_low"], groups["excess_gap_high"], groups["n"], 0.01)
    contains = (groups["excess_gap_low"] <= 0.01) & (groups["excess_gap_high"] >= 0.01)
    assert list(verdicts == "cannot tell") == list(contains) and contains.any() and not contains.all()
    assert all(v is None for v in tolerance_verdicts(groups["excess_gap_low"], groups["excess_gap_high"],
                                                     groups["n"], None))


def test_verdicts_read_the_whole_interval_against_the_tolerance():
    low = np.array([-0.05, 0.03, 0.0, np.nan, np.nan])
    high = np.array([0.02, 0.06, 0.05, np.nan, np.nan])
    n = np.array([100, 100, 100, 5, 0])
    verdicts = tolerance_verdicts(low, high, n, 0.02)
    assert list(verdicts) == ["meets ε", "exceeds ε", "cannot tell", "cannot tell", None]
    assert verdict_counts(verdicts) == {"meets ε": 1, "exceeds ε": 1, "cannot tell": 2}
    assert counts_text(verdicts) == "1 meets ε, 1 exceeds ε, 2 cannot tell"
    assert counts_text(["meets ε", "meets ε"]) == "2 meet ε"


@pytest.mark.parametrize("settings, message", [
    (dict(n_boot=0), "invalid n_boot=0: the number of resamples must be an integer from 1 to 100000"),
    (dict(n_boot=1.5), "invalid n_boot=1.5"),
    (dict(confidence=95), "invalid confidence=95: must be a fraction strictly between 0 and 1"),
    (dict(seed=-1), "invalid seed=-1: must be a non-negative integer"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        BootstrapSettings(**settings)


def test_bad_inputs_are_refused():
    y, g, sparse, dense = predictions()
    with pytest.raises(ValueError, match="must have the same length"):
        intervals(y, g, sparse[:-1], dense, 4)
    with pytest.raises(ValueError, match=r"group ids must be in 0..2, got 0..3"):
        intervals(y, g, sparse, dense, 3)
    with pytest.raises(ValueError, match="dense predictions are missing"):
        intervals(y, g, sparse, pd.array([pd.NA] * len(y), dtype="Int64"), 4)


def test_verdict_intervals_are_widened_for_the_groups_and_the_detectable_gap_matches_the_resamples():
    """Bonferroni: each corrected ψ_g interval is the percentile interval at 1 − 0.05/m for the m groups with an
    interval; without a correction it is the ordinary one. The formula for the smallest detectable gap agrees
    with the half-width of the resampled ψ_g interval where the groups have no gap."""
    rng = np.random.default_rng(5)
    n, groups = 20_000, 5
    g = rng.integers(0, groups, n)
    y = rng.integers(0, 2, n)
    flips = rng.random(n) < 0.06  # 6 % of the samples change correctness, alike in every group: no true gap
    dense = y.copy()
    sparse = np.where(flips, 1 - y, y)
    res = intervals(y, g, sparse, dense, groups, BootstrapSettings(n_boot=2000))
    rows = res.groups
    assert res.overall["intervals"] == groups and res.overall["corrected_confidence"] == pytest.approx(0.99)
    assert (rows.excess_gap_corrected_low < rows.excess_gap_low).all()
    assert (rows.excess_gap_corrected_high > rows.excess_gap_high).all()
    half = (rows.excess_gap_high - rows.excess_gap_low) / 2
    ratio = rows.min_detectable_gap / half
    assert ratio.between(0.9, 1.1).all(), ratio
    plain = intervals(y, g, sparse, dense, groups, BootstrapSettings(n_boot=2000, correction="none")).groups
    # not widened for the groups: the wider of the percentile interval and ψ_g ± the detectable gap
    np.testing.assert_allclose(plain.excess_gap_corrected_low,
                               np.minimum(plain.excess_gap_low, plain.excess_gap - plain.min_detectable_gap))
    np.testing.assert_allclose(plain.excess_gap_corrected_high,
                               np.maximum(plain.excess_gap_high, plain.excess_gap + plain.min_detectable_gap))
    with pytest.raises(ValueError, match="invalid correction='holm'"):
        BootstrapSettings(correction="holm")


def test_a_small_group_without_changed_answers_still_gets_an_honest_verdict_interval():
    """30 samples, none of which the two models disagree on, in a split where 10 % of answers changed: every
    resample repeats the group's Δ_g, so its percentile interval is as narrow as the whole model's; the verdict
    interval borrows the split's rate of changed answers and is as wide as a group of its size needs."""
    rng = np.random.default_rng(2)
    g = np.r_[np.zeros(30, int), rng.integers(1, 4, 3000)]
    y = rng.integers(0, 2, len(g))
    dense = y.copy()
    sparse = np.where((g > 0) & (rng.random(len(g)) < 0.1), 1 - y, y)
    row = intervals(y, g, sparse, dense, 4, BootstrapSettings(n_boot=500)).groups.iloc[0]
    # the percentile interval moves only with the whole model's gap: about 2 points wide
    assert row.excess_gap_high - row.excess_gap_low < 0.03
    assert row.excess_gap_corrected_high - row.excess_gap_corrected_low > 0.25
    assert row.excess_gap_corrected_low < row.excess_gap < row.excess_gap_corrected_high


def test_the_detectable_gap_grows_as_a_group_shrinks_and_is_undefined_without_samples():
    gap = min_detectable_gap([0, 100, 400, 1600], 10_000, 0.05, 1.96)
    assert np.isnan(gap[0])
    assert gap[1] == pytest.approx(1.96 * np.sqrt((1 - 0.01) * 0.05 / 100))
    assert gap[1] > gap[2] > gap[3] and gap[1] / gap[2] == pytest.approx(2, rel=0.03)


def test_a_runs_detectable_gaps_are_the_intervals_own_per_split():
    from ceag.analysis.verdicts import detectable_gaps

    rng = np.random.default_rng(4)
    frames = []
    for split, n in (("train", 900), ("test", 400)):
        y = rng.integers(0, 3, n)
        frames.append(pd.DataFrame({"split": split, "y_true": y, "group_id": rng.integers(0, 3, n),
                                    "y_pred": np.where(rng.random(n) < 0.8, y, (y + 1) % 3),
                                    "dense_pred": np.where(rng.random(n) < 0.9, y, (y + 1) % 3)}))
    frame = pd.concat(frames, ignore_index=True)
    gaps = detectable_gaps(frame).set_index(["split", "group_id"])
    for split, part in frame.groupby("split"):
        rows = intervals(part.y_true, part.group_id, part.y_pred, part.dense_pred, 3,
                         BootstrapSettings(n_boot=10)).groups
        np.testing.assert_allclose(gaps.loc[split, "min_detectable_gap"], rows.min_detectable_gap)
        assert list(gaps.loc[split, "n"]) == list(rows.n)
