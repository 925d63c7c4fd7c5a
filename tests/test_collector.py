"""Collector edge cases: episodes ending on the time limit, truncation bootstrapping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from agents.networks import ActorCritic
from agents.rollout import Collector


class _FallsOnLastStep(gym.Env):
    """Terminates at step ``fall_at``; a TimeLimit of the same length truncates there too."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fall_at: int = 3) -> None:
        self.fall_at = fall_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t / 10, np.float32), 1.0, self.t == self.fall_at, False, {}


def _collector(fall_at: int, limit: int) -> Collector:
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.TimeLimit(_FallsOnLastStep(fall_at), limit) for _ in range(2)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    net = ActorCritic(obs_dim=2, action_dim=2, discrete=True)
    collector = Collector(
        envs, net, torch.Generator().manual_seed(0), device=torch.device("cpu"), normalize_obs=False, normalize_reward=False
    )
    collector.reset(seed=0)
    return collector


def test_terminated_and_truncated_on_the_same_step_is_a_plain_terminal():
    collector = _collector(fall_at=3, limit=3)
    params = collector.network.init(torch.Generator().manual_seed(0))
    batch, episodes = collector.collect(params, num_steps=6, gamma=0.9)
    assert [e.length for e in episodes] == [3, 3, 3, 3]
    # No bootstrap is added where the episode terminated, even though it was also truncated.
    torch.testing.assert_close(batch.rewards, torch.ones(6, 2))
    torch.testing.assert_close(batch.discounts[:, 0], torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.0]))


def test_truncation_alone_adds_the_discounted_value_of_the_final_observation():
    collector = _collector(fall_at=100, limit=3)
    params = collector.network.init(torch.Generator().manual_seed(0))
    batch, _ = collector.collect(params, num_steps=3, gamma=0.9)
    final_value = collector.network.value(params, torch.full((1, 2), 0.3)).item()
    torch.testing.assert_close(batch.rewards[2], torch.full((2,), 1.0 + 0.9 * final_value))
    torch.testing.assert_close(batch.rewards[:2], torch.ones(2, 2))


@pytest.mark.parametrize("compile", [False, "fused"])
def test_a_batch_outlives_the_next_collection(compile):
    # The batched twins reuse their observation buffer from step to step; a batch must not share it.
    from agents.ppo import PPOConfig, PPOLearner

    learner = PPOLearner(PPOConfig(task="HyperRLTasks/CartPole-v0", num_envs=4, num_steps=8, compile=compile), seed=0)
    batch, _ = learner.collector.collect(learner.params, 8, 0.99)
    kept = {k: v.clone() for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}
    learner.collector.collect(learner.params, 8, 0.99)
    for name, value in kept.items():
        assert torch.equal(value, getattr(batch, name)), f"Batch.{name} changed under the next collection"
