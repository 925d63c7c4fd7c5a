"""Inner tasks Gymnasium lacks, as batched torch environments with single Gymnasium twins.

Optim4RL's six gridworlds and Catch, LPG's tabular and random gridworlds and
delayed chain MDPs; and batched twins of Gymnasium's classic-control tasks
(CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum) that step
exactly like Gymnasium's own.  ``make_task(name, num_envs, device=...)`` builds the
batched form (B instances in one tensor state); each task is also registered as
``HyperRLTasks/{Name}-v0`` (see :mod:`hyperenvs.tasks.registration`).  This
package imports torch only when a task is built, so ``import hyperenvs`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TASKS",
    "Acrobot",
    "BatchedTask",
    "CartPole",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
    "TaskEnv",
    "TaskVectorEnv",
    "make_task",
]

_LAZY = {
    "BatchedTask": "hyperenvs.tasks.base:BatchedTask",
    "TaskEnv": "hyperenvs.tasks.gym_adapters:TaskEnv",
    **{
        name: f"hyperenvs.tasks.classic_control:{name}"
        for name in ("CartPole", "Acrobot", "MountainCar", "MountainCarContinuous", "Pendulum")
    },
    "TaskVectorEnv": "hyperenvs.tasks.gym_adapters:TaskVectorEnv",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hyperenvs.tasks' has no attribute {name!r}")


from hyperenvs.tasks.registration import TASKS, make_task  # noqa: E402  (plain data, no torch)
