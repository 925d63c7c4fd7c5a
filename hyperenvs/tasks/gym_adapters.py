"""Gymnasium faces of a batched task: one instance (``TaskEnv``) and the batch (``TaskVectorEnv``).

``TaskEnv`` runs the batched task with B = 1 on the CPU and speaks numpy, so
it steps exactly like row 0 of a batched task seeded the same way: an episode
that ends is reset by the task in the same step (drawing from the same
generator), and the next ``reset()`` without a seed hands out that first
observation.

``TaskVectorEnv`` is the batched task as a Gymnasium ``VectorEnv`` with torch
tensors in and out on its device, and same-step autoreset
(``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): a finished
instance's returned observation is the first of its next episode; its last
one is in ``info["final_obs"]`` where ``info["_final_obs"]`` is True.  By
default (``reuse_obs=True``) the observation and ``info["final_obs"]`` are
preallocated buffers, overwritten by the next ``step``/``reset``: copy what you
keep (``.clone()``), as with other vector envs that return their buffers.
``reuse_obs=False`` returns fresh tensors.  With ``lifetimes=N`` it holds N
groups of ``num_envs`` instances, one generator each (``num_envs`` is then
N times that); ``reset(seed=[s_0, ...])`` seeds each, ``restart_lifetimes``
starts some afresh (see ``hyperenvs.tasks.base``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from hyperenvs.tasks.registration import make_task


def _check_seed(seed: Any) -> int | None:
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        return seed
    raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")


class TaskEnv(gym.Env):
    """One instance of a batched task as a plain Gymnasium env (numpy observations)."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, **options: Any) -> None:
        self.task = make_task(task, 1, device="cpu", record_final=True, **options)
        self.observation_space = self.task.single_observation_space
        self.action_space = self.task.single_action_space
        self._next_obs: torch.Tensor | None = None
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=_check_seed(seed))
        if seed is not None or not self._started:
            obs = self.task.reset(seed if seed is not None else int(self.np_random.integers(2**62)))
        elif self._next_obs is not None:
            obs = self._next_obs  # the task already began the next episode when the last one ended
        else:
            obs = self.task.reset()
        self._started, self._next_obs = True, None
        return self._numpy(obs), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated = self.task.step(self._batch_of_one(action))
        done = bool(terminated[0] or truncated[0])
        if done:
            self._next_obs, obs = obs, self.task.final_obs
        return self._numpy(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def _batch_of_one(self, action: Any) -> torch.Tensor:
        """``action`` as the task's batch of one; a Box action's range is the task's business (it may clip)."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            if not self.action_space.contains(action):
                raise ValueError(f"action must be in {self.action_space}, got {action!r}")
            return torch.tensor([int(action)])
        return torch.as_tensor(np.asarray(action))[None]

    def _numpy(self, obs: torch.Tensor) -> Any:
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return np.int64(obs[0])
        return obs[0].numpy()


class TaskVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` instances of a task as one Gymnasium ``VectorEnv`` of torch tensors (same-step autoreset)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task: str, num_envs: int, *, device: str = "cpu", reuse_obs: bool = True, **options: Any) -> None:
        self.task = make_task(task, num_envs, device=device, record_final=True, reuse_obs=reuse_obs, **options)
        self.num_envs = self.task.num_envs
        self.device = self.task.device
        self.single_observation_space = self.task.single_observation_space
        self.single_action_space = self.task.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        """New episodes everywhere; a seed (a list: one per lifetime) also reseeds the generators and draws new lifetimes."""
        if isinstance(seed, (list, tuple)):
            return self.task.reset([_check_seed(s) for s in seed]), {}
        return self.task.reset(_check_seed(seed)), {}

    def restart_lifetimes(self, lifetimes: list[int], seeds: list[int]) -> torch.Tensor:
        """Start some lifetimes afresh (their rows' new observations); the others go on untouched."""
        return self.task.restart_lifetimes(lifetimes, [_check_seed(s) for s in seeds])

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        obs, reward, terminated, truncated = self.task.step(torch.as_tensor(actions, device=self.device))
        info = {"final_obs": self.task.final_obs, "_final_obs": terminated | truncated}
        return obs, reward, terminated, truncated, info
