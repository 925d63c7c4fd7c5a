"""OpenAI-ES (Salimans et al., 2017): mirrored sampling, rank shaping, a gradient step on theta."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.es.backends import Evaluator
from agents.es.config import ESConfig, ESHyperparams
from agents.es.policy import Rollout
from agents.es.strategy import Asked, GradientAscent, Told, clone_state, search_gradient
from agents.es.workers import mirrored_jobs


class OpenAIES:
    """``population / 2`` mirrored pairs ``theta +- sigma eps`` a step; ``theta`` follows the shaped-return gradient."""

    uses_lr = True

    def __init__(self, config: ESConfig, *, seed: int, theta: np.ndarray, **_: Any) -> None:
        self.pairs = config.population // 2
        self.seed = seed
        self.step = GradientAscent(config.optimizer)
        self.opt_state = self.step.init_state(theta)

    def ask(self, theta: np.ndarray, sigma: float, key: int, evaluator: Evaluator) -> Asked:
        return Asked(theta=theta, jobs=tuple(mirrored_jobs(self.pairs)))

    def tell(self, asked: Asked, candidates: list[Rollout], hp: ESHyperparams, key: int) -> Told:
        returns = np.array([r[0] for r in candidates]).reshape(self.pairs, 2)
        grad = search_gradient(returns, hp.sigma, self.seed, key, asked.theta.size)
        theta, self.opt_state = self.step(asked.theta, grad, self.opt_state, hp.lr)
        return Told(theta=theta, shift=grad)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": clone_state(self.opt_state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.opt_state = clone_state(state["optimizer"])
