"""Bootstrap intervals: 1,000 paired resamples of a 10,000-sample split with 100 groups.

Also times Fairlearn's MetricFrame bootstrap on the same predictions (fewer resamples, scaled to
1,000) as the reference the vectorized version replaces.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import Result, median_time
from ceag.analysis.bootstrap import BootstrapSettings, intervals


def predictions(n: int = 10_000, groups: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    y = rng.integers(0, 10, n)
    sparse = np.where(rng.random(n) < 0.8, y, (y + 1) % 10)
    dense = np.where(rng.random(n) < 0.9, y, (y + 1) % 10)
    return y, g, sparse, dense


def run(quick: bool = False) -> list[Result]:
    y, g, sparse, dense = predictions()
    settings = BootstrapSettings(n_boot=1000)
    seconds = median_time(lambda: intervals(y, g, sparse, dense, 100, settings), repeat=3 if quick else 7)
    out = [Result("bootstrap intervals, 1,000 resamples, N=10,000, 100 groups", seconds, "s", "< 1 s", seconds < 1.0)]
    try:
        import pandas as pd
        from fairlearn.metrics import MetricFrame
    except ImportError:
        return out
    n_boot = 20 if quick else 50

    def accuracy(y_true, y_pred):
        return float(np.mean(y_true == y_pred))

    start = time.perf_counter()
    MetricFrame(metrics={"accuracy": accuracy}, y_true=pd.Series(y), y_pred=pd.Series(sparse),
                sensitive_features=pd.Series(g, name="group"), n_boot=n_boot, ci_quantiles=[0.025, 0.975],
                random_state=0)
    fairlearn = (time.perf_counter() - start) * 1000 / n_boot
    out.append(Result("Fairlearn MetricFrame, accuracy only, same split (scaled to 1,000)", fairlearn, "s",
                      note=f"measured with {n_boot} resamples"))
    return out


if __name__ == "__main__":
    for r in run():
        print(r.line())
