"""Collection of time-major batches from a batched torch task, all on the task's device.

The task is any Gymnasium ``VectorEnv`` of torch tensors with same-step autoreset
(``gym.make_vec("hyperenvs:HyperRLTasks/Catch-v0", vectorization_mode="vector_entry_point")``):
observations, actions, rewards and the running episode returns stay tensors on
its device, with no numpy round trip; the finished episodes are read back once
per ``collect``.  Actions are drawn by the inverse CDF of one uniform per
instance and step, drawn for the whole rollout at once from the learner's generator (``categorical_from_uniforms``), so a
population (``agents.stacked``) draws the same actions for every lifetime at
once.  Observations go into one preallocated ``[T + 1, B, ...]`` buffer (the
task's own observation is valid only until its next step).  It fills the same ``Batch`` as ``agents.rollout.Collector``
(truncated episodes bootstrapped with the critic's value of their last
observation), without observation or reward normalisation: the tasks' rewards
are already small.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from agents.base import Batch, Params
from agents.networks import log_prob
from agents.returns import rollout_return
from agents.rollout import Episode
from agents.task_networks import TaskActorCritic, categorical_from_uniforms


def make_task_envs(task: str, num_envs: int, device: torch.device | str, **options: Any) -> gym.vector.VectorEnv:
    """The batched form of the task id ``task`` (e.g. ``HyperRLTasks/Catch-v0``) with ``num_envs`` instances.

    ``options`` go to the task (``lifetimes=N``: N groups of ``num_envs`` instances, one generator each).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    spec = task if ":" in task else f"hyperenvs:{task}"  # the module that registers the HyperRLTasks ids
    return gym.make_vec(spec, num_envs=num_envs, vectorization_mode="vector_entry_point", device=str(device), **options)


def task_state(envs: gym.vector.VectorEnv) -> dict[str, Any]:
    """The batched task's own state (its tensors and its generator), for a bit-exact restore."""
    task = envs.unwrapped.task
    tensors = {k: v.clone() for k, v in vars(task).items() if isinstance(v, torch.Tensor)}
    return {"tensors": tensors, "generator": task.generator.get_state()}


def load_task_state(envs: gym.vector.VectorEnv, state: dict[str, Any]) -> None:
    task = envs.unwrapped.task
    for k, v in state["tensors"].items():
        setattr(task, k, v.clone().to(task.device))
    task.generator.set_state(state["generator"])


class TaskCollector:
    """Acts in a batched task with given parameters; owns the running episode state as tensors."""

    def __init__(self, envs: gym.vector.VectorEnv, network: TaskActorCritic, generator: torch.Generator, *, device) -> None:
        self.envs = envs
        self.network = network
        self.generator = generator
        self.device = torch.device(device)
        self.num_envs = envs.num_envs
        self._obs: torch.Tensor | None = None
        self._ep_return = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._ep_length = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.last_raw_rewards: torch.Tensor | None = None
        """the task's own rewards of the latest ``collect``, ``[T, B]`` (before truncation bootstrapping)"""
        self.rollout_return = float("nan")
        """EPGT's Eq. 1 G of the latest ``collect`` (``IterationReport.rollout_return``)"""

    @property
    def running(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The running episodes: ``(obs, return so far, length so far)`` of every instance (the tensors themselves)."""
        return self._obs, self._ep_return, self._ep_length

    def set_running(self, obs: torch.Tensor, ep_return: torch.Tensor, ep_length: torch.Tensor) -> None:
        """Carry on from running episodes held elsewhere (copies of ``obs``, ``ep_return``, ``ep_length``)."""
        if obs.shape[0] != self.num_envs or ep_return.shape != (self.num_envs,) or ep_length.shape != (self.num_envs,):
            raise ValueError(f"running episodes must hold {self.num_envs} instances, got obs {tuple(obs.shape)}")
        self._obs, self._ep_return, self._ep_length = obs.clone(), ep_return.clone(), ep_length.clone()

    def reset(self, seed: int) -> None:
        obs, _ = self.envs.reset(seed=seed)
        self._obs = obs.clone()
        self._ep_return.zero_()
        self._ep_length.zero_()

    @torch.no_grad()
    def collect(self, params: Params, num_steps: int, gamma: float) -> tuple[Batch, list[Episode]]:
        """Run ``num_steps`` batched steps with ``params``; returns the batch and the finished episodes."""
        if self._obs is None:
            raise RuntimeError("TaskCollector.collect called before reset(seed)")
        net, t_max, b = self.network, num_steps, self.num_envs
        obs_buf = torch.empty((t_max + 1, *self._obs.shape), dtype=self._obs.dtype, device=self.device)
        obs_buf[0] = self._obs
        act_buf, logp_buf, val_buf, rew_buf, raw_buf, done_buf, ret_buf, len_buf = ([] for _ in range(8))
        # the rollout's action uniforms in one draw (a population draws each lifetime's block the same way)
        uniforms = torch.rand((t_max, b), generator=self.generator, device=self.device)
        for t in range(t_max):
            logits, value = net.forward(params, obs_buf[t])
            action = categorical_from_uniforms(logits, uniforms[t])
            act_buf.append(action)
            logp_buf.append(log_prob(logits, params, action, True))
            val_buf.append(value)
            next_obs, reward, terminated, truncated, info = self.envs.step(action)
            obs_buf[t + 1] = next_obs  # copied now: the task reuses its observation buffer
            done = terminated | truncated
            self._ep_return += reward
            self._ep_length += 1
            done_buf.append(done)
            ret_buf.append(self._ep_return.clone())
            len_buf.append(self._ep_length.clone())
            self._ep_return.masked_fill_(done, 0.0)
            self._ep_length.masked_fill_(done, 0)
            raw_buf.append(reward)
            # A truncated (not terminated) episode is bootstrapped from its true last observation.
            bootstrap = truncated & ~terminated
            if bool(bootstrap.any()):  # the critic runs on the final observations only when one is needed
                reward = reward + gamma * torch.where(bootstrap, net.value(params, info["final_obs"]), 0.0)
            rew_buf.append(reward)
        obs = obs_buf[t_max]
        self._obs = obs.clone()
        self.last_raw_rewards = torch.stack(raw_buf)
        self.rollout_return = rollout_return(self.last_raw_rewards, gamma)
        batch = Batch(
            obs=obs_buf[:t_max],
            actions=torch.stack(act_buf),
            log_probs=torch.stack(logp_buf),
            values=torch.stack(val_buf),
            rewards=torch.stack(rew_buf),
            discounts=(~torch.stack(done_buf)).float(),
            bootstrap_value=net.value(params, obs),
            bootstrap_obs=obs,
        )
        return batch, self._episodes(torch.stack(done_buf), torch.stack(ret_buf), torch.stack(len_buf))

    @staticmethod
    def _episodes(done: torch.Tensor, returns: torch.Tensor, lengths: torch.Tensor) -> list[Episode]:
        """The finished episodes in time order, then env order (one read back from the device)."""
        rets, lens = returns[done].tolist(), lengths[done].tolist()
        return [Episode(ret=float(r), length=int(n)) for r, n in zip(rets, lens)]

    def state_dict(self) -> dict[str, Any]:
        return {"obs": self._obs.clone(), "ep_return": self._ep_return.clone(), "ep_length": self._ep_length.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._obs = state["obs"].clone().to(self.device)
        self._ep_return = state["ep_return"].clone().to(self.device)
        self._ep_length = state["ep_length"].clone().to(self.device)
