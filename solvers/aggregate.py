"""Aggregates over seeds, as every report gives them: IQM with a 95% bootstrap CI, and probability of improvement (rliable).

Scores are one number per run (seed) of one task, so rliable's stratified
bootstrap reduces to resampling runs (percentile interval, seeded).  rliable
(the ``dev`` and ``distributed`` extras) is imported when a number is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CI_METHOD = "rliable.library.get_interval_estimates: IQM, 95% percentile bootstrap over runs"


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except ImportError as err:
        raise ValueError("aggregates over seeds need rliable: pip install 'hyperrl[distributed]'") from err
    return library, metrics


def _seeded(seed: int, fn: Callable[[], Any]) -> Any:
    # rliable's StratifiedBootstrap draws from numpy's global RNG and ignores
    # ``random_state``, so seed the global RNG for the call and put it back after
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return fn()
    finally:
        np.random.set_state(saved)


def _worst_for_nan(scores: np.ndarray) -> np.ndarray:
    """NaN scores (diverged runs, runs without an episode) count as the worst finite one."""
    return np.nan_to_num(scores, nan=np.nanmin(scores))


def iqm_ci(scores: np.ndarray, *, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(iqm, ci_low, ci_high)`` of one score per run; NaN scores (diverged runs) count as the worst run."""
    library, metrics = _rliable()
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("iqm_ci needs at least one score")
    if not np.isfinite(scores).any():
        return float("nan"), float("nan"), float("nan")
    scores = _worst_for_nan(scores).reshape(-1, 1)
    point, ci = _seeded(
        seed, lambda: library.get_interval_estimates({"runs": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps)
    )
    return float(point["runs"][0]), float(ci["runs"][0, 0]), float(ci["runs"][1, 0])


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(P(X > Y), ci_low, ci_high)``: the chance a run of X beats a run of Y, averaged over tasks (ties count half).

    ``x`` and ``y`` are ``[runs, tasks]`` scores (each task's scores on its own scale: only
    their order within a task matters); NaN counts as the worst run of that method.
    """
    library, metrics = _rliable()
    x, y = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.shape[1] != y.shape[1] or not x.size or not y.size:
        raise ValueError(f"probability_of_improvement needs [runs, tasks] scores on the same tasks, got {x.shape}, {y.shape}")
    both = np.concatenate([x.ravel(), y.ravel()])
    low = np.nanmin(both) if np.isfinite(both).any() else 0.0
    x, y = np.nan_to_num(x, nan=low - 1.0), np.nan_to_num(y, nan=low - 1.0)
    point, ci = _seeded(
        seed,
        lambda: library.get_interval_estimates(
            {"pair": (x, y)}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=reps
        ),
    )
    return float(point["pair"][0]), float(ci["pair"][0, 0]), float(ci["pair"][1, 0])


def auc(log: Any) -> float:
    """Area under a RunLog's return curve, per hyper-step (the mean over the lifetime); NaN steps skipped."""
    curve = log.returns()
    return float(np.nanmean(curve)) if np.isfinite(curve).any() else float("nan")
