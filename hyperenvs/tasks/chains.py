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

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask, lifetime_specs

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
    """``num_envs`` delayed chains in one tensor state (``lifetimes`` groups of them).

    ``spec`` may also be one spec per lifetime (all with one observation kind): each lifetime then has its own
    lengths, noise and index layout, and steps and draws exactly as a lone task of ``spec[j]`` seeded like it.
    """

    groups_lifetimes = True
    row_state = ("length", "correct", "chose_correct", "t")

    def __init__(
        self,
        spec: ChainSpec | Sequence[ChainSpec],
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        record_final: bool = False,
        reuse_obs: bool = False,
        lifetimes: int = 1,
    ) -> None:
        super().__init__(num_envs, device=device, record_final=record_final, reuse_obs=reuse_obs, lifetimes=lifetimes)
        self.specs = _lifetime_specs(spec, self.lifetimes)
        """each lifetime's spec"""
        self.spec = self.specs[0] if len(set(self.specs)) == 1 else None
        """the spec every lifetime runs (None for a task of several)"""
        self.observation = self.specs[0].observation
        self.single_action_space = gym.spaces.Discrete(2)
        if self.observation == "index":
            self.single_observation_space = gym.spaces.Discrete(2 + 4 * max(s.high for s in self.specs))
        else:
            self.single_observation_space = gym.spaces.Box(0.0, 1.0, (2 + NOISE_BITS,), dtype=np.float32)
        b, dev = self.num_envs, self.device

        def rows(values: list[int]) -> torch.Tensor:  # one value per lifetime -> one per row
            return torch.tensor(values, device=dev).repeat_interleave(self.envs_per_lifetime)

        self._low, self._span = rows([s.low for s in self.specs]), rows([s.high - s.low + 1 for s in self.specs])
        self._high = rows([s.high for s in self.specs])
        self._noise = [(1,) if s.noisy else (0,) for s in self.specs]
        """each lifetime's per-row noise draw: one uniform where the chain is noisy, none where it is not"""
        self._noisy = any(s.noisy for s in self.specs)
        self.length = self._low.clone()
        """each instance's chain length, fixed for its lifetime"""
        self.correct = torch.zeros(b, dtype=torch.long, device=dev)
        """this episode's correct first action"""
        self.chose_correct = torch.zeros(b, dtype=torch.bool, device=dev)
        """whether the first action was the correct one"""
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        """steps taken in the current episode"""

    def lifetime_spec(self, j: int) -> ChainSpec:
        return self.specs[j]

    def _new_lifetimes(self, rows: torch.Tensor) -> None:
        if self.spec is not None:
            span = self.spec.high - self.spec.low + 1
            self.length[rows] = self.spec.low + self._integers(span, rows)
            return
        span = self._span[rows]  # _integers' floor(u * span), with each row's own span
        self.length[rows] = self._low[rows] + torch.minimum((self._uniform(rows) * span).long(), span - 1)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        if not rows.numel():  # most steps end no episode: skip the writes (an empty draw takes nothing from a generator)
            return
        self.correct[rows] = self._integers(2, rows)
        self.chose_correct[rows] = False
        self.t[rows] = 0

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first = self.t == 0
        self.chose_correct = torch.where(first, action == self.correct, self.chose_correct)
        self.t = self.t + 1
        terminated = self.t >= self.length
        reward = torch.where(terminated, self.chose_correct.float() * 2.0 - 1.0, 0.0)
        if self._noisy:
            # +-1 from floor(2u); a quiet lifetime of a task of several specs draws nothing (its fill of 2 marks it)
            u = self._uniform_each(None, self._noise, 2.0)[:, 0]
            noise = (u * 2).long().clamp_(max=1).float() * 2.0 - 1.0
            reward = torch.where(terminated | (u > 1.0), reward, noise)
        return reward, terminated, torch.zeros_like(terminated)

    def _observe(self) -> torch.Tensor:
        return self._observe_rows(None)

    def _observe_rows(self, rows: torch.Tensor | None) -> torch.Tensor:
        correct, chose, t = (x if rows is None else x[rows] for x in (self.correct, self.chose_correct, self.t))
        if self.observation == "index":
            branch = 2 * correct + chose.long()
            high = self.spec.high if self.spec is not None else (self._high if rows is None else self._high[rows])
            later = 2 + branch * high + (t - 1)
            return torch.where(t == 0, correct, later)
        bits = self._integers(2, rows, 2 + NOISE_BITS).float()  # the noise of these rows only
        bits[:, 0] = (correct == 0).float()
        bits[:, 1] = (chose & (t > 0)).float()
        return bits


def _lifetime_specs(spec: ChainSpec | Sequence[ChainSpec], lifetimes: int) -> tuple[ChainSpec, ...]:
    """One checked spec per lifetime, all observed alike."""
    specs = lifetime_specs(spec, lifetimes, ChainSpec)
    for one in specs:
        if not 2 <= one.low <= one.high:
            raise ValueError(f"chain lengths need 2 <= low <= high, got low={one.low}, high={one.high}")
        if one.observation not in ("index", "distractor"):
            raise ValueError(f"observation must be 'index' or 'distractor', got {one.observation!r}")
    if len({one.observation for one in specs}) > 1:
        raise ValueError("lifetimes of different chains share a task only with one observation kind")
    return specs


CHAINS = {
    "chain_short": ChainSpec(low=5, high=30),
    "chain_short_noisy": ChainSpec(low=5, high=30, noisy=True),
    "chain_long": ChainSpec(low=5, high=50),
    "chain_long_noisy": ChainSpec(low=5, high=50, noisy=True),
    "chain_distractor": ChainSpec(low=5, high=30, observation="distractor"),
}
"""LPG appendix A.3: task name -> spec"""
