"""The one ES learner shell behind the Learner protocol; the strategy (OpenAI-ES, NSR-ES, CMA-ES) is a config field.

One ``iterate(hparams)`` is ask -> evaluate -> tell (``agents.es.strategy``):
the strategy proposes candidates around ``theta``, the shell evaluates them
and the unperturbed policy on its backend, and the strategy returns the next
``theta``.  The shell owns the policy, counters, histories, noise streams,
evaluation and snapshots.  All randomness is derived from ``(seed, iteration,
index)``, so a learner holds no RNG state and snapshots are exact;
``noise_stream`` shifts those keys for look-aheads that repeat one iteration
with independent noise.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import IterationReport, Params
from agents.es.backends import Evaluator, make_backend
from agents.es.cmaes import CMAES
from agents.es.config import ESConfig, ESHyperparams
from agents.es.nsres import NSRES
from agents.es.openai import OpenAIES
from agents.es.policy import PolicySpec, Rollout, init_theta, policy_spec
from agents.es.strategy import Asked, Strategy
from agents.es.workers import CENTRE, Job, action_seed, env_seed, evaluate_jobs, process_cache
from agents.seeding import derive

STREAM_STRIDE = 2**32
"""key offset between noise streams: no lifetime reaches 2**32 iterations or evaluation episodes"""

STRATEGY_CLASSES: dict[str, type] = {"openai": OpenAIES, "nsres": NSRES, "cmaes": CMAES}
"""``ESConfig.strategy`` -> its ask/tell class"""


def _spaces(task: str) -> tuple[gym.Space, gym.Space]:
    from agents.rollout import task_spaces

    return task_spaces(task)


def _spec(config: ESConfig) -> PolicySpec:
    return policy_spec(config.task, config.hidden, *_spaces(config.task))


def iteration_steps_bound(config: ESConfig) -> int | None:
    """The most env steps one iteration can take: its episodes times the episode limit (None: no limit)."""
    limit = config.max_episode_steps
    if limit is None:
        limit = gym.spec(config.task).max_episode_steps
    if limit is None:
        return None
    episodes = config.population + (config.meta_population if config.strategy == "nsres" else 1)
    return episodes * int(limit)


class ESLearner:
    """Evolution strategies on a numpy tanh-MLP policy; ``config.strategy`` picks the ask/tell strategy."""

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
        self.device = torch.device(device)
        self.default_hparams = hparams if hparams is not None else ESHyperparams()
        self.spec = _spec(config)
        self._start(int(seed))
        self._refuse_lr(hparams)
        self.timesteps = 0
        self.charged_env_steps = 0
        self.iterations = 0
        self.diverged = False
        self._fitness: deque[np.ndarray] = deque(maxlen=config.fitness_history)
        self._grads: deque[np.ndarray] = deque(maxlen=config.grad_history)
        self.centre_return = 0.0
        self.centre_rank = 0.0
        self._eval_count = 0
        self._stream = 0
        self.evaluator = Evaluator(make_backend(config.backend, config.workers), config.task, config.max_episode_steps, self.spec)

    def _start(self, seed: int) -> None:
        """The initial policy and a fresh strategy for ``seed``."""
        self.seed = seed
        self.theta = init_theta(self.spec, seed, self.config.init_log_std)
        cls = STRATEGY_CLASSES[self.config.strategy]
        self.strategy: Strategy = cls(self.config, seed=seed, theta=self.theta, spec=self.spec, sigma0=self.default_hparams.sigma)

    @property
    def backend(self) -> Any:
        return self.evaluator.backend

    @classmethod
    def param_shapes(cls, config: ESConfig) -> dict[str, tuple[int, ...]]:
        return _spec(config).shapes()

    @classmethod
    def check_budget(cls, config: ESConfig, total_timesteps: int) -> None:
        """A clear error for a lifetime budget that one iteration may overrun before the first hyper-step ends."""
        bound = iteration_steps_bound(config)
        if bound is None or total_timesteps >= bound:
            return
        episodes = bound // (config.max_episode_steps or gym.spec(config.task).max_episode_steps)
        raise ValueError(
            f"total_timesteps={total_timesteps} is less than one ES iteration can take on {config.task}: "
            f"{episodes} episodes (config 'population'={config.population} candidates plus the unperturbed "
            f"policy{' and the meta-population' if config.strategy == 'nsres' else ''}) of up to "
            f"{bound // episodes} steps ('max_episode_steps'={config.max_episode_steps}) = {bound} env steps. "
            "Shrink config 'population' or 'max_episode_steps', or raise total_timesteps; for a quick try: "
            "config={'population': 8, 'max_episode_steps': 100}, total_timesteps=20_000"
        )

    def resolve_hparams(self, hparams: Mapping[str, float] | ESHyperparams | None) -> ESHyperparams:
        self._refuse_lr(hparams)
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

    def _refuse_lr(self, hparams: Mapping[str, float] | ESHyperparams | None) -> None:
        """CMA-ES moves its mean by recombination, with no learning rate: say so instead of ignoring ``lr``."""
        if self.strategy.uses_lr:
            return
        if isinstance(hparams, Mapping):
            if "lr" not in hparams:
                return
            given = hparams["lr"]
        elif hparams is None or hparams.lr == ESHyperparams().lr:
            return  # a dataclass always has an lr: only one changed from the default was meant
        else:
            given = hparams.lr
        raise ValueError(
            f"lr={given} was given to CMA-ES, which has no learning rate (cma moves its mean by weighted "
            "recombination); control sigma only and leave lr out"
        )

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
    def iterate(self, hparams: Mapping[str, float] | ESHyperparams | None = None) -> IterationReport:
        hp = self.checked_hparams(hparams)
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        start = time.perf_counter()
        key = self.key(self.iterations)
        asked = self.strategy.ask(self.theta, hp.sigma, key, self.evaluator)
        candidates, centre = self._score(asked, hp.sigma, key)
        told = self.strategy.tell(asked, candidates, hp, key)
        self.theta = told.theta
        self._grads.appendleft(told.shift)
        steps = asked.spent + sum(r[1] for r in candidates) + (centre[1] if asked.centre is None else 0)
        returns = np.array([r[0] for r in candidates])
        return self._finish(returns, told.shift, steps, centre, hp, start)

    def _score(self, asked: Asked, sigma: float, key: int) -> tuple[list[Rollout], Rollout]:
        """The candidates' rollouts in ``asked`` order, and the centre's (run here unless ``ask`` ran it)."""
        if asked.explicit is not None:
            # Candidate i runs on pair i's env seed and action noise; the centre as the centre job does.
            seeds = [(env_seed(self.seed, key, i), action_seed(self.seed, key, i, 1)) for i in range(len(asked.explicit))]
            thetas, seeds = np.concatenate([asked.explicit, asked.theta[None]]), [*seeds, (env_seed(self.seed, key, -1), None)]
            results = self.evaluator.policies(thetas, seeds)
        else:
            jobs = [*asked.jobs, CENTRE] if asked.centre is None else list(asked.jobs)
            results = self.evaluator.jobs(asked.theta, sigma, self.seed, key, jobs)
        if asked.centre is not None:
            return results, asked.centre
        return results[:-1], results[-1]

    def _finish(
        self, returns: np.ndarray, shift: np.ndarray, steps: int, centre: Rollout, hp: ESHyperparams, start: float
    ) -> IterationReport:
        """Bookkeeping once the population is scored and theta moved."""
        self.centre_return = float(centre[0])
        self.timesteps += steps
        self.iterations += 1
        self._fitness.appendleft(returns.copy())
        self.centre_rank = float(np.mean(returns < self.centre_return))
        self.diverged = not (np.isfinite(self.theta).all() and np.isfinite(returns).all())
        return IterationReport(
            timesteps=self.timesteps,
            env_steps=steps,
            episode_returns=(self.centre_return,),
            episode_lengths=(int(centre[1]),),
            rollout_return=self.centre_return,
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

    # -- what a meta-level may ask besides iterations ---------------------------------
    def perturbed_episodes(self, sigma: float, samples: int) -> list[tuple[float, int]]:
        """``(return, length)`` of ``samples`` perturbed copies ``theta +- sigma eps`` (mirrored pairs, ``+`` first).

        The authors' cheap score of a sigma (BiERL's code: the mean return of perturbed
        copies, no ES step).  Keyed by the current iteration in a namespace of its own and
        the current noise stream, so every call at one iteration draws the same noise and
        episodes whatever the sigma (common random numbers across candidates), and none
        the lifetime itself draws.  Changes nothing in the lifetime; the caller counts the steps.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        jobs = [Job(pair=i // 2, sign=1 - 2 * (i % 2)) for i in range(samples)]
        results = self.evaluator.jobs(self.theta, sigma, derive(self.seed, "probe"), self.key(self.iterations), jobs)
        return [(r[0], r[1]) for r in results]

    def charge(self, env_steps: int) -> None:
        """Count ``env_steps`` spent outside this lifetime's iterations (a meta-level's scoring) in ``timesteps``.

        The hyper-env's budget is on ``timesteps``, so charged steps shorten the lifetime;
        ``charged_env_steps`` keeps their sum apart.
        """
        if env_steps < 0:
            raise ValueError(f"env_steps must be >= 0, got {env_steps}")
        self.timesteps += int(env_steps)
        self.charged_env_steps += int(env_steps)

    # -- white-box access -------------------------------------------------------------
    def _as_params(self, flat: np.ndarray) -> Params:
        return {k: torch.from_numpy(v.astype(np.float32)) for k, v in self.spec.unflatten(flat).items()}

    def parameters(self) -> Params:
        """theta by tensor name (float32 copies)."""
        return self._as_params(self.theta)

    def gradient_history(self) -> list[Params]:
        """The most recent ES gradient estimates (ascent directions; CMA-ES: mean shifts), newest first."""
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
            "strategy": self.strategy.state_dict(),
            "timesteps": self.timesteps,
            "charged_env_steps": self.charged_env_steps,
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
        if int(state["seed"]) != self.seed:
            self._start(int(state["seed"]))  # another lifetime's state (PBT's exploit): its strategy, its keys
        self.theta = theta.copy()
        self.strategy.load_state_dict(state["strategy"])
        self.timesteps = int(state["timesteps"])
        self.charged_env_steps = int(state["charged_env_steps"])
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
        seed = derive(self.seed, "eval", self._eval_count)
        self._eval_count += 1
        out = []
        for i in range(episodes):
            args = (self.config.task, self.config.max_episode_steps, self.spec, self.theta, 0.0, seed, self.key(i))
            ret, length, _ = evaluate_jobs(process_cache(), *args, [CENTRE])[0]
            out.append((ret, length))
        return out

    def close(self) -> None:
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
