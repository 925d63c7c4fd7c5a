"""What both BiERL meta-levels share: the one-step look-ahead fitness (paper Eq. 5 and 7).

A candidate hyperparameter setting is scored as the paper does: fork the
lifetime with ``env.unwrapped.snapshot()``, run one inner ES iteration with the
candidate, score the updated policy by one evaluation episode, and
``restore()``; repeat that ``l`` times and average.  Repeat ``i`` draws its
inner noise and its evaluation episode from the learner's noise stream ``i``
(``ESLearner.noise_stream``), so the repeats are independent Monte Carlo
samples while all candidates share the same ``l`` draws: common random numbers,
which make the comparison of candidates less noisy without changing what each
score estimates.  Repeat 0 is the draw the lifetime itself takes next.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from solvers.base import EpisodeSolver, SolverSpec


class LookAheadSolver(EpisodeSolver):
    """White-box template: a meta-update every ``interval`` hyper-steps, then act with ``self.values``."""

    spec = SolverSpec()

    def __init__(self, *, interval: int = 10, lookahead_repeats: int = 1) -> None:
        """
        Args:
            interval: hyper-steps between meta-updates (the paper's t).  A hyper-step runs the
                env's ``iterations_per_step`` inner iterations, so this counts inner iterations
                only while that is 1, as on every ``HyperRL/ES-*`` id; otherwise the paper's t
                is ``interval * iterations_per_step``.
            lookahead_repeats: the paper's l, one-step look-aheads averaged per candidate; each
                costs one inner iteration and one evaluation episode.
        """
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if lookahead_repeats < 1:
            raise ValueError(f"lookahead_repeats must be >= 1, got {lookahead_repeats}")
        self.interval = interval
        self.lookahead_repeats = lookahead_repeats

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.env = env.unwrapped
        learner = getattr(self.env, "learner", None)
        if not hasattr(self.env, "snapshot") or not all(
            hasattr(learner, name) for name in ("fitness_history", "noise_stream", "evaluate_episodes")
        ):
            raise ValueError(f"{self.name} needs a HyperRL ES env (snapshot/restore, a fitness history, noise streams)")
        self.space = self.env.hparam_space
        self.values: dict[str, float] = dict(self.space.defaults())
        self.seed = seed
        self.steps = 0
        self.lookahead_env_steps = 0
        """inner env steps spent in look-aheads, inner iterations and evaluation episodes alike
        (not charged to the lifetime's budget)"""
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
        """Paper Eq. 5: mean return after one inner ES iteration with ``values``, over ``l`` repeats.

        The lifetime is untouched: every repeat starts from, and the call ends on, one snapshot.
        """
        env = self.env
        hparams = {**env.defaults, **self.values, **values}
        snap = env.snapshot()
        scores = []
        try:
            for repeat in range(self.lookahead_repeats):
                if repeat:
                    env.restore(snap)
                scores.append(self._one_step(env.learner, hparams, repeat))
        finally:
            env.restore(snap)
        return float(np.mean(scores))

    def _one_step(self, learner: Any, hparams: Mapping[str, float], repeat: int) -> float:
        """One look-ahead in noise stream ``repeat``: its env steps are counted, inner and evaluation."""
        before = learner.timesteps
        with learner.noise_stream(repeat):
            learner.iterate(hparams)
            [(ret, length)] = learner.evaluate_episodes(1)
        self.lookahead_env_steps += learner.timesteps - before + length
        return ret
