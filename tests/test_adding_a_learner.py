"""Adding an inner learner takes its own module and one registry row (the README's "Adding a learner").

The learner here is the README's worked example: gradient descent on a quadratic, whose
"episode return" is minus the loss.  Its module is this file; its row goes in through
``hyperenvs.add_family``.  Nothing else in the library is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import hyperenvs
from agents.base import IterationReport
from agents.hparams import declare, declared, hyperparameter
from hyperenvs import registry

TOY_ID = "HyperRL/Toy-Quadratic-v0"


@dataclass(frozen=True, kw_only=True)
class ToyConfig:
    """Structure of the toy learner."""

    task: str = "quadratic"
    """name of the inner task (only one here)"""
    num_envs: int = 1
    """accepted for the hyper-env's shared keyword; the quadratic needs no env"""
    dim: int = 3
    """size of theta"""


@declare
@dataclass(frozen=True, kw_only=True)
class ToyHyperparams:
    """What a hyper-agent may change between toy iterations."""

    lr: float = hyperparameter(0.1, low=1e-3, high=1.0, log=True, multipliers=(0.5, 1, 2), doc="gradient-descent step size")


class ToyLearner:
    """Gradient descent on ``|theta - 1|^2`` from a seeded start; one iteration is one step."""

    Hyperparams: ClassVar[type] = ToyHyperparams
    uses_vector_env: ClassVar[bool] = False

    def __init__(self, config: ToyConfig, *, seed: int, hparams: ToyHyperparams | None = None, **_: Any) -> None:
        self.config, self.default_hparams = config, hparams or ToyHyperparams()
        self.theta = torch.randn(config.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self.grad = torch.zeros_like(self.theta)
        self.timesteps, self.diverged, self.device = 0, False, torch.device("cpu")

    @classmethod
    def param_shapes(cls, config: ToyConfig) -> dict[str, tuple[int, ...]]:
        return {"theta": (config.dim,)}

    def iterate(self, hparams: Mapping[str, float] | None = None) -> IterationReport:
        hp = replace(self.default_hparams, **(hparams or {}))
        self.grad = 2 * (self.theta - 1)
        self.theta = self.theta - hp.lr * self.grad
        self.timesteps += 1
        loss = float((self.theta - 1).square().sum())
        return IterationReport(timesteps=self.timesteps, env_steps=1, episode_returns=(-loss,), losses={"value": loss})

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta}

    def gradient_history(self) -> list[dict[str, torch.Tensor]]:
        return [{"theta": self.grad}] if self.timesteps else []

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.clone(), "grad": self.grad.clone(), "timesteps": self.timesteps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.theta, self.grad, self.timesteps = state["theta"].clone(), state["grad"].clone(), int(state["timesteps"])

    def close(self) -> None:
        pass


# The one registry row (in the library it is one ``Family(...)`` in hyperenvs/registry.py's table).
TOY_ROW = hyperenvs.Family(
    algorithm=hyperenvs.Algorithm(
        name="Toy",
        learner=f"{__name__}:ToyLearner",
        config=f"{__name__}:ToyConfig",
        hparams=f"{__name__}:ToyHyperparams",
        controlled=("lr",),
    ),
    tasks=(("Quadratic", "quadratic"),),
    total_timesteps=20,
    iterations_per_step=2,
    observe=("statistics",),
)


@pytest.fixture
def toy_id():
    ids = hyperenvs.add_family(TOY_ROW)
    yield ids[0]
    for env_id in ids:  # leave the shared table as it was for the other tests
        registry._TABLE.pop(env_id)
        gym.registry.pop(env_id)


def test_one_row_registers_a_checked_id(toy_id):
    assert toy_id == TOY_ID and TOY_ID in hyperenvs.REGISTRY and TOY_ID in gym.registry
    env = gym.make(TOY_ID, timing=False)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    hyperenvs.check_hyperenv(TOY_ID, num_envs=1, iterations_per_step=2, total_timesteps=20, config={}, defaults={})


def test_the_toy_lifetime_descends_and_the_budget_truncates(toy_id):
    env = gym.make(TOY_ID, timing=False)
    env.reset(seed=0)
    rewards, truncated = [], False
    while not truncated:
        _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))  # 0 -> geometric middle of the range
        assert not terminated
        rewards.append(reward)
    assert info["timesteps"] == 20 and len(rewards) == 10
    assert info["hyperparameters"]["lr"] == pytest.approx(np.sqrt(1e-3 * 1.0))
    assert rewards[-1] > rewards[0] and rewards == sorted(rewards)  # -|theta - 1|^2 rises monotonically
    env.close()


def test_discrete_toy_actions_use_the_declared_bins(toy_id):
    env = gym.make(TOY_ID, action_type="discrete", timing=False)
    assert env.action_space == gym.spaces.MultiDiscrete([3])
    np.testing.assert_allclose(env.unwrapped.hparam_space.grids[0], [0.05, 0.1, 0.2])
    assert env.unwrapped.hparam_space.decode([1]) == {"lr": 0.1}
    env.close()


def test_a_row_that_names_an_undeclared_hyperparameter_is_refused():
    bad = replace(TOY_ROW, defaults={"momentum": 0.9})
    with pytest.raises(ValueError, match=r"HyperRL/Toy-Quadratic-v0: defaults names \['momentum'\], which are not declared"):
        hyperenvs.add_family(bad)
    assert TOY_ID not in hyperenvs.REGISTRY and TOY_ID not in gym.registry


def test_an_existing_id_cannot_be_added_twice(toy_id):
    with pytest.raises(ValueError, match=r"ids \['HyperRL/Toy-Quadratic-v0'\] are already registered"):
        hyperenvs.add_family(TOY_ROW)


def test_the_toy_declaration_is_what_the_env_sees(toy_id):
    (lr,) = declared(ToyHyperparams)
    assert hyperenvs.get(TOY_ID).hyperparameters() == (lr,)
    assert (lr.low, lr.high, lr.log, lr.default) == (1e-3, 1.0, True, 0.1) == (1e-3, 1.0, True, ToyHyperparams().lr)
