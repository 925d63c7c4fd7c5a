"""``--tensorboard``: one point per hyper-step of every scalar a step's ``info`` carries, against env steps."""

from __future__ import annotations

import pytest

from solvers.base import RunLog
from solvers.cli import main

A2C = "HyperRL/A2C-CartPole-v0"
TINY = ["--total-timesteps", "64", "--iterations-per-step", "1", "--num-envs", "2", "--config", "num_steps=8"]


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_run_writes_every_hyper_step_scalar_named_as_the_library_names_it(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (the optional `distributed` extra)")
    assert main(["run", "random", A2C, "--out", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb"), *TINY]) == 0
    log = RunLog.load(tmp_path / "runs" / "random-seed0.jsonl")
    scalars = _scalars(tmp_path / "tb" / "random-seed0")
    assert {"reward", "wall_time", "hyperparameters/lr"} <= set(scalars)
    assert any(tag.startswith("losses/") for tag in scalars) and any(tag.startswith("stats/") for tag in scalars)
    assert [step for step, _ in scalars["reward"]] == [int(t) for t in log.timesteps]
    assert [v for _, v in scalars["hyperparameters/lr"]] == pytest.approx([r.hyperparameters["lr"] for r in log.records])
    assert [v for _, v in scalars["reward"]] == pytest.approx([r.reward for r in log.records])
    finite = [(int(t), r) for t, r in zip(log.timesteps, log.returns()) if r == r]
    assert [step for step, _ in scalars["return"]] == [step for step, _ in finite] and finite
    assert [v for _, v in scalars["return"]] == pytest.approx([v for _, v in finite])  # the RunLog's curve


def test_hyperrl_run_pbt_saves_the_best_lineage_every_member_and_their_scalars(ray_local, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (the optional `distributed` extra)")
    out, tb = tmp_path / "runs", tmp_path / "tb"
    argv = ["run", "pbt", A2C, "--population", "2", "--perturbation-interval", "1", "--seed", "0"]
    assert main([*argv, "--out", str(out), "--tensorboard", str(tb), *TINY]) == 0
    best = RunLog.load(out / "pbt-seed0.jsonl")
    members = [RunLog.load(p) for p in sorted((out / "population").glob("pbt-seed0-member*.jsonl"))]
    assert len(best) == 4 and len(members) == 2
    assert best.final_return() == max(m.final_return() for m in members)
    assert (out / "population" / "pbt-seed0-exploits.jsonl").exists()
    dirs = [d for d in tb.iterdir() if d.is_dir()]
    assert len(dirs) == 2 and all("hyperparameters/lr" in _scalars(d) for d in dirs)
