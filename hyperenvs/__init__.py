"""HyperRL's Gymnasium face: one training run of an inner learner as an environment.

``import hyperenvs`` registers every ``HyperRL/*`` id without importing torch
or any simulator::

    import gymnasium as gym, hyperenvs
    gym.register_envs(hyperenvs)
    env = gym.make("HyperRL/PPO-CartPole-v0")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from hyperenvs.registry import REGISTRY, Entry, get
from hyperenvs.spaces import Hyperparameter, HyperparameterSpace

__all__ = [
    "REGISTRY",
    "Entry",
    "HyperEnv",
    "Hyperparameter",
    "HyperparameterSpace",
    "JointDiscreteAction",
    "RecordSchedule",
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
    for env_id in REGISTRY:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="hyperenvs.env:HyperEnv", kwargs={"entry": env_id})
    from hyperenvs.tasks.registration import register_tasks

    register_tasks()


register()
