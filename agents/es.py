"""Evolution strategies behind the Learner protocol: OpenAI-ES (BiERL's inner level).

One ``iterate(hparams)`` samples ``population`` mirrored candidates
``theta +- sigma * eps``, evaluates them (and the unperturbed policy) with a
backend from ``agents.es_workers``, shapes their returns by rank and steps
``theta`` along the ES gradient estimate (paper Eq. 2-3).  All randomness is
derived from ``(seed, iteration, index)``, so a learner holds no RNG state and
snapshots are exact; ``noise_stream`` shifts those keys for look-aheads that
repeat one iteration with independent noise.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import IterationReport, Params
from agents.es_workers import (
    CENTRE,
    EnvCache,
    Job,
    PolicySpec,
    Rollout,
    evaluate_jobs,
    evaluate_population,
    init_theta,
    make_backend,
    pair_noise,
    process_cache,
)
from agents.hparams import declare, hyperparameter

STREAM_STRIDE = 2**32
"""key offset between noise streams: no lifetime reaches 2**32 iterations or evaluation episodes"""


# -- the maths -------------------------------------------------------------------
def rank_utilities(fitness: np.ndarray) -> np.ndarray:
    """Rank-based fitness shaping: ``u_i = max(0, log2(n/2+1) - log2(rank_i))``, ``F_i = u_i/sum(u) - 1/n``.

    ``rank_i`` is 1 for the best candidate; ties keep their input order.
    """
    fitness = np.asarray(fitness, dtype=np.float64)
    if fitness.ndim != 1 or fitness.size < 1:
        raise ValueError(f"fitness must be a non-empty vector, got shape {fitness.shape}")
    n = fitness.size
    order = np.argsort(-fitness, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    u = np.maximum(0.0, math.log2(n / 2 + 1) - np.log2(ranks))
    return u / u.sum() - 1.0 / n


def mirrored_gradient(shaped: np.ndarray, noise: np.ndarray, sigma: float) -> np.ndarray:
    """ES search-gradient estimate ``1/(n sigma) sum_i F_i eps_i`` over mirrored pairs.

    ``shaped`` is ``[pairs, 2]`` (the ``+eps`` and ``-eps`` member of each pair),
    ``noise`` is ``[pairs, dim]``.
    """
    if shaped.ndim != 2 or shaped.shape[1] != 2 or noise.shape[0] != shaped.shape[0]:
        raise ValueError(f"shaped must be [pairs, 2] and noise [pairs, dim], got {shaped.shape} and {noise.shape}")
    n = shaped.size
    return (shaped[:, 0] - shaped[:, 1]) @ noise / (n * sigma)


# -- configuration ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ESConfig:
    """Structure of an ES learner: fixed for a whole lifetime."""

    task: str = "HalfCheetah-v5"
    """Gymnasium id of the inner task (continuous actions)"""
    num_envs: int = 1
    """accepted for the hyper-env's shared vector env; ES rollouts run in the population backend"""
    population: int = 200
    """candidates per iteration (even: mirrored pairs); BiERL's n = 200"""
    max_episode_steps: int | None = None
    """episode step limit of every rollout (None: the task's own limit, 1000 for MuJoCo)"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden widths of the tanh policy MLP"""
    init_log_std: float = -3.5
    """initial learned log-std of the Gaussian policy"""
    optimizer: str = "sgd"
    """``sgd`` (paper Eq. 3: theta += lr * g) or ``adam``"""
    backend: str = "process"
    """population evaluation: ``serial``, ``process`` (multiprocessing pool) or ``ray``"""
    workers: int | None = None
    """worker processes (None: one per core; 0 with ``process`` means serial)"""
    fitness_history: int = 10
    """populations' fitness vectors kept for the ``fitness`` observer (BiERL's k)"""
    grad_history: int = 2
    """ES gradient estimates kept by ``gradient_history()``"""
    meta_population: int = 3
    """NSR-ES only: policies kept (Conti et al., 2018 and BiERL use 3)"""
    novelty_k: int = 10
    """NSR-ES only: nearest behaviour characterisations averaged into a novelty"""
    novelty_weight: float = 0.5
    """NSR-ES only: weight of novelty against return in the fitness"""

    def __post_init__(self) -> None:
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even number >= 2 (mirrored pairs), got {self.population}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.backend not in ("serial", "process", "ray"):
            raise ValueError(f"backend must be 'serial', 'process' or 'ray', got {self.backend!r}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")


@declare
@dataclass(frozen=True, kw_only=True)
class ESHyperparams:
    """What a hyper-agent may change between iterations."""

    sigma: float = hyperparameter(
        0.05, low=0.02, high=0.08, bins=(0.02, 0.035, 0.05, 0.065, 0.08), doc="perturbation scale (BiERL's range and grid)"
    )
    lr: float = hyperparameter(
        0.05, low=0.005, high=0.5, log=True, multipliers=(0.5, 1, 2), doc="step size on theta (BiERL: 0.05 with plain ES steps)"
    )


def policy_spec(config: ESConfig, obs_space: gym.Space, act_space: gym.Space) -> PolicySpec:
    if not isinstance(act_space, gym.spaces.Box):
        raise ValueError(f"ES learners need a continuous (Box) action space; {config.task} has {act_space}")
    return PolicySpec(
        obs_dim=int(np.prod(obs_space.shape)),
        act_dim=int(np.prod(act_space.shape)),
        hidden=tuple(config.hidden),
        low=tuple(float(x) for x in np.ravel(act_space.low)),
        high=tuple(float(x) for x in np.ravel(act_space.high)),
    )


def _spaces(task: str) -> tuple[gym.Space, gym.Space]:
    from agents.rollout import task_spaces

    return task_spaces(task)


class ESLearner:
    """OpenAI-ES (Salimans et al., 2017) with mirrored sampling and rank shaping."""

    Hyperparams = ESHyperparams
    uses_vector_env = False  # the population runs in the backend's own envs

    def __init__(
        self,
        config: ESConfig,
        *,
        seed: int,
        hparams: ESHyperparams | None = None,
        device: str = "cpu",
        envs: gym.vector.VectorEnv | None = None,
    ) -> None:
        """``envs`` is accepted for the protocol and left alone: candidates run in the backend."""
        self.config = config
        self.seed = int(seed)
        self.device = torch.device(device)
        self.default_hparams = hparams if hparams is not None else ESHyperparams()
        self.spec = policy_spec(config, *_spaces(config.task))
        self.theta = init_theta(self.spec, self.seed, config.init_log_std)
        self._m = np.zeros_like(self.theta)
        self._v = np.zeros_like(self.theta)
        self._t = 0
        self.timesteps = 0
        self.iterations = 0
        self.diverged = False
        self._fitness: deque[np.ndarray] = deque(maxlen=config.fitness_history)
        self._grads: deque[np.ndarray] = deque(maxlen=config.grad_history)
        self.centre_return = 0.0
        self.centre_rank = 0.0
        self._eval_count = 0
        self._eval_cache: EnvCache | None = None
        self._stream = 0
        self.backend = make_backend(config.backend, config.workers)

    @classmethod
    def param_shapes(cls, config: ESConfig) -> dict[str, tuple[int, ...]]:
        return policy_spec(config, *_spaces(config.task)).shapes()

    def resolve_hparams(self, hparams: Mapping[str, float] | ESHyperparams | None) -> ESHyperparams:
        if hparams is None:
            return self.default_hparams
        if isinstance(hparams, ESHyperparams):
            return hparams
        known = {f.name for f in fields(ESHyperparams)}
        unknown = set(hparams) - known
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; known: {sorted(known)}")
        return replace(self.default_hparams, **{k: float(v) for k, v in hparams.items()})

    def checked_hparams(self, hparams: Mapping[str, float] | ESHyperparams | None) -> ESHyperparams:
        """``resolve_hparams``, then a clear error for a sigma no Gaussian can have."""
        hp = self.resolve_hparams(hparams)
        if not (hp.sigma > 0 and math.isfinite(hp.sigma)):
            raise ValueError(f"sigma must be positive and finite, got {hp.sigma}")
        return hp

    # -- random keys --------------------------------------------------------------------
    def key(self, index: int) -> int:
        """Iteration (or evaluation episode) ``index`` as it enters the random keys of the current noise stream."""
        return index + self._stream * STREAM_STRIDE

    @contextmanager
    def noise_stream(self, stream: int) -> Iterator[None]:
        """Draw the keys of the iterations and evaluations run inside from stream ``stream`` (0: the lifetime's own).

        BiERL's look-ahead repeats one inner step ``l`` times from one snapshot (paper
        Eq. 5): repeat ``i`` runs in stream ``i``, so the repeats see independent noise and
        episodes, while every candidate's ``i``-th repeat sees the same ones (common random
        numbers across candidates).  Stream 0 is what the lifetime itself would draw next.
        """
        if stream < 0:
            raise ValueError(f"stream must be >= 0, got {stream}")
        saved, self._stream = self._stream, int(stream)
        try:
            yield
        finally:
            self._stream = saved

    # -- one iteration --------------------------------------------------------------
    def _evaluate(self, theta: np.ndarray, sigma: float, jobs: list[Job]) -> list[Rollout]:
        return evaluate_population(
            self.backend,
            self.config.task,
            self.config.max_episode_steps,
            self.spec,
            theta,
            sigma,
            self.seed,
            self.key(self.iterations),
            jobs,
        )

    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        hp = self.checked_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        pairs = self.config.population // 2
        candidates, centre, steps = self._score_population(hp.sigma, pairs)
        returns = np.array([r[0] for r in candidates]).reshape(pairs, 2)
        self.centre_return = float(centre[0])
        fitness = self._fitness_values(returns, candidates, centre)
        grad = self.step_theta(fitness, hp)
        return self._finish(returns.ravel(), grad, steps, int(centre[1]), hp, start)

    def _score_population(self, sigma: float, pairs: int) -> tuple[list[Rollout], Rollout, int]:
        """The candidates' rollouts (pair-major, ``+eps`` first), the unperturbed policy's, and the env steps spent."""
        jobs = [Job(pair=p, sign=s) for p in range(pairs) for s in (1, -1)] + [CENTRE]
        results = self._evaluate(self.theta, sigma, jobs)
        return results[:-1], results[-1], sum(r[1] for r in results)

    def _finish(
        self, returns: np.ndarray, shift: np.ndarray, steps: int, centre_length: int, hp: ESHyperparams, start: float
    ) -> IterationReport:
        """Bookkeeping shared by every ES variant once the population is scored and theta moved."""
        self.timesteps += steps
        self.iterations += 1
        self._fitness.appendleft(returns.copy())
        self.centre_rank = float(np.mean(returns < self.centre_return))
        self.diverged = not (np.isfinite(self.theta).all() and np.isfinite(returns).all())
        return IterationReport(
            timesteps=self.timesteps,
            env_steps=steps,
            episode_returns=(self.centre_return,),
            episode_lengths=(centre_length,),
            losses={"policy": -float(returns.mean())},
            stats={
                "grad_norm": float(np.linalg.norm(shift)),
                "fitness_mean": float(returns.mean()),
                "fitness_max": float(returns.max()),
                "fitness_std": float(returns.std()),
                "centre_rank": self.centre_rank,
                "sigma": hp.sigma,
            },
            diverged=self.diverged,
            wall_time=time.perf_counter() - start,
        )

    def _fitness_values(self, returns: np.ndarray, candidates: list[Rollout], centre: Rollout) -> np.ndarray:
        """The fitness the update ranks (the returns for OpenAI-ES)."""
        return returns

    def step_theta(self, fitness: np.ndarray, hp: ESHyperparams) -> np.ndarray:
        """Rank-shape ``fitness`` ([pairs, 2]), estimate the gradient, update theta; returns the estimate."""
        pairs = fitness.shape[0]
        shaped = rank_utilities(fitness.ravel()).reshape(pairs, 2)
        key = self.key(self.iterations)
        noise = np.stack([pair_noise(self.seed, key, p, self.theta.size) for p in range(pairs)])
        grad = mirrored_gradient(shaped, noise, hp.sigma)
        self._grads.appendleft(grad)
        self.theta = self._update(self.theta, grad, hp.lr)
        return grad

    def _update(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        if self.config.optimizer == "sgd":
            return theta + lr * grad
        b1, b2, eps = 0.9, 0.999, 1e-8
        self._t += 1
        self._m = b1 * self._m + (1 - b1) * grad
        self._v = b2 * self._v + (1 - b2) * grad * grad
        step = lr * math.sqrt(1 - b2**self._t) / (1 - b1**self._t)
        return theta + step * self._m / (np.sqrt(self._v) + eps)

    # -- white-box access -------------------------------------------------------------
    def _as_params(self, flat: np.ndarray) -> Params:
        return {k: torch.from_numpy(v.astype(np.float32)) for k, v in self.spec.unflatten(flat).items()}

    def parameters(self) -> Params:
        """theta by tensor name (float32 copies)."""
        return self._as_params(self.theta)

    def gradient_history(self) -> list[Params]:
        """The most recent ES gradient estimates (ascent directions on the return), newest first."""
        return [self._as_params(g) for g in self._grads]

    def fitness_history(self) -> list[np.ndarray]:
        """The last populations' return vectors (candidate order), newest first."""
        return list(self._fitness)

    # -- snapshots ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only: ``torch.load(weights_only=True)`` reads it."""
        return {
            "seed": self.seed,  # every noise and episode key derives from it
            "theta": torch.from_numpy(self.theta.copy()),
            "adam_m": torch.from_numpy(self._m.copy()),
            "adam_v": torch.from_numpy(self._v.copy()),
            "adam_t": self._t,
            "timesteps": self.timesteps,
            "iterations": self.iterations,
            "diverged": self.diverged,
            "fitness": [torch.from_numpy(f.copy()) for f in self._fitness],
            "grads": [torch.from_numpy(g.copy()) for g in self._grads],
            "centre_return": self.centre_return,
            "centre_rank": self.centre_rank,
            "eval_count": self._eval_count,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        theta = state["theta"].numpy().astype(np.float64)
        if theta.shape != self.theta.shape:
            raise ValueError(f"state has {theta.size} parameters, this learner has {self.theta.size}")
        self.theta = theta.copy()
        self.seed = int(state.get("seed", self.seed))
        self._m = state["adam_m"].numpy().astype(np.float64).copy()
        self._v = state["adam_v"].numpy().astype(np.float64).copy()
        self._t = int(state["adam_t"])
        self.timesteps = int(state["timesteps"])
        self.iterations = int(state["iterations"])
        self.diverged = bool(state["diverged"])
        self._fitness = deque((f.numpy().copy() for f in state["fitness"]), maxlen=self.config.fitness_history)
        self._grads = deque((g.numpy().copy() for g in state["grads"]), maxlen=self.config.grad_history)
        self.centre_return = float(state["centre_return"])
        self.centre_rank = float(state["centre_rank"])
        self._eval_count = int(state["eval_count"])

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, episodes: int = 10) -> list[float]:
        """Returns of the mean-action policy on fresh seeds; training state is untouched."""
        return [ret for ret, _ in self.evaluate_episodes(episodes)]

    def evaluate_episodes(self, episodes: int = 10) -> list[tuple[float, int]]:
        """``(return, length)`` of ``episodes`` mean-action episodes on fresh seeds (look-aheads count the steps)."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if self._eval_cache is None:
            self._eval_cache = process_cache()
        base = self.seed + 7919 * (1 + self._eval_count)
        self._eval_count += 1
        out = []
        for i in range(episodes):
            args = (self.config.task, self.config.max_episode_steps, self.spec, self.theta, 0.0, base, self.key(i))
            ret, length, _ = evaluate_jobs(self._eval_cache, *args, [CENTRE])[0]
            out.append((ret, length))
        return out

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self._eval_cache = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
