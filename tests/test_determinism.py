"""One seed, one trajectory: across env instances, across lifetimes of one env; other seeds differ."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from _helpers import make_tiny, obs_equal, strip_timing
from gymnasium.utils.env_checker import data_equivalence

IDS = ["HyperRL/PPO-CartPole-v0", "HyperRL/A2C-Pendulum-v0", "HyperRL/PPO-CartPole-v1", "HyperRL/A2C-Pendulum-v1"]


def trajectory(env, seed: int, steps: int = 3) -> list:
    rng = np.random.default_rng(123)  # the same actions for every run
    obs, info = env.reset(seed=seed)
    out = [obs, strip_timing(info)]
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, strip_timing(info)))
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory_across_instances(env_id):
    a, b = make_tiny(env_id), make_tiny(env_id)
    first, second = trajectory(a, seed=7), trajectory(b, seed=7)
    assert data_equivalence(first, second, exact=True)
    a.close(), b.close()


@pytest.mark.parametrize("env_id", IDS)
def test_different_seeds_differ(env_id):
    env = make_tiny(env_id)
    first, other = trajectory(env, seed=7), trajectory(env, seed=8)
    assert not obs_equal(first[0], other[0])  # different network initialisation
    assert not data_equivalence(first[2:], other[2:])  # and different training
    env.close()


def test_same_seed_same_lifetime_on_one_env():
    # The inner vector env is built once per HyperEnv and re-seeded: a second lifetime must not
    # inherit anything (episode state, RNG) from the first.
    env = make_tiny()
    first = trajectory(env, seed=3)
    trajectory(env, seed=4)
    again = trajectory(env, seed=3)
    assert data_equivalence(first, again, exact=True)
    env.close()


def test_unseeded_reset_continues_the_seed_sequence():
    a, b = make_tiny(), make_tiny()
    a.reset(seed=11), b.reset(seed=11)
    first_a, first_b = trajectory(a, seed=None, steps=1), trajectory(b, seed=None, steps=1)
    assert data_equivalence(first_a, first_b, exact=True)
    again = trajectory(a, seed=None, steps=1)
    assert not obs_equal(first_a[0], again[0])  # each unseeded reset is a new lifetime
    a.close(), b.close()


def test_learner_generator_is_per_instance():
    torch.manual_seed(0)
    a = trajectory(make_tiny(), seed=5, steps=1)
    torch.manual_seed(12345)
    torch.rand(100)
    b = trajectory(make_tiny(), seed=5, steps=1)
    assert data_equivalence(a, b, exact=True)  # the global torch RNG plays no part


@pytest.mark.parametrize("env_id", ["HyperRL/PPO-CartPole-v0", "HyperRL/A2C-Pendulum-v0"])
def test_global_rngs_are_neither_used_nor_seeded(env_id):
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    env = make_tiny(env_id)
    trajectory(env, seed=0, steps=2)
    env.unwrapped.learner.evaluate(1)
    env.close()
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert data_equivalence(np.random.get_state(), np_state, exact=True)
    assert random.getstate() == py_state
