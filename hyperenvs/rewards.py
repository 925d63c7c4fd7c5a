"""Hyper-reward functions: how a hyper-step's training outcome becomes a reward.

Each reward sees the returns of inner episodes that ended during the step and
the lifetime's recent mean return; all are finite.  A reward's state is a dict
of floats (``state_dict``), so a lifetime's snapshot saves as plain tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MeanReturn:
    """Mean return of the episodes finished during the step (default).

    A step in which no episode ended repeats the lifetime's recent mean
    return (0 before the first episode), so long episodes give no spurious
    zeros.
    """

    name = "mean_return"

    def reset(self) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        pass

    def __call__(self, returns: Sequence[float], recent: float, done: bool) -> float:
        return float(np.mean(returns)) if len(returns) else recent


class Improvement:
    """Change of the mean return against the previous step (dense, sums to the net gain)."""

    name = "improvement"

    def __init__(self) -> None:
        self._mean = MeanReturn()
        self._last = 0.0

    def reset(self) -> None:
        self._last = 0.0

    def state_dict(self) -> dict[str, float]:
        return {"last": self._last}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self._last = float(state["last"])

    def __call__(self, returns: Sequence[float], recent: float, done: bool) -> float:
        current = self._mean(returns, recent, done)
        delta, self._last = current - self._last, current
        return delta


class FinalReturn(MeanReturn):
    """Sparse: 0 until the lifetime ends, then its recent mean return."""

    name = "final_return"

    def __call__(self, returns: Sequence[float], recent: float, done: bool) -> float:
        return recent if done else 0.0


REWARDS = {cls.name: cls for cls in (MeanReturn, Improvement, FinalReturn)}
"""Hyper-reward functions by name."""


def make_reward(name: str):
    if name not in REWARDS:
        raise ValueError(f"reward must be one of {sorted(REWARDS)}, got {name!r}")
    return REWARDS[name]()
