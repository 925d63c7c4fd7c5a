"""A2C and PPO on the batched torch tasks (Catch, Optim4RL's gridworlds), collected on the device.

The learners are the actor-critic family's own (same objectives, schedules and
``train_step``); only the collector (``agents.task_rollout.TaskCollector``),
the network (``agents.task_networks.TaskActorCritic``: Optim4RL's shared torso)
and the snapshot of the inner task differ.  ``config.task`` names a
``HyperRLTasks/*`` id; the learner builds its own batched task on ``device``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from agents.a2c import A2CConfig, A2CLearner
from agents.learner import ActorCriticConfig, ActorCriticLearner, _to_tensors
from agents.networks import sample
from agents.optim import UpdateRule
from agents.ppo import PPOConfig, PPOLearner
from agents.seeding import derive
from agents.task_networks import TaskActorCritic
from agents.task_rollout import TaskCollector, load_task_state, make_task_envs, task_state


@dataclass(frozen=True, kw_only=True)
class TaskFields:
    """The fields a task learner's config sets differently from the Gymnasium learners' (Optim4RL's settings)."""

    task: str = "HyperRLTasks/Catch-v0"
    """a ``HyperRLTasks/*`` id: the batched task the learner builds"""
    num_envs: int = 64
    """task instances stepped as one batch (Optim4RL evaluates Catch agents on 64)"""
    num_steps: int = 20
    """steps per rollout (Optim4RL's 20-step rollouts)"""
    hidden: tuple[int, ...] = (256,)
    """the torso's one dense width: 256 on Catch, 32 on the gridworlds"""
    conv_channels: int = 0
    """channels of the 2x2 spatial conv before the dense layer (16 on the big gridworlds; 0: none)"""
    update_rule: str | UpdateRule = "adam"
    """update rule (Optim4RL's baselines: Adam or RMSProp)"""

    def __post_init__(self) -> None:
        if len(self.hidden) != 1:
            raise ValueError(f"hidden must hold the torso's one dense width, got {self.hidden}")
        if self.conv_channels < 0:
            raise ValueError(f"conv_channels must be >= 0, got {self.conv_channels}")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class TaskA2CConfig(TaskFields, A2CConfig):
    """A2C on a batched task (Optim4RL's agent)."""


@dataclass(frozen=True, kw_only=True)
class TaskPPOConfig(TaskFields, PPOConfig):
    """PPO on a batched task, with Optim4RL's agent networks."""


class TaskLearner(ActorCriticLearner):
    """What the task learners share: the batched task, its collector, network, snapshots and evaluation."""

    uses_vector_env = False  # the learner builds its batched task itself, on its device

    def __init__(self, config: ActorCriticConfig, *, seed: int, device: str = "cpu", envs=None, **kwargs) -> None:
        envs = make_task_envs(config.task, config.num_envs, device) if envs is None else envs
        super().__init__(config, seed=seed, device=device, envs=envs, **kwargs)
        self._owns_envs = True
        self.collector = TaskCollector(self.envs, self.network, self.generator, device=self.device)
        self.collector.reset(seed=self.seed)
        self._eval_task: gym.vector.VectorEnv | None = None

    @classmethod
    def param_shapes(cls, config: ActorCriticConfig) -> dict[str, tuple[int, ...]]:
        envs = make_task_envs(config.task, 1, "cpu")
        return cls.build_network(config, envs.single_observation_space, envs.single_action_space).shapes()

    @staticmethod
    def build_network(config: ActorCriticConfig, obs_space: gym.Space, act_space: gym.Space) -> TaskActorCritic:
        return TaskActorCritic(
            obs_shape=tuple(obs_space.shape),
            action_dim=int(act_space.n),
            hidden=config.hidden[0],
            conv_channels=config.conv_channels,
        )

    # -- snapshots: the learner, the collector's episodes and the task's own tensors ----------
    def state_dict(self) -> dict[str, Any]:
        return self.training_state() | {"collector": self.collector.state_dict(), "task": _to_tensors(task_state(self.envs))}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_training_state(state)
        load_task_state(self.envs, state["task"])
        self.collector.load_state_dict(state["collector"])

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int = 10) -> list[float]:
        """Returns of the greedy policy on ``episodes`` separate task instances, run side by side."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        envs = make_task_envs(self.config.task, episodes, self.device)
        obs, _ = envs.reset(seed=derive(self.seed, "eval", self._eval_count))
        self._eval_count += 1
        total = torch.zeros(episodes, dtype=torch.float64, device=self.device)
        running = torch.ones(episodes, dtype=torch.bool, device=self.device)
        while bool(running.any()):
            logits, _ = self.network.forward(self.params, obs)
            action = sample(logits, self.params, True, self.generator, deterministic=True)
            obs, reward, terminated, truncated, _ = envs.step(action)
            total += torch.where(running, reward.double(), 0.0)
            running &= ~(terminated | truncated)
        return total.tolist()


class TaskA2CLearner(TaskLearner, A2CLearner):
    """A2C (TD(lambda) targets, one update per rollout) on a batched task."""

    def __init__(self, config: TaskA2CConfig | None = None, **kwargs) -> None:
        super().__init__(config or TaskA2CConfig(), **kwargs)


class TaskPPOLearner(TaskLearner, PPOLearner):
    """PPO on a batched task."""

    def __init__(self, config: TaskPPOConfig | None = None, **kwargs) -> None:
        super().__init__(config or TaskPPOConfig(), **kwargs)
