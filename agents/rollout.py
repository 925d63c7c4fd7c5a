"""Vectorised collection of time-major batches from gymnasium vector envs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.utils import RunningMeanStd

from agents.base import Batch, Params
from agents.networks import ActorCritic, log_prob, sample
from agents.returns import rollout_return


def make_vector_env(task: str, num_envs: int, device: str | torch.device = "cpu") -> gym.vector.VectorEnv:
    """A same-step-autoreset vector env: ``ALE/<Game>`` uses ale-py's native vector env, a
    ``HyperRLTasks/*`` id its batched torch form on ``device`` (``agents.tensor_rollout`` collects
    from it); ``device`` is ignored by the numpy envs.

    Same-step autoreset puts the final observation of an ended episode in
    ``info["final_obs"]``, which truncation bootstrapping needs.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if task.startswith("HyperRLTasks/"):
        spec = f"hyperenvs:{task}"  # the module that registers the HyperRLTasks ids
        return gym.make_vec(spec, num_envs=num_envs, vectorization_mode="vector_entry_point", device=str(device))
    if task.startswith("ALE/"):
        from ale_py.vector_env import AtariVectorEnv

        game = "".join("_" + c.lower() if c.isupper() else c for c in task[4:].split("-")[0]).lstrip("_")
        # Rewards are clipped by the learner so that reported returns stay the game's score.
        return AtariVectorEnv(game=game, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, reward_clipping=False)
    return gym.make_vec(
        task, num_envs=num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}
    )


@dataclass(frozen=True, kw_only=True)
class Episode:
    """One finished inner episode."""

    ret: float
    """undiscounted return in the environment's own reward units"""
    length: int
    """number of steps"""


class Collector:
    """Acts in a vector env with given parameters; owns the running episode state.

    Observation normalisation and reward scaling follow the standard MuJoCo PPO
    setup: observations are standardised by running statistics and clipped;
    rewards are divided by the running standard deviation of the discounted
    return.  Their statistics are part of ``state_dict``.
    """

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
    ) -> None:
        self.envs = envs
        self.network = network
        self.generator = generator
        self.device = device
        self.num_envs = envs.num_envs
        self.obs_rms = RunningMeanStd(shape=envs.single_observation_space.shape) if normalize_obs else None
        self.ret_rms = RunningMeanStd(shape=()) if normalize_reward else None
        self.clip_obs, self.clip_reward, self.sign_reward = clip_obs, clip_reward, sign_reward
        space = envs.single_action_space
        self._low = getattr(space, "low", None)
        self._high = getattr(space, "high", None)
        self._obs: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._disc_return = np.zeros(self.num_envs)
        self._obs_counted = False  # whether obs_rms has already seen ``self._obs``
        self.last_raw_rewards: np.ndarray | None = None
        """the env's own rewards of the latest ``collect``, ``[T, B]`` (before scaling, sign-clipping and
        truncation bootstrapping)"""
        self.rollout_return = float("nan")  # Eq. 1 G of the last collect (IterationReport.rollout_return)

    def reset(self, seed: int) -> None:
        self._obs, _ = self.envs.reset(seed=seed)
        self._ep_return[:] = 0
        self._ep_length[:] = 0
        self._disc_return[:] = 0
        self._obs_counted = False

    def normalize(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if self.obs_rms is None:
            return obs if obs.dtype == np.uint8 else obs.astype(np.float32, copy=False)
        if update:
            self.obs_rms.update(obs)
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def _scale_rewards(self, rewards: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
        if self.sign_reward:
            rewards = np.sign(rewards)
        if self.ret_rms is None:
            return rewards
        self._disc_return = self._disc_return * gamma + rewards
        self.ret_rms.update(self._disc_return)
        self._disc_return[done] = 0.0
        return np.clip(rewards / np.sqrt(self.ret_rms.var + 1e-8), -self.clip_reward, self.clip_reward)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    @torch.no_grad()
    def collect(self, params: Params, num_steps: int, gamma: float) -> tuple[Batch, list[Episode]]:
        """Run ``num_steps`` vector steps with ``params``; returns the batch and finished episodes."""
        if self._obs is None:
            raise RuntimeError("Collector.collect called before reset(seed)")
        net, n = self.network, self.num_envs
        obs_buf, act_buf, logp_buf, val_buf = [], [], [], []
        rew_buf = np.zeros((num_steps, n), dtype=np.float32)
        raw_buf = np.zeros((num_steps, n), dtype=np.float64)
        disc_buf = np.ones((num_steps, n), dtype=np.float32)
        raw_buf = np.zeros((num_steps, n), dtype=np.float64)
        episodes: list[Episode] = []
        # The last observation of the previous batch was counted when it arrived: count each once.
        obs = self._tensor(self.normalize(self._obs, update=not self._obs_counted))
        self._obs_counted = True
        for t in range(num_steps):
            policy_out, value = net.forward(params, obs)
            action = sample(policy_out, params, net.discrete, self.generator)
            obs_buf.append(obs)
            act_buf.append(action)
            logp_buf.append(log_prob(policy_out, params, action, net.discrete))
            val_buf.append(value)
            env_action = action.cpu().numpy()
            if self._low is not None:
                env_action = np.clip(env_action, self._low, self._high)
            next_obs, reward, terminated, truncated, info = self.envs.step(env_action)
            done = terminated | truncated
            self._record(reward, done, episodes)
            raw_buf[t] = reward
            scaled = self._scale_rewards(reward, done, gamma)
            # An episode can end both ways at once (a fall on the time limit's last step): no bootstrap then.
            bootstrap = truncated & ~terminated
            if bootstrap.any():
                scaled = scaled + gamma * self._final_values(params, info, bootstrap)
            rew_buf[t] = scaled
            disc_buf[t] = ~done
            self._obs = next_obs
            obs = self._tensor(self.normalize(next_obs, update=True))
        bootstrap = net.value(params, obs)
        self.last_raw_rewards = raw_buf
        self.rollout_return = rollout_return(raw_buf, gamma)
        batch = Batch(
            obs=torch.stack(obs_buf),
            actions=torch.stack(act_buf),
            log_probs=torch.stack(logp_buf),
            values=torch.stack(val_buf),
            rewards=self._tensor(rew_buf),
            discounts=self._tensor(disc_buf),
            bootstrap_value=bootstrap,
            bootstrap_obs=obs,
        )
        return batch, episodes

    def _record(self, reward: np.ndarray, done: np.ndarray, episodes: list[Episode]) -> None:
        self._ep_return += reward
        self._ep_length += 1
        for i in np.flatnonzero(done):
            episodes.append(Episode(ret=float(self._ep_return[i]), length=int(self._ep_length[i])))
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0

    def _final_values(self, params: Params, info: dict[str, Any], mask: np.ndarray) -> np.ndarray:
        """Critic values of the true last observations of truncated episodes (zeros elsewhere)."""
        idx = np.flatnonzero(mask)
        final = info["final_obs"]
        rows = np.stack([final[i] for i in idx]).astype(self._obs.dtype)
        values = np.zeros(self.num_envs, dtype=np.float32)
        values[idx] = self.network.value(params, self._tensor(self.normalize(rows))).cpu().numpy()
        return values

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "obs": self._obs.copy(),
            "ep_return": self._ep_return.copy(),
            "ep_length": self._ep_length.copy(),
            "disc_return": self._disc_return.copy(),
            "obs_counted": np.array(self._obs_counted),
        }
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if rms is not None:
                state[name] = {"mean": np.array(rms.mean), "var": np.array(rms.var), "count": np.array(rms.count)}
        return state

    def load_state_dict(self, state: dict[str, Any], *, episodes: bool = True) -> None:
        """Restore normalisation statistics and, with ``episodes``, the episodes in progress.

        ``episodes=False`` keeps the current inner episodes (a fresh reset, when the
        engine could not restore the envs' own state): the saved observation and
        counters belong to episodes those envs no longer run.
        """
        if episodes:
            self._obs = np.asarray(state["obs"]).copy()
            self._ep_return = np.asarray(state["ep_return"], dtype=np.float64).copy()
            self._ep_length = np.asarray(state["ep_length"], dtype=np.int64).copy()
            self._disc_return = np.asarray(state["disc_return"], dtype=np.float64).copy()
            self._obs_counted = bool(state.get("obs_counted", True))
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if rms is not None:
                rms.mean = np.asarray(state[name]["mean"], dtype=np.float64).copy()
                rms.var = np.asarray(state[name]["var"], dtype=np.float64).copy()
                rms.count = float(state[name]["count"])


@functools.cache
def task_spaces(task: str) -> tuple[gym.Space, gym.Space]:
    """Single-env observation and action spaces of ``task`` (builds and closes one env)."""
    envs = make_vector_env(task, 1)
    try:
        return envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()
