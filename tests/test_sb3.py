"""Any Gymnasium agent can be a hyper-agent: Stable-Baselines3 PPO and DQN on HyperRL envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _helpers import make_tiny

import hyperenvs

sb3 = pytest.importorskip("stable_baselines3")


def test_sb3_ppo_multi_input_policy():
    env = RecordingEnv(make_tiny(hyper_steps=3))
    model = sb3.PPO("MultiInputPolicy", env, n_steps=4, batch_size=4, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=8)
    assert model.num_timesteps == 8
    assert env.steps == 8 and env.resets >= 3  # lifetimes of 3 hyper-steps: resets happened
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))


def test_sb3_dqn_on_discrete_flattened():
    env = hyperenvs.JointDiscreteAction(
        hyperenvs.flatten(make_tiny(hyper_steps=3, action_type="discrete", hyperparameters=["lr", "clip"], bins=3))
    )
    env = RecordingEnv(env)
    assert env.action_space == gym.spaces.Discrete(9)
    assert isinstance(env.observation_space, gym.spaces.Box)
    model = sb3.DQN("MlpPolicy", env, learning_starts=2, train_freq=1, batch_size=4, buffer_size=100, seed=0, device="cpu")
    model.learn(total_timesteps=8)
    assert model.num_timesteps == 8 and env.steps == 8
    # every decoded lr is one of the 3 log-spaced bins of [1e-5, 1e-2]
    grid = env.unwrapped.hparam_space.grids[0]
    np.testing.assert_allclose(grid, [1e-5, 10**-3.5, 1e-2], rtol=1e-9)
    assert all(np.isclose(grid, lr, rtol=1e-9).any() for lr in env.lrs)


class RecordingEnv(gym.Wrapper):
    """Counts steps and resets and keeps the learning rates the agent chose."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps, self.resets, self.lrs = 0, 0, []

    def reset(self, **kwargs):
        self.resets += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        out = self.env.step(action)
        self.lrs.append(out[-1]["hyperparameters"]["lr"])
        return out
