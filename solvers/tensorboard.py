"""TensorBoard scalars of a lifetime, one point per hyper-step, named as the env's ``info`` names them.

Tags: ``return`` (mean of the last 10 inner episodes), ``reward`` (the hyper-reward),
``hyperparameters/<name>``, ``losses/<name>``, ``stats/<name>`` and ``wall_time``;
the x axis is ``timesteps`` (inner env steps).  Needs the ``tensorboard`` package
(in the ``distributed`` extra); it is imported only when a writer is made.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

RECENT = 10
"""inner episodes the ``return`` scalar averages, as RunLog.returns does"""


def summary_writer(logdir: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``logdir``, or a ValueError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError("--tensorboard needs the tensorboard package: pip install 'hyperrl[distributed]'") from err
    return SummaryWriter(log_dir=str(logdir))


class StepScalars:
    """Writes one hyper-step's scalars; keeps the recent episode returns that ``return`` averages."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.recent: deque[float] = deque(maxlen=RECENT)

    def reset(self) -> None:
        """A new lifetime: forget the returns of the last one."""
        self.recent.clear()

    def restart_from(self, returns: list[float]) -> None:
        """The lifetime continues another's (PBT's exploit): its recent returns are the ones to average."""
        self.recent = deque(returns[-RECENT:], maxlen=RECENT)

    def write(self, reward: float, info: Mapping[str, Any], wall_time: float) -> None:
        step = int(info["timesteps"])
        self.recent.extend(float(x) for x in info.get("episode_returns", ()))
        if self.recent:
            self.writer.add_scalar("return", float(np.mean(self.recent)), step)
        self.writer.add_scalar("reward", float(reward), step)
        for group in ("hyperparameters", "losses", "stats"):
            for name, value in info.get(group, {}).items():
                self.writer.add_scalar(f"{group}/{name}", float(value), step)
        if np.isfinite(wall_time):  # absent when the env was made with timing=False
            self.writer.add_scalar("wall_time", float(wall_time), step)
        self.writer.flush()  # once a hyper-step: a killed worker loses nothing written

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class TensorBoardLogger(gym.Wrapper):
    """Any solver's run on the wrapped env writes its per-hyper-step scalars to ``logdir``."""

    def __init__(self, env: gym.Env, logdir: str | Path) -> None:
        super().__init__(env)
        self.scalars = StepScalars(summary_writer(logdir))

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.scalars.reset()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.scalars.write(float(reward), info, float(info.get("wall_time", float("nan"))))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.scalars.close()
        super().close()
