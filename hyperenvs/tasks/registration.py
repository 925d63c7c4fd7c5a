"""The table of batched tasks and their ``HyperRLTasks/{Name}-v0`` ids.

Plain data and import strings only, so ``import hyperenvs`` registers every id
without importing torch.  ``make_task`` builds the batched form; the Gymnasium
ids build :class:`~hyperenvs.tasks.gym_adapters.TaskEnv` (one instance) or, via
``gym.make_vec(..., vectorization_mode="vector_entry_point")``,
:class:`~hyperenvs.tasks.gym_adapters.TaskVectorEnv` (the batched form).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

NAMESPACE = "HyperRLTasks"

_OPTIM4RL = ("small_dense_short", "small_dense_long", "big_sparse_short", "big_sparse_long", "big_dense_short", "big_dense_long")
_LPG_TABULAR = ("lpg_dense", "lpg_sparse", "lpg_long", "lpg_longer", "lpg_long_dense")
_LPG_RANDOM = ("lpg_random_dense", "lpg_random_long", "lpg_random_small", "lpg_random_small_sparse", "lpg_random_very_dense")
_CHAINS = ("chain_short", "chain_short_noisy", "chain_long", "chain_long_noisy", "chain_distractor")
_CLASSIC = {
    "cart_pole": "CartPole",
    "acrobot": "Acrobot",
    "mountain_car": "MountainCar",
    "mountain_car_continuous": "MountainCarContinuous",
    "pendulum": "Pendulum",
}

TASKS: dict[str, str] = {
    "catch": "hyperenvs.tasks.catch:Catch",
    **{name: "hyperenvs.tasks.optim4rl_grids:OPTIM4RL_GRIDS" for name in _OPTIM4RL},
    **{name: "hyperenvs.tasks.lpg_grids:LPG_TABULAR_GRIDS" for name in _LPG_TABULAR},
    **{name: "hyperenvs.tasks.lpg_grids:LPG_RANDOM_GRIDS" for name in _LPG_RANDOM},
    **{name: "hyperenvs.tasks.chains:CHAINS" for name in _CHAINS},
    **{name: f"hyperenvs.tasks.classic_control:{cls}" for name, cls in _CLASSIC.items()},
}
"""task name -> where its class (Catch) or its spec table lives"""


def _camel(name: str) -> str:
    words = name.replace("lpg_", "LPG_").replace("chain_", "DelayedChain_").split("_")
    return "".join(w if w[:1].isupper() else w.capitalize() for w in words)


def _ids() -> dict[str, tuple[str, dict[str, Any]]]:
    ids: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in TASKS:
        ids[_camel(name)] = (name, {})
        if name in _LPG_TABULAR or name in _LPG_RANDOM:
            ids[_camel(name) + "Collect"] = (name, {"collect_actions": True})
    return ids


GYM_IDS = {f"{NAMESPACE}/{camel}-v0": spec for camel, spec in _ids().items()}
"""``HyperRLTasks/{Name}-v0`` -> (task name, options); ``...Collect`` ids use LPG's 18 actions"""


def groups_lifetimes(task_id: str) -> bool:
    """Whether the ``HyperRLTasks/*`` id's batched task can hold several lifetimes (all but the classic twins)."""
    return task_id in GYM_IDS and GYM_IDS[task_id][0] not in _CLASSIC


def _target(task: str) -> Any:
    """The class or spec table ``TASKS[task]`` names."""
    module, _, attr = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_task(
    task: str | Sequence[str], num_envs: int, *, device: str = "cpu", seed: int | list[int] | None = None, **options: Any
) -> Any:
    """The batched form of ``task``: ``num_envs`` instances on ``device``, reset with ``seed`` when given.

    Options: ``reward_scale`` (gridworlds), ``collect_actions`` (LPG grids), ``record_final``, ``reuse_obs``,
    ``lifetimes`` (that many groups of ``num_envs`` instances, one generator each; not for the classic twins).
    ``task`` may be a list of task names, one per lifetime (``lifetimes`` defaults to its length): gridworlds with
    index observations (LPG's tabular grids), or chains of one observation kind, stepped as one task.
    """
    if not isinstance(task, str):
        return _make_mixed(list(task), num_envs, device=device, seed=seed, **options)
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    from hyperenvs.tasks.base import check_num_envs

    check_num_envs(num_envs)
    target = _target(task)
    if task in _CLASSIC and options.get("lifetimes", 1) != 1:
        raise ValueError(f"lifetimes must be 1 for {task!r}: the classic twins hold one lifetime, got {options['lifetimes']!r}")
    if task == "catch" or task in _CLASSIC:
        env = target(num_envs, device=device, **options)
    elif task in _CHAINS:
        from hyperenvs.tasks.chains import DelayedChain

        env = DelayedChain(target[task], num_envs, device=device, **options)
    else:
        from hyperenvs.tasks.gridworld import GridWorld

        env = GridWorld(target[task], num_envs, device=device, **options)
    if seed is not None:
        env.reset(seed)
    return env


def _make_mixed(names: list[str], num_envs: int, *, device: str, seed: int | list[int] | None, **options: Any) -> Any:
    """One task whose lifetime ``j`` runs ``names[j]``."""
    unknown = [n for n in names if n not in TASKS]
    if not names or unknown:
        raise ValueError(f"task must name known tasks, got {names!r}" + (f" ({unknown} unknown)" if unknown else ""))
    lifetimes = options.pop("lifetimes", len(names))
    if lifetimes != len(names):
        raise ValueError(f"lifetimes must match the {len(names)} task names, got {lifetimes!r}")
    kinds = {"chains" if n in _CHAINS else "grids" if n in _LPG_TABULAR + _LPG_RANDOM + _OPTIM4RL else n for n in names}
    if len(kinds) != 1 or kinds - {"chains", "grids"}:
        raise ValueError(f"one task holds lifetimes of several gridworlds or of several chains, not {sorted(kinds)}")
    if kinds == {"chains"}:
        from hyperenvs.tasks.chains import CHAINS, DelayedChain

        env = DelayedChain([CHAINS[n] for n in names], num_envs, device=device, lifetimes=lifetimes, **options)
    else:
        from hyperenvs.tasks.gridworld import GridWorld

        env = GridWorld([_target(n)[n] for n in names], num_envs, device=device, lifetimes=lifetimes, **options)
    if seed is not None:
        env.reset(seed)
    return env


def register_tasks() -> None:
    """Register every ``HyperRLTasks/*`` id with Gymnasium (idempotent)."""
    for env_id, (task, options) in GYM_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="hyperenvs.tasks.gym_adapters:TaskEnv",
                vector_entry_point="hyperenvs.tasks.gym_adapters:TaskVectorEnv",
                kwargs={"task": task, **options},
            )
