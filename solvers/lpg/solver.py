"""``hyperrl run lpg ID [--rule FILE]``: a lifetime whose learner minimises a frozen LPG (Eq. 7)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from solvers.base import SolverSpec
from solvers.baselines import StaticSolver


class LPGSolver(StaticSolver):
    """The id's default hyperparameters for the whole lifetime, with a frozen LPG as the learner's objective:
    the shipped one, or the rule file ``rule`` (``hyperrl lpg-train``'s output)."""

    name = "lpg"
    spec = SolverSpec(env_config={"objective": "lpg"})

    def __init__(self, rule: str | None = None) -> None:
        self.rule = rule
        if rule is not None:
            self.spec = SolverSpec(env_config={"objective": f"lpg:{rule}"})

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        from solvers.lpg.plugin import FrozenLPGObjective

        objective = getattr(getattr(env.unwrapped, "learner", None), "objective", None)
        if not isinstance(objective, FrozenLPGObjective):
            raise ValueError(f"the lpg solver needs an A2C, PPO or IMPALA env minimising an LPG, got {objective!r}")
        super().begin(env, obs, info, seed)
