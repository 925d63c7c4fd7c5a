"""CMA-ES through the ``cma`` package, with the global step size sigma set by the hyper-agent.

The policy has thousands of weights, so the covariance is diagonal
(sep-CMA-ES, ``CMA_diagonal=True``); a full one would cost O(d^2) memory and
O(d^3) time.  Samples come from a generator re-seeded from ``(seed,
iteration)`` before every ``ask``, so no global RNG is touched and the
result does not depend on where candidates run.

Snapshots: ``state_dict`` holds only numbers -- every iteration's sigma and
fitness vector -- and ``load_state_dict`` rebuilds the ``cma`` object by
replaying ask/tell (exact, costs no env steps).  States taken in this
process are also kept in a small in-memory cache, so forking a lifetime
(BiERL's look-ahead, PBT's exploit) does not replay.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.base import IterationReport
from agents.es import ESConfig, ESHyperparams, ESLearner
from agents.es_workers import evaluate_thetas, split

_TOKENS = itertools.count(1)


class _Randn:
    """``cma``'s ``randn`` option: standard normals from a generator the learner re-seeds."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAESLearner(ESLearner):
    """sep-CMA-ES over the policy weights; ``sigma`` is overwritten by the hyperparameter each iteration."""

    CACHE_SIZE = 8

    def __init__(self, config: ESConfig, *, seed: int, hparams: ESHyperparams | None = None, **kwargs: Any) -> None:
        super().__init__(config, seed=seed, hparams=hparams, **kwargs)
        self._x0 = self.theta.copy()
        self.es = self._new_es()
        self._sigmas: list[float] = []
        self._told: list[np.ndarray] = []
        self._cache: OrderedDict[int, Any] = OrderedDict()

    def _new_es(self) -> Any:
        import cma

        opts = {
            "popsize": self.config.population,
            "seed": float("nan"),  # nan: cma leaves numpy's global RNG alone
            "CMA_diagonal": True,
            "AdaptSigma": False,  # the hyper-agent owns sigma
            "mean_shift_line_samples": False,
            "randn": _Randn(),
            "verbose": -9,
            "tolfun": 0,
            "tolx": 0,
            "tolstagnation": 10**9,
            "tolflatfitness": 10**9,
        }
        return cma.CMAEvolutionStrategy(self._x0, self.default_hparams.sigma, opts)

    def _ask(self, sigma: float, iteration: int) -> np.ndarray:
        self.es.sigma = sigma
        self.es.opts["randn"].rng = np.random.default_rng([self.seed, iteration, 5])
        return np.asarray(self.es.ask())

    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        hp = self.resolve_hparams(hparams)
        if not (hp.sigma > 0 and math.isfinite(hp.sigma)):
            raise ValueError(f"sigma must be positive and finite, got {hp.sigma}")
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        candidates = self._ask(hp.sigma, self.iterations)
        thetas = np.concatenate([candidates, self.theta[None]])
        seeds = []
        for i in range(len(thetas)):
            key = np.random.SeedSequence([self.seed, self.iterations, i, 6]).generate_state(2)
            seeds.append((int(key[0]), None if i == len(candidates) else int(key[1])))
        index = list(range(len(thetas)))
        chunks = [
            (self.config.task, self.config.max_episode_steps, self.spec, thetas[c], [seeds[i] for i in c])
            for c in split(index, self.backend.workers)
        ]
        results = [r for chunk in self.backend.map(evaluate_thetas, chunks) for r in chunk]
        returns = np.array([r[0] for r in results[:-1]])
        steps = sum(r[1] for r in results)
        self.centre_return = float(results[-1][0])
        self.es.tell(list(candidates), list(-returns))
        self._sigmas.append(hp.sigma)
        self._told.append(returns.copy())
        old = self.theta
        self.theta = np.asarray(self.es.mean, dtype=np.float64).copy()
        shift = self.theta - old
        self._grads.appendleft(shift)
        return self._finish(returns, shift, steps, int(results[-1][1]), hp, start)

    def gradient_history(self) -> list:
        """The most recent mean shifts (CMA-ES has no gradient estimate), newest first."""
        return super().gradient_history()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        token = next(_TOKENS)
        self._cache[token] = copy.deepcopy(self.es)
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        state.update(
            cma_sigmas=torch.tensor(self._sigmas, dtype=torch.float64),
            cma_fitness=[torch.from_numpy(f.copy()) for f in self._told],
            cma_token=token,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._sigmas = [float(s) for s in state["cma_sigmas"].tolist()]
        self._told = [f.numpy().copy() for f in state["cma_fitness"]]
        token = int(state["cma_token"])
        if token in self._cache:
            self.es = copy.deepcopy(self._cache[token])
            return
        self.es = self._new_es()
        for i, (sigma, returns) in enumerate(zip(self._sigmas, self._told)):
            self.es.tell(list(self._ask(sigma, i)), list(-returns))
