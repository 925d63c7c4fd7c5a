"""The Eq. 1 hyper-reward: ``agents.returns.rollout_return`` and ``info["rollout_return"]`` of a hyper-step."""

from __future__ import annotations

import pytest
import torch
from _helpers import make_tiny

from agents.returns import rollout_return

A2C = "HyperRL/A2C-CartPole-v0"


def test_rollout_return_is_the_mean_over_envs_of_the_discounted_sum_by_hand():
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # [T=3, B=2]
    # env 0: 1 + 0.5 * 3 + 0.25 * 5 = 3.75; env 1: 2 + 0.5 * 4 + 0.25 * 6 = 5.5
    assert float(rollout_return(r, 0.5)) == pytest.approx((3.75 + 5.5) / 2)
    assert float(rollout_return(r, 1.0)) == pytest.approx(21 / 2)
    with pytest.raises(ValueError, match=r"\[T, B\]"):
        rollout_return(torch.ones(3), 0.9)


@pytest.mark.parametrize("normalize_reward", [False, True])
def test_info_holds_one_rollout_return_per_iteration_in_raw_reward_units(normalize_reward):
    # CartPole pays 1 every step, resets included, so each env's G is sum_{t<T} gamma^t whatever the policy,
    # and neither reward scaling nor truncation bootstrapping may change it.
    env = make_tiny(
        A2C,
        2,
        total_timesteps=10_000,
        iterations_per_step=3,
        defaults={"gamma": 0.9},
        config={"normalize_reward": normalize_reward},
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    steps = env.unwrapped.config.num_steps
    assert len(info["rollout_return"]) == 3
    assert info["rollout_return"] == pytest.approx([(1 - 0.9**steps) / (1 - 0.9)] * 3)
    env.close()
