"""CMA-ES through the ``cma`` package, with the global step size sigma set by the hyper-agent.

The policy has thousands of weights, so the covariance is diagonal
(sep-CMA-ES, ``CMA_diagonal=True``); a full one would cost O(d^2) memory and
O(d^3) time.  Samples come from a generator re-seeded from ``(seed,
iteration)`` before every ``ask``, so no global RNG is touched and the
result does not depend on where candidates run.

Snapshots: ``state_dict`` holds only numbers -- every iteration's sigma,
random key and fitness vector -- and ``load_state_dict`` rebuilds the ``cma``
object by replaying ask/tell (exact, costs no env steps).  States taken by a
learner are also kept in its small in-memory cache under a random token, so
forking a lifetime (BiERL's look-ahead, PBT's exploit) does not replay; a
cached object is used only when it matches the state being loaded.

CMA-ES has no learning rate (its mean moves by weighted recombination), so an
``lr`` hyperparameter is refused rather than silently ignored.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.base import IterationReport
from agents.es import ESConfig, ESHyperparams, ESLearner
from agents.es_workers import evaluate_policies

_DEFAULT_LR = ESHyperparams().lr


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
        _refuse_lr(hparams)
        super().__init__(config, seed=seed, hparams=hparams, **kwargs)
        self._x0 = self.theta.copy()
        self.es = self._new_es()
        self._sigmas: list[float] = []
        self._keys: list[int] = []
        self._told: list[np.ndarray] = []
        self._cache: OrderedDict[str, tuple[Any, tuple]] = OrderedDict()
        """token -> (a ``cma`` object, the (key, sigma) history that produced it)"""

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

    def resolve_hparams(self, hparams: Mapping[str, float] | ESHyperparams | None) -> ESHyperparams:
        _refuse_lr(hparams)
        return super().resolve_hparams(hparams)

    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        hp = self.checked_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        key = self.key(self.iterations)
        candidates = self._ask(hp.sigma, key)
        thetas = np.concatenate([candidates, self.theta[None]])
        seeds = []
        for i in range(len(thetas)):
            pair = np.random.SeedSequence([self.seed, key, i, 6]).generate_state(2)
            seeds.append((int(pair[0]), None if i == len(candidates) else int(pair[1])))
        cfg = self.config
        results = evaluate_policies(self.backend, cfg.task, cfg.max_episode_steps, self.spec, thetas, seeds)
        returns = np.array([r[0] for r in results[:-1]])
        steps = sum(r[1] for r in results)
        self.centre_return = float(results[-1][0])
        self.es.tell(list(candidates), list(-returns))
        self._sigmas.append(hp.sigma)
        self._keys.append(key)
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
        # A random token, not a counter: a counter restarts in every process, so a state saved
        # in one process could name an unrelated cache entry in another.
        token = uuid.uuid4().hex
        self._cache[token] = (copy.deepcopy(self.es), self._history())
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        state.update(
            cma_sigmas=torch.tensor(self._sigmas, dtype=torch.float64),
            cma_keys=torch.tensor(self._keys, dtype=torch.int64),
            cma_fitness=[torch.from_numpy(f.copy()) for f in self._told],
            cma_token=token,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._sigmas = [float(s) for s in state["cma_sigmas"].tolist()]
        self._keys = [int(k) for k in state["cma_keys"].tolist()] if "cma_keys" in state else list(range(len(self._sigmas)))
        self._told = [f.numpy().copy() for f in state["cma_fitness"]]
        cached = self._cache.get(str(state["cma_token"]))
        if cached is not None and self._matches(*cached):
            self.es = copy.deepcopy(cached[0])
            return
        self.es = self._new_es()
        for key, sigma, returns in zip(self._keys, self._sigmas, self._told):
            self.es.tell(list(self._ask(sigma, key)), list(-returns))

    def _history(self) -> tuple:
        return tuple(zip(self._keys, self._sigmas))

    def _matches(self, es: Any, history: tuple) -> bool:
        """Whether a cached ``cma`` object is the one the just-loaded state describes (else: replay)."""
        return (
            history == self._history()
            and es.countiter == len(self._sigmas) == self.iterations
            and np.array_equal(np.asarray(es.mean, dtype=np.float64), self.theta)
        )


def _refuse_lr(hparams: Mapping[str, float] | ESHyperparams | None) -> None:
    """CMA-ES moves its mean by recombination, with no learning rate: say so instead of ignoring ``lr``."""
    if isinstance(hparams, Mapping):
        if "lr" not in hparams:
            return
        given = hparams["lr"]
    elif hparams is None or hparams.lr == _DEFAULT_LR:
        return  # a dataclass always has an lr: only one changed from the default was meant
    else:
        given = hparams.lr
    raise ValueError(
        f"lr={given} was given to CMA-ES, which has no learning rate (cma moves its mean by weighted "
        "recombination); control sigma only and leave lr out"
    )
