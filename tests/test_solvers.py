"""Baselines, RunLog and the command line's list, run and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import make_tiny

from solvers import make_solver
from solvers.base import RunLog, StepRecord
from solvers.cli import main


def record(step: int, returns: tuple[float, ...], lr: float = 1e-3) -> StepRecord:
    return StepRecord(
        step=step, timesteps=16 * (step + 1), hyperparameters={"lr": lr}, reward=1.0, episode_returns=returns, wall_time=0.1
    )


def test_runlog_round_trips_through_json_lines(tmp_path):
    log = RunLog(solver="static", env_id="HyperRL/PPO-CartPole-v0", seed=3, space=[{"name": "lr", "low": 1e-5}])
    log.append(record(0, (1.0, 2.0)))
    log.append(record(1, (), lr=2e-3))
    path = log.save(tmp_path / "deep" / "run.jsonl")
    loaded = RunLog.load(path)
    assert loaded == log
    assert json.loads(path.read_text().splitlines()[0])["header"]["seed"] == 3
    np.testing.assert_array_equal(loaded.schedule()["lr"], [1e-3, 2e-3])


def test_runlog_returns_are_a_running_mean_of_the_last_episodes():
    log = RunLog(solver="s", env_id="e", seed=0)
    for i, rets in enumerate([(), (1.0, 3.0), (), (5.0,)]):
        log.append(record(i, rets))
    curve = log.returns(window=2)
    assert np.isnan(curve[0])
    np.testing.assert_allclose(curve[1:], [2.0, 2.0, 4.0])
    assert log.final_return(window=3) == pytest.approx(3.0)


def test_runlog_load_rejects_a_file_without_header(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"step": 0}) + "\n")
    with pytest.raises(ValueError, match="is not a HyperRL RunLog"):
        RunLog.load(path)


def test_static_trains_with_the_ids_defaults_every_step():
    env = make_tiny(hyper_steps=3)
    defaults = env.unwrapped.hparam_space.defaults()
    log = make_solver("static").run(env, seed=0)
    assert len(log) == 3
    for rec in log.records:
        for name, value in defaults.items():
            # the Box action is float32: the decoded default is exact to float32 rounding
            assert rec.hyperparameters[name] == pytest.approx(value, rel=1e-5), name
    env.close()


def test_random_is_reproducible_per_seed_and_differs_across_seeds():
    def schedule(seed: int) -> np.ndarray:
        env = make_tiny(hyper_steps=3)
        log = make_solver("random").run(env, seed=seed)
        env.close()
        return log.schedule()["lr"]

    first = schedule(0)
    np.testing.assert_array_equal(first, schedule(0))
    assert not np.array_equal(first, schedule(1))
    assert len(set(first.tolist())) > 1  # it moves


def test_static_rejects_an_env_that_is_not_hyperrl():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="needs a HyperRL env"):
        make_solver("static").run(env, seed=0)


def test_cli_list_filters_ids(capsys):
    assert main(["list", "--filter", "PPO-CartPole-v0", "--markdown"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| id |")
    rows = [line for line in out[2:] if line.startswith("|")]
    assert len(rows) == 1 and "HyperRL/PPO-CartPole-v0" in rows[0] and "lr [1e-05, 0.01 log]" in rows[0]


def test_cli_run_writes_runlogs_and_plots_then_plot_redraws_them(tmp_path):
    out = tmp_path / "runs"
    argv = ["run", "random", "HyperRL/PPO-CartPole-v0", "--seeds", "2", "--out", str(out)]
    argv += ["--total-timesteps", "48", "--num-envs", "2", "--config", "num_steps=8", "--hyperparameters", "lr,clip"]
    argv += ["--iterations-per-step", "1"]
    assert main(argv) == 0
    logs = [RunLog.load(out / f"random-seed{s}.jsonl") for s in (0, 1)]
    assert [log.seed for log in logs] == [0, 1]
    assert all(len(log) == 3 and set(log.records[0].hyperparameters) >= {"lr", "clip"} for log in logs)
    assert [s["name"] for s in logs[0].space] == ["lr", "clip"]
    for name in ("random-returns.png", "random-schedule.png"):
        assert (out / name).stat().st_size > 1000
    redrawn = tmp_path / "plots"
    assert main(["plot", *map(str, sorted(out.glob("*.jsonl"))), "--out", str(redrawn)]) == 0
    assert {p.name for p in redrawn.iterdir()} == {"returns.png", "schedule.png"}


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    argv = ["run", "static", "HyperRL/PPO-CartPole-v0", "--out", str(tmp_path), "--hyperparameters", "nope"]
    assert main(argv) == 2
    assert "nope" in capsys.readouterr().out


def test_every_solver_declares_a_spec_and_the_command_line_builds_its_env_from_it():
    from solvers import SOLVERS, solver_class, solver_spec
    from solvers.base import SolverSpec
    from solvers.cli import build_parser, make_env

    assert all(isinstance(solver_class(name).spec, SolverSpec) for name in SOLVERS)
    assert {n for n in SOLVERS if solver_spec(n).action_type == "discrete"} == {"epgt", "rnd", "dqn"}

    def env_of(solver, env_id, *extra):
        argv = ["run", solver, env_id, "--total-timesteps", "32", "--num-envs", "1", *extra]
        env = make_env(build_parser().parse_args(argv), solver=solver)
        env.close()
        return env

    epgt = env_of("epgt", "HyperRL/ES-InvertedPendulum-v0", "--config", "population=2", "--config", "max_episode_steps=4")
    assert epgt.spec.kwargs["action_type"] == "discrete" and "projection" in epgt.observation_space.spaces  # added to the id's
    assert env_of("stacx", "HyperRL/IMPALA-CartPole-v0").spec.kwargs["config"] == {"aux_heads": 2}
    assert env_of("stacx", "HyperRL/IMPALA-CartPole-v0", "--config", "aux_heads=3").spec.kwargs["config"] == {"aux_heads": 3}
    assert env_of("rnd", "HyperRL/A2C-CartPole-v0", "--action-type", "continuous").spec.kwargs["action_type"] == "continuous"


def test_a_solver_spec_refuses_an_unknown_action_type():
    from solvers.base import SolverSpec

    with pytest.raises(ValueError, match="SolverSpec.action_type must be 'continuous' or 'discrete', got 'box'"):
        SolverSpec(action_type="box")
