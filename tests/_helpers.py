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


def count_constructions(monkeypatch: Any, module: Any, name: str) -> list[int]:
    """Replace the class ``module.name`` by a subclass that appends to the returned list each time it is built."""
    built: list[int] = []
    base = getattr(module, name)

    class Counting(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, name, Counting)
    return built


def learner_pair(cls: Any, config_cls: Any, fast: Any, **config: Any) -> tuple[Any, Any, Any]:
    """An eager learner and one with ``compile=fast``, one seed, sharing one collected batch and generator state."""
    eager = cls(config_cls(**config, compile=False), seed=3)
    other = cls(config_cls(**config, compile=fast), seed=3)
    batch, _ = eager.collector.collect(eager.params, config["num_steps"], 0.99)
    other.generator.set_state(eager.generator.get_state())
    return eager, other, batch


def ten_updates(learner: Any, batch: Any, schedule: Any) -> tuple[Any, Any, Any]:
    """Ten ``train_step`` calls on one batch, the hyperparameters ``schedule(k)``: final params, state, metrics."""
    params, state = learner.params, learner.opt_state
    for k in range(10):
        params, state, metrics = learner.train_step(params, state, batch, schedule(k))
    return params, state, metrics


def assert_close(a: dict, b: dict, tol: float = 1e-5, rtol: float = 0.0) -> None:
    """Two dicts of tensors with the same keys, equal to ``tol`` (absolute) and ``rtol``."""
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=tol, rtol=rtol, msg=name)


def assert_matches_central_differences(
    loss: Any, weights: dict[str, torch.Tensor], names: tuple[str, ...], *, eps: float = 1e-6, smallest: float = 1e-8
) -> None:
    """``loss(weights)``'s autograd gradient equals a central difference at each named tensor's largest entry (float64)."""
    base = {k: v.detach().clone() for k, v in weights.items()}
    leaves = {k: v.clone().requires_grad_() for k, v in base.items()}
    grads = dict(zip(leaves, torch.autograd.grad(loss(leaves), list(leaves.values()))))
    for name in names:
        index = int(grads[name].abs().flatten().argmax())
        plus = {k: v.clone() for k, v in base.items()}
        minus = {k: v.clone() for k, v in base.items()}
        plus[name].view(-1)[index] += eps
        minus[name].view(-1)[index] -= eps
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(grads[name].view(-1)[index]) > smallest, name  # a zero gradient would pass trivially
        torch.testing.assert_close(grads[name].view(-1)[index], fd.detach(), rtol=1e-4, atol=1e-10)
