"""What both BiERL meta-levels share: the one-step look-ahead fitness (paper Eq. 5 and 7).

A candidate hyperparameter setting is scored by forking the lifetime with
``env.unwrapped.snapshot()``, running one inner ES iteration with it, taking
the mean return of ``l`` episodes of the updated policy, and ``restore()``-ing:
the lifetime continues as if the look-ahead never happened.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from solvers.base import EpisodeSolver


class LookAheadSolver(EpisodeSolver):
    """White-box template: a meta-update every ``interval`` hyper-steps, then act with ``self.values``."""

    action_type = "continuous"

    def __init__(self, *, interval: int = 10, lookahead_episodes: int = 1) -> None:
        if interval < 1 or lookahead_episodes < 1:
            raise ValueError(f"interval and lookahead_episodes must be >= 1, got {interval}, {lookahead_episodes}")
        self.interval = interval
        self.lookahead_episodes = lookahead_episodes

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.env = env.unwrapped
        if not hasattr(self.env, "snapshot") or not hasattr(self.env.learner, "fitness_history"):
            raise ValueError(f"{self.name} needs a HyperRL ES env (snapshot/restore and a fitness history)")
        self.space = self.env.hparam_space
        self.values: dict[str, float] = dict(self.space.defaults())
        self.seed = seed
        self.steps = 0
        self.lookahead_env_steps = 0
        """inner env steps spent in look-aheads (not counted in the lifetime's budget)"""
        self.meta_time = 0.0
        self.history: list[dict[str, float]] = []

    def act(self, obs: Any) -> Any:
        if self.steps % self.interval == 0:
            start = time.perf_counter()
            self.meta_update()
            self.meta_time += time.perf_counter() - start
        self.values = self.choose()
        self.steps += 1
        self.history.append(dict(self.values))
        return self.space.encode(self.values)

    def meta_update(self) -> None:
        """Learn from look-aheads (subclasses)."""

    def choose(self) -> dict[str, float]:
        """The hyperparameters of the next hyper-step (subclasses may recompute them every step)."""
        return self.values

    def one_step_fitness(self, values: Mapping[str, float]) -> float:
        """Mean return of the policy after one inner ES iteration with ``values`` (the lifetime is untouched)."""
        env = self.env
        snap = env.snapshot()
        try:
            learner = env.learner
            before = learner.timesteps
            learner.iterate({**env.defaults, **self.values, **values})
            returns = learner.evaluate(self.lookahead_episodes)
            self.lookahead_env_steps += learner.timesteps - before
        finally:
            env.restore(snap)
        return float(np.mean(returns))
