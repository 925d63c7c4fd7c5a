"""EPGT as a black-box solver: action encoding, epsilon, reward pairing, resume, registry and CLI."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from _helpers import CARTPOLE, make_tiny
from gymnasium import spaces

from hyperenvs.wrappers import JointDiscreteAction
from solvers import SOLVERS, make_solver, solver_spec
from solvers.epgt import EPGTSolver, JointActions, linear_epsilon

REFERENCE_BINS = {
    "lr": [1.5e-4, 3e-4, 6e-4],
    "clip": [0.1, 0.2, 0.3, 0.4, 0.5],
    "gae_lambda": [0.9, 0.925, 0.95, 0.975, 0.99],
    "minibatch_size": [32, 64, 128],
}


def tiny_discrete(hyper_steps: int = 4, **kw) -> gym.Env:
    return make_tiny(CARTPOLE, hyper_steps, action_type="discrete", **kw)


def test_epsilon_falls_linearly_over_the_first_half_then_stays():
    assert linear_epsilon(0, 1000) == 1.0
    assert linear_epsilon(250, 1000) == pytest.approx(1 - 0.99 * 0.5)
    assert linear_epsilon(500, 1000) == pytest.approx(0.01)
    assert linear_epsilon(999, 1000) == pytest.approx(0.01)


def test_solver_epsilon_follows_the_envs_budget_and_timesteps():
    env = tiny_discrete(4)  # 64 env steps
    solver = EPGTSolver()
    obs, info = env.reset(seed=0)
    solver.begin(env, obs, info, seed=0)
    assert solver.budget == 64 and solver.epsilon() == 1.0
    action = solver.act(obs)
    obs, reward, term, trunc, info = env.step(action)
    solver.observe(action, obs, reward, term or trunc, info)
    assert info["timesteps"] == 16 and solver.epsilon() == pytest.approx(1 - 0.99 * 16 / 32)
    env.close()


def test_joint_index_round_trips_through_actions_and_hyperparameter_values():
    env = tiny_discrete(
        hyperparameters={"lr": (1e-5, 1e-2), "clip": None, "gae_lambda": None, "minibatch_size": None}, bins=REFERENCE_BINS
    )
    joint = JointActions.from_space(env.action_space)
    space = env.get_wrapper_attr("hparam_space")
    assert joint.n == 225
    assert joint.to_action(0).tolist() == [0, 0, 0, 0] and joint.to_action(1).tolist() == [0, 0, 0, 1]
    assert joint.to_action(224).tolist() == [2, 4, 4, 2]
    assert space.decode(joint.to_action(224)) == {"lr": 6e-4, "clip": 0.5, "gae_lambda": 0.99, "minibatch_size": 128}
    for index in range(joint.n):
        values = space.decode(joint.to_action(index))
        assert joint.to_index(space.encode(values)) == index
    with pytest.raises(ValueError, match="outside"):
        joint.to_action(225)
    env.close()


class FakeHyperEnv(gym.Env):
    """Ten hyper-steps; step t finishes one inner episode of return 10 t, except step 3, which finishes none.

    Its rollout returns encode the action: iteration j of step t reports ``100 t + 10 j + a_{t-1}`` for j = 0 (the
    rollout collected before a_t's first update, so with the previous action) and ``100 t + 10 j + a_t`` after.
    """

    def __init__(self, iterations: int = 1):
        self.iterations, self.previous = iterations, 0

    observation_space = spaces.Dict({"projection": spaces.Box(-np.inf, np.inf, (6,), np.float32)})
    action_space = spaces.MultiDiscrete([3, 2])
    total_timesteps = 100

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.previous = 0, 0
        return self._obs(), {"timesteps": 0}

    def _obs(self):
        return {"projection": (np.linspace(-1, 1, 6) + 0.25 * self.t).astype(np.float32)}  # distinct, unsaturated

    def step(self, action):
        self.t += 1
        returns = () if self.t == 3 else (10.0 * self.t,)
        a = int(action[0]) * 2 + int(action[1])  # the joint index
        rollouts = tuple(100.0 * self.t + 10 * j + (self.previous if j == 0 else a) for j in range(self.iterations))
        self.previous = a
        info = {
            "timesteps": 10 * self.t,
            "episode_returns": returns,
            "rollout_return": rollouts,
            "hyperparameters": {"a": float(action[0])},
        }
        return self._obs(), float(np.mean(returns)) if returns else 0.0, False, self.t == 10, info


def stored_values(mem) -> list[tuple[int, float]]:
    """(action, value) of each slot, oldest first; every slot holds exactly one action here."""
    out = []
    for slot in mem.slot_order():
        (action,) = np.flatnonzero(mem.known[slot])
        out.append((int(action), float(mem.values[slot, action])))
    return out


@pytest.mark.parametrize("iterations", [1, 3])
def test_each_action_is_paired_with_the_first_rollout_after_its_update(iterations):
    solver = EPGTSolver(encoder="random", write_rule="max")  # max rule: no neighbour averaging blurs the check
    log = solver.run(FakeHyperEnv(iterations), seed=0)
    stored = stored_values(solver.memory)
    if iterations == 1:  # a_t's rollout is the first of step t+1: 100 (t+1) + a_t; the last action has none
        assert len(stored) == 9
        assert stored == [(a, 100.0 * (t + 2) + a) for t, (a, _) in enumerate(stored)]
    else:  # the second iteration of step t: 100 t + 10 + a_t, for every step
        assert len(stored) == 10
        assert stored == [(a, 100.0 * (t + 1) + 10 + a) for t, (a, _) in enumerate(stored)]
    actions = [int(r.hyperparameters["a"]) for r in log.records]
    assert [a // 2 for a, _ in stored] == actions[: len(stored)]


def test_a_learning_episode_gets_the_rollout_after_its_last_action():
    solver = EPGTSolver(encoder="random", write_rule="max", episode_length=2)
    solver.run(FakeHyperEnv(1), seed=0)
    stored = stored_values(solver.memory)
    assert len(stored) == 8  # episodes (1,2), (3,4), ..., (7,8); (9,10) has no rollout after it
    for e in range(4):  # both actions get step 2e+3's first rollout: 100 (2e + 3) + the episode's last action
        last = stored[2 * e + 1][0]
        assert [v for _, v in stored[2 * e : 2 * e + 2]] == [100.0 * (2 * e + 3) + last] * 2


@pytest.mark.parametrize("missing", [(), (float("nan"),)])
def test_rollout_pairing_refuses_an_env_without_rollout_returns(missing):
    class NoRollouts(FakeHyperEnv):
        def step(self, action):
            obs, r, term, trunc, info = super().step(action)
            return obs, r, term, trunc, {**info, "rollout_return": missing}

    with pytest.raises(ValueError, match="finished_episodes"):
        EPGTSolver(encoder="random").run(NoRollouts(), seed=0)


def test_finished_episodes_pairs_each_action_with_the_episodes_finishing_after_it():
    solver = EPGTSolver(encoder="random", write_rule="max", hyper_return="finished_episodes", key_input="sigmoid")
    log = solver.run(FakeHyperEnv(), seed=0)
    assert len(log) == 10
    mem = solver.memory
    assert len(mem) == 9  # the last action has no measurement after it
    # Action of step t gets the mean return of step t+1; step 3 finished nothing, so steps 2 and 3 both get step 4's.
    expected = [20, 40, 40, 50, 60, 70, 80, 90, 100]
    stored = [mem.values[slot][mem.known[slot]] for slot in mem.slot_order()]
    assert [float(v[0]) for v in stored] == expected and all(len(v) == 1 for v in stored)


def test_refuses_envs_without_multidiscrete_actions_or_projection():
    env = make_tiny(CARTPOLE)  # continuous
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="MultiDiscrete"):
        EPGTSolver().begin(env, obs, info, seed=0)
    env.close()
    env = tiny_discrete(observe=["statistics"])
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="projection"):
        EPGTSolver().begin(env, obs, info, seed=0)
    env.close()


class NoUnwrapped(gym.Wrapper):
    @property
    def unwrapped(self):
        raise AssertionError("the solver reached for env.unwrapped")


def test_never_touches_env_unwrapped():
    env = NoUnwrapped(tiny_discrete(3))
    with pytest.raises(AssertionError):
        env.unwrapped  # noqa: B018 - the guard itself works
    log = EPGTSolver(train_prob=1.0).run(env, seed=0)
    assert len(log) == 3
    env.close()


def _drive(solver, env, obs, steps):
    actions = []
    for _ in range(steps):
        action = solver.act(obs)
        obs, reward, term, trunc, info = env.step(action)
        solver.observe(action, obs, reward, term or trunc, info)
        actions.append(action.tolist())
    return obs, actions


def test_save_load_continue_makes_the_same_decisions_as_an_uninterrupted_run(tmp_path):
    config = {"train_prob": 1.0, "episode_length": 2}  # VAE steps and re-keying every write; a pending buffer at the cut
    env = tiny_discrete(10)
    whole = EPGTSolver(**config)
    obs, info = env.reset(seed=3)
    whole.begin(env, obs, info, seed=3)
    _, expected = _drive(whole, env, obs, 10)
    env.close()

    env = tiny_discrete(10)
    first = EPGTSolver(**config)
    obs, info = env.reset(seed=3)
    first.begin(env, obs, info, seed=3)
    obs, head = _drive(first, env, obs, 5)
    assert first.vae_steps > 0 and first.episode  # the cut falls inside a learning episode
    path = first.save(tmp_path / "epgt.pt")
    del first
    resumed = EPGTSolver.load(path)
    _, tail = _drive(resumed, env, obs, 5)
    env.close()
    assert head + tail == expected
    assert len(set(map(tuple, expected))) > 1  # the decisions are not all the same
    np.testing.assert_array_equal(resumed.memory.values[: len(resumed.memory)], whole.memory.values[: len(whole.memory)])
    for (name, a), b in zip(resumed.vae.state_dict().items(), whole.vae.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_loaded_memory_is_reused_in_a_new_lifetime(tmp_path):
    solver = EPGTSolver()
    solver.run(tiny_discrete(4), seed=0)
    size = len(solver.memory)
    assert size > 0
    again = EPGTSolver.load(solver.save(tmp_path / "m.pt"))
    again.run(tiny_discrete(4), seed=1)
    assert len(again.memory) > size
    with pytest.raises(ValueError, match="saved with"):
        EPGTSolver(read_k=7).load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))


def test_registry_and_action_types():
    assert {"epgt", "rnd", "dqn"} <= set(SOLVERS)
    assert [solver_spec(n).action_type for n in ("epgt", "rnd", "dqn", "static")] == ["discrete"] * 3 + ["continuous"]
    env = tiny_discrete(3)
    log = make_solver("rnd").run(env, seed=0)
    grid = env.get_wrapper_attr("hparam_space").grids[0]
    assert len(log) == 3 and all(r.hyperparameters["lr"] in grid for r in log.records)
    env.close()


def test_dqn_runs_one_lifetime_on_the_joint_discrete_action():
    pytest.importorskip("stable_baselines3")
    env = tiny_discrete(5)
    assert JointDiscreteAction(env).action_space == spaces.Discrete(3 * 5 * 5 * 3)  # declared bins: lr, clip, lambda, minibatch
    log = make_solver("dqn", learning_starts=2).run(env, seed=0)
    assert len(log) == 5 and log.records[-1].timesteps == 80
    env.close()


def test_cli_run_picks_the_discrete_action_type_for_epgt(tmp_path):
    from solvers.cli import main

    code = main(
        [
            "run",
            "epgt",
            CARTPOLE,
            "--total-timesteps",
            "64",
            "--num-envs",
            "1",
            "--iterations-per-step",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = (tmp_path / "epgt-seed0.jsonl").read_text().splitlines()
    header = json.loads(rows[0])["header"]
    assert header["solver"] == "epgt" and len(rows) == 3  # header + 2 hyper-steps of 32 env steps
    assert (tmp_path / "epgt-returns.png").exists()


TINY_CLI = ["--num-envs", "2", "--config", "num_steps=8", "--iterations-per-step", "1", "--total-timesteps", "64"]
TINY_ES_CLI = ["--num-envs", "1", "--total-timesteps", "45"] + [
    arg for item in ("population=2", "max_episode_steps=5", "backend=serial") for arg in ("--config", item)
]


@pytest.mark.parametrize(
    "env_id, options",
    [
        ("HyperRL/PPO-CartPole-v0", TINY_CLI),
        ("HyperRL/A2C-CartPole-v0", TINY_CLI),
        ("HyperRL/IMPALA-CartPole-v0", [*TINY_CLI, "--hyperparameters", "lr,gamma,g_e"]),  # 5**7 joint actions is too many
        ("HyperRL/ES-InvertedPendulum-v0", TINY_ES_CLI),  # ES ids observe no projection unless asked
    ],
)
def test_epgt_runs_on_a_tiny_id_of_every_algorithm_family_as_the_command_line_makes_it(env_id, options):
    from solvers.cli import build_parser, make_env

    solver = EPGTSolver(train_prob=1.0)
    env = make_env(build_parser().parse_args(["run", "epgt", env_id, *options]), solver=solver)
    assert "projection" in env.observation_space.spaces
    log = solver.run(env, seed=0)
    env.close()
    assert len(log) >= 3 and len(solver.memory) >= 1 and solver.vae_steps >= 1
    assert len({tuple(r.hyperparameters.values()) for r in log.records}) > 1


def test_an_env_without_the_hyper_state_gets_a_value_error_that_says_how_to_make_it():
    env = make_tiny("HyperRL/ES-InvertedPendulum-v0", 3, action_type="discrete")  # observes fitness, statistics
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"observe=\['projection', 'fitness', 'statistics'\]"):
        EPGTSolver().begin(env, obs, info, seed=0)
    # or embed the parts it has (ES reports the centre policy's return as its rollout return)
    log = EPGTSolver(hyper_state=["fitness", "statistics"]).run(env, seed=0)
    assert len(log) >= 3
    env.close()
    with pytest.raises(ValueError, match="hyper_state"):
        EPGTSolver(hyper_state="projection")


def test_a_joint_action_too_large_for_the_memory_is_refused_with_a_way_out():
    env = make_tiny("HyperRL/IMPALA-CartPole-v0", 2, action_type="discrete")
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="78,125 choices.*control fewer hyperparameters"):
        EPGTSolver().begin(env, obs, info, seed=0)
    env.close()


def test_the_random_encoder_on_the_fixed_sigmoid_input_stores_no_hyper_states_in_memory():
    solver = EPGTSolver(encoder="random", key_input="sigmoid")  # nothing ever re-keys it
    solver.run(tiny_discrete(4), seed=0)
    assert len(solver.memory) > 0 and solver.memory.payload.shape[1] == 0
    assert solver.state_dict()["memory"]["payload"].numel() == 0


def _cli_run(tmp_path, *extra: str, seed: int = 0) -> int:
    from solvers.cli import main

    return main(["run", "epgt", CARTPOLE, *TINY_CLI, "--seed", str(seed), "--out", str(tmp_path / "runs"), *extra])


def _schedule(tmp_path, seed: int) -> list[dict]:
    rows = (tmp_path / "runs" / f"epgt-seed{seed}.jsonl").read_text().splitlines()[1:]
    return [json.loads(row)["hyperparameters"] for row in rows]


def test_cli_save_then_load_solver_continues_with_the_memory_it_learned(tmp_path):
    from solvers.cli import build_parser, make_env

    assert _cli_run(tmp_path, "--save-solver", str(tmp_path / "a.pt")) == 0
    first = EPGTSolver.load(tmp_path / "a.pt")
    assert len(first.memory) > 0
    assert _cli_run(tmp_path, "--load-solver", str(tmp_path / "a.pt"), "--save-solver", str(tmp_path / "b.pt"), seed=1) == 0
    assert len(EPGTSolver.load(tmp_path / "b.pt").memory) > len(first.memory)
    # The same as one solver running both lifetimes in one process.
    args = build_parser().parse_args(["run", "epgt", CARTPOLE, *TINY_CLI])
    whole = EPGTSolver()
    for seed in (0, 1):
        env = make_env(args, solver=whole)
        log = whole.run(env, seed=seed)
        env.close()
    assert [r.hyperparameters for r in log.records] == _schedule(tmp_path, 1)
    assert len(set(map(str, _schedule(tmp_path, 1)))) > 1
    # Several seeds are independent lifetimes: one file each.
    from solvers.cli import _solver_path

    several = build_parser().parse_args(["run", "epgt", CARTPOLE, "--seeds", "2", "--save-solver", "m/c.pt"])
    assert [_solver_path(several, seed).as_posix() for seed in (0, 1)] == ["m/c-seed0.pt", "m/c-seed1.pt"]


def test_cli_saves_the_solver_when_interrupted(tmp_path, monkeypatch):
    calls = []

    def interrupt(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(EPGTSolver, "observe", interrupt)
    assert _cli_run(tmp_path, "--save-solver", str(tmp_path / "cut.pt")) == 130
    assert EPGTSolver.load(tmp_path / "cut.pt").vae is not None
    assert not (tmp_path / "runs" / "epgt-seed0.jsonl").exists()  # an interrupted lifetime leaves no RunLog


def test_cli_refuses_solver_files_for_solvers_without_state(tmp_path):
    from solvers.cli import main

    code = main(["run", "static", CARTPOLE, *TINY_CLI, "--save-solver", str(tmp_path / "s.pt"), "--out", str(tmp_path)])
    assert code == 2 and not (tmp_path / "s.pt").exists()
