"""What a worker does: evaluate candidates whose every random number comes from a key.

A candidate's noise, env seed and action noise derive from ``(learner seed,
iteration key, index)``, never from the worker that runs it, so every backend
gives identical results.  Workers keep one env per task across calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from agents.es.policy import PolicySpec, Rollout, rollout
from agents.seeding import derive


@dataclass(frozen=True, kw_only=True)
class Job:
    """One candidate: ``theta + sign * sigma * pair_noise(seed, key, pair)``; sign 0 is the centre."""

    pair: int
    """mirrored pair index (its noise and env seed); -1 with ``sign=0`` for the unperturbed policy"""
    sign: int
    """+1 or -1: which member of the pair; 0: the unperturbed policy, acting with its mean action"""


CENTRE = Job(pair=-1, sign=0)
"""the unperturbed policy's job"""


def mirrored_jobs(pairs: int) -> list[Job]:
    """``pairs`` mirrored pairs, pair-major, ``+eps`` first: the candidate order every ES update expects."""
    return [Job(pair=p, sign=s) for p in range(pairs) for s in (1, -1)]


def pair_noise(seed: int, key: int, pair: int, dim: int) -> np.ndarray:
    """The Gaussian direction of mirrored pair ``pair`` at iteration ``key``: a pure function of its key."""
    return np.random.default_rng(derive(seed, "noise", key, pair)).standard_normal(dim)


def env_seed(seed: int, key: int, pair: int) -> int:
    """Env seed shared by both members of a mirrored pair (common random numbers); pair -1 is the centre's."""
    return derive(seed, "env", key, pair + 1)


def action_seed(seed: int, key: int, pair: int, sign: int) -> int:
    """Seed of the sampled actions of candidate ``(pair, sign)``: each member of a pair acts on its own noise."""
    return derive(seed, "action", key, pair, sign + 1)


class EnvCache:
    """One env per task, built on first use and reused across rollouts.

    Box2D envs keep one ``b2World`` for their whole life, so an episode depends
    on the episodes before it (contact ordering); they are rebuilt for every
    rollout so that a candidate's result depends on its key alone.
    """

    def __init__(self) -> None:
        self.envs: dict[tuple[str, int | None], gym.Env] = {}

    def get(self, task: str, max_steps: int | None) -> gym.Env:
        key = (task, max_steps)
        if key in self.envs and hasattr(self.envs[key].unwrapped, "world"):
            self.envs.pop(key).close()
        if key not in self.envs:
            kwargs = {} if max_steps is None else {"max_episode_steps": int(max_steps)}
            self.envs[key] = gym.make(task, **kwargs)
        return self.envs[key]

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


_PROCESS_CACHE: EnvCache | None = None


def process_cache() -> EnvCache:
    """This process's env cache: rollouts reset their env with an explicit seed, so learners can share it."""
    global _PROCESS_CACHE
    if _PROCESS_CACHE is None:
        _PROCESS_CACHE = EnvCache()
    return _PROCESS_CACHE


def evaluate_jobs(
    cache: EnvCache,
    task: str,
    max_steps: int | None,
    spec: PolicySpec,
    theta: np.ndarray,
    sigma: float,
    seed: int,
    key: int,
    jobs: Sequence[Job],
) -> list[Rollout]:
    """Keyed candidates around ``theta``: only the key crosses the process boundary, never the noise."""
    out = []
    for job in jobs:
        env = cache.get(task, max_steps)
        if job.sign == 0:
            # The unperturbed policy acts with its mean action on a fresh seed of its own.
            out.append(rollout(env, spec, theta, seed=env_seed(seed, key, -1), action_seed=None))
            continue
        candidate = theta + job.sign * sigma * pair_noise(seed, key, job.pair, theta.size)
        out.append(
            rollout(
                env, spec, candidate, seed=env_seed(seed, key, job.pair), action_seed=action_seed(seed, key, job.pair, job.sign)
            )
        )
    return out


def evaluate_thetas(
    cache: EnvCache,
    task: str,
    max_steps: int | None,
    spec: PolicySpec,
    thetas: np.ndarray,
    seeds: Sequence[tuple[int, int | None]],
) -> list[Rollout]:
    """Explicit candidates (CMA-ES samples them itself), each with its (env seed, action seed)."""
    return [rollout(cache.get(task, max_steps), spec, theta, seed=s, action_seed=a) for theta, (s, a) in zip(thetas, seeds)]
