"""HyperRL's Gymnasium face: one training run of an inner learner as an environment.

``import hyperenvs`` registers every ``HyperRL/*`` id without importing torch
or any simulator::

    import gymnasium as gym, hyperenvs
    gym.register_envs(hyperenvs)
    env = gym.make("HyperRL/PPO-CartPole-v0")

Ids come from the rows of ``hyperenvs.registry.FAMILIES``; ``add_family(row)`` adds a row's ids
at run time (README, "Adding a learner").
"""

from __future__ import annotations

from typing import Any

from hyperenvs.registry import REGISTRY, Algorithm, Entry, Family, add_family, get, register_with_gymnasium
from hyperenvs.spaces import Hyperparameter, HyperparameterSpace

__all__ = [
    "REGISTRY",
    "Algorithm",
    "Entry",
    "Family",
    "HyperEnv",
    "Hyperparameter",
    "HyperparameterSpace",
    "JointDiscreteAction",
    "RecordSchedule",
    "add_family",
    "check_hyperenv",
    "flatten",
    "get",
    "register",
]

_LAZY = {
    "HyperEnv": "hyperenvs.env:HyperEnv",
    "RecordSchedule": "hyperenvs.wrappers:RecordSchedule",
    "JointDiscreteAction": "hyperenvs.wrappers:JointDiscreteAction",
    "flatten": "hyperenvs.wrappers:flatten",
    "check_hyperenv": "hyperenvs.checks:check_hyperenv",
}


def __getattr__(name: str) -> Any:
    # Heavy parts (torch, simulators) load on first use, keeping the import cheap.
    if name in _LAZY:
        from hyperenvs.registry import load

        return load(_LAZY[name])
    raise AttributeError(f"module 'hyperenvs' has no attribute {name!r}")


def register() -> None:
    """Register every id of the table with Gymnasium (idempotent)."""
    register_with_gymnasium(list(REGISTRY))
    from hyperenvs.tasks.registration import register_tasks

    register_tasks()


register()
