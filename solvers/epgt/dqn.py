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

from solvers.base import Callback, RunLog, SolverSpec, StepRecord
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
        self.finished, self.timesteps = False, 0
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
            if self.callback is not None:
                self.callback(record)
            self.finished = terminated or truncated
        self._last = now
        return obs, reward, terminated, truncated, info


class DQNSolver:
    """SB3 DQN trained online, for one lifetime, on a HyperRL env with ``action_type="discrete"``."""

    name = "dqn"
    spec = SolverSpec(action_type="discrete")

    def __init__(self, **dqn_kwargs: Any) -> None:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError as err:
            raise ImportError("the dqn solver needs Stable-Baselines3: pip install 'stable-baselines3>=2.3'") from err
        self.dqn_kwargs = {**DQN_DEFAULTS, **dqn_kwargs}
        self.model = None

    def run(self, env: gym.Env, *, seed: int, callback: Callback | None = None) -> RunLog:
        from stable_baselines3 import DQN
        from stable_baselines3.common.callbacks import BaseCallback

        from hyperenvs.wrappers import JointDiscreteAction, flatten

        log = RunLog(solver=self.name, env_id=env.spec.id if env.spec else type(env).__name__, seed=seed)
        budget = _budget(env)
        recorder = _Recorder(env, log, callback)
        wrapped = flatten(JointDiscreteAction(recorder))

        class _StopAtLifetimeEnd(BaseCallback):
            def _on_step(self) -> bool:
                return not recorder.finished

        self.model = DQN("MlpPolicy", wrapped, seed=seed, verbose=0, device="cpu", **self.dqn_kwargs)
        self.model.exploration_schedule = lambda _progress: linear_epsilon(recorder.timesteps, budget)
        # A hyper-step spends at least one env step, so `budget` hyper-steps is an upper bound; the callback stops earlier.
        self.model.learn(total_timesteps=budget, callback=_StopAtLifetimeEnd())
        return log
