"""The -v1 classic-control ids: the -v0 rows on the batched twins, with Gymnasium's env a keyword away."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import hyperenvs
from agents.rollout import Collector
from agents.tensor_rollout import TensorCollector
from hyperenvs import registry

gym.register_envs(hyperenvs)

TWIN_IDS = sorted(i for i in hyperenvs.REGISTRY if i.endswith("-v1"))


def test_every_classic_ppo_and_a2c_id_has_a_twin_version():
    expected = {
        f"HyperRL/{a}-{t}-v1"
        for a in ("PPO", "A2C")
        for t in ("CartPole", "Acrobot", "MountainCar", "MountainCarContinuous", "Pendulum")
    }
    assert set(TWIN_IDS) == expected


@pytest.mark.parametrize("env_id", TWIN_IDS)
def test_v1_is_v0_on_the_twin(env_id):
    new, old = hyperenvs.get(env_id), hyperenvs.get(env_id.replace("-v1", "-v0"))
    assert new.task == registry.TWINS[old.task] and new.task.startswith("HyperRLTasks/")
    assert registry.gymnasium_task(new.task) == old.task
    assert new.hyperparameters() == old.hyperparameters()
    assert (new.total_timesteps, new.iterations_per_step) == (old.total_timesteps, old.iterations_per_step)
    assert dict(new.config) == {**old.config, "compile": "auto"}  # the one difference: fused updates on CPU


def test_gymnasium_env_keyword_selects_gymnasiums_own_env():
    twin = gym.make("HyperRL/A2C-CartPole-v1", timing=False)
    own = gym.make("HyperRL/A2C-CartPole-v1", gymnasium_env=True, timing=False)
    assert twin.unwrapped.config.task == "HyperRLTasks/CartPole-v0"
    assert own.unwrapped.config.task == "CartPole-v1"
    twin.reset(seed=0), own.reset(seed=0)
    assert isinstance(twin.unwrapped.learner.collector, TensorCollector)
    assert isinstance(own.unwrapped.learner.collector, Collector)
    assert twin.observation_space == own.observation_space and twin.action_space == own.action_space
    # The same network from the same seed: the learners start from identical parameters.
    for k, v in twin.unwrapped.learner.params.items():
        assert np.array_equal(v.detach().numpy(), own.unwrapped.learner.params[k].detach().numpy())
    twin.close(), own.close()


def test_gymnasium_env_keyword_errors():
    with pytest.raises(ValueError, match="gymnasium_env must be True or False"):
        gym.make("HyperRL/PPO-CartPole-v1", gymnasium_env="yes")
    with pytest.raises(ValueError, match="has no Gymnasium env"):
        gym.make("HyperRL/A2C-Catch-v0", gymnasium_env=True)
    # An id already on Gymnasium ignores it.
    assert gym.make("HyperRL/PPO-CartPole-v0", gymnasium_env=True).unwrapped.config.task == "CartPole-v1"
