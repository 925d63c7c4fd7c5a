"""``agents.rollout.Collector``'s job on a vector env of torch tensors (the batched classic-control twins).

The same batch, episodes and normalisation as ``Collector`` (observations standardised by
running statistics and clipped, rewards divided by the running std of the discounted return,
truncated episodes bootstrapped from the critic's value of their true last observation), with
every step a handful of tensor ops on the env's device: no numpy round trip, one read-back of
the finished episodes per ``collect``.  The batch's ``[T, B]`` tensors are allocated once per
``collect`` and filled in place (no per-step lists to stack), and the bookkeeping buffers
(raw rewards, dones, running returns and lengths) are kept between collections.  The running statistics
are Gymnasium's ``RunningMeanStd`` update, in float64 tensors.  The task's own tensors and
generator are part of ``state_dict``, so a restored lifetime continues bit for bit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import Batch, Params
from agents.fused import FusedPolicy
from agents.networks import ActorCritic, log_prob, sample
from agents.returns import rollout_return
from agents.rollout import Episode


def is_tensor_env(envs: gym.vector.VectorEnv) -> bool:
    """Whether ``envs`` speaks torch tensors (a batched ``HyperRLTasks`` task) rather than numpy."""
    return hasattr(envs.unwrapped, "task")


class RunningMeanStd:
    """Gymnasium's ``RunningMeanStd`` (parallel mean/variance update, count starting at 1e-4), in float64 tensors."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = 1e-4

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        n = x.shape[0]
        delta = x.mean(0) - self.mean
        total = self.count + n
        m2 = self.var * self.count + x.var(0, correction=0) * n + delta.square() * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.var = m2 / total
        self.count = total

    def update_array(self, x: np.ndarray) -> None:
        """``update`` in NumPy on CPU, writing the statistics in place (Gymnasium's own formulas)."""
        x = np.asarray(x, dtype=np.float64)
        n, mean, var = x.shape[0], self.mean.numpy(), self.var.numpy()
        batch_mean = np.add.reduce(x, axis=0) / n  # x.mean(0) and x.var(0) without their Python layers
        centred = x - batch_mean
        delta = batch_mean - mean
        total = self.count + n
        m2 = var * self.count + np.einsum("ij,ij->j", centred, centred) + delta * delta * (self.count * n / total)
        mean += delta * (n / total)
        var[...] = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": torch.tensor(self.count, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).to(self.mean.device).clone()
        self.var = torch.as_tensor(state["var"], dtype=torch.float64).to(self.var.device).clone()
        self.count = float(state["count"])


class TensorCollector:
    """Acts in a torch vector env with given parameters; owns the running episode state as tensors."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        network: ActorCritic,
        generator: torch.Generator,
        *,
        device: torch.device,
        normalize_obs: bool,
        normalize_reward: bool,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        sign_reward: bool = False,
        fused_policy: bool = False,
    ) -> None:
        self.envs, self.network, self.generator = envs, network, generator
        self.fused_policy = fused_policy
        """act through ``agents.fused.FusedPolicy`` (CPU float32 MLPs; the learner sets it with its fused steps)"""
        self.device = torch.device(device)
        self.num_envs = n = envs.num_envs
        shape = tuple(envs.single_observation_space.shape)
        self.obs_rms = RunningMeanStd(shape, self.device) if normalize_obs else None
        self.ret_rms = RunningMeanStd((), self.device) if normalize_reward else None
        self.clip_obs, self.clip_reward, self.sign_reward = clip_obs, clip_reward, sign_reward
        space = envs.single_action_space
        self._low = getattr(space, "low", None)
        self._high = getattr(space, "high", None)
        if self._low is not None:
            self._low_t = torch.as_tensor(self._low, device=self.device)
            self._high_t = torch.as_tensor(self._high, device=self.device)
        self._obs: torch.Tensor | None = None
        self._ep_return = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._ep_length = torch.zeros(n, dtype=torch.long, device=self.device)
        self._disc_return = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._obs_counted = False
        self._buffers: dict[str, torch.Tensor] = {}
        self.last_raw_rewards: torch.Tensor | None = None
        """the env's own rewards of the latest ``collect``, ``[T, B]``"""
        self.rollout_return = float("nan")

    def reset(self, seed: int) -> None:
        obs, _ = self.envs.reset(seed=seed)
        self._obs = obs.to(self.device).clone()
        self._ep_return.zero_()
        self._ep_length.zero_()
        self._disc_return.zero_()
        self._obs_counted = False

    def normalize(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        obs = torch.as_tensor(obs, device=self.device)
        if self.obs_rms is None:
            return obs.float()
        if update:
            self.obs_rms.update(obs)
        scaled = (obs - self.obs_rms.mean) / torch.sqrt(self.obs_rms.var + 1e-8)
        return scaled.clamp(-self.clip_obs, self.clip_obs).float()

    def _normalize_array(self, obs: torch.Tensor) -> torch.Tensor:
        """``normalize(obs, update=True)`` through NumPy views (the fused collector on CPU)."""
        if self.obs_rms is None:
            return obs.float()
        x = obs.numpy()
        self.obs_rms.update_array(x)
        scaled = (x - self.obs_rms.mean.numpy()) / np.sqrt(self.obs_rms.var.numpy() + 1e-8)
        np.minimum(scaled, self.clip_obs, out=scaled)
        np.maximum(scaled, -self.clip_obs, out=scaled)
        return torch.from_numpy(scaled.astype(np.float32))

    def _scale_rewards(self, rewards: torch.Tensor, done: torch.Tensor, gamma: float) -> torch.Tensor:
        if self.sign_reward:
            rewards = rewards.sign()
        if self.ret_rms is None:
            return rewards
        self._disc_return = self._disc_return * gamma + rewards
        self.ret_rms.update(self._disc_return[:, None])
        self._disc_return.masked_fill_(done, 0.0)
        return (rewards / torch.sqrt(self.ret_rms.var + 1e-8)).clamp(-self.clip_reward, self.clip_reward)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A ``[T, B, ...]`` buffer kept between collections (a new one when the shape changes)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
        return buf

    @torch.no_grad()
    def collect(self, params: Params, num_steps: int, gamma: float) -> tuple[Batch, list[Episode]]:
        """Run ``num_steps`` vector steps with ``params``; returns the batch and finished episodes."""
        if self._obs is None:
            raise RuntimeError("TensorCollector.collect called before reset(seed)")
        net, t_b = self.network, (num_steps, self.num_envs)
        obs = self.normalize(self._obs, update=not self._obs_counted)
        self._obs_counted = True
        act_shape = () if net.discrete else (net.action_dim,)
        # Buffers that leave in the Batch are fresh (the batch outlives this call); the rest are reused.
        obs_buf = torch.empty((*t_b, *obs.shape[1:]), dtype=obs.dtype, device=self.device)
        act_buf = torch.empty((*t_b, *act_shape), dtype=torch.long if net.discrete else torch.float32, device=self.device)
        logp_buf, val_buf, rew_buf, disc_buf = (torch.empty(t_b, device=self.device) for _ in range(4))
        raw_buf = self._buffer("raw", t_b, torch.float64)
        done_buf = self._buffer("done", t_b, torch.bool)
        ret_buf = self._buffer("ret", t_b, torch.float64)
        len_buf = self._buffer("len", t_b, torch.long)
        fused = FusedPolicy(net, params, self.generator) if self.fused_policy else None
        # With the fused policy (CPU) the policy step and the per-step bookkeeping run on NumPy views of the buffers.
        records = (raw_buf, done_buf, ret_buf, len_buf, rew_buf, disc_buf, self._ep_return, self._ep_length)
        arrays = tuple(b.numpy() for b in records) if fused is not None else None
        acted = tuple(b.numpy() for b in (obs_buf, act_buf, val_buf, logp_buf)) if fused is not None else ()
        for t in range(num_steps):
            if fused is not None:
                action = torch.from_numpy(fused.act(obs.numpy(), *(b[t] for b in acted)))
            else:
                policy_out, value = net.forward(params, obs)
                action = sample(policy_out, params, net.discrete, self.generator)
                obs_buf[t], act_buf[t], val_buf[t] = obs, action, value
                logp_buf[t] = log_prob(policy_out, params, action, net.discrete)
            env_action = action if self._low is None else torch.clamp(action, self._low_t, self._high_t)
            next_obs, reward, terminated, truncated, info = self.envs.step(env_action)
            if arrays is None:
                self._record(t, records, params, gamma, reward, terminated, truncated, info)
            else:
                self._record_arrays(t, arrays, params, gamma, reward, terminated, truncated, info)
            obs = self.normalize(next_obs, update=True) if arrays is None else self._normalize_array(next_obs)
        # The task may reuse its observation buffer: what outlives this call is copied out of it, once.
        self._obs = self._obs if num_steps == 0 else next_obs.clone()
        obs = obs.clone()
        self.last_raw_rewards = raw_buf.clone()
        self.rollout_return = rollout_return(self.last_raw_rewards, gamma)
        batch = Batch(
            obs=obs_buf,
            actions=act_buf,
            log_probs=logp_buf,
            values=val_buf,
            rewards=rew_buf,
            discounts=disc_buf,
            bootstrap_value=net.value(params, obs),
            bootstrap_obs=obs,
        )
        return batch, self._episodes(done_buf, ret_buf, len_buf)

    def _record(self, t, records, params, gamma, reward, terminated, truncated, info) -> None:
        """Step ``t``'s rewards, episode bookkeeping and discounts into the ``[T, B]`` buffers."""
        raw, done_buf, ret_buf, len_buf, rew_buf, disc_buf, ep_return, ep_length = records
        done = terminated | truncated
        raw[t] = reward
        ep_return += reward
        ep_length += 1
        done_buf[t], ret_buf[t], len_buf[t] = done, ep_return, ep_length
        ep_return.masked_fill_(done, 0.0)
        ep_length.masked_fill_(done, 0)
        scaled = self._scale_rewards(reward, done, gamma)
        # An episode can end both ways at once (a fall on the time limit's last step): no bootstrap then.
        bootstrap = truncated & ~terminated
        if bool(bootstrap.any()):
            final = self.network.value(params, self.normalize(info["final_obs"]))
            scaled = scaled + gamma * torch.where(bootstrap, final, 0.0)
        rew_buf[t] = scaled
        torch.logical_not(done, out=disc_buf[t])

    def _record_arrays(self, t, arrays, params, gamma, reward, terminated, truncated, info) -> None:
        """``_record`` on NumPy views of the buffers (CPU): the same numbers, a microsecond an op instead of several."""
        raw, done_buf, ret_buf, len_buf, rew_buf, disc_buf, ep_return, ep_length = arrays
        r, term, trunc = reward.numpy(), terminated.numpy(), truncated.numpy()
        done = np.logical_or(term, trunc, out=done_buf[t])
        raw[t] = r
        ep_return += r
        ep_length += 1
        ret_buf[t], len_buf[t] = ep_return, ep_length
        ended = done.any()  # most steps end no episode: skip the masked writes then
        if ended:
            ep_return[done] = 0.0
            ep_length[done] = 0
        scaled = r
        if self.sign_reward or self.ret_rms is not None:
            scaled = self._scale_rewards(reward, torch.from_numpy(done), gamma).numpy()
        if ended and trunc.any():
            bootstrap = trunc & ~term
            final = self.network.value(params, self.normalize(info["final_obs"])).detach().numpy()
            scaled = scaled + gamma * np.where(bootstrap, final, 0.0)
        rew_buf[t] = scaled
        np.logical_not(done, out=disc_buf[t])

    @staticmethod
    def _episodes(done: torch.Tensor, returns: torch.Tensor, lengths: torch.Tensor) -> list[Episode]:
        """The finished episodes in time order, then env order (one read-back from the device)."""
        rets, lens = returns[done].tolist(), lengths[done].tolist()
        return [Episode(ret=float(r), length=int(k)) for r, k in zip(rets, lens)]

    # -- snapshots: the episodes in progress, the statistics and the task's own tensors ------
    def state_dict(self) -> dict[str, Any]:
        from agents.task_rollout import task_state

        state: dict[str, Any] = {
            "obs": self._obs.clone(),
            "ep_return": self._ep_return.clone(),
            "ep_length": self._ep_length.clone(),
            "disc_return": self._disc_return.clone(),
            "obs_counted": torch.tensor(self._obs_counted),
            "task": task_state(self.envs),
        }
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if rms is not None:
                state[name] = rms.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, episodes: bool = True) -> None:
        """Restore what ``state_dict`` saved: the task's state, its episodes in progress and the statistics."""
        from agents.task_rollout import load_task_state

        def tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.as_tensor(x, dtype=dtype).to(self.device).clone()

        task = state["task"]
        load_task_state(
            self.envs,
            {
                "tensors": {k: tensor(v) for k, v in task["tensors"].items()},
                "generator": torch.as_tensor(task["generator"], dtype=torch.uint8).cpu(),
            },
        )
        self._obs = tensor(state["obs"])
        self._ep_return = tensor(state["ep_return"], torch.float64)
        self._ep_length = tensor(state["ep_length"], torch.long)
        self._disc_return = tensor(state["disc_return"], torch.float64)
        self._obs_counted = bool(state["obs_counted"])
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if rms is not None:
                rms.load_state_dict(state[name])
