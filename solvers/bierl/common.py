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
        init: Mapping[str, float] | None = None,
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
            init: hyperparameters to start the lifetime with, e.g. ``{"sigma": 0.08}`` (a deliberately
                bad start).  With it the first meta-update waits ``interval`` hyper-steps, so the
                lifetime really runs there first; without it the first meta-update comes at the
                very first hyper-step.
        """
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.scorer = make_scorer(scorer, lookahead_repeats=lookahead_repeats, perturbed_samples=perturbed_samples)
        self.charge_budget = charge_budget
        self.init = dict(init or {})
        self.steps = 0
        self.meta_env_steps = 0
        """inner env steps spent scoring candidates in this lifetime (look-aheads and their episodes)"""
        self.meta_time = 0.0
        self.history: list[dict[str, float]] = []

    # -- lifetime hooks -----------------------------------------------------------
    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self._attach(env)
        self._check_init()
        self.values: dict[str, float] = {**self.space.defaults(), **self.init}
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

    def _check_init(self) -> None:
        unknown = sorted(set(self.init) - set(self.space.names))
        if unknown:
            raise ValueError(f"init names {unknown}, which this env does not control; it controls {list(self.space.names)}")
        for h in self.space.hyperparameters:
            if h.name in self.init and not h.low <= self.init[h.name] <= h.high:
                raise ValueError(f"init {h.name}={self.init[h.name]:g} is outside its range [{h.low:g}, {h.high:g}]")

    @property
    def starting(self) -> bool:
        """Still on ``init``: the hyper-steps before the first meta-update of a lifetime started there."""
        return bool(self.init) and self.steps < self.interval

    def act(self, obs: Any) -> Any:
        if self.steps % self.interval == 0 and not (self.init and self.steps == 0):
            start, spent = time.perf_counter(), self.meta_env_steps
            self.meta_update()
            self.meta_time += time.perf_counter() - start
            if self.charge_budget:
                self.env.learner.charge(self.meta_env_steps - spent)
        if not self.starting:
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
            "init": dict(self.init),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.steps = int(state["steps"])
        self.meta_env_steps = int(state["meta_env_steps"])
        self.meta_time = float(state["meta_time"])
        self.values = {k: float(v) for k, v in state["values"].items()}
        self.history = [{k: float(v) for k, v in h.items()} for h in state["history"]]
        self.init = {k: float(v) for k, v in state.get("init", {}).items()}  # the lifetime's own start
