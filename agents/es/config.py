"""What configures an ES lifetime: its structure (``ESConfig``) and what a hyper-agent may change (``ESHyperparams``)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.hparams import declare, hyperparameter

STRATEGIES = ("openai", "nsres", "cmaes")
"""the ask/tell strategies ``ESConfig.strategy`` may name"""


@dataclass(frozen=True, kw_only=True)
class ESConfig:
    """Structure of an ES learner: fixed for a whole lifetime."""

    task: str = "HalfCheetah-v5"
    """Gymnasium id of the inner task (continuous actions)"""
    strategy: str = "openai"
    """``openai`` (OpenAI-ES), ``nsres`` (NSR-ES) or ``cmaes`` (sep-CMA-ES through ``cma``)"""
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
    """``sgd`` (paper Eq. 3: theta += lr * g) or ``adam``, both from ``agents.optim``; CMA-ES uses neither"""
    backend: str = "process"
    """population evaluation: ``serial``, ``process`` (worker processes) or ``ray``"""
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
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even number >= 2 (mirrored pairs), got {self.population}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.backend not in ("serial", "process", "ray"):
            raise ValueError(f"backend must be 'serial', 'process' or 'ray', got {self.backend!r}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.meta_population < 1:
            raise ValueError(f"meta_population must be >= 1, got {self.meta_population}")


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
