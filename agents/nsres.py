"""NSR-ES (Conti et al., 2018): OpenAI-ES on a mix of return and novelty, over a meta-population.

Each iteration picks one of ``meta_population`` policies with probability
proportional to its novelty, perturbs it as OpenAI-ES does, and ranks the
candidates by ``w * rank(novelty) + (1 - w) * rank(return)``.  Novelty is the
mean distance of a candidate's behaviour characterisation (its episode's
final observation) to its ``novelty_k`` nearest neighbours in the archive
(faiss, exact L2).  The archive gains the behaviour of the policy being
updated every iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.base import IterationReport
from agents.es import ESConfig, ESHyperparams, ESLearner, rank_utilities
from agents.es_workers import Job, init_theta


def knn_novelty(archive: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each query to its ``k`` nearest archive entries."""
    import faiss

    index = faiss.IndexFlatL2(archive.shape[1])
    index.add(np.ascontiguousarray(archive, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, archive.shape[0]))
    return np.sqrt(np.maximum(dist, 0.0)).mean(axis=1).astype(np.float64)


class NSRESLearner(ESLearner):
    """NSR-ES: novelty-and-return ES over a small meta-population of policies."""

    def __init__(self, config: ESConfig, *, seed: int, hparams: ESHyperparams | None = None, **kwargs: Any) -> None:
        super().__init__(config, seed=seed, hparams=hparams, **kwargs)
        members = config.meta_population
        if members < 1:
            raise ValueError(f"meta_population must be >= 1, got {members}")
        self.thetas = np.stack([init_theta(self.spec, self.seed + 104729 * m, config.init_log_std) for m in range(members)])
        self.thetas[0] = self.theta
        self.moments = np.zeros((members, 2, self.theta.size))
        self.steps_taken = np.zeros(members, dtype=np.int64)
        self.archive = np.zeros((0, self.spec.obs_dim))
        self.current = 0

    def _select(self) -> int:
        bcs = [self._evaluate(theta, 0.0, [Job(-1, 0)])[0] for theta in self.thetas]
        self.timesteps += sum(r[1] for r in bcs)
        if self.archive.shape[0] == 0:
            self.archive = np.stack([r[2] for r in bcs])
        novelty = knn_novelty(self.archive, np.stack([r[2] for r in bcs]), self.config.novelty_k) + 1e-8
        rng = np.random.default_rng([self.seed, self.iterations, 9])
        return int(rng.choice(len(self.thetas), p=novelty / novelty.sum()))

    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        if self.diverged:
            return super().iterate(hparams)
        self.resolve_hparams(hparams)  # fail on bad names before spending any steps
        m = self._select()
        self.current = m
        self.theta = self.thetas[m].copy()
        self._m, self._v, self._t = self.moments[m, 0].copy(), self.moments[m, 1].copy(), int(self.steps_taken[m])
        report = super().iterate(hparams)
        self.thetas[m] = self.theta
        self.moments[m, 0], self.moments[m, 1], self.steps_taken[m] = self._m, self._v, self._t
        self.archive = np.concatenate([self.archive, self._centre_bc[None]])
        return report

    def _fitness_values(self, returns: np.ndarray, results: list) -> np.ndarray:
        self._centre_bc = results[-1][2]
        bcs = np.stack([r[2] for r in results[:-1]])
        novelty = knn_novelty(self.archive, bcs, self.config.novelty_k)
        w = self.config.novelty_weight
        mixed = w * rank_utilities(novelty) + (1 - w) * rank_utilities(returns.ravel())
        return mixed.reshape(returns.shape)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            thetas=torch.from_numpy(self.thetas.copy()),
            moments=torch.from_numpy(self.moments.copy()),
            steps_taken=torch.from_numpy(self.steps_taken.copy()),
            archive=torch.from_numpy(self.archive.copy()),
            current=self.current,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.thetas = state["thetas"].numpy().copy()
        self.moments = state["moments"].numpy().copy()
        self.steps_taken = state["steps_taken"].numpy().copy()
        self.archive = state["archive"].numpy().copy()
        self.current = int(state["current"])
