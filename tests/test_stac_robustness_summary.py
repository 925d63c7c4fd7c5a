"""The STAC robustness protocol's pooling over tasks (benchmarks/stac/summarise_robustness.combine)."""

import json

import pytest

from benchmarks.stac.summarise_robustness import combine


def _summary(path, task, cells, budget=50_000):
    path.mkdir()
    settings = {"task": task, "budget": budget, "env_id": f"HyperRL/IMPALA-{task}-v0"}
    (path / "robustness.json").write_text(json.dumps({"settings": settings, "cells": cells,
                                                      "share_beating_impala_by_mean_auc": {}}))  # fmt: skip
    return path


def _cell(impala, stac):
    return {arm: {"auc_mean": v, "auc": {"per_seed": [v - 0.1, v + 0.1]}} for arm, v in (("impala", impala), ("stac", stac))}


def test_shares_pool_the_cells_of_every_task(tmp_path):
    a = _summary(tmp_path / "a", "CartPole", {"default": _cell(1.0, 2.0), "gamma=0.9": _cell(5.0, 4.0), "g_v=2": _cell(1.0, 1.5)})
    b = _summary(tmp_path / "b", "Acrobot", {"default": _cell(3.0, 1.0), "gamma=0.9": _cell(2.0, 2.5)}, budget=100_000)
    shares = combine([a, b], tmp_path, reps=20)
    gamma = shares["gamma"]["stac"]
    assert gamma["cells"] == 4 and gamma["share"] == pytest.approx(0.5)  # CartPole default, Acrobot gamma 0.9
    assert sorted(gamma["wins"]) == ["Acrobot 100k gamma=0.9", "CartPole 50k default"]
    assert shares["g_v"]["stac"]["share"] == pytest.approx(2 / 3)  # default and g_v 2 on CartPole, not Acrobot's default
    assert "stacx" not in shares["gamma"]  # arms a summary does not hold are left out
    assert shares["g_v"]["stac"]["p_improvement"][0] == pytest.approx(2 / 3)  # every seed of a won cell beats every seed
    assert "| gamma | stac |" in (tmp_path / "robustness.md").read_text()


def test_a_summary_from_before_the_task_option_is_named_by_its_env_id(tmp_path):
    old = _summary(tmp_path / "old", "CartPole", {"default": _cell(1.0, 2.0)}, budget=30_000)
    payload = json.loads((old / "robustness.json").read_text())
    del payload["settings"]["task"]
    (old / "robustness.json").write_text(json.dumps(payload))
    assert combine([old], tmp_path, reps=20)["gamma"]["stac"]["wins"] == ["CartPole 30k default"]
