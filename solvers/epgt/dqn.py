"""The paper's DQN baseline: a Stable-Baselines3 DQN as the hyper-agent on the same discrete env.

Black-box like EPGT: it sees the flattened observation (``hyperenvs.flatten``)
and one joint action index (``hyperenvs.wrappers.JointDiscreteAction``).  For a like-for-like
comparison its epsilon follows EPGT's schedule (linear from 1 to 0.01 over the
first half of the lifetime's env steps) instead of SB3's progress-based one.
SB3 is an optional dependency, imported when the solver is built.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

from solvers.base import Callback, RunLog, SolverSpec, StepRecord, StopRun
from solvers.epgt.actions import linear_epsilon
from solvers.epgt.solver import _budget

DQN_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "buffer_size": 10_000,
    "learning_starts": 50,
    "batch_size": 32,
    "train_freq": 1,
    "target_update_interval": 100,
    "gamma": 0.99,
}
"""SB3 DQN settings sized for lifetimes of hundreds to thousands of hyper-steps."""


class _Recorder(gym.Wrapper):
    """Turns each ``env.step`` of the first lifetime into a StepRecord (SB3 drives the loop)."""

    def __init__(self, env: gym.Env, log: RunLog, callback: Callback | None) -> None:
        super().__init__(env)
        self.log, self.callback = log, callback
        self.finished, self.timesteps = False, log.records[-1].timesteps if log.records else 0
        self.stop: StopRun | None = None
        """a stop the callback asked for; raised where SB3 stands between two steps (``_DQN``)"""
        self._last = time.perf_counter()

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.timesteps, self._last = int(info.get("timesteps", 0)), time.perf_counter()
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        now = time.perf_counter()
        if not self.finished:
            self.timesteps = int(info["timesteps"])
            record = StepRecord(
                step=len(self.log),
                timesteps=self.timesteps,
                hyperparameters=dict(info["hyperparameters"]),
                reward=float(reward),
                episode_returns=tuple(float(x) for x in info["episode_returns"]),
                wall_time=now - self._last,  # includes DQN's own training since the last step
                diverged=bool(info.get("diverged", False)),
            )
            self.log.append(record)
            self.finished = terminated or truncated
            if self.callback is not None:
                try:
                    self.callback(record)
                except StopRun as stop:  # SB3 has yet to store this step: stop before its next one
                    stop.log, self.stop = self.log, self.stop or stop
        self._last = now
        return obs, reward, terminated, truncated, info


class DQNSolver:
    """SB3 DQN trained online, for one lifetime, on a HyperRL env with ``action_type="discrete"``.

    ``state_dict`` after a ``StopRun`` holds the whole of SB3's state at that step boundary (networks,
    optimizer, replay buffer, counters, and the global RNGs SB3 draws from), so ``resume`` continues
    the lifetime exactly.
    """

    name = "dqn"
    spec = SolverSpec(action_type="discrete")

    def __init__(self, **dqn_kwargs: Any) -> None:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError as err:
            raise ImportError("the dqn solver needs Stable-Baselines3: pip install 'stable-baselines3>=2.3'") from err
        self.dqn_kwargs = {**DQN_DEFAULTS, **dqn_kwargs}
        self.model = None
        self._loaded: dict[str, Any] | None = None

    def run(self, env: gym.Env, *, seed: int, callback: Callback | None = None) -> RunLog:
        log = RunLog(solver=self.name, env_id=env.spec.id if env.spec else type(env).__name__, seed=seed)
        budget = self._build(env, log, callback)
        # A hyper-step spends at least one env step, so `budget` hyper-steps is an upper bound; the callback stops earlier.
        self.model.learn(total_timesteps=budget, callback=self._until_lifetime_end())
        return log

    def resume(self, env: gym.Env, obs: Any, log: RunLog, *, callback: Callback | None = None) -> RunLog:
        """Continue the lifetime of ``log`` on the restored ``env``, after ``load_state_dict``."""
        if self._loaded is None:
            raise ValueError("load_state_dict first: resume continues the state it loaded")
        budget = self._build(env, log, callback)
        _load_model(self.model, self._loaded)
        self.model.env.envs[0].needs_reset = False  # SB3's Monitor: the lifetime is restored, not reset
        remaining = budget - self.model.num_timesteps
        self.model.learn(total_timesteps=remaining, callback=self._until_lifetime_end(), reset_num_timesteps=False)
        return log

    def _build(self, env: gym.Env, log: RunLog, callback: Callback | None) -> int:
        from stable_baselines3 import DQN

        from hyperenvs.wrappers import JointDiscreteAction, flatten

        budget = _budget(env)
        self._recorder = recorder = _Recorder(env, log, callback)

        class _DQN(DQN):
            def collect_rollouts(self, *args: Any, **kwargs: Any) -> Any:
                if recorder.stop is not None:  # the last step is stored and trained on: a clean boundary
                    raise recorder.stop
                return super().collect_rollouts(*args, **kwargs)

        wrapped = flatten(JointDiscreteAction(recorder))
        self.model = _DQN("MlpPolicy", wrapped, seed=log.seed, verbose=0, device="cpu", **self.dqn_kwargs)
        self.model.exploration_schedule = lambda _progress: linear_epsilon(recorder.timesteps, budget)
        return budget

    def _until_lifetime_end(self) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        recorder = self._recorder

        class _StopAtLifetimeEnd(BaseCallback):
            def _on_step(self) -> bool:
                return not recorder.finished

        return _StopAtLifetimeEnd()

    def state_dict(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("nothing to save yet: the solver has not seen an env (call run first)")
        return _model_state(self.model)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = dict(state)


_COUNTERS = ("num_timesteps", "_n_calls", "_n_updates", "_episode_num", "exploration_rate")
_BUFFER = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _model_state(model: Any) -> dict[str, Any]:
    """Plain tensors and numbers: SB3's ``save`` pickles objects, which ``weights_only`` loading refuses."""
    import random

    import numpy as np
    import torch

    buffer = model.replay_buffer
    filled = buffer.buffer_size if buffer.full else buffer.pos
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "policy": model.policy.state_dict(),
        "optimizer": model.policy.optimizer.state_dict(),
        "buffer": {k: torch.from_numpy(getattr(buffer, k)[:filled].copy()) for k in _BUFFER},
        "buffer_pos": buffer.pos,
        "buffer_full": buffer.full,
        "counters": {k: getattr(model, k) for k in _COUNTERS},
        "last_obs": torch.from_numpy(model._last_obs.copy()),
        "last_episode_starts": torch.from_numpy(model._last_episode_starts.copy()),
        "rng_torch": torch.get_rng_state(),
        "rng_numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "rng_python": random.getstate(),
        "rng_action_space": model.action_space.np_random.bit_generator.state,
    }


def _load_model(model: Any, state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    buffer = model.replay_buffer
    for key, value in state["buffer"].items():
        getattr(buffer, key)[: len(value)] = value.numpy()
    buffer.pos, buffer.full = int(state["buffer_pos"]), bool(state["buffer_full"])
    for key, value in state["counters"].items():
        setattr(model, key, value)
    model._last_obs = state["last_obs"].numpy().copy()
    model._last_episode_starts = state["last_episode_starts"].numpy().copy()
    torch.set_rng_state(state["rng_torch"])
    name, keys, pos, has_gauss, gauss = state["rng_numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["rng_python"])
    model.action_space.np_random.bit_generator.state = state["rng_action_space"]
