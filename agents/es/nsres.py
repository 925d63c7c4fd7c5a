"""NSR-ES (Conti et al., 2018): OpenAI-ES on a mix of return and novelty, over a meta-population.

Each iteration picks one of ``meta_population`` policies with probability
proportional to its novelty, perturbs it as OpenAI-ES does, and ranks the
candidates by ``w * rank(novelty) + (1 - w) * rank(return)``.  Novelty is the
mean distance of a candidate's behaviour characterisation (its episode's
final observation) to its ``novelty_k`` nearest neighbours in the archive
(faiss, exact L2).  The archive gains the behaviour of the policy being
updated every iteration.

The members' unperturbed rollouts that the selection needs run in one backend
call, and the chosen member's doubles as the iteration's centre rollout (same
policy, same key), so an iteration costs ``population + meta_population``
episodes, all counted in its ``env_steps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.es.backends import Evaluator
from agents.es.config import ESConfig, ESHyperparams
from agents.es.maths import rank_utilities
from agents.es.policy import PolicySpec, Rollout, init_theta
from agents.es.strategy import Asked, GradientAscent, Told, clone_state, search_gradient
from agents.es.workers import env_seed, mirrored_jobs
from agents.seeding import derive


def knn_novelty(archive: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each query to its ``k`` nearest archive entries."""
    import faiss

    index = faiss.IndexFlatL2(archive.shape[1])
    index.add(np.ascontiguousarray(archive, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, archive.shape[0]))
    return np.sqrt(np.maximum(dist, 0.0)).mean(axis=1).astype(np.float64)


class NSRES:
    """NSR-ES: novelty-and-return ES over a small meta-population of policies, each with its own optimizer state."""

    uses_lr = True

    def __init__(self, config: ESConfig, *, seed: int, theta: np.ndarray, spec: PolicySpec, **_: Any) -> None:
        self.config = config
        self.pairs = config.population // 2
        self.seed = seed
        self.step = GradientAscent(config.optimizer)
        members = [theta.copy()] + [
            init_theta(spec, derive(seed, "nsres-member", m), config.init_log_std) for m in range(1, config.meta_population)
        ]
        self.thetas = np.stack(members)
        self.opt_states = [self.step.init_state(t) for t in self.thetas]
        self.archive = np.zeros((0, spec.obs_dim))
        self.current = 0
        self.centres: list[Rollout] = []

    def ask(self, theta: np.ndarray, sigma: float, key: int, evaluator: Evaluator) -> Asked:
        """Score every member once (one backend call), draw the one to update by novelty, perturb it."""
        # The keys of ``evaluate_jobs``' centre job, so the chosen member's rollout is its centre rollout.
        self.centres = evaluator.policies(self.thetas, [(env_seed(self.seed, key, -1), None)] * len(self.thetas))
        bcs = np.stack([r[2] for r in self.centres])
        if self.archive.shape[0] == 0:
            self.archive = bcs
        novelty = knn_novelty(self.archive, bcs, self.config.novelty_k) + 1e-8
        rng = np.random.default_rng(derive(self.seed, "nsres-select", key))
        self.current = int(rng.choice(len(self.thetas), p=novelty / novelty.sum()))
        chosen = self.centres[self.current]
        spent = sum(r[1] for r in self.centres)
        return Asked(theta=self.thetas[self.current].copy(), jobs=tuple(mirrored_jobs(self.pairs)), centre=chosen, spent=spent)

    def tell(self, asked: Asked, candidates: list[Rollout], hp: ESHyperparams, key: int) -> Told:
        returns = np.array([r[0] for r in candidates])
        novelty = knn_novelty(self.archive, np.stack([r[2] for r in candidates]), self.config.novelty_k)
        w = self.config.novelty_weight
        mixed = (w * rank_utilities(novelty) + (1 - w) * rank_utilities(returns)).reshape(self.pairs, 2)
        grad = search_gradient(mixed, hp.sigma, self.seed, key, asked.theta.size)
        m = self.current
        self.thetas[m], self.opt_states[m] = self.step(asked.theta, grad, self.opt_states[m], hp.lr)
        self.archive = np.concatenate([self.archive, asked.centre[2][None]])
        return Told(theta=self.thetas[m].copy(), shift=grad)

    def state_dict(self) -> dict[str, Any]:
        return {
            "thetas": torch.from_numpy(self.thetas.copy()),
            "optimizers": [clone_state(s) for s in self.opt_states],
            "archive": torch.from_numpy(self.archive.copy()),
            "current": self.current,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.thetas = state["thetas"].numpy().copy()
        self.opt_states = [clone_state(s) for s in state["optimizers"]]
        self.archive = state["archive"].numpy().copy()
        self.current = int(state["current"])
