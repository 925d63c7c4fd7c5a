"""CMA-ES through the ``cma`` package, with the global step size sigma set by the hyper-agent.

The policy has thousands of weights, so the covariance is diagonal
(sep-CMA-ES, ``CMA_diagonal=True``); a full one would cost O(d^2) memory and
O(d^3) time.  Samples come from a generator re-seeded from ``(seed, key)``
before every ``ask``, so no global RNG is touched and the result does not
depend on where candidates run.

Snapshots: ``state_dict`` holds only numbers -- every iteration's sigma,
random key and fitness vector -- and ``load_state_dict`` rebuilds the ``cma``
object by replaying ask/tell (exact, costs no env steps).  States taken by a
strategy are also kept in its small in-memory cache under a random token, so
forking a lifetime (BiERL's look-ahead, PBT's exploit) does not replay; a
cached object is used only when it matches the state being loaded.

CMA-ES has no learning rate (its mean moves by weighted recombination), so the
shell refuses an ``lr`` hyperparameter rather than silently ignoring it.
"""

from __future__ import annotations

import copy
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.es.backends import Evaluator
from agents.es.config import ESConfig, ESHyperparams
from agents.es.policy import Rollout
from agents.es.strategy import Asked, Told
from agents.seeding import derive


class _Randn:
    """``cma``'s ``randn`` option: standard normals from a generator the strategy re-seeds."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAES:
    """sep-CMA-ES over the policy weights; ``sigma`` is overwritten by the hyperparameter each iteration."""

    uses_lr = False
    CACHE_SIZE = 8

    def __init__(self, config: ESConfig, *, seed: int, theta: np.ndarray, sigma0: float, **_: Any) -> None:
        self.population = config.population
        self.seed = seed
        self.x0 = theta.copy()
        self.sigma0 = sigma0
        self.es = self._new_es()
        self.sigmas: list[float] = []
        self.keys: list[int] = []
        self.told: list[np.ndarray] = []
        self._cache: OrderedDict[str, tuple[Any, tuple]] = OrderedDict()
        """token -> (a ``cma`` object, the (key, sigma) history that produced it)"""

    def _new_es(self) -> Any:
        import cma

        opts = {
            "popsize": self.population,
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
        return cma.CMAEvolutionStrategy(self.x0, self.sigma0, opts)

    def _sample(self, sigma: float, key: int) -> np.ndarray:
        self.es.sigma = sigma
        self.es.opts["randn"].rng = np.random.default_rng(derive(self.seed, "cma-ask", key))
        return np.asarray(self.es.ask())

    def ask(self, theta: np.ndarray, sigma: float, key: int, evaluator: Evaluator) -> Asked:
        return Asked(theta=theta, explicit=self._sample(sigma, key))

    def tell(self, asked: Asked, candidates: list[Rollout], hp: ESHyperparams, key: int) -> Told:
        returns = np.array([r[0] for r in candidates])
        self.es.tell(list(asked.explicit), list(-returns))
        self.sigmas.append(hp.sigma)
        self.keys.append(key)
        self.told.append(returns.copy())
        theta = np.asarray(self.es.mean, dtype=np.float64).copy()
        return Told(theta=theta, shift=theta - asked.theta)

    def state_dict(self) -> dict[str, Any]:
        # A random token, not a counter: a counter restarts in every process, so a state saved
        # in one process could name an unrelated cache entry in another.
        token = uuid.uuid4().hex
        self._cache[token] = (copy.deepcopy(self.es), self._history())
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return {
            "sigmas": torch.tensor(self.sigmas, dtype=torch.float64),
            "keys": torch.tensor(self.keys, dtype=torch.int64),
            "fitness": [torch.from_numpy(f.copy()) for f in self.told],
            "token": token,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sigmas = [float(s) for s in state["sigmas"].tolist()]
        self.keys = [int(k) for k in state["keys"].tolist()]
        self.told = [f.numpy().copy() for f in state["fitness"]]
        cached = self._cache.get(str(state["token"]))
        if cached is not None and self._matches(*cached):
            self.es = copy.deepcopy(cached[0])
            return
        self.es = self._new_es()
        for key, sigma, returns in zip(self.keys, self.sigmas, self.told):
            self.es.tell(list(self._sample(sigma, key)), list(-returns))

    def _history(self) -> tuple:
        return tuple(zip(self.keys, self.sigmas))

    def _matches(self, es: Any, history: tuple) -> bool:
        """Whether a cached ``cma`` object is the one the just-loaded state describes (else: replay)."""
        return history == self._history() and es.countiter == len(self.sigmas)
