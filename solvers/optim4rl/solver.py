"""``hyperrl run optim4rl ID [--optimizer FILE]``: a lifetime trained with a learned optimizer, frozen."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from solvers.base import SolverSpec
from solvers.baselines import StaticSolver


class Optim4RLSolver(StaticSolver):
    """The id's default hyperparameters for the whole lifetime, with an Optim4RL optimizer as the learner's
    update rule: the shipped one, or the file ``optimizer`` (``hyperrl optim4rl-train``'s output)."""

    name = "optim4rl"
    spec = SolverSpec(env_config={"update_rule": "optim4rl"})

    def __init__(self, optimizer: str | None = None) -> None:
        self.optimizer = optimizer
        if optimizer is not None:
            self.spec = SolverSpec(env_config={"update_rule": f"optim4rl:{optimizer}"})

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        from solvers.optim4rl.optimizer import Optim4RL

        rule = getattr(getattr(env.unwrapped, "learner", None), "update_rule", None)
        if not isinstance(rule, Optim4RL):
            raise ValueError(f"the optim4rl solver needs a HyperRL env whose learner updates with Optim4RL, got {rule!r}")
        super().begin(env, obs, info, seed)
