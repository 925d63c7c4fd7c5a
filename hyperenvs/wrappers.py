"""Wrappers for hyper-agents that want a different face of a HyperRL env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import FlattenObservation


class RecordSchedule(gym.Wrapper):
    """Keeps the hyperparameter schedule of the current lifetime.

    ``env.schedule`` is a list of ``{"timesteps", "reward", **hyperparameters}``
    rows, one per hyper-step; ``reset`` starts a new list (the previous one
    stays in ``env.schedules``).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.schedule: list[dict[str, float]] = []
        self.schedules: list[list[dict[str, float]]] = []

    def reset(self, **kwargs: Any):
        if self.schedule:
            self.schedules.append(self.schedule)
        self.schedule = []
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.schedule.append({"timesteps": info["timesteps"], "reward": reward, **info["hyperparameters"]})
        return obs, reward, terminated, truncated, info


def flatten(env: gym.Env) -> gym.Env:
    """One flat float32 Box observation (the Dict parts concatenated), for agents that want a Box."""
    return FlattenObservation(env)


__all__ = ["RecordSchedule", "flatten"]
