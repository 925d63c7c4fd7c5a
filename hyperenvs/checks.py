"""The conformance checker every HyperRL id must pass (Gymnasium's, plus lifetime rules)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env, data_equivalence

# The smallest lifetime that still runs every code path: a few iterations of a few steps.
TINY = {"num_envs": 2, "config": {"num_steps": 8}, "iterations_per_step": 1}
ES_FAMILY = ("ES", "NSRES", "CMAES")
ES_TINY = {"population": 2, "max_episode_steps": 5, "backend": "serial"}


def tiny_kwargs(env_id: str, hyper_steps: int = 4) -> dict[str, Any]:
    """``gym.make`` overrides that make ``env_id`` cheap: ``hyper_steps`` steps of 16 env steps."""
    kwargs: dict[str, Any] = {**TINY, "config": dict(TINY["config"])}
    kwargs["total_timesteps"] = hyper_steps * TINY["num_envs"] * TINY["config"]["num_steps"]
    if env_id.startswith("HyperRL/PPO"):
        kwargs["defaults"] = {"epochs": 1, "minibatch_size": 16}
    if env_id.split("/")[-1].split("-")[0] in ES_FAMILY:
        # One mirrored pair of 5-step episodes, evaluated in-process; the budget allows
        # at least ``hyper_steps`` iterations of (2 candidates + the centre) x 5 steps.
        kwargs["config"] = dict(ES_TINY)
        kwargs["num_envs"] = 1
        kwargs["total_timesteps"] = hyper_steps * (ES_TINY["population"] + 1) * ES_TINY["max_episode_steps"]
    return kwargs


def check_hyperenv(env_id: str, **overrides: Any) -> None:
    """Raise ``AssertionError`` unless ``env_id`` is a well-behaved hyper-environment.

    Runs Gymnasium's ``check_env`` (with ``timing=False``: wall times are not
    deterministic), then checks that the budget ends the episode with
    ``truncated`` and that one seed gives one trajectory.
    """
    kwargs = {**tiny_kwargs(env_id), "timing": False, **overrides}
    env = gym.make(env_id, **kwargs)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        _check_budget(env)
    finally:
        env.close()
    _check_seeding(env_id, kwargs)


def _check_budget(env: gym.Env) -> None:
    env.reset(seed=0)
    steps, truncated, terminated = 0, False, False
    while not (truncated or terminated):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert steps <= 10_000, "the lifetime never ended"
    assert truncated and not terminated, f"budget exhaustion gave terminated={terminated}, truncated={truncated}"
    assert info["timesteps"] >= env.unwrapped.total_timesteps


def _rollout(env_id: str, kwargs: dict[str, Any], seed: int, steps: int = 2) -> list[Any]:
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    out = [env.reset(seed=seed)[0]]
    for _ in range(steps):
        out.append(env.step(env.action_space.sample())[:2])
    env.close()
    return out


def _check_seeding(env_id: str, kwargs: dict[str, Any]) -> None:
    first, again = _rollout(env_id, kwargs, seed=1), _rollout(env_id, kwargs, seed=1)
    assert data_equivalence(first, again, exact=True), "two envs with the same seed gave different trajectories"
    other = _rollout(env_id, kwargs, seed=2)
    key = "projection" if "projection" in first[0] else "statistics"
    if key in first[0]:
        assert not np.array_equal(first[0][key], other[0][key]), "different seeds gave the same network"
