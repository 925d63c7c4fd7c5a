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

from agents.base import IterationReport
from agents.es import ESConfig, ESHyperparams, ESLearner, rank_utilities
from agents.es_workers import Job, Rollout, env_seed, evaluate_policies, init_theta


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
        self._centres: list[Rollout] = []

    def _select(self) -> tuple[int, list[Rollout]]:
        """The member to update (drawn with probability proportional to novelty), and every member's centre rollout."""
        key = self.key(self.iterations)
        # The keys of ``evaluate_jobs``' centre job, so the chosen member's rollout is its centre rollout.
        seeds = [(env_seed(self.seed, key, -1), None)] * len(self.thetas)
        cfg = self.config
        centres = evaluate_policies(self.backend, cfg.task, cfg.max_episode_steps, self.spec, self.thetas, seeds)
        bcs = np.stack([r[2] for r in centres])
        if self.archive.shape[0] == 0:
            self.archive = bcs
        novelty = knn_novelty(self.archive, bcs, cfg.novelty_k) + 1e-8
        rng = np.random.default_rng([self.seed, key, 9])
        return int(rng.choice(len(self.thetas), p=novelty / novelty.sum())), centres

    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        if self.diverged:
            return super().iterate(hparams)
        self.checked_hparams(hparams)  # fail on bad values before spending any steps
        m, self._centres = self._select()
        self.current = m
        self.theta = self.thetas[m].copy()
        self._m, self._v, self._t = self.moments[m, 0].copy(), self.moments[m, 1].copy(), int(self.steps_taken[m])
        report = super().iterate(hparams)
        self.thetas[m] = self.theta
        self.moments[m, 0], self.moments[m, 1], self.steps_taken[m] = self._m, self._v, self._t
        self.archive = np.concatenate([self.archive, self._centres[m][2][None]])
        return report

    def _score_population(self, sigma: float, pairs: int) -> tuple[list[Rollout], Rollout, int]:
        """The perturbed candidates only: the chosen member's centre rollout is reused from ``_select``."""
        jobs = [Job(pair=p, sign=s) for p in range(pairs) for s in (1, -1)]
        candidates = self._evaluate(self.theta, sigma, jobs)
        steps = sum(r[1] for r in candidates) + sum(r[1] for r in self._centres)
        return candidates, self._centres[self.current], steps

    def _fitness_values(self, returns: np.ndarray, candidates: list[Rollout], centre: Rollout) -> np.ndarray:
        bcs = np.stack([r[2] for r in candidates])
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
