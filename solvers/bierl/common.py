"""What both BiERL meta-levels share: scoring candidates (paper Eq. 5 and 7), budget accounting, snapshots.

Every ``interval`` hyper-steps the meta-level scores candidate hyperparameter
settings with a scorer from ``solvers.bierl.scorers`` (``lookahead``: the
paper's one-step look-ahead; ``perturbed``: the authors' cheaper score) and
learns from the scores.  The inner env steps the scorers spend are counted in
``meta_env_steps``, reported in each step's ``info["meta_env_steps"]`` and the
RunLog, and with ``charge_budget=True`` also charged to the lifetime, whose
``timesteps`` (and so its budget) then include them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from solvers.base import Callback, EpisodeSolver, RunLog, SolverSpec
from solvers.bierl.scorers import make_scorer


class LookAheadSolver(EpisodeSolver):
    """White-box template: a meta-update every ``interval`` hyper-steps, then act with ``self.values``."""

    spec = SolverSpec()

    def __init__(
        self,
        *,
        interval: int = 10,
        scorer: str = "lookahead",
        lookahead_repeats: int = 1,
        perturbed_samples: int = 10,
        charge_budget: bool = False,
    ) -> None:
        """
        Args:
            interval: hyper-steps between meta-updates (the paper's t).  A hyper-step runs the
                env's ``iterations_per_step`` inner iterations, so this counts inner iterations
                only while that is 1, as on every ``HyperRL/ES-*`` id; otherwise the paper's t
                is ``interval * iterations_per_step``.
            scorer: ``lookahead`` (paper Eq. 4-5) or ``perturbed`` (the authors' code).
            lookahead_repeats: the paper's l, one-step look-aheads averaged per candidate; each
                costs one inner iteration and one evaluation episode.
            perturbed_samples: perturbed copies per candidate for the ``perturbed`` scorer.
            charge_budget: add the scorers' env steps to the lifetime's ``timesteps`` (its budget).
        """
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.scorer = make_scorer(scorer, lookahead_repeats=lookahead_repeats, perturbed_samples=perturbed_samples)
        self.charge_budget = charge_budget
        self.steps = 0
        self.meta_env_steps = 0
        """inner env steps spent scoring candidates in this lifetime (look-aheads and their episodes)"""
        self.meta_time = 0.0
        self.history: list[dict[str, float]] = []

    # -- lifetime hooks -----------------------------------------------------------
    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self._attach(env)
        self.values: dict[str, float] = dict(self.space.defaults())
        self.seed = seed
        self.steps = 0
        self.meta_env_steps = 0
        self.meta_time = 0.0
        self.history = []

    def _attach(self, env: gym.Env) -> None:
        self.env = env.unwrapped
        learner = getattr(self.env, "learner", None)
        if not hasattr(self.env, "snapshot") or not all(
            hasattr(learner, name) for name in ("fitness_history", "noise_stream", "evaluate_episodes", "charge")
        ):
            raise ValueError(f"{self.name} needs a HyperRL ES env (snapshot/restore, a fitness history, noise streams)")
        self.space = self.env.hparam_space
        if self.scorer.name == "perturbed" and list(self.space.names) != ["sigma"]:
            raise ValueError(
                f"the perturbed scorer sees sigma only (theta + sigma eps takes no ES step); this env controls "
                f"{list(self.space.names)}: use scorer='lookahead' or hyperparameters=['sigma']"
            )

    def resume(self, env: gym.Env, obs: Any, log: RunLog, *, callback: Callback | None = None) -> RunLog:
        self._attach(env)  # a resumed solver skips ``begin``: its state came from ``load_state_dict``
        return super().resume(env, obs, log, callback=callback)

    def act(self, obs: Any) -> Any:
        if self.steps % self.interval == 0:
            start, spent = time.perf_counter(), self.meta_env_steps
            self.meta_update()
            self.meta_time += time.perf_counter() - start
            if self.charge_budget:
                self.env.learner.charge(self.meta_env_steps - spent)
        self.values = self.choose()
        self.steps += 1
        self.history.append(dict(self.values))
        return self.space.encode(self.values)

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        info["meta_env_steps"] = self.meta_env_steps

    def meta_update(self) -> None:
        """Learn from scored candidates (subclasses)."""

    def choose(self) -> dict[str, float]:
        """The hyperparameters of the next hyper-step (subclasses may recompute them every step)."""
        return self.values

    def score(self, values: Mapping[str, float]) -> float:
        """The scorer's fitness of ``values`` (over the current ones and the env's defaults); the lifetime is untouched."""
        fitness, steps = self.scorer(self.env, {**self.env.defaults, **self.values, **values})
        self.meta_env_steps += steps
        return fitness

    # -- snapshots ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters and the current hyperparameters; numbers only (subclasses add their meta-level)."""
        return {
            "seed": self.seed,
            "steps": self.steps,
            "meta_env_steps": self.meta_env_steps,
            "meta_time": self.meta_time,
            "values": dict(self.values),
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.steps = int(state["steps"])
        self.meta_env_steps = int(state["meta_env_steps"])
        self.meta_time = float(state["meta_time"])
        self.values = {k: float(v) for k, v in state["values"].items()}
        self.history = [{k: float(v) for k, v in h.items()} for h in state["history"]]
