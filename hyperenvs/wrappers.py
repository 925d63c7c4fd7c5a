"""Wrappers for hyper-agents that want a different face of a HyperRL env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
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


class JointDiscreteAction(gym.ActionWrapper):
    """``MultiDiscrete`` bins -> one ``Discrete`` over their Cartesian product (row-major).

    For hyper-agents such as DQN that take a single discrete action; with
    ``nvec = [3, 5]`` action ``7`` means bins ``(1, 2)``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.MultiDiscrete):
            raise ValueError(f"JointDiscreteAction needs a MultiDiscrete action space, got {env.action_space}")
        self.nvec = np.asarray(env.action_space.nvec, dtype=np.int64)
        self.action_space = spaces.Discrete(int(np.prod(self.nvec)))

    def action(self, action: Any) -> np.ndarray:
        index = int(action)
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"joint action {index} outside [0, {self.action_space.n - 1}]")
        return np.array(np.unravel_index(index, tuple(self.nvec)), dtype=np.int64)

    def joint_index(self, bins: Any) -> int:
        """Inverse of ``action``: per-hyperparameter bins -> joint index."""
        return int(np.ravel_multi_index(tuple(int(b) for b in bins), tuple(self.nvec)))


__all__ = ["JointDiscreteAction", "RecordSchedule", "flatten"]
