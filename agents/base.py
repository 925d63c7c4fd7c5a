"""The Learner protocol and the records a learner exchanges with the world.

A learner is three replaceable parts -- a collector that fills a `Batch`, an
objective ``loss(params, batch, meta) -> (loss, metrics)`` and a functional
update rule -- plus the bookkeeping that makes one training run resumable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

Params = dict[str, torch.Tensor]
"""Network parameters by name; the single source of truth for the weights."""


@dataclass(frozen=True, kw_only=True)
class Batch:
    """Time-major trajectories from one collection phase, all ``[T, B, ...]``."""

    obs: torch.Tensor
    """observations the actions were chosen from, ``[T, B, *obs_shape]``"""
    actions: torch.Tensor
    """actions taken (before clipping to the action space), ``[T, B, *act_shape]``"""
    log_probs: torch.Tensor
    """log-probability of each action under the behaviour policy, ``[T, B]``"""
    values: torch.Tensor
    """critic's value of each observation at collection time, ``[T, B]``"""
    rewards: torch.Tensor
    """rewards as the learner sees them (scaled; truncations bootstrapped), ``[T, B]``"""
    discounts: torch.Tensor
    """0 where the episode ended at this step, else 1, ``[T, B]``"""
    bootstrap_value: torch.Tensor
    """critic's value of the observation after the last step, ``[B]``"""

    def __post_init__(self) -> None:
        t, b = self.log_probs.shape
        for name in ("actions", "values", "rewards", "discounts", "obs"):
            shape = getattr(self, name).shape
            if tuple(shape[:2]) != (t, b):
                raise ValueError(f"Batch.{name} has shape {tuple(shape)}, expected [{t}, {b}, ...]")
        if tuple(self.bootstrap_value.shape) != (b,):
            raise ValueError(f"Batch.bootstrap_value has shape {tuple(self.bootstrap_value.shape)}, expected [{b}]")

    @property
    def num_steps(self) -> int:
        return int(self.log_probs.shape[0] * self.log_probs.shape[1])


@dataclass(frozen=True, kw_only=True)
class IterationReport:
    """What one ``learner.iterate(hparams)`` did: metrics only, no tensors."""

    timesteps: int
    """environment steps taken by the learner since its creation"""
    env_steps: int
    """environment steps taken during this iteration"""
    episode_returns: tuple[float, ...] = ()
    """undiscounted, unscaled returns of the episodes that ended in this iteration"""
    episode_lengths: tuple[int, ...] = ()
    """lengths of the episodes that ended in this iteration"""
    losses: Mapping[str, float] = field(default_factory=dict)
    """mean loss terms over the update (e.g. ``policy``, ``value``, ``entropy``)"""
    stats: Mapping[str, float] = field(default_factory=dict)
    """update statistics (``approx_kl``, ``clip_fraction``, ``explained_variance``, ``grad_norm``)"""
    diverged: bool = False
    """True when the update produced a non-finite loss or parameter"""
    wall_time: float = 0.0
    """seconds spent in this iteration"""
    rollout_return: float = float("nan")
    """EPGT's Eq. 1 hyper-reward G: mean over inner envs of ``sum_{t<T} gamma^t r[t, b]`` over this iteration's
    rollout (``agents.returns.rollout_return``): the env's own rewards (before scaling, normalisation or sign
    clipping, no truncation bootstrap), not bootstrapped, episode ends inside the window not treated specially;
    gamma is the iteration's; NaN where the learner does not measure it"""


@runtime_checkable
class Learner(Protocol):
    """What every inner learner offers to hyper-environments and solvers."""

    device: torch.device
    timesteps: int
    diverged: bool
    uses_vector_env: bool
    """whether the learner collects from the ``envs`` vector env the hyper-env builds and passes in
    (False for ES, which runs its population in its own backend, so none is built)"""

    def iterate(self, hparams: Mapping[str, float] | None = None) -> IterationReport:
        """Collect one batch, then update with these hyperparameters."""

    def parameters(self) -> Params:
        """The current parameters by name (live tensors: do not modify)."""

    def gradient_history(self) -> list[Params]:
        """The most recent update gradients, newest first (after clipping)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit-for-bit (tensors and numbers only)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def evaluate(self, episodes: int) -> list[float]:
        """Returns of ``episodes`` episodes with the deterministic policy, on separate envs."""

    def close(self) -> None:
        """Release the inner environments."""
