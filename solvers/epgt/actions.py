"""The joint discrete hyper-action and the exploration schedule.

EPGT's hyper-action is one choice in the Cartesian product of per-hyperparameter
bins, which is exactly a HyperRL env's ``MultiDiscrete`` action.  The memory
stores one value per joint action, so joint indices and ``MultiDiscrete``
vectors convert both ways here (row-major: the last hyperparameter varies fastest).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class JointActions:
    """Joint index ``0 .. n-1`` <-> ``MultiDiscrete`` action vector.

    The same mapping as ``hyperenvs.wrappers.JointDiscreteAction``, which is an
    env wrapper; EPGT needs it without wrapping the env (it acts on the
    ``MultiDiscrete`` env as given) and from a saved ``nvec`` alone (``load``).
    """

    def __init__(self, nvec: Any) -> None:
        self.nvec = np.asarray(nvec, dtype=np.int64).reshape(-1)
        if self.nvec.size == 0 or np.any(self.nvec < 1):
            raise ValueError(f"nvec must be a non-empty list of positive bin counts, got {list(self.nvec)}")
        self.n = int(np.prod(self.nvec))

    @classmethod
    def from_space(cls, space: gym.Space) -> JointActions:
        if not isinstance(space, spaces.MultiDiscrete) or space.nvec.ndim != 1:
            raise ValueError(
                f"EPGT needs a 1-D MultiDiscrete action space (make the env with action_type='discrete'), got {space}"
            )
        if np.any(space.start != 0):
            raise ValueError(f"EPGT needs MultiDiscrete bins starting at 0, got start={space.start}")
        return cls(space.nvec)

    def to_action(self, index: int) -> np.ndarray:
        if not 0 <= int(index) < self.n:
            raise ValueError(f"joint action index {index} outside [0, {self.n - 1}]")
        return np.array(np.unravel_index(int(index), self.nvec), dtype=np.int64)

    def to_index(self, action: Any) -> int:
        return int(np.ravel_multi_index(tuple(np.asarray(action, dtype=np.int64)), self.nvec))


def linear_epsilon(timesteps: int, total: int, *, start: float = 1.0, end: float = 0.01, fraction: float = 0.5) -> float:
    """Epsilon falling linearly from ``start`` to ``end`` over the first ``fraction`` of ``total`` env steps."""
    horizon = fraction * total
    if horizon <= 0:
        return end
    progress = min(1.0, max(0.0, timesteps / horizon))
    return start + progress * (end - start)
