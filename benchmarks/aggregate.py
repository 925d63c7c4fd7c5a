"""The one aggregate every reproduction reports: IQM over runs with a 95% bootstrap CI (rliable).

Scores are one number per run (seed) of one task, so rliable's stratified
bootstrap reduces to resampling runs (percentile interval, seeded).
"""

from __future__ import annotations

import numpy as np

CI_METHOD = "rliable.library.get_interval_estimates: IQM, 95% percentile bootstrap over runs"


def iqm_ci(scores: np.ndarray, *, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(iqm, ci_low, ci_high)`` of one score per run; NaN scores (diverged runs) count as the worst run."""
    from rliable import library, metrics

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("iqm_ci needs at least one score")
    if not np.isfinite(scores).any():
        return float("nan"), float("nan"), float("nan")
    scores = np.nan_to_num(scores, nan=np.nanmin(scores)).reshape(-1, 1)
    # rliable's StratifiedBootstrap draws from numpy's global RNG and ignores
    # ``random_state``, so seed the global RNG for the call and put it back after
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        point, ci = library.get_interval_estimates({"runs": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps)
    finally:
        np.random.set_state(saved)
    return float(point["runs"][0]), float(ci["runs"][0, 0]), float(ci["runs"][1, 0])


def auc(log) -> float:
    """Area under a RunLog's return curve, per hyper-step (the mean over the lifetime); NaN steps skipped."""
    curve = log.returns()
    return float(np.nanmean(curve)) if np.isfinite(curve).any() else float("nan")
