"""Baselines every solver is measured against."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from solvers.base import EpisodeSolver


class StaticSolver(EpisodeSolver):
    """Holds the id's default hyperparameters for the whole lifetime (the hand-tuned baseline)."""

    name = "static"

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        if "default_action" not in info:
            raise ValueError("the static solver needs a HyperRL env: reset() info has no 'default_action'")
        self._action = info["default_action"]

    def act(self, obs: Any) -> Any:
        return self._action


class RandomSolver(EpisodeSolver):
    """A uniformly random action at every hyper-step, seeded by the run's seed."""

    name = "random"

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self._space = env.action_space
        self._space.seed(seed)

    def act(self, obs: Any) -> Any:
        return self._space.sample()


class RndSolver(RandomSolver):
    """EPGT's RND baseline: uniformly random over the same joint bins (a HyperRL env with ``action_type="discrete"``)."""

    name = "rnd"
    action_type = "discrete"
