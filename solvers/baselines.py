"""Baselines every solver is measured against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from solvers.base import EpisodeSolver, SolverSpec


class StaticSolver(EpisodeSolver):
    """Holds the id's default hyperparameters for the whole lifetime (the hand-tuned baseline)."""

    name = "static"
    spec = SolverSpec()

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        if "default_action" not in info:
            raise ValueError("the static solver needs a HyperRL env: reset() info has no 'default_action'")
        self._action = info["default_action"]

    def act(self, obs: Any) -> Any:
        return self._action

    def state_dict(self) -> dict[str, Any]:
        """Nothing: ``begin`` on the resumed lifetime's reset finds the same default action."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _expect_keys(self, state, set())


class RandomSolver(EpisodeSolver):
    """A uniformly random action at every hyper-step, seeded by the run's seed."""

    name = "random"
    spec = SolverSpec()

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self._space = env.action_space
        self._space.seed(seed)
        self._draws = 0

    def act(self, obs: Any) -> Any:
        self._draws += 1
        return self._space.sample()

    def state_dict(self) -> dict[str, Any]:
        """The number of actions drawn: ``begin`` reseeds the space, and the draws are replayed."""
        return {"draws": self._draws}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _expect_keys(self, state, {"draws"})
        # replaying the draws puts the space's generator exactly where it was, whatever the space
        for _ in range(int(state["draws"])):
            self.act(None)


class RndSolver(RandomSolver):
    """EPGT's RND baseline: uniformly random over the same joint bins (a HyperRL env with ``action_type="discrete"``)."""

    name = "rnd"
    spec = SolverSpec(action_type="discrete")


def _expect_keys(solver: EpisodeSolver, state: Mapping[str, Any], keys: set[str]) -> None:
    if set(state) != keys:
        raise ValueError(f"a {solver.name} state_dict has the keys {sorted(keys)}, got {sorted(state)}")
