"""The one table of HyperRL ids: rows of (algorithm, tasks, budget, overrides), one build loop.

Plain data only: importing this module loads no torch and no simulator, so ``import hyperenvs``
stays cheap.  Learners and their hyperparameter dataclasses are named by import strings and
resolved when an env is built.  The hyperparameters themselves are declared once, in the
learner's module (``agents.hparams``); a row may only override their ranges, defaults and
bins for its tasks, never declare new ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from agents.hparams import Hyperparameter, declared

NAMESPACE = "HyperRL"
VERSION = 0


@dataclass(frozen=True, kw_only=True)
class Algorithm:
    """An inner learning algorithm, by import strings, and what its ids control by default."""

    name: str
    """the id prefix, e.g. ``PPO``"""
    learner: str
    """``module:Class`` of the learner"""
    config: str
    """``module:Class`` of its frozen config dataclass"""
    hparams: str
    """``module:Class`` of its hyperparameter dataclass (every field declared with ``agents.hparams``)"""
    controlled: tuple[str, ...]
    """the hyperparameters an id controls when ``gym.make`` is not told otherwise"""
    exposes: tuple[str, ...] | None = None
    """the declared hyperparameters an id offers (None: all); CMA-ES shares ES's dataclass but owns no lr"""


@dataclass(frozen=True, kw_only=True)
class Family:
    """One row of the table: an algorithm on tasks that share settings.  Each task becomes an id."""

    algorithm: Algorithm
    """the inner learner"""
    tasks: tuple[tuple[str, str], ...]
    """``(short name used in the id, Gymnasium id of the inner task)`` pairs"""
    total_timesteps: int
    """lifetime budget in inner environment steps"""
    iterations_per_step: int
    """learner iterations per hyper-step"""
    config: Mapping[str, Any] = field(default_factory=dict)
    """overrides of the learner's config dataclass"""
    defaults: Mapping[str, float] = field(default_factory=dict)
    """overrides of declared defaults (the ``static`` baseline)"""
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """overrides of declared ``(low, high)`` ranges"""
    bins: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """overrides of declared default bins (needed where a default moves off the declared bins)"""
    observe: tuple[str, ...] = ("projection", "statistics")
    """observation parts when ``gym.make`` is not told otherwise"""
    version: int = VERSION
    """the ``-vN`` of the row's ids: bumped when the row's inner task, reward, budget or spaces change"""

    def __post_init__(self) -> None:
        for name in ("config", "defaults", "ranges", "bins"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def entries(self) -> list[Entry]:
        return [Entry(family=self, name=name, task=task) for name, task in self.tasks]


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One registered hyper-environment: a row's settings applied to one task."""

    family: Family
    """the row it comes from"""
    name: str
    """short task name used in the HyperRL id"""
    task: str
    """the inner task's Gymnasium id"""

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.algorithm.name}-{self.name}-v{self.family.version}"

    # The row's settings, read through the entry (HyperEnv and the command line ask an entry).
    @property
    def algorithm(self) -> Algorithm:
        return self.family.algorithm

    @property
    def total_timesteps(self) -> int:
        return self.family.total_timesteps

    @property
    def iterations_per_step(self) -> int:
        return self.family.iterations_per_step

    @property
    def config(self) -> Mapping[str, Any]:
        return self.family.config

    @property
    def defaults(self) -> Mapping[str, float]:
        return self.family.defaults

    @property
    def ranges(self) -> Mapping[str, tuple[float, float]]:
        return self.family.ranges

    @property
    def observe(self) -> tuple[str, ...]:
        return self.family.observe

    def hyperparameters(self) -> tuple[Hyperparameter, ...]:
        """The learner's declared hyperparameters with this row's overrides (imports the learner's module)."""
        own = declared(load(self.algorithm.hparams))
        if self.algorithm.exposes is not None:
            own = tuple(h for h in own if h.name in self.algorithm.exposes)
        names = [h.name for h in own]
        row = self.family
        for kind, given in (("controlled", row.algorithm.controlled), *((k, getattr(row, k)) for k in OVERRIDES)):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ValueError(f"{self.id}: {kind} names {unknown}, which are not declared; declared: {names}")
        return tuple(self._override(h) for h in own)

    def _override(self, h: Hyperparameter) -> Hyperparameter:
        row = self.family
        if not any(h.name in getattr(row, k) for k in OVERRIDES):
            return h
        low, high = row.ranges.get(h.name, (h.low, h.high))
        bins = row.bins.get(h.name, h.bins)
        multipliers = None if h.name in row.bins else h.multipliers
        try:
            return replace(h, low=low, high=high, default=row.defaults.get(h.name, h.default), bins=bins, multipliers=multipliers)
        except ValueError as err:
            raise ValueError(f"{self.id}: {err}") from None


OVERRIDES = ("defaults", "ranges", "bins")
"""what a row may change about a declared hyperparameter"""


def load(target: str) -> Any:
    """Resolve a ``module:attr`` import string."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- the algorithms -------------------------------------------------------------------
PPO = Algorithm(
    name="PPO",
    learner="agents.ppo:PPOLearner",
    config="agents.ppo:PPOConfig",
    hparams="agents.ppo:PPOHyperparams",
    controlled=("lr", "clip", "gae_lambda", "minibatch_size"),
)
A2C = Algorithm(
    name="A2C",
    learner="agents.a2c:A2CLearner",
    config="agents.a2c:A2CConfig",
    hparams="agents.a2c:A2CHyperparams",
    controlled=("lr",),
)
# IMPALA (Espeholt et al., 2018) with leaky V-trace: the inner learner of STAC/STACX
# (Zahavy et al., 2020), whose metaparameters eta are gamma, lambda_, g_v, g_p, g_e, alpha.
IMPALA = Algorithm(
    name="IMPALA",
    learner="agents.impala:IMPALALearner",
    config="agents.impala:IMPALAConfig",
    hparams="agents.impala:IMPALAHyperparams",
    controlled=("gamma", "lambda_", "g_v", "g_p", "g_e", "alpha", "lr"),
)
# Evolution strategies, BiERL's inner level (Wang et al., 2023): OpenAI-ES with mirrored sampling
# and rank shaping, NSR-ES, and CMA-ES, which adapts its own step sizes (the hyper-agent sets sigma).
ES = Algorithm(
    name="ES",
    learner="agents.es:ESLearner",
    config="agents.es:ESConfig",
    hparams="agents.es:ESHyperparams",
    controlled=("sigma",),
)
NSRES = replace(ES, name="NSRES")
# CMA-ES adapts its own step sizes per coordinate; the hyper-agent sets the global sigma only.
CMAES = replace(ES, name="CMAES", exposes=("sigma",))
# A2C and PPO on the batched torch tasks (hyperenvs/tasks), collected on the learner's device.
TASK_A2C = replace(A2C, learner="agents.task_learners:TaskA2CLearner", config="agents.task_learners:TaskA2CConfig")
TASK_PPO = replace(PPO, learner="agents.task_learners:TaskPPOLearner", config="agents.task_learners:TaskPPOConfig")

# -- the tasks ------------------------------------------------------------------------
CARTPOLE = (("CartPole", "CartPole-v1"),)
CLASSIC = (
    ("Acrobot", "Acrobot-v1"),
    ("MountainCar", "MountainCar-v0"),
    ("MountainCarContinuous", "MountainCarContinuous-v0"),
    ("Pendulum", "Pendulum-v1"),
)
BOX2D = (
    ("LunarLander", "LunarLander-v3"),
    ("LunarLanderContinuous", "LunarLanderContinuous-v3"),
    ("BipedalWalker", "BipedalWalker-v3"),
)
_MUJOCO = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "InvertedPendulum", "InvertedDoublePendulum")
MUJOCO = tuple((name, f"{name}-v5") for name in _MUJOCO)
ATARI = tuple((name, f"ALE/{name}-v5") for name in ("Pong", "Breakout", "Alien", "MsPacman", "SpaceInvaders", "Seaquest"))


CATCH = (("Catch", "HyperRLTasks/Catch-v0"),)
_GRIDS = ("SmallDenseShort", "SmallDenseLong", "BigSparseShort", "BigSparseLong", "BigDenseShort", "BigDenseLong")
SMALL_GRIDS = tuple((name, f"HyperRLTasks/{name}-v0") for name in _GRIDS[:2])
BIG_GRIDS = tuple((name, f"HyperRLTasks/{name}-v0") for name in _GRIDS[2:])


# The batched torch twins of classic control (hyperenvs/tasks/classic_control.py): Gymnasium's dynamics,
# many instances stepped as tensors.  The -v1 ids of PPO and A2C run on them; -v0 stays on Gymnasium.
TWINS = {
    "CartPole-v1": "HyperRLTasks/CartPole-v0",
    "Acrobot-v1": "HyperRLTasks/Acrobot-v0",
    "MountainCar-v0": "HyperRLTasks/MountainCar-v0",
    "MountainCarContinuous-v0": "HyperRLTasks/MountainCarContinuous-v0",
    "Pendulum-v1": "HyperRLTasks/Pendulum-v0",
}
"""Gymnasium id -> its batched twin's id"""


def gymnasium_task(task: str) -> str:
    """The Gymnasium id an inner task runs as with ``gym.make(..., gymnasium_env=True)``."""
    for gym_id, twin in TWINS.items():
        if task == twin:
            return gym_id
    if task.startswith("HyperRLTasks/"):
        raise ValueError(f"gymnasium_env=True: the inner task {task} has no Gymnasium env (only classic control's twins do)")
    return task


def _twin(family: Family) -> Family:
    """``family`` on the batched twins of its tasks, as ids of version 1, with ``compile="auto"``: on CPU the
    fused gradient steps and NumPy policy (``agents.fused``; nothing to compile, so a hyperparameter change
    costs nothing), elsewhere the compiled steps once they pay (``agents.compiled``); benchmarks/compiled/README.md.
    ``config={"compile": False}`` gives the eager reference path."""
    tasks = tuple((name, TWINS[task]) for name, task in family.tasks)
    return replace(family, tasks=tasks, version=1, config={**family.config, "compile": "auto"})


def _only(tasks: tuple[tuple[str, str], ...], *names: str) -> tuple[tuple[str, str], ...]:
    return tuple(t for t in tasks if t[0] in names)


# 1000 iterations of 200 full episodes (plus the unperturbed policy's) bound an ES lifetime.
_ES_BUDGET = 201_000_000
_ES_TASKS = (*_only(MUJOCO, *(n for n in _MUJOCO if n != "Humanoid")), *_only(BOX2D, "LunarLanderContinuous", "BipedalWalker"))
_ES_ROW = {"tasks": _ES_TASKS, "total_timesteps": _ES_BUDGET, "iterations_per_step": 1, "observe": ("fitness", "statistics")}

# Optim4RL's agents (REFERENCE-NOTES "Optim4RL"): Catch Dense256, small grids Dense32, big grids
# Conv16 (2x2) -> Dense32; A2C with TD(lambda) targets, lambda 0.95, gamma 0.995, value weight 0.5,
# entropy 0.01; Adam, agent lr 3e-3 (the grids' setting; on Catch it learns in about 40k steps with
# 16 envs x 20 steps).  Budgets: Optim4RL's 5e5 steps on Catch, 3e7 on the grids.
_OPTIM4RL_A2C = {"gamma": 0.995, "gae_lambda": 0.95, "vf_coef": 0.5, "ent_coef": 0.01, "lr": 3e-3}
_OPTIM4RL_PPO = {"gamma": 0.995, "gae_lambda": 0.95, "ent_coef": 0.01, "lr": 1e-3, "epochs": 4, "minibatch_size": 80}
_TASK_ROWS = (
    (CATCH, 500_000, {"num_envs": 16, "num_steps": 20, "hidden": (256,)}),
    (SMALL_GRIDS, 30_000_000, {"num_envs": 64, "num_steps": 20, "hidden": (32,)}),
    (BIG_GRIDS, 30_000_000, {"num_envs": 64, "num_steps": 20, "hidden": (32,), "conv_channels": 16}),
)

# -- the table: one row per (algorithm, family of tasks) --------------------------------
# PPO MuJoCo follows Schulman et al. (2017); classic control and Box2D the rl-baselines3-zoo
# tunings; Atari the PPO paper's Atari table.  A row that moves gae_lambda's default off the
# declared bins {0.9 .. 0.99} gives bins around its own default.
# A2C: 16 envs x 5 steps with RMSProp (4 x 8 on MuJoCo), 25 updates a hyper-step.
# IMPALA: unrolls of 20, RMSProp; Atari 16 envs, sign rewards, gamma 0.995 (STAC's setting).
# Classic control and Box2D scale rewards (the shared torso otherwise drowns in value-loss
# gradients: Acrobot stays at -500 for 100k steps without it, reaches about -100 with it).
# ES: n = 200 candidates an iteration, episodes of at most 1000 steps, one iteration a hyper-step.
_NORM = {"normalize_obs": True, "normalize_reward": True}
_CLASSIC_ROWS = (
    Family(
        algorithm=PPO,
        tasks=CARTPOLE,
        total_timesteps=100_000,
        iterations_per_step=4,
        config={"num_envs": 8, "num_steps": 32},
        defaults={"lr": 1e-3, "gamma": 0.98, "gae_lambda": 0.8, "epochs": 20, "minibatch_size": 256},
        bins={"gae_lambda": (0.8, 0.85, 0.9, 0.95, 0.99)},
    ),
    Family(
        algorithm=PPO,
        tasks=CLASSIC,
        total_timesteps=200_000,
        iterations_per_step=1,
        config={"num_envs": 8, "num_steps": 256, "normalize_obs": True},
        defaults={"lr": 3e-4, "gae_lambda": 0.94, "epochs": 4, "minibatch_size": 256},
        bins={"gae_lambda": (0.9, 0.92, 0.94, 0.96, 0.98)},
    ),
    Family(algorithm=A2C, tasks=CARTPOLE, total_timesteps=100_000, iterations_per_step=25),
    Family(algorithm=A2C, tasks=CLASSIC, total_timesteps=200_000, iterations_per_step=25, config={"normalize_obs": True}),
)
"""PPO and A2C on classic control: the -v0 rows (Gymnasium's envs); ``_twin`` makes their -v1 rows"""

FAMILIES: tuple[Family, ...] = (
    *_CLASSIC_ROWS[:2],
    Family(
        algorithm=PPO,
        tasks=BOX2D,
        total_timesteps=1_000_000,
        iterations_per_step=1,
        config={"num_envs": 16, "num_steps": 128, **_NORM},
        defaults={"lr": 3e-4, "gamma": 0.999, "gae_lambda": 0.98, "epochs": 4, "minibatch_size": 256, "ent_coef": 0.01},
        bins={"gae_lambda": (0.9, 0.95, 0.98, 0.99, 1.0)},
    ),
    Family(
        algorithm=PPO,
        tasks=MUJOCO,
        total_timesteps=1_000_000,
        iterations_per_step=1,
        config={"num_envs": 1, "num_steps": 2048, **_NORM},
        defaults={"lr": 3e-4, "gae_lambda": 0.95, "epochs": 10, "minibatch_size": 64},
    ),
    Family(
        algorithm=PPO,
        tasks=ATARI,
        total_timesteps=10_000_000,
        iterations_per_step=1,
        config={"num_envs": 8, "num_steps": 128, "sign_reward": True},
        defaults={"lr": 2.5e-4, "clip": 0.1, "epochs": 4, "minibatch_size": 256, "ent_coef": 0.01},
        ranges={"minibatch_size": (64, 2048)},
    ),
    *_CLASSIC_ROWS[2:],
    Family(
        algorithm=A2C,
        tasks=BOX2D,
        total_timesteps=1_000_000,
        iterations_per_step=25,
        config=_NORM,
        defaults={"gamma": 0.995, "ent_coef": 0.01},
    ),
    Family(
        algorithm=A2C,
        tasks=MUJOCO,
        total_timesteps=1_000_000,
        iterations_per_step=64,
        config={"num_envs": 4, "num_steps": 8, **_NORM},
    ),
    Family(
        algorithm=A2C,
        tasks=ATARI,
        total_timesteps=10_000_000,
        iterations_per_step=25,
        config={"sign_reward": True},
        defaults={"ent_coef": 0.01},
    ),
    *(_twin(f) for f in _CLASSIC_ROWS),
    Family(
        algorithm=IMPALA,
        tasks=CARTPOLE,
        total_timesteps=100_000,
        iterations_per_step=10,
        config={"num_envs": 8},
        defaults={"lr": 1e-3},
    ),
    Family(
        algorithm=IMPALA,
        tasks=_only(CLASSIC, "Acrobot", "MountainCar"),
        total_timesteps=200_000,
        iterations_per_step=10,
        config={"num_envs": 8, "normalize_reward": True},
        defaults={"lr": 1e-3},
    ),
    Family(
        algorithm=IMPALA,
        tasks=_only(BOX2D, "LunarLander"),
        total_timesteps=1_000_000,
        iterations_per_step=10,
        config={"num_envs": 16, "normalize_reward": True},
        defaults={"gamma": 0.995},
    ),
    Family(
        algorithm=IMPALA,
        tasks=_only(ATARI, "Pong", "Breakout", "SpaceInvaders", "Seaquest"),
        total_timesteps=10_000_000,
        iterations_per_step=10,
        config={"num_envs": 16, "sign_reward": True},
        defaults={"gamma": 0.995},
    ),
    *(
        Family(algorithm=algorithm, tasks=tasks, total_timesteps=budget, iterations_per_step=10, config=config, defaults=defaults)
        for algorithm, defaults in ((TASK_A2C, _OPTIM4RL_A2C), (TASK_PPO, _OPTIM4RL_PPO))
        for tasks, budget, config in _TASK_ROWS
    ),
    # One ESLearner shell; each row picks its ask/tell strategy (agents/es/).
    Family(algorithm=ES, config={"strategy": "openai"}, **_ES_ROW),
    Family(algorithm=NSRES, config={"strategy": "nsres"}, **_ES_ROW),
    Family(algorithm=CMAES, config={"strategy": "cmaes"}, **_ES_ROW),
)


def _build(families: Sequence[Family]) -> dict[str, Entry]:
    table: dict[str, Entry] = {}
    for entry in (e for family in families for e in family.entries()):
        if entry.id in table:
            raise ValueError(f"id {entry.id} is in two rows of the table")
        table[entry.id] = entry
    return table


_TABLE = _build(FAMILIES)
REGISTRY: Mapping[str, Entry] = MappingProxyType(_TABLE)
"""Every HyperRL id and its entry (a read-only view; ``add_family`` extends it)."""


def add_family(family: Family) -> tuple[str, ...]:
    """Add one row to the table and register its ids with Gymnasium; returns the new ids.

    The row is checked now (its learner module is imported): names that are not declared, and
    overrides that break a declaration, are a ``ValueError`` and leave the table unchanged.
    """
    new = _build([family])
    clash = sorted(set(new) & set(_TABLE))
    if clash:
        raise ValueError(f"ids {clash} are already registered")
    for entry in new.values():
        entry.hyperparameters()
    _TABLE.update(new)
    register_with_gymnasium(new)
    return tuple(new)


def register_with_gymnasium(ids: Sequence[str]) -> None:
    """Register ``ids`` of the table with Gymnasium (idempotent)."""
    import gymnasium as gym

    for env_id in ids:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="hyperenvs.env:HyperEnv", kwargs={"entry": env_id})


def get(env_id: str) -> Entry:
    """The entry of ``env_id`` (with or without the ``HyperRL/`` namespace)."""
    key = env_id if env_id.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{env_id}"
    if key not in REGISTRY:
        raise KeyError(f"no HyperRL id {env_id!r}; `hyperrl list` shows the {len(REGISTRY)} registered ids")
    return REGISTRY[key]
