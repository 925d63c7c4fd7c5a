"""Every registered id passes the package's own conformance checker (Gymnasium's check_env and more)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import hyperenvs
from hyperenvs.checks import check_hyperenv, tiny_kwargs

ALL_IDS = sorted(hyperenvs.REGISTRY)


def test_registry_is_registered_with_gymnasium():
    assert len(ALL_IDS) >= 2
    for env_id in ALL_IDS:
        assert env_id in gym.registry
        spec = gym.registry[env_id]
        assert spec.entry_point == "hyperenvs.env:HyperEnv"
        assert env_id.startswith("HyperRL/") and env_id.endswith(("-v0", "-v1"))
        assert hyperenvs.REGISTRY[env_id].id == env_id


def test_register_is_idempotent():
    before = set(gym.registry)
    hyperenvs.register()
    assert set(gym.registry) == before


def test_tiny_kwargs_budget():
    kwargs = tiny_kwargs("HyperRL/PPO-CartPole-v0", hyper_steps=3)
    assert kwargs["total_timesteps"] == 3 * 2 * 8
    assert kwargs["defaults"] == {"epochs": 1, "minibatch_size": 16}
    assert "defaults" not in tiny_kwargs("HyperRL/A2C-CartPole-v0")


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_all_ids(env_id):
    check_hyperenv(env_id)


def test_checker_catches_a_broken_env():
    # The checker is not vacuous: an env whose budget never ends the episode fails it.
    with pytest.raises(AssertionError, match="budget exhaustion gave terminated=True"):
        check_hyperenv(
            "HyperRL/A2C-CartPole-v0",
            hyperparameters={"lr": (1e3, 1e8)},
            config={"update_rule": "sgd", "num_steps": 8},
            defaults={"max_grad_norm": 0.0},
            total_timesteps=10_000,
        )
