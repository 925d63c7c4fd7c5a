"""Inner training actually learns: PPO with the id's static defaults solves CartPole."""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import hyperenvs

gym.register_envs(hyperenvs)

SOLVED = 195.0
BUDGET = 100_000


@pytest.mark.parametrize("env_id", ["HyperRL/PPO-CartPole-v0", "HyperRL/PPO-CartPole-v1"])  # Gymnasium's env; the twin
def test_ppo_cartpole_static_defaults_learn(env_id):
    env = gym.make(env_id, total_timesteps=BUDGET)
    space = env.unwrapped.hparam_space
    action = space.encode(space.defaults())
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(info["default_action"], action)
    first_returns: list[float] = []
    last10: deque[float] = deque(maxlen=10)
    best = -np.inf
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        assert not info["diverged"]
        if not first_returns:
            first_returns = list(info["episode_returns"])
        last10.extend(info["episode_returns"])
        # Solved means the mean of the last 10 episodes, not one lucky hyper-step's few episodes.
        best = max(best, float(np.mean(last10)) if len(last10) == 10 else -np.inf)
        if best >= SOLVED:
            break
    env.close()
    assert best >= SOLVED, f"mean return of 10 consecutive episodes {best:.1f} < {SOLVED} after {info['timesteps']} env steps"
    assert info["timesteps"] <= BUDGET
    assert np.mean(first_returns) < 100, "the untrained policy should not already solve CartPole"
