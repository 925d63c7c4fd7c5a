"""The BiERL reproduction's two axes and its claim test (benchmarks/bierl/summary.py)."""

import numpy as np
import pytest

from benchmarks.bierl.summary import charged_steps, claims, score_at


def _run(method="bierl-npm", timesteps=(10, 20, 30), meta=(0, 5, 50), curve=(1.0, 2.0, 3.0), **options):
    return {"method": method, "timesteps": list(timesteps), "meta_env_steps_curve": list(meta), "curve": list(curve),
            "solver_options": options}  # fmt: skip


def test_charged_steps_add_the_scoring_steps_unless_the_lifetime_already_counts_them():
    np.testing.assert_array_equal(charged_steps(_run()), [10, 25, 80])
    np.testing.assert_array_equal(charged_steps(_run(charge_budget=True)), [10, 20, 30])


def test_a_run_is_scored_at_its_last_iteration_within_the_charged_budget():
    assert score_at(_run(), 26) == 2.0
    assert score_at(_run(), 80) == 3.0
    assert np.isnan(score_at(_run(), 9))  # nothing fits: scored as worst by the IQM


def test_the_claim_compares_with_the_median_and_the_best_fixed_sigma():
    axis = "iterations"
    scores = {
        "es-0.02": {axis: {"iqm": 1.0, "low": 0.5, "high": 1.5}},
        "es-0.05": {axis: {"iqm": 10.0, "low": 8.0, "high": 12.0}},
        "es-0.08": {axis: {"iqm": 4.0, "low": 3.0, "high": 5.0}},
        "bierl-pm": {axis: {"iqm": 8.5, "low": 7.0, "high": 9.0}},
        "bierl-npm": {axis: {"iqm": 4.5, "low": 2.0, "high": 6.0}},
    }
    result = claims(scores, axis)
    assert set(result) == {"bierl-pm", "bierl-npm"}
    assert result["bierl-pm"] == {"above_median": True, "within_best_ci": True, "median": 4.0, "best": "es-0.05"}
    assert (result["bierl-npm"]["above_median"], result["bierl-npm"]["within_best_ci"]) == (True, False)
    scores["bierl-npm"][axis]["iqm"] = 3.9
    assert claims(scores, axis)["bierl-npm"]["above_median"] is False
    assert claims({"bierl-pm": scores["bierl-pm"]}, axis) == {}  # nothing fixed to compare with
    scores["nsres-0.05"] = {axis: {"iqm": 100.0, "low": 90.0, "high": 110.0}}
    scores["nsres+bierl-pm"] = {axis: {"iqm": 95.0, "low": 90.0, "high": 99.0}}
    result = claims(scores, axis)  # each arm against the fixed sigmas of its own inner learner
    assert result["bierl-pm"]["best"] == "es-0.05" and result["nsres+bierl-pm"]["best"] == "nsres-0.05"
    assert result["nsres+bierl-pm"]["median"] == 100.0 and result["nsres+bierl-pm"]["above_median"] is False


def test_an_unknown_scorer_or_starting_sigma_is_refused_by_name():
    from benchmarks.bierl.reproduce import meta_options

    assert meta_options("bierl-npm:perturbed@0.08") == {"scorer": "perturbed", "init": {"sigma": 0.08}}
    assert meta_options("bierl-pm") == {"scorer": "lookahead", "init": {}}
    with pytest.raises(ValueError, match="unknown scorer 'best'"):
        meta_options("bierl-pm:best")
    with pytest.raises(ValueError, match="after '@' must be a number, got 'high'"):
        meta_options("bierl-pm@high")
    from benchmarks.bierl.reproduce import parse_method

    assert parse_method("bierl-npm:perturbed@0.08") == ("ES", "bierl-npm")
    with pytest.raises(ValueError, match="'es-0.05@0.08': a fixed-sigma arm takes no scorer"):
        parse_method("es-0.05@0.08")


def test_results_written_before_the_scorers_had_names_still_summarise():
    from benchmarks.bierl.summary import scoring_steps

    old = {"method": "bierl-pm", "timesteps": [10, 20], "curve": [1.0, 2.0], "lookahead_env_steps": 7}
    assert scoring_steps(old) == 7
    np.testing.assert_array_equal(charged_steps(old), [10, 20])


def test_merging_results_adds_the_missing_methods_and_refuses_incomparable_files(tmp_path):
    import json

    from benchmarks.bierl.reproduce import merge_results

    opts = {"task": "T", "population": 4, "iterations": 3, "episode_steps": 0, "interval": 1, "optimizer": "adam", "lr": 0.01}
    main, fixed, other = tmp_path / "T.json", tmp_path / "fixed.json", tmp_path / "other.json"
    main.write_text(json.dumps({"options": opts, "runs": [_run("bierl-npm") | {"seed": 0}], "wall_time": 1.0}))
    fixed_runs = [_run("es-0.05") | {"seed": 0}, _run("bierl-npm") | {"seed": 0, "curve": [9.0]}]
    fixed.write_text(json.dumps({"options": opts, "runs": fixed_runs, "wall_time": 2.0}))
    other.write_text(json.dumps({"options": opts | {"optimizer": "sgd"}, "runs": [], "wall_time": 0.0}))
    merge_results(main, [fixed])
    data = json.loads(main.read_text())
    assert [(r["method"], r["curve"]) for r in data["runs"]] == [("bierl-npm", [1.0, 2.0, 3.0]), ("es-0.05", [1.0, 2.0, 3.0])]
    assert data["wall_time"] == 3.0 and data["options"]["methods"] == ["bierl-npm", "es-0.05"]
    with pytest.raises(SystemExit, match=r"differs from .* in \['optimizer'\]"):
        merge_results(main, [other])
