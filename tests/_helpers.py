"""Helpers shared by the tests: cheap env factories and exact comparisons."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

import hyperenvs
from hyperenvs.checks import tiny_kwargs

gym.register_envs(hyperenvs)

CARTPOLE = "HyperRL/PPO-CartPole-v0"


def make_tiny(env_id: str = CARTPOLE, hyper_steps: int = 4, **overrides: Any) -> gym.Env:
    """``gym.make(env_id)`` with the conformance checker's tiny budget, deterministic info."""
    kwargs = {**tiny_kwargs(env_id, hyper_steps), "timing": False}
    for key, value in overrides.items():
        if key in ("config", "defaults") and key in kwargs:
            kwargs[key] = {**kwargs[key], **value}
        else:
            kwargs[key] = value
    return gym.make(env_id, **kwargs)


def params_of(env: gym.Env) -> dict[str, torch.Tensor]:
    """A detached copy of the inner learner's current parameters."""
    return {k: v.detach().clone() for k, v in env.unwrapped.learner.parameters().items()}


def assert_params_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"parameter {name} differs"


def strip_timing(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in ("wall_time", "compile_seconds")}


def obs_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
