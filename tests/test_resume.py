"""Ctrl-C and ``--resume`` for every registered solver: the resumed lifetime is the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal

import gymnasium as gym
import pytest
import torch

import solvers.cli as cli
from solvers import SOLVERS, is_stateful, make_solver
from solvers.base import RunLog

TINY = ["--num-envs", "2", "--config", "num_steps=8", "--iterations-per-step", "1", "--total-timesteps", "96"]
"""6 hyper-steps of 16 env steps"""
TINY_ES = ["--num-envs", "1", "--total-timesteps", "60"] + [
    arg for item in ("population=2", "max_episode_steps=5", "backend=serial") for arg in ("--config", item)
]
"""6 hyper-steps of one ES iteration (2 members x 5 steps)"""
CASES = {
    "static": ("HyperRL/A2C-CartPole-v0", TINY),
    "random": ("HyperRL/A2C-CartPole-v0", TINY),
    "rnd": ("HyperRL/A2C-CartPole-v0", TINY),
    "epgt": ("HyperRL/PPO-CartPole-v0", TINY),
    "dqn": ("HyperRL/A2C-CartPole-v0", [*TINY, "--hyperparameters", "lr"]),
    "stac": ("HyperRL/IMPALA-CartPole-v0", TINY),
    "stacx": ("HyperRL/IMPALA-CartPole-v0", TINY),
    "bierl-pm": ("HyperRL/ES-InvertedPendulum-v0", TINY_ES),
    "bierl-npm": ("HyperRL/ES-InvertedPendulum-v0", TINY_ES),
    "optim4rl": ("HyperRL/A2C-CartPole-v0", TINY),
    "lpg": ("HyperRL/A2C-CartPole-v0", TINY),
}
"""a tiny lifetime of an id each solver runs on, as the command line takes it"""


POPULATION = {"pbt", "pb2"}
"""population-based solvers start over by design (Ray Tune's restore drops mutations, ray#54755)"""


def test_every_solver_has_a_case():
    assert set(CASES) == set(SOLVERS) - POPULATION


def test_a_population_based_run_refuses_resume_by_name(tmp_path, capsys):
    code = cli.main(["run", "pbt", "HyperRL/A2C-CartPole-v0", "--resume", str(tmp_path / "none.pt"), "--out", str(tmp_path)])
    assert code != 0
    assert "pbt runs cannot be resumed" in capsys.readouterr().out


class _SignalAt(gym.Wrapper):
    """Delivers a real SIGINT in the middle of hyper-step ``at`` (before the inner training runs)."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.env.step(action)


def _records(path) -> list[dict]:
    rows = [json.loads(row) for row in path.read_text().splitlines()[1:]]
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


@pytest.mark.parametrize(
    "name",
    list(CASES),
)
def test_ctrl_c_stops_on_a_step_boundary_and_resume_finishes_the_same_lifetime(name, tmp_path, monkeypatch):
    if name == "dqn":
        pytest.importorskip("stable_baselines3")
    env_id, options = CASES[name]
    argv = ["run", name, env_id, *options]
    assert cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = _records(tmp_path / "whole" / f"{name}-seed0.jsonl")
    assert len(whole) >= 5

    plain_make_env = cli.make_env
    monkeypatch.setattr(cli, "make_env", lambda *a, **k: _SignalAt(plain_make_env(*a, **k), at=3))
    cut = tmp_path / "cut"
    assert cli.main([*argv, "--out", str(cut)]) == 130
    assert _records(cut / f"{name}-seed0.partial.jsonl") == whole[:3]  # the signalled step still finished
    assert not (cut / f"{name}-seed0.jsonl").exists()
    checkpoint = cut / f"{name}-seed0.checkpoint.pt"
    assert checkpoint.exists(), f"{name} wrote no checkpoint"
    torch.load(checkpoint, weights_only=True)  # plain data only

    monkeypatch.setattr(cli, "make_env", plain_make_env)
    assert cli.main([*argv, "--out", str(cut), "--resume", str(checkpoint)]) == 0
    assert _records(cut / f"{name}-seed0.jsonl") == whole  # bit-for-bit the uninterrupted lifetime


def test_a_checkpoint_is_for_the_command_that_wrote_it(tmp_path, monkeypatch):
    argv = ["run", "random", "HyperRL/A2C-CartPole-v0", *TINY, "--out", str(tmp_path)]
    plain_make_env = cli.make_env
    monkeypatch.setattr(cli, "make_env", lambda *a, **k: _SignalAt(plain_make_env(*a, **k), at=2))
    assert cli.main(argv) == 130
    monkeypatch.setattr(cli, "make_env", plain_make_env)
    checkpoint = str(tmp_path / "random-seed0.checkpoint.pt")
    assert cli.main(["run", "random", "HyperRL/PPO-CartPole-v0", *TINY, "--resume", checkpoint]) == 2
    assert cli.main(["run", "static", "HyperRL/A2C-CartPole-v0", *TINY, "--resume", checkpoint]) == 2
    assert cli.main([*argv, "--seed", "1", "--resume", checkpoint]) == 2  # seed 0 is outside this command's seeds


def test_stateless_and_stateful_solvers_are_told_apart():
    assert {"static", "random", "rnd", "epgt"} <= {n for n in SOLVERS if is_stateful(n)}
    assert make_solver("static").state_dict() == {}


def test_random_resumes_its_draws_on_a_fresh_space():
    from _helpers import make_tiny

    def draws(solver, env, n):
        return [solver.act(None).tolist() for _ in range(n)]

    env = make_tiny("HyperRL/A2C-CartPole-v0")
    first = make_solver("random")
    obs, info = env.reset(seed=4)
    first.begin(env, obs, info, 4)
    head = draws(first, env, 3)
    state = first.state_dict()
    tail = draws(first, env, 3)

    again = make_solver("random")
    again.begin(env, obs, info, 4)
    again.load_state_dict(state)
    assert draws(again, env, 3) == tail and head != tail
    with pytest.raises(ValueError, match="random state_dict has the keys"):
        again.load_state_dict({"draws": 1, "extra": 2})
    env.close()


def test_runlog_records_the_thread_count_and_old_logs_still_load(tmp_path):
    assert cli.main(["run", "static", "HyperRL/A2C-CartPole-v0", *TINY, "--threads", "1", "--out", str(tmp_path)]) == 0
    header = json.loads((tmp_path / "static-seed0.jsonl").read_text().splitlines()[0])["header"]
    assert header["threads"] == 1 == torch.get_num_threads()
    old = {"header": {"solver": "static", "env_id": "e", "seed": 0, "space": []}}
    assert RunLog.loads(json.dumps(old)).threads is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "static", "HyperRL/A2C-CartPole-v0", "--threads", "0"])


def test_dqn_resumes_its_networks_replay_buffer_and_rngs_while_it_trains(tmp_path):
    """Library level, with DQN training from the second step, so the restored optimizer and buffer matter."""
    pytest.importorskip("stable_baselines3")
    from _helpers import make_tiny

    from solvers import checkpoint
    from solvers.base import StopRun

    kwargs = {"learning_starts": 2, "batch_size": 4, "target_update_interval": 2}

    def env():
        return make_tiny("HyperRL/A2C-CartPole-v0", hyper_steps=16, action_type="discrete", hyperparameters=["lr"])

    def rows(log):
        return [{k: v for k, v in vars(r).items() if k != "wall_time"} for r in log.records]

    straight = make_solver("dqn", **kwargs)
    whole = straight.run(env(), seed=2)

    def stop_at_3(record):
        if record.step == 2:
            raise StopRun

    cut, first = make_solver("dqn", **kwargs), env()
    with pytest.raises(StopRun) as stopped:
        cut.run(first, seed=2, callback=stop_at_3)
    assert rows(stopped.value.log) == rows(whole)[:3]
    path = checkpoint.save(tmp_path / "c.pt", solver_name="dqn", solver=cut, env=first, log=stopped.value.log)
    state = checkpoint.load(path, solver_name="dqn", env_id=stopped.value.log.env_id)
    again, second = make_solver("dqn", **kwargs), env()
    obs, log = checkpoint.restore(state, again, second, str(path))
    assert again.model is None  # the model is rebuilt on the restored env by resume
    assert rows(again.resume(second, obs, log)) == rows(whole)
    assert cut.model._n_updates > 0  # it trained before the cut
    # the networks end equal too: the optimizer, replay buffer and counters came back
    assert again.model._n_updates == straight.model._n_updates
    expected = straight.model.policy.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in again.model.policy.state_dict().items())
