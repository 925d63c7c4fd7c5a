"""The PettingZoo population of lifetimes: API and seeding, Optim4RL's staggered restarts, equality, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from hyperenvs.checks import tiny_kwargs
from hyperenvs.population import parallel_env, stagger_offsets

IDS = ("HyperRL/A2C-Catch-v0", "HyperRL/PPO-Catch-v0", "HyperRL/A2C-CartPole-v0")


def _kwargs(env_id: str, hyper_steps: int = 3) -> dict:
    return {**tiny_kwargs(env_id, hyper_steps=hyper_steps), "timing": False}


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("reset_interval", [None, 2])
def test_parallel_api(env_id, reset_interval):
    env = parallel_env(env_id, num_lifetimes=2, reset_interval=reset_interval, **_kwargs(env_id))
    parallel_api_test(env, num_cycles=5)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_seed(env_id):
    parallel_seed_test(lambda: parallel_env(env_id, num_lifetimes=2, reset_interval=2, **_kwargs(env_id)), num_cycles=5)


def test_offsets_are_optim4rls_truncated_linspace():
    assert stagger_offsets(4, 6) == [0, 1, 3, 5]
    assert stagger_offsets(3, 32) == [0, 15, 31]  # 15.5 truncated, not rounded
    assert stagger_offsets(4, 6, stagger=False) == [0, 0, 0, 0]


def _restart_steps(stagger: bool) -> dict[str, list[int]]:
    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=4, reset_interval=6, stagger=stagger, **_kwargs("x", 60))
    env.reset(seed=0)
    restarts: dict[str, list[int]] = {a: [] for a in env.agents}
    for t in range(1, 14):
        _, _, terms, truncs, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        assert not any(terms.values()) and not any(truncs.values()) and len(env.agents) == 4
        for agent, info in infos.items():
            if info.get("restarted"):
                restarts[agent].append(t)
                assert info["ended"] == "interval" and "final_observation" in info
    return restarts


def test_staggered_restarts_follow_the_pipeline():
    # lifetime j restarts for step t where (t - 1) % 6 == offset_j, i.e. at the end of step t - 1
    got = _restart_steps(stagger=True)
    expected_next_steps = {f"lifetime_{j}": [t for t in range(2, 15) if (t - 1) % 6 == o] for j, o in enumerate([0, 1, 3, 5])}
    assert got == {a: [t - 1 for t in ts] for a, ts in expected_next_steps.items()}
    assert got == {"lifetime_0": [6, 12], "lifetime_1": [1, 7, 13], "lifetime_2": [3, 9], "lifetime_3": [5, 11]}


def test_without_stagger_all_lifetimes_restart_together():
    assert set(map(tuple, _restart_steps(stagger=False).values())) == {(6, 12)}


def test_a_restarted_lifetime_is_a_fresh_lifetime():
    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=2, reset_interval=3, stagger=False, **_kwargs("x", 20))
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert infos["lifetime_0"]["restarted"] and env.lifetimes[0].unwrapped.learner.timesteps == 0


def test_without_reset_interval_each_lifetime_ends_on_its_budget():
    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=3, **_kwargs("x", 4))
    env.reset(seed=1)
    steps = 0
    while env.agents:
        _, _, _, truncs, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
    assert steps == 4 and all(truncs.values()) and set(truncs) == set(env.possible_agents)


@pytest.mark.parametrize("env_id", ["HyperRL/A2C-Catch-v0", "HyperRL/PPO-Catch-v0"])
def test_population_equals_independent_hyperenvs(env_id):
    kwargs = _kwargs(env_id, 5)
    if "PPO" in env_id:  # 3 epochs of 2 minibatches, each lifetime shuffling with its own generator
        kwargs = {**kwargs, "hyperparameters": ["lr", "clip", "gae_lambda"], "defaults": {"epochs": 3, "minibatch_size": 8}}
    pop = parallel_env(env_id, num_lifetimes=4, **kwargs)
    assert type(pop).__name__ == "VectorisedPopulation"  # one program: one task of 4 x 2 instances, one update
    singles = [gym.make(env_id, **kwargs) for _ in range(4)]
    obs, _ = pop.reset(seed=7)
    for j, env in enumerate(singles):
        single_obs, _ = env.reset(seed=7 + j)
        for k in single_obs:
            np.testing.assert_allclose(obs[f"lifetime_{j}"][k], single_obs[k], atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = {a: rng.uniform(-1, 1, pop.action_space(a).shape).astype(np.float32) for a in pop.agents}
        obs, rewards, _, _, _ = pop.step(actions)
        for j, env in enumerate(singles):
            single_obs, reward, *_ = env.step(actions[f"lifetime_{j}"])
            assert rewards[f"lifetime_{j}"] == pytest.approx(reward, abs=1e-6)
            for k in single_obs:
                np.testing.assert_allclose(obs[f"lifetime_{j}"][k], single_obs[k], atol=1e-6)
    stacked = pop.stacked_parameters()
    for j, env in enumerate(singles):
        for k, v in env.unwrapped.learner.parameters().items():
            torch.testing.assert_close(stacked[k][j], v.detach(), rtol=0, atol=1e-6)
    # the lifetimes differ from one another (distinct seeds), so the comparison is not vacuous
    assert not torch.equal(stacked["torso.dense.weight"][0], stacked["torso.dense.weight"][1])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_lifetimes": 0}, "num_lifetimes"),
        ({"num_lifetimes": -2}, "num_lifetimes"),
        ({"num_lifetimes": 2.5}, "num_lifetimes"),
        ({"num_lifetimes": 2, "reset_interval": 0}, "reset_interval"),
        ({"num_lifetimes": 2, "reset_interval": 1.5}, "reset_interval"),
    ],
)
def test_bad_sizes_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        parallel_env("HyperRL/A2C-Catch-v0", **kwargs)


def test_bad_actions_name_the_agent_and_shape():
    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=2, **_kwargs("x"))
    env.reset(seed=0)
    good = {a: env.action_space(a).sample() for a in env.agents}
    with pytest.raises(ValueError, match=r"actions\['lifetime_1'\] has shape \(2,\)"):
        env.step({**good, "lifetime_1": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"missing \['lifetime_0'\]"):
        env.step({"lifetime_1": good["lifetime_1"]})
    with pytest.raises(ValueError, match="unknown agent"):
        env.action_space("lifetime_9")


def test_stacked_handle_updates_like_each_lifetime():
    from agents.stacked import stack_batches

    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=3, **_kwargs("x"))
    env.reset(seed=2)
    update, params, opt_state = env.stacked()
    learners = [life.unwrapped.learner for life in env.lifetimes]
    assert params["actor.weight"].shape == (3, 3, 256)
    batches = [lr.collector.collect(lr.params, 8, 0.995)[0] for lr in learners]
    new, _, _ = update.train_step(params, opt_state, stack_batches(batches))
    for j, lr in enumerate(learners):
        own, _, _ = lr.train_step(lr.params, lr.opt_state, batches[j])
        for k, v in own.items():
            torch.testing.assert_close(new[k][j], v.detach(), rtol=0, atol=1e-6)


def test_batched_a2c_ids_run_as_one_program_and_others_loop():
    from hyperenvs.population import LifetimePopulation, VectorisedPopulation

    kwargs = _kwargs("x")
    assert type(parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=2, **kwargs)) is VectorisedPopulation
    assert type(parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=2, vectorise=False, **kwargs)) is LifetimePopulation
    assert type(parallel_env("HyperRL/A2C-CartPole-v0", num_lifetimes=2, **kwargs)) is LifetimePopulation
    assert type(parallel_env("HyperRL/PPO-Catch-v0", num_lifetimes=2, **_kwargs("HyperRL/PPO-Catch-v0"))) is VectorisedPopulation
    with pytest.raises(ValueError, match="vectorise=True needs an A2C or PPO id on a batched task"):
        parallel_env("HyperRL/PPO-CartPole-v0", num_lifetimes=2, vectorise=True, **_kwargs("HyperRL/PPO-CartPole-v0"))
    with pytest.raises(ValueError, match="vectorise must be None, True or False"):
        parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=2, vectorise="yes", **kwargs)


@pytest.mark.parametrize("env_id", ["HyperRL/A2C-Catch-v0", "HyperRL/PPO-Catch-v0"])
def test_staggered_one_program_equals_the_loop_and_restarts_only_its_rows(env_id):
    kwargs = {**_kwargs(env_id, 60), "iterations_per_step": 2}
    one = parallel_env(env_id, num_lifetimes=4, reset_interval=5, **kwargs)
    loop = parallel_env(env_id, num_lifetimes=4, reset_interval=5, vectorise=False, **kwargs)
    one.reset(seed=3), loop.reset(seed=3)
    rng = np.random.default_rng(1)
    restarted = 0
    for _ in range(12):
        actions = {a: rng.uniform(-1, 1, one.action_space(a).shape).astype(np.float32) for a in one.agents}
        runner_rows = {k: v.clone() for k, v in one.learner.params.items()}
        got, want = one.step(actions), loop.step(actions)
        assert got[1] == want[1]  # rewards
        for agent in one.agents:
            for k in got[0][agent]:
                np.testing.assert_allclose(got[0][agent][k], want[0][agent][k], rtol=0, atol=1e-6)
            assert got[4][agent].get("restarted", False) == want[4][agent].get("restarted", False)
        fresh = [j for j, a in enumerate(one.possible_agents) if got[4][a].get("restarted")]
        restarted += len(fresh)
        for j in fresh:  # a restarted lifetime's rows hold its new learner's initial parameters
            new = one.lifetimes[j].unwrapped.learner
            assert new.timesteps == 0 and torch.equal(one.learner.params["actor.weight"][j], new.params["actor.weight"])
            assert not torch.equal(one.learner.params["actor.weight"][j], runner_rows["actor.weight"][j])
    assert restarted >= 4
    for j, env in enumerate(loop.lifetimes):
        for k, v in env.unwrapped.learner.parameters().items():
            torch.testing.assert_close(one.learner.params[k][j], v.detach(), rtol=0, atol=1e-6)


def test_the_white_box_handle_is_the_running_program():
    from agents.stacked import stack_batches

    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=3, **_kwargs("x"))
    env.reset(seed=4)
    runner = env.learner
    assert runner.params["actor.weight"].shape == (3, 3, 256) and runner.opt_state["step"].tolist() == [0, 0, 0]
    env.step({a: env.action_space(a).sample() for a in env.agents})
    for j, life in enumerate(env.lifetimes):
        learner = life.unwrapped.learner
        assert runner.learners[j] is learner and torch.equal(learner.params["actor.weight"], runner.params["actor.weight"][j])
        assert learner.timesteps == 16 and learner.last_update is not None and learner.gradient_history()
    batch, *_ = runner.collect(4, 0.995)
    assert batch["obs"].shape == (3, 4, 2, 10, 5)
    new, state, metrics = runner.update.train_step(runner.params, runner.opt_state, batch)
    assert metrics["policy"].shape == (3,) and state["step"].tolist() == [2, 2, 2]
    singles = [stack_batches([type(learner.last_update.batch)(**{k: v[j] for k, v in batch.items()})]) for j in range(3)]
    own, _, _ = runner.update.train_step(
        {k: v[1:2] for k, v in runner.params.items()},
        {k: (v[1:2] if not isinstance(v, dict) else {n: t[1:2] for n, t in v.items()}) for k, v in runner.opt_state.items()},
        singles[1],
    )
    for k, v in own.items():
        torch.testing.assert_close(new[k][1], v[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("env_id", "vectorise"), [("HyperRL/A2C-Catch-v0", None), ("HyperRL/A2C-Catch-v0", False), ("HyperRL/PPO-Catch-v0", None)]
)
def test_a_lifetime_snapshot_restores_into_the_running_population(env_id, vectorise):
    env = parallel_env(env_id, num_lifetimes=3, vectorise=vectorise, **_kwargs(env_id, 8))
    env.reset(seed=6)
    rng = np.random.default_rng(2)
    acts = [{a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents} for _ in range(4)]
    for a in acts[:2]:
        env.step(a)
    snap = env.snapshot("lifetime_1")
    after = [env.step(a) for a in acts[2:]]
    restored = env.restore("lifetime_1", snap)
    assert restored["statistics"].shape == after[0][0]["lifetime_1"]["statistics"].shape
    again = [env.step(a) for a in acts[2:]]
    for first, second in zip(after, again):
        assert first[1]["lifetime_1"] == second[1]["lifetime_1"]
        for k in first[0]["lifetime_1"]:
            np.testing.assert_array_equal(first[0]["lifetime_1"][k], second[0]["lifetime_1"][k])
    with pytest.raises(ValueError, match="unknown agent"):
        env.snapshot("lifetime_7")
