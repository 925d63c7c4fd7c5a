"""The ask/tell contract every ES strategy follows, and the gradient step the gradient-based ones share.

One iteration of the learner shell (``agents.es.learner.ESLearner``) is
``ask -> evaluate -> tell``: the strategy says which candidates to score
(``Asked``), the shell runs them on its backend together with the unperturbed
policy, and the strategy turns their rollouts into the next policy (``Told``).
A strategy owns what it learns across iterations (optimizer moments, a
covariance, a meta-population) and saves it in ``state_dict``; the shell owns
the policy, the counters and the histories.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from agents import optim
from agents.es.backends import Evaluator
from agents.es.config import ESHyperparams
from agents.es.maths import mirrored_gradient, rank_utilities
from agents.es.policy import Rollout
from agents.es.workers import Job, pair_noise


@dataclass(frozen=True, kw_only=True)
class Asked:
    """One population a strategy wants scored."""

    theta: np.ndarray
    """the policy this iteration updates; its unperturbed rollout is the iteration's centre rollout"""
    jobs: tuple[Job, ...] = ()
    """mirrored candidates keyed around ``theta``, their noise drawn in the workers (OpenAI-ES, NSR-ES)"""
    explicit: np.ndarray | None = None
    """``[n, dim]`` candidates the strategy drew itself (CMA-ES); then ``jobs`` is empty"""
    centre: Rollout | None = None
    """the centre rollout when ``ask`` has already run it (NSR-ES' selection); None: the shell runs it"""
    spent: int = 0
    """env steps ``ask`` itself spent, counted in the iteration's"""


@dataclass(frozen=True, kw_only=True)
class Told:
    """What a strategy learnt from one scored population."""

    theta: np.ndarray
    """the updated policy"""
    shift: np.ndarray
    """the ES gradient estimate (an ascent direction), or CMA-ES' mean shift: the ``gradient_history`` entry"""


class Strategy(Protocol):
    """An evolution strategy as ask/tell (evosax's shape), stateful, with plain-data snapshots."""

    uses_lr: bool
    """whether ``ESHyperparams.lr`` means anything to it (CMA-ES moves its mean without one)"""

    def ask(self, theta: np.ndarray, sigma: float, key: int, evaluator: Evaluator) -> Asked:
        """The candidates of iteration ``key`` around the shell's policy ``theta``."""

    def tell(self, asked: Asked, candidates: list[Rollout], hp: ESHyperparams, key: int) -> Told:
        """Learn from the candidates' rollouts (in ``asked`` order); returns the next policy."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def search_gradient(fitness: np.ndarray, sigma: float, seed: int, key: int, dim: int) -> np.ndarray:
    """Rank-shape ``fitness`` ([pairs, 2], ``+eps`` first) and estimate the gradient with the pairs' keyed noise."""
    pairs = fitness.shape[0]
    shaped = rank_utilities(fitness.ravel()).reshape(pairs, 2)
    noise = np.stack([pair_noise(seed, key, p, dim) for p in range(pairs)])
    return mirrored_gradient(shaped, noise, sigma)


_RULES = {"sgd": (optim.sgd_init, optim.sgd), "adam": (optim.adam_init, optim.adam)}


class GradientAscent:
    """``theta <- update(theta, -g)`` with the shared update rules of ``agents.optim`` (``sgd`` or ``adam``).

    The rules descend, the ES gradient estimate ascends the return, hence ``-g``;
    with ``sgd`` that is exactly BiERL's Eq. 3, ``theta + lr * g``.
    """

    def __init__(self, rule: str) -> None:
        self.init, self.update = _RULES[rule]

    def init_state(self, theta: np.ndarray) -> optim.OptState:
        return self.init({"theta": torch.from_numpy(theta)})

    def __call__(
        self, theta: np.ndarray, grad: np.ndarray, state: optim.OptState, lr: float
    ) -> tuple[np.ndarray, optim.OptState]:
        params, state = self.update({"theta": torch.from_numpy(theta)}, {"theta": torch.from_numpy(-grad)}, state, lr=lr)
        return params["theta"].numpy(), state


def clone_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of an optimizer state (tensors cloned), for snapshots."""
    return {
        k: clone_state(v) if isinstance(v, Mapping) else v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()
    }
