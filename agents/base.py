"""The Learner protocol and the records a learner exchanges with the world.

A learner is three replaceable parts -- a collector that fills a `Batch`, an
objective ``loss(params, batch, hparams, meta) -> (loss, metrics)`` and an
update rule (``agents.optim.UpdateRule``) -- met in
``train_step(params, opt_state, batch, hparams, meta)``, plus the bookkeeping
that makes one training run resumable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

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
    bootstrap_obs: torch.Tensor | None = None
    """the (normalised) observation after the last step, ``[B, *obs_shape]``: objectives that
    re-evaluate the critic with the parameters being trained (V-trace) bootstrap from it"""
    advantages: torch.Tensor | None = None
    """precomputed advantage targets ``[T, B]``, or None (the objective computes its own).  Set only by
    a learner's schedule that cuts a batch into shuffled minibatches (PPO): the targets need the
    whole time axis, so they are computed once on the full batch, by the objective's own target
    function (differentiable in gamma and lambda), and each minibatch carries its rows of them as a
    ``T = 1`` batch (``Batch.rows``)"""
    returns: torch.Tensor | None = None
    """precomputed value targets ``[T, B]``, set together with ``advantages``"""

    def __post_init__(self) -> None:
        t, b = self.log_probs.shape
        for name in ("actions", "values", "rewards", "discounts", "obs", "advantages", "returns"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape[:2]) != (t, b):
                raise ValueError(f"Batch.{name} has shape {tuple(value.shape)}, expected [{t}, {b}, ...]")
        if tuple(self.bootstrap_value.shape) != (b,):
            raise ValueError(f"Batch.bootstrap_value has shape {tuple(self.bootstrap_value.shape)}, expected [{b}]")
        if self.bootstrap_obs is not None and tuple(self.bootstrap_obs.shape) != (b, *self.obs.shape[2:]):
            raise ValueError(f"Batch.bootstrap_obs has shape {tuple(self.bootstrap_obs.shape)}, expected [{b}, *obs_shape]")
        if (self.advantages is None) != (self.returns is None):
            raise ValueError("Batch.advantages and Batch.returns are set together or not at all")

    @property
    def num_steps(self) -> int:
        return int(self.log_probs.shape[0] * self.log_probs.shape[1])

    def with_targets(self, advantages: torch.Tensor, returns: torch.Tensor) -> Batch:
        """This batch carrying precomputed ``[T, B]`` targets."""
        return dataclasses.replace(self, advantages=advantages, returns=returns)

    def flat(self) -> Batch:
        """All ``T x B`` transitions as one row, ``[1, T*B]`` (the time order is gone: targets must be set)."""
        if self.advantages is None:
            raise ValueError("Batch.flat needs precomputed targets (with_targets): a flattened batch has no time axis")
        n = self.num_steps
        fields = {k: getattr(self, k) for k in _STEP_FIELDS}
        flat = {k: v.reshape(1, n, *v.shape[2:]) for k, v in fields.items() if v is not None}
        return Batch(**flat, bootstrap_value=self.bootstrap_value.new_zeros(n))

    def rows(self, index: torch.Tensor | slice) -> Batch:
        """The transitions ``index`` of a ``flat()`` batch (a minibatch), again ``[1, M]``."""
        if self.log_probs.shape[0] != 1:
            raise ValueError(f"Batch.rows takes a flat [1, N] batch, got T = {self.log_probs.shape[0]}")
        fields = {k: getattr(self, k) for k in _STEP_FIELDS}
        picked = {k: v[:, index] for k, v in fields.items() if v is not None}
        return Batch(**picked, bootstrap_value=self.bootstrap_value[index])

    def columns(self, index: torch.Tensor) -> Batch:
        """The whole trajectories of environments ``index`` (a minibatch of sequences), ``[T, len(index), ...]``."""
        fields = {k: getattr(self, k) for k in _STEP_FIELDS}
        picked = {k: v[:, index] for k, v in fields.items() if v is not None}
        boot = None if self.bootstrap_obs is None else self.bootstrap_obs[index]
        return Batch(**picked, bootstrap_value=self.bootstrap_value[index], bootstrap_obs=boot)


_STEP_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "discounts", "advantages", "returns")
"""The ``[T, B, ...]`` fields of a Batch."""


class LastUpdate(NamedTuple):
    """The inputs of a learner's most recent ``train_step`` inside ``iterate`` (white-box access).

    A metagradient solver replays that update through ``agents.unroll`` with its own
    metaparameters, instead of reading the learner's internals.
    """

    params: Params
    """parameters before the update (detached)"""
    opt_state: dict[str, Any]
    """update-rule state before the update"""
    batch: Batch
    """the batch it trained on"""
    hparams: Mapping[str, Any]
    """its hyperparameters, as ``train_step`` took them"""
    meta: Mapping[str, Any] | None
    """its ``meta`` (None: derived from ``hparams``)"""


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
    """True when the update produced a non-finite loss or parameter, or the parameters left their bound"""
    divergence: str = ""
    """why the learner diverged (empty when it did not)"""
    wall_time: float = 0.0
    """seconds spent in this iteration"""
    rollout_return: float = float("nan")
    """EPGT's Eq. 1 hyper-reward G: the mean over inner envs of ``sum_{t<T} gamma^t r_raw[t, b]`` over this
    iteration's rollout, with the env's own rewards (before scaling, normalisation, sign-clipping and
    truncation bootstrapping) and the iteration's gamma; not bootstrapped, episode ends inside the window
    not treated specially (``agents.returns.rollout_return``).  ES has no rollout of that kind: there it
    is the undiscounted return of the unperturbed centre policy's episode, run with the population.
    NaN where a learner does not fill it"""


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
