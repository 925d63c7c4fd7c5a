"""The one table of HyperRL ids: algorithm x task -> learner, budget, ranges.

Plain data only: importing this module loads no torch and no simulator, so
``import hyperenvs`` stays cheap.  Learners are named by import strings and
resolved when an env is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hyperenvs.spaces import Hyperparameter

NAMESPACE = "HyperRL"
VERSION = 0


@dataclass(frozen=True, kw_only=True)
class Algorithm:
    """An inner learning algorithm and everything a hyper-agent may control in it."""

    name: str
    """the id prefix, e.g. ``PPO``"""
    learner: str
    """``module:Class`` of the learner"""
    config: str
    """``module:Class`` of its frozen config dataclass"""
    hparams: str
    """``module:Class`` of its hyperparameter dataclass"""
    hyperparameters: tuple[Hyperparameter, ...]
    """every controllable hyperparameter with its default range"""
    controlled: tuple[str, ...]
    """the ones an id controls when ``gym.make`` is not told otherwise"""


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One registered hyper-environment."""

    algorithm: Algorithm
    """the inner learner"""
    task: str
    """the inner task's Gymnasium id"""
    name: str
    """short task name used in the HyperRL id"""
    total_timesteps: int
    """lifetime budget in inner environment steps"""
    iterations_per_step: int
    """learner iterations per hyper-step"""
    config: Mapping[str, Any] = field(default_factory=dict)
    """overrides of the learner's config dataclass"""
    defaults: Mapping[str, float] = field(default_factory=dict)
    """overrides of the learner's default hyperparameters (the ``static`` baseline)"""
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """overrides of the algorithm's default ranges for this task"""
    observe: tuple[str, ...] = ("projection", "statistics")
    """observation parts when ``gym.make`` is not told otherwise"""

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.algorithm.name}-{self.name}-v{VERSION}"

    def hyperparameters(self) -> tuple[Hyperparameter, ...]:
        """The algorithm's hyperparameters with this task's ranges and defaults."""
        out = []
        for h in self.algorithm.hyperparameters:
            low, high = self.ranges.get(h.name, (h.low, h.high))
            default = self.defaults.get(h.name, h.default)
            out.append(Hyperparameter(h.name, low, high, log=h.log, integer=h.integer, default=default))
        return tuple(out)


def load(target: str) -> Any:
    """Resolve a ``module:attr`` import string."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_SHARED = (
    Hyperparameter("gamma", 0.9, 0.999, default=0.99),
    Hyperparameter("ent_coef", 0.0, 0.1, default=0.0),
    Hyperparameter("vf_coef", 0.1, 1.0, default=0.5),
    Hyperparameter("max_grad_norm", 0.1, 10.0, log=True, default=0.5),
)

PPO = Algorithm(
    name="PPO",
    learner="agents.ppo:PPOLearner",
    config="agents.ppo:PPOConfig",
    hparams="agents.ppo:PPOHyperparams",
    hyperparameters=(
        Hyperparameter("lr", 1e-5, 1e-2, log=True, default=3e-4),
        Hyperparameter("clip", 0.05, 0.5, default=0.2),
        Hyperparameter("gae_lambda", 0.8, 1.0, default=0.95),
        Hyperparameter("minibatch_size", 16, 1024, log=True, integer=True, default=64),
        Hyperparameter("epochs", 1, 30, integer=True, default=10),
        *_SHARED,
    ),
    controlled=("lr", "clip", "gae_lambda", "minibatch_size"),
)

A2C = Algorithm(
    name="A2C",
    learner="agents.a2c:A2CLearner",
    config="agents.a2c:A2CConfig",
    hparams="agents.a2c:A2CHyperparams",
    hyperparameters=(
        Hyperparameter("lr", 1e-5, 1e-2, log=True, default=7e-4),
        Hyperparameter("gae_lambda", 0.8, 1.0, default=1.0),
        *_SHARED,
    ),
    controlled=("lr",),
)

# Per-family settings, (config, defaults, total_timesteps, iterations_per_step).
# PPO MuJoCo follows Schulman et al. (2017); classic control and Box2D follow
# the rl-baselines3-zoo tunings; Atari follows the PPO paper's Atari table.
_PPO_FAMILIES: dict[str, tuple[dict, dict, int, int]] = {
    "cartpole": (
        {"num_envs": 8, "num_steps": 32},
        {"lr": 1e-3, "gamma": 0.98, "gae_lambda": 0.8, "epochs": 20, "minibatch_size": 256},
        100_000,
        4,
    ),
    "classic": (
        {"num_envs": 8, "num_steps": 256, "normalize_obs": True},
        {"lr": 3e-4, "gae_lambda": 0.94, "epochs": 4, "minibatch_size": 256},
        200_000,
        1,
    ),
    "box2d": (
        {"num_envs": 16, "num_steps": 128, "normalize_obs": True, "normalize_reward": True},
        {"lr": 3e-4, "gamma": 0.999, "gae_lambda": 0.98, "epochs": 4, "minibatch_size": 256, "ent_coef": 0.01},
        1_000_000,
        1,
    ),
    "mujoco": (
        {"num_envs": 1, "num_steps": 2048, "normalize_obs": True, "normalize_reward": True},
        {"lr": 3e-4, "gae_lambda": 0.95, "epochs": 10, "minibatch_size": 64},
        1_000_000,
        1,
    ),
    "atari": (
        {"num_envs": 8, "num_steps": 128, "sign_reward": True},
        {"lr": 2.5e-4, "clip": 0.1, "epochs": 4, "minibatch_size": 256, "ent_coef": 0.01},
        10_000_000,
        1,
    ),
}

_A2C_FAMILIES: dict[str, tuple[dict, dict, int, int]] = {
    "cartpole": ({}, {}, 100_000, 25),
    "classic": ({"normalize_obs": True}, {}, 200_000, 25),
    "box2d": ({"normalize_obs": True, "normalize_reward": True}, {"gamma": 0.995, "ent_coef": 0.01}, 1_000_000, 25),
    "mujoco": ({"num_envs": 4, "num_steps": 8, "normalize_obs": True, "normalize_reward": True}, {}, 1_000_000, 64),
    "atari": ({"sign_reward": True}, {"ent_coef": 0.01}, 10_000_000, 25),
}

_TASKS: tuple[tuple[str, str, str], ...] = (
    ("CartPole", "CartPole-v1", "cartpole"),
    ("Acrobot", "Acrobot-v1", "classic"),
    ("MountainCar", "MountainCar-v0", "classic"),
    ("MountainCarContinuous", "MountainCarContinuous-v0", "classic"),
    ("Pendulum", "Pendulum-v1", "classic"),
    ("LunarLander", "LunarLander-v3", "box2d"),
    ("LunarLanderContinuous", "LunarLanderContinuous-v3", "box2d"),
    ("BipedalWalker", "BipedalWalker-v3", "box2d"),
    *(
        (name, f"{name}-v5", "mujoco")
        for name in (
            "HalfCheetah",
            "Hopper",
            "Walker2d",
            "Ant",
            "Humanoid",
            "Swimmer",
            "InvertedPendulum",
            "InvertedDoublePendulum",
        )
    ),
    *((name, f"ALE/{name}-v5", "atari") for name in ("Pong", "Breakout", "Alien", "MsPacman", "SpaceInvaders", "Seaquest")),
)

_ATARI_RANGES = {"minibatch_size": (64, 2048)}

# IMPALA (Espeholt et al., 2018) with leaky V-trace: the inner learner of STAC/STACX
# (Zahavy et al., 2020), whose metaparameters eta are gamma, lambda_, g_v, g_p, g_e, alpha.
IMPALA = Algorithm(
    name="IMPALA",
    learner="agents.impala:IMPALALearner",
    config="agents.impala:IMPALAConfig",
    hparams="agents.impala:IMPALAHyperparams",
    hyperparameters=(
        Hyperparameter("lr", 1e-5, 1e-2, log=True, default=6e-4),
        Hyperparameter("gamma", 0.8, 0.9999, default=0.99),
        Hyperparameter("lambda_", 0.0, 1.0, default=1.0),
        Hyperparameter("g_v", 0.0, 2.0, default=0.5),
        Hyperparameter("g_p", 0.0, 2.0, default=1.0),
        Hyperparameter("g_e", 0.0, 0.1, default=0.01),
        Hyperparameter("alpha", 0.0, 1.0, default=1.0),
        Hyperparameter("max_grad_norm", 0.1, 100.0, log=True, default=40.0),
    ),
    controlled=("gamma", "lambda_", "g_v", "g_p", "g_e", "alpha", "lr"),
)

# Unrolls of 20 steps, RMSProp; Atari: 16 envs, sign rewards, gamma 0.995 (STAC's setting).
# Classic control and Box2D scale rewards (the shared torso otherwise drowns in value-loss
# gradients: Acrobot stays at -500 for 100k steps without it, reaches about -100 with it).
_IMPALA_FAMILIES: dict[str, tuple[dict, dict, int, int]] = {
    "cartpole": ({"num_envs": 8}, {"lr": 1e-3}, 100_000, 10),
    "classic": ({"num_envs": 8, "normalize_reward": True}, {"lr": 1e-3}, 200_000, 10),
    "box2d": ({"num_envs": 16, "normalize_reward": True}, {"gamma": 0.995}, 1_000_000, 10),
    "atari": ({"num_envs": 16, "sign_reward": True}, {"gamma": 0.995}, 10_000_000, 10),
}

_IMPALA_TASKS: tuple[tuple[str, str, str], ...] = (
    ("CartPole", "CartPole-v1", "cartpole"),
    ("Acrobot", "Acrobot-v1", "classic"),
    ("MountainCar", "MountainCar-v0", "classic"),
    ("LunarLander", "LunarLander-v3", "box2d"),
    *((name, f"ALE/{name}-v5", "atari") for name in ("Pong", "Breakout", "SpaceInvaders", "Seaquest")),
)


# Evolution strategies, BiERL's inner level (Wang et al., 2023): OpenAI-ES with mirrored
# sampling and rank shaping; sigma in [0.02, 0.08] as in BiERL.  n = 200 candidates an iteration,
# episodes of at most 1000 steps, one iteration a hyper-step (BiERL meta-updates every 10).
_ES_HPARAMS = (
    Hyperparameter("sigma", 0.02, 0.08, default=0.05),
    Hyperparameter("lr", 0.005, 0.5, log=True, default=0.05),
)

ES = Algorithm(
    name="ES",
    learner="agents.es:ESLearner",
    config="agents.es:ESConfig",
    hparams="agents.es:ESHyperparams",
    hyperparameters=_ES_HPARAMS,
    controlled=("sigma",),
)

NSRES = Algorithm(
    name="NSRES",
    learner="agents.es:ESLearner",
    config="agents.es:ESConfig",
    hparams="agents.es:ESHyperparams",
    hyperparameters=_ES_HPARAMS,
    controlled=("sigma",),
)

# CMA-ES adapts its own step sizes per coordinate; the hyper-agent sets the global sigma.
CMAES = Algorithm(
    name="CMAES",
    learner="agents.es:ESLearner",
    config="agents.es:ESConfig",
    hparams="agents.es:ESHyperparams",
    hyperparameters=_ES_HPARAMS[:1],
    controlled=("sigma",),
)

_ES_TASKS: tuple[tuple[str, str], ...] = (
    *(
        (name, f"{name}-v5")
        for name in (
            "HalfCheetah",
            "Hopper",
            "Walker2d",
            "Ant",
            "Swimmer",
            "InvertedPendulum",
            "InvertedDoublePendulum",
        )
    ),
    ("LunarLanderContinuous", "LunarLanderContinuous-v3"),
    ("BipedalWalker", "BipedalWalker-v3"),
)

# 1000 iterations of 200 full episodes (plus the unperturbed policy's) bound the lifetime.
_ES_BUDGET = 201_000_000


_ES_STRATEGY = {"ES": "openai", "NSRES": "nsres", "CMAES": "cmaes"}
"""the ESLearner strategy (``ESConfig.strategy``) of each ES row"""


def _es_entries(algorithm: Algorithm, tasks: tuple[tuple[str, str], ...]) -> dict[str, Entry]:
    out = {}
    for name, task in tasks:
        entry = Entry(
            algorithm=algorithm,
            task=task,
            name=name,
            total_timesteps=_ES_BUDGET,
            iterations_per_step=1,
            config=MappingProxyType({"strategy": _ES_STRATEGY[algorithm.name]}),
            observe=("fitness", "statistics"),
        )
        out[entry.id] = entry
    return out


def _build() -> dict[str, Entry]:
    table: dict[str, Entry] = {}
    for algorithm, families in ((PPO, _PPO_FAMILIES), (A2C, _A2C_FAMILIES)):
        for name, task, family in _TASKS:
            config, defaults, budget, per_step = families[family]
            ranges = _ATARI_RANGES if family == "atari" and algorithm is PPO else {}
            entry = Entry(
                algorithm=algorithm,
                task=task,
                name=name,
                total_timesteps=budget,
                iterations_per_step=per_step,
                config=MappingProxyType(config),
                defaults=MappingProxyType(defaults),
                ranges=MappingProxyType(ranges),
            )
            table[entry.id] = entry
    for name, task, family in _IMPALA_TASKS:
        config, defaults, budget, per_step = _IMPALA_FAMILIES[family]
        entry = Entry(
            algorithm=IMPALA,
            task=task,
            name=name,
            total_timesteps=budget,
            iterations_per_step=per_step,
            config=MappingProxyType(config),
            defaults=MappingProxyType(defaults),
        )
        table[entry.id] = entry
    for algorithm in (ES, NSRES, CMAES):
        table.update(_es_entries(algorithm, _ES_TASKS))
    return table


REGISTRY: Mapping[str, Entry] = MappingProxyType(_build())
"""Every HyperRL id and its entry."""


def get(env_id: str) -> Entry:
    """The entry of ``env_id`` (with or without the ``HyperRL/`` namespace)."""
    key = env_id if env_id.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{env_id}"
    if key not in REGISTRY:
        raise KeyError(f"no HyperRL id {env_id!r}; `hyperrl list` shows the {len(REGISTRY)} registered ids")
    return REGISTRY[key]
