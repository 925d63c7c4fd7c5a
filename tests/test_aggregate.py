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


def test_run_summary_has_one_sorted_row_per_run_and_regenerates_from_raw_logs(tmp_path):
    import csv

    from benchmarks.aggregate import main, write_run_summary
    from solvers.base import RunLog, StepRecord

    def log(solver, seed, returns):
        run = RunLog(solver=solver, env_id="HyperRL/A2C-CartPole-v0", seed=seed, threads=1)
        for i, ret in enumerate(returns):
            hp = {"lr": 1e-3}
            run.append(
                StepRecord(step=i, timesteps=16 * (i + 1), hyperparameters=hp, reward=0.0, episode_returns=ret, wall_time=0.0)
            )
        return run

    logs = [log("static", 1, [(), (2.0,), (4.0,)]), log("epgt", 0, [(1.0,), (3.0,)])]
    for run in logs:
        run.save(tmp_path / "runs" / f"{run.solver}-seed{run.seed}.jsonl")
    rows = list(csv.DictReader(write_run_summary(logs, tmp_path / "a.csv").open()))
    assert [(r["solver"], r["seed"]) for r in rows] == [("epgt", "0"), ("static", "1")]
    assert rows[1] == {
        "solver": "static", "env_id": "HyperRL/A2C-CartPole-v0", "seed": "1", "threads": "1",
        "hyper_steps": "3", "env_steps": "48", "final_return": "3", "auc": "2.5",
    }  # fmt: skip
    # final: mean of the last 10 episodes (2, 4); auc: mean of the curve [nan, 2, 3] over its finite steps
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty"), "--out", str(tmp_path / "c.csv")])
