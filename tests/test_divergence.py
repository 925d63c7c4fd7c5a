"""Divergence ends the lifetime with terminated=True and finite outputs; nothing raises."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from _helpers import make_tiny

A2C = "HyperRL/A2C-CartPole-v0"


def absurd_env() -> gym.Env:
    # lr up to 1e8 with plain SGD and gradient clipping off (max_grad_norm <= 0): the value
    # loss explodes and parameters become non-finite within a few updates.
    return make_tiny(
        A2C,
        hyper_steps=50,
        hyperparameters={"lr": (1e3, 1e8)},
        config={"update_rule": "sgd"},
        defaults={"max_grad_norm": 0.0},
    )


def run_until_done(env: gym.Env, action: np.ndarray, limit: int = 50):
    for step in range(1, limit + 1):
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return step, obs, reward, terminated, truncated, info
    raise AssertionError(f"the lifetime did not end within {limit} hyper-steps")


def test_absurd_lr_diverges_cleanly():
    env = absurd_env()
    env.reset(seed=0)
    steps, obs, reward, terminated, truncated, info = run_until_done(env, np.ones(1, np.float32))
    assert terminated is True and truncated is False
    assert info["diverged"] is True
    assert info["hyperparameters"]["lr"] == pytest.approx(1e8)
    assert info["timesteps"] < env.unwrapped.total_timesteps  # ended by divergence, not the budget
    assert isinstance(reward, float) and np.isfinite(reward)
    assert env.observation_space.contains(obs)
    for part in obs.values():
        assert np.all(np.isfinite(part))
    learner = env.unwrapped.learner
    assert learner.diverged
    # what the divergence flag means: a value is no longer finite, or the parameters left their declared bound
    assert info["divergence"] == learner.divergence != ""
    norm = torch.linalg.vector_norm(torch.stack([v.detach().double().norm() for v in learner.parameters().values()]))
    finite_losses = all(np.isfinite(v) for v in info["losses"].values())
    if info["divergence"].startswith("non-finite"):
        assert not (torch.isfinite(norm) and finite_losses)
    else:
        assert info["divergence"].startswith("parameter norm")
        assert norm > learner.config.max_param_norm_ratio * learner.initial_param_norm
    # the ended lifetime refuses further steps ...
    with pytest.raises(RuntimeError, match="after the lifetime ended"):
        env.step(np.ones(1, np.float32))
    # ... and a reset starts a healthy one
    obs, info = env.reset(seed=1)
    assert all(np.isfinite(p).all() for p in obs.values())
    _, _, terminated, _, info = env.step(-np.ones(1, np.float32))
    assert info["diverged"] is False and not terminated
    env.close()


def test_divergence_is_deterministic():
    outcomes = []
    for _ in range(2):
        env = absurd_env()
        env.reset(seed=0)
        steps, _, reward, *_, info = run_until_done(env, np.ones(1, np.float32))
        outcomes.append((steps, reward, info["timesteps"]))
        env.close()
    assert outcomes[0] == outcomes[1]


def test_diverged_learner_iterates_no_more():
    env = absurd_env()
    env.reset(seed=0)
    run_until_done(env, np.ones(1, np.float32))
    learner = env.unwrapped.learner
    t = learner.timesteps
    report = learner.iterate({"lr": 1e-3})
    assert report.diverged and report.env_steps == 0 and learner.timesteps == t
    env.close()


def test_sane_lr_does_not_diverge():
    env = make_tiny(A2C, hyper_steps=4)
    env.reset(seed=0)
    *_, terminated, truncated, info = run_until_done(env, np.zeros(1, np.float32))
    assert truncated and not terminated and info["diverged"] is False
    env.close()


def test_absurd_lr_with_adam_and_clipping_is_caught_by_the_norm_bound():
    """Adam's step is about lr whatever the gradient, and clipping keeps every value finite: only the
    parameter-norm bound sees that the policy is wrecked."""
    env = make_tiny("HyperRL/PPO-CartPole-v0", hyper_steps=20, hyperparameters={"lr": (1e3, 1e6)})
    env.reset(seed=0)
    steps, _, _, terminated, truncated, info = run_until_done(env, np.ones(1, np.float32), limit=20)
    learner = env.unwrapped.learner
    assert terminated is True and truncated is False and info["diverged"] is True
    assert info["divergence"].startswith("parameter norm") and "max_param_norm_ratio" in info["divergence"], info["divergence"]
    assert all(np.isfinite(v) for v in info["losses"].values())  # the old, finite-only check would have missed it
    assert steps == 1
    # the cause survives a snapshot
    restored = make_tiny("HyperRL/PPO-CartPole-v0", hyper_steps=20)
    restored.reset(seed=3)
    restored.unwrapped.learner.load_state_dict(learner.state_dict())
    assert restored.unwrapped.learner.divergence == learner.divergence
    env.close()
    restored.close()


@pytest.mark.parametrize(
    "env_id",
    [
        "HyperRL/PPO-CartPole-v0",
        "HyperRL/A2C-CartPole-v0",
        "HyperRL/IMPALA-CartPole-v0",
        "HyperRL/PPO-Pendulum-v0",
        "HyperRL/PPO-Hopper-v0",
    ],
)
def test_sane_defaults_stay_inside_the_bound(env_id):
    env = make_tiny(env_id, hyper_steps=3)
    env.reset(seed=0)
    base = env.unwrapped
    defaults = {**base.defaults, **base.hparam_space.defaults()}
    action = base.hparam_space.encode({n: defaults[n] for n in base.hparam_space.names})
    for _ in range(3):
        *_, terminated, truncated, info = env.step(action)
        assert not terminated and info["divergence"] == "", info["divergence"]
        if truncated:
            break
    learner = env.unwrapped.learner
    ratio = float(torch.linalg.vector_norm(torch.stack([v.detach().norm() for v in learner.parameters().values()])))
    assert ratio / learner.initial_param_norm < 0.1 * learner.config.max_param_norm_ratio
    env.close()


def test_the_bound_is_declared_and_checked():
    from agents.ppo import PPOConfig

    assert PPOConfig().max_param_norm_ratio == 1e3
    with pytest.raises(ValueError, match=r"max_param_norm_ratio must be > 1, got 0.5"):
        PPOConfig(max_param_norm_ratio=0.5)
    env = make_tiny(
        "HyperRL/PPO-CartPole-v0",
        hyper_steps=20,
        hyperparameters={"lr": (1e3, 1e6)},
        config={"max_param_norm_ratio": float("inf")},
    )
    env.reset(seed=0)
    *_, terminated, _, info = env.step(np.ones(1, np.float32))
    assert not terminated and info["divergence"] == ""  # the bound off: the wrecked, finite policy goes unnoticed
    env.close()
