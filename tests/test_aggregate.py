"""The reproductions' aggregate: rliable's IQM with a seeded bootstrap CI."""

import numpy as np
import pytest

from benchmarks.aggregate import auc, iqm_ci


def test_iqm_trims_a_quarter_each_side():
    iqm, low, high = iqm_ci(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), reps=200)
    assert iqm == pytest.approx(3.0)  # mean of 2, 3, 4
    assert low <= iqm <= high


def test_same_seed_same_interval_and_nan_counts_as_worst():
    scores = np.array([5.0, 1.0, np.nan, 3.0, 8.0])
    assert iqm_ci(scores, seed=3, reps=200) == iqm_ci(scores, seed=3, reps=200)
    assert iqm_ci(scores, reps=200) == iqm_ci(np.array([5.0, 1.0, 1.0, 3.0, 8.0]), reps=200)


def test_empty_scores_are_refused():
    with pytest.raises(ValueError, match="at least one score"):
        iqm_ci(np.array([]))


def test_auc_is_the_mean_of_the_finite_curve():
    class Log:
        def returns(self):
            return np.array([np.nan, 1.0, 3.0])

    assert auc(Log()) == pytest.approx(2.0)


def test_seed_matters_and_global_rng_is_left_alone():
    scores = np.arange(12.0) ** 2
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first = iqm_ci(scores, seed=1, reps=200)
    assert np.array_equal(np.random.get_state()[1], before)
    assert iqm_ci(scores, seed=1, reps=200) == first
    assert iqm_ci(scores, seed=2, reps=200) != first
