"""LPG's delayed chain MDPs (Oh et al. 2020, appendix A.3), batched.

Two actions.  Each episode one of two chain MDPs is drawn: in MDP ``m`` action
``m`` is the correct first action.  The first action decides the reward at the
end: +1 if it was correct, else -1, given on the last of ``L`` steps, after
which the episode terminates.  ``L`` is drawn uniformly from the whole range
``[low, high]`` once per lifetime (per instance, at a seeded reset).  Later
actions do not matter.  Noisy variants add a reward of +1 or -1 (equally
likely, independent of the actions) on every step into a middle state of the
chain (steps 1 .. L - 1).

Observations.  ``"index"``: every state is distinct, so the state index tells
the MDP ``m``, whether the first action was correct ``c`` and the step ``t``:
``m`` before the first action, ``2 + (2 m + c) * high + (t - 1)`` after it
(``Discrete(2 + 4 high)``, the same for every chain length).  ``"distractor"``:
22 bits, bit 0 = (action 0 is the correct one), bit 1 = (the agent chose the
correct first action; 0 before it acts), and 20 bits drawn uniformly afresh at
every observation that carry nothing (so ``record_final``, which observes once
more per step, draws from the generator too: compare runs with the same setting).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask

NOISE_BITS = 20


@dataclass(frozen=True, kw_only=True)
class ChainSpec:
    """One delayed chain variant."""

    low: int
    """shortest chain length (inclusive)"""
    high: int
    """longest chain length (inclusive)"""
    noisy: bool = False
    """add +-1 rewards on the middle steps"""
    observation: str = "index"
    """``"index"`` (tabular state) or ``"distractor"`` ({0, 1}^22)"""


class DelayedChain(BatchedTask):
    """``num_envs`` delayed chains in one tensor state."""

    groups_lifetimes = True
    row_state = ("length", "correct", "chose_correct", "t")

    def __init__(
        self,
        spec: ChainSpec,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        record_final: bool = False,
        reuse_obs: bool = False,
        lifetimes: int = 1,
    ) -> None:
        super().__init__(num_envs, device=device, record_final=record_final, reuse_obs=reuse_obs, lifetimes=lifetimes)
        if not 2 <= spec.low <= spec.high:
            raise ValueError(f"chain lengths need 2 <= low <= high, got low={spec.low}, high={spec.high}")
        if spec.observation not in ("index", "distractor"):
            raise ValueError(f"observation must be 'index' or 'distractor', got {spec.observation!r}")
        self.spec = spec
        self.single_action_space = gym.spaces.Discrete(2)
        if spec.observation == "index":
            self.single_observation_space = gym.spaces.Discrete(2 + 4 * spec.high)
        else:
            self.single_observation_space = gym.spaces.Box(0.0, 1.0, (2 + NOISE_BITS,), dtype=np.float32)
        b, dev = self.num_envs, self.device
        self.length = torch.full((b,), spec.low, dtype=torch.long, device=dev)
        """each instance's chain length, fixed for its lifetime"""
        self.correct = torch.zeros(b, dtype=torch.long, device=dev)
        """this episode's correct first action"""
        self.chose_correct = torch.zeros(b, dtype=torch.bool, device=dev)
        """whether the first action was the correct one"""
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        """steps taken in the current episode"""

    def _new_lifetimes(self, rows: torch.Tensor) -> None:
        span = self.spec.high - self.spec.low + 1
        self.length[rows] = self.spec.low + self._integers(span, rows)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        self.correct[rows] = self._integers(2, rows)
        self.chose_correct[rows] = False
        self.t[rows] = 0

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first = self.t == 0
        self.chose_correct = torch.where(first, action == self.correct, self.chose_correct)
        self.t = self.t + 1
        terminated = self.t >= self.length
        reward = torch.where(terminated, self.chose_correct.float() * 2.0 - 1.0, 0.0)
        if self.spec.noisy:
            noise = self._integers(2, None).float() * 2.0 - 1.0
            reward = torch.where(terminated, reward, noise)
        return reward, terminated, torch.zeros_like(terminated)

    def _observe(self) -> torch.Tensor:
        return self._observe_rows(None)

    def _observe_rows(self, rows: torch.Tensor | None) -> torch.Tensor:
        correct, chose, t = (x if rows is None else x[rows] for x in (self.correct, self.chose_correct, self.t))
        if self.spec.observation == "index":
            branch = 2 * correct + chose.long()
            later = 2 + branch * self.spec.high + (t - 1)
            return torch.where(t == 0, correct, later)
        bits = self._integers(2, rows, 2 + NOISE_BITS).float()  # the noise of these rows only
        bits[:, 0] = (correct == 0).float()
        bits[:, 1] = (chose & (t > 0)).float()
        return bits


CHAINS = {
    "chain_short": ChainSpec(low=5, high=30),
    "chain_short_noisy": ChainSpec(low=5, high=30, noisy=True),
    "chain_long": ChainSpec(low=5, high=50),
    "chain_long_noisy": ChainSpec(low=5, high=50, noisy=True),
    "chain_distractor": ChainSpec(low=5, high=30, observation="distractor"),
}
"""LPG appendix A.3: task name -> spec"""
