"""IMPALA (Espeholt et al., 2018): actor-critic with (leaky) V-trace and a lagging behaviour policy.

Actors produce unrolls of ``num_steps`` (20) steps with a behaviour policy
``mu`` that lags the learner's ``pi``; the learner corrects with V-trace.  Two
ways to get that lag:

- synchronous (default, reproducible): the learner collects itself, with the
  parameters of ``policy_lag`` updates ago (a small deque);
- asynchronous (``asynchronous=True``): ``num_actors`` processes
  (``torch.multiprocessing``) collect with the latest published parameters
  and feed unrolls through a bounded queue; the lag is whatever it is.

The objective is pure, ``loss(params, batch, meta) -> (loss, metrics)`` with
``meta = {gamma, lambda, g_v, g_p, g_e, alpha}`` (floats or tensors,
differentiable in all of them), the actor-critic loss of STAC's Eq. 3/5 with
leaky V-trace (Eq. 8).  The network optionally carries auxiliary policy/value
heads on a shared torso (STACX); only head 0 acts; the loss sums the heads'
losses, each with its own metaparameters (a meta value of shape ``[H]``
gives one per head, a scalar is shared).
"""

from __future__ import annotations

import math
import os
import queue as queue_lib
import time
import traceback
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from agents.actor_critic import ActorCriticConfig, ActorCriticLearner, _clone
from agents.base import Batch, IterationReport, Params
from agents.hparams import declare, hyperparameter
from agents.networks import (
    _ACTIVATIONS,
    init_mlp,
    init_nature_cnn,
    log_prob,
    mlp,
    mlp_shapes,
    nature_cnn,
    nature_cnn_shapes,
)
from agents.optim import clip_grad_norm
from agents.rollout import Collector, Episode, make_vector_env
from agents.vtrace import VTraceReturns, leaky_vtrace

IMPALA_METRICS = ("policy", "value", "entropy")
META_KEYS = ("gamma", "lambda", "g_v", "g_p", "g_e", "alpha")
"""The metaparameters of the objective (STAC's eta), in this order."""


@declare
@dataclass(frozen=True, kw_only=True)
class IMPALAHyperparams:
    """What a hyper-agent may change between IMPALA updates (STAC's eta, plus lr and clipping)."""

    lr: float = hyperparameter(
        6e-4,
        low=1e-5,
        high=1e-2,
        log=True,
        multipliers=tuple(2.5 ** (k / 2) for k in range(-2, 3)),  # 0.4 .. 2.5, as EPGT's A2C bins
        doc="RMSProp step size (IMPALA's Atari value)",
    )
    # gamma's and g_v's bins are STAC's robustness grids (Zahavy et al., 2020, Fig. 6-7).
    gamma: float = hyperparameter(
        0.99, low=0.8, high=0.9999, bins=(0.9, 0.95, 0.99, 0.995, 0.999), doc="discount factor (STAC uses 0.995 on Atari)"
    )
    lambda_: float = hyperparameter(
        1.0, low=0.0, high=1.0, bins=(0.5, 0.8, 0.9, 0.95, 1.0), doc="V-trace trace coefficient lambda (1 in IMPALA)"
    )
    g_v: float = hyperparameter(
        0.5,
        low=0.0,
        high=2.0,
        bins=(0.05, 0.15, 0.5, 1.0, 2.0),
        doc="value-loss weight (IMPALA's baseline cost) on 0.5 (v_s - V(x_s))^2",
    )
    g_p: float = hyperparameter(1.0, low=0.0, high=2.0, bins=(0.25, 0.5, 1.0, 1.5, 2.0), doc="policy-gradient loss weight")
    g_e: float = hyperparameter(0.01, low=0.0, high=0.1, bins=(0.0, 0.005, 0.01, 0.02, 0.05), doc="entropy bonus weight")
    alpha: float = hyperparameter(
        1.0, low=0.0, high=1.0, bins=(0.0, 0.25, 0.5, 0.75, 1.0), doc="leaky V-trace alpha: 1 is V-trace, 0 importance sampling"
    )
    max_grad_norm: float = hyperparameter(
        40.0, low=0.1, high=100.0, log=True, multipliers=(0.5, 1, 2), doc="global gradient-norm clip (IMPALA's 40)"
    )

    def meta(self) -> dict[str, float]:
        """The objective's ``meta`` dict."""
        return {
            "gamma": self.gamma, "lambda": self.lambda_, "g_v": self.g_v,
            "g_p": self.g_p, "g_e": self.g_e, "alpha": self.alpha,
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class IMPALANetwork:
    """A shared torso (MLP, or the Nature CNN for images) and ``heads`` policy/value heads.

    ``forward`` is head 0, the acting head: ``(logits [N, A], value [N])``;
    ``forward_heads`` gives every head, ``([H, N, A], [H, N])``.
    """

    obs_dim: int
    """flat observation size (vector observations)"""
    action_dim: int
    """number of discrete actions"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden widths of the torso MLP (vector observations)"""
    activation: str = "tanh"
    """hidden activation of the MLPs"""
    cnn_channels: int = 0
    """stacked frames of an image observation; 0 means vector observations"""
    heads: int = 1
    """policy/value heads: 1 for IMPALA and STAC, 3 for STACX"""
    head_hidden: tuple[int, ...] = ()
    """hidden widths inside each head (STACX uses a small MLP per head; () is linear)"""
    discrete: bool = True
    """IMPALA here is for discrete actions"""

    @property
    def features(self) -> int:
        """Width of the torso's output that every head reads: 512 after the CNN, else the last hidden width."""
        return 512 if self.cnn_channels else (self.hidden[-1] if self.hidden else self.obs_dim)

    def _head_sizes(self, out: int) -> list[int]:
        return [self.features, *self.head_hidden, out]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape by name (``torso.*``, ``head{h}.policy.*``, ``head{h}.value.*``), as ``init`` builds them."""
        if self.cnn_channels:
            shapes = nature_cnn_shapes("torso", self.cnn_channels)
        else:
            shapes = mlp_shapes("torso", [self.obs_dim, *self.hidden])
        for h in range(self.heads):
            shapes |= mlp_shapes(f"head{h}.policy", self._head_sizes(self.action_dim))
            shapes |= mlp_shapes(f"head{h}.value", self._head_sizes(1))
        return shapes

    def init(self, generator: torch.Generator) -> Params:
        """Fresh parameters from ``generator``: orthogonal weights, zero biases; gain sqrt 2 in the torso and
        the heads' hidden layers, 0.01 on the policy outputs (a near-uniform first policy), 1 on the values."""
        if self.cnn_channels:
            params = init_nature_cnn("torso", self.cnn_channels, generator)
        else:
            params = init_mlp("torso", [self.obs_dim, *self.hidden], math.sqrt(2.0), generator) if self.hidden else {}
        for h in range(self.heads):
            params |= init_mlp(f"head{h}.policy", self._head_sizes(self.action_dim), 0.01, generator)
            params |= init_mlp(f"head{h}.value", self._head_sizes(1), 1.0, generator)
        return params

    def torso(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        if self.cnn_channels:
            return nature_cnn(params, "torso", obs)
        x = obs.flatten(1)
        x = x if x.is_floating_point() else x.float()
        return _ACTIVATIONS[self.activation](mlp(params, "torso", x, len(self.hidden), self.activation)) if self.hidden else x

    def _head(self, params: Params, name: str, features: torch.Tensor) -> torch.Tensor:
        act = "relu" if self.cnn_channels else self.activation
        return mlp(params, name, features, len(self.head_hidden) + 1, act)

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso(params, obs)
        return self._head(params, "head0.policy", features), self._head(params, "head0.value", features).squeeze(-1)

    def forward_heads(self, params: Params, obs: torch.Tensor, heads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``heads`` heads (all when None): ``([heads, N, A], [heads, N])``."""
        features = self.torso(params, obs)
        chosen = range(self.heads if heads is None else heads)
        logits = [self._head(params, f"head{h}.policy", features) for h in chosen]
        values = [self._head(params, f"head{h}.value", features).squeeze(-1) for h in chosen]
        return torch.stack(logits), torch.stack(values)

    def value(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        return self._head(params, "head0.value", self.torso(params, obs)).squeeze(-1)


def head_meta(meta: Mapping[str, Any], h: int) -> dict[str, Any]:
    """Head ``h``'s metaparameters: entry ``h`` of a ``[H]`` tensor, or the shared scalar."""
    return {k: v[h] if isinstance(v, torch.Tensor) and v.dim() == 1 else v for k, v in meta.items()}


class IMPALAObjective:
    """``loss(params, batch, meta) -> (loss, metrics)``: paper Eq. 3/5 with leaky V-trace, summed over heads.

    ``batch`` holds time-major ``obs [T, B, ...]``, ``actions``, ``behaviour_log_probs``,
    ``rewards``, ``discounts`` (continuation flags) ``[T, B]`` and ``bootstrap_obs [B, ...]``.
    ``meta`` holds ``META_KEYS``; ``metrics`` is head 0's ``IMPALA_METRICS``, detached.
    The value term is ``g_v 0.5 (v_s - V)^2``, means over ``T x B``.
    """

    def __init__(self, network: IMPALANetwork, *, clip_rho: float = 1.0, clip_c: float = 1.0, clip_pg_rho: float = 1.0):
        self.network = network
        self.clips = {"clip_rho_threshold": clip_rho, "clip_c_threshold": clip_c, "clip_pg_rho_threshold": clip_pg_rho}

    def forward(
        self, params: Params, batch: Mapping[str, torch.Tensor], heads: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first ``heads`` heads (all when None) on the unroll and its bootstrap observation:
        logits ``[H, T, B, A]``, values ``[H, T, B]``, bootstrap values ``[H, B]``."""
        obs = batch["obs"]
        t, b = obs.shape[:2]
        logits, values = self.network.forward_heads(params, torch.cat([obs.flatten(0, 1), batch["bootstrap_obs"]]), heads)
        h = logits.shape[0]
        return logits[:, : t * b].reshape(h, t, b, -1), values[:, : t * b].reshape(h, t, b), values[:, t * b :]

    def targets(
        self,
        logp: torch.Tensor,
        values: torch.Tensor,
        bootstrap: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        meta: Mapping[str, Any],
    ) -> VTraceReturns:
        """Leaky V-trace targets of one head from its log-probabilities of the taken actions and values."""
        return leaky_vtrace(
            values,
            torch.cat([values[1:], bootstrap.unsqueeze(0)]),
            batch["rewards"],
            batch["discounts"] * meta["gamma"],
            logp - batch["behaviour_log_probs"],
            lambda_=meta["lambda"],
            alpha=meta["alpha"],
            **self.clips,
        )

    def head_loss(
        self,
        logits: torch.Tensor,
        values: torch.Tensor,
        bootstrap: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        meta: Mapping[str, Any],
        returns: VTraceReturns | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One head's loss from its ``[T, B, A]`` logits, ``[T, B]`` values and ``[B]`` bootstrap values.

        ``returns``: precomputed targets to use instead (they carry no gradient into the
        parameters anyway; fixing them turns the pseudo-loss into a plain function).
        """
        policy, value, ent = self._terms(logits, values, bootstrap, batch, meta, returns)
        policy_loss, value_loss, ent = policy.mean(), value.mean(), ent.mean()
        loss = meta["g_p"] * policy_loss + meta["g_v"] * value_loss - meta["g_e"] * ent
        return loss, torch.stack([policy_loss, value_loss, ent]).detach()

    def _terms(self, logits, values, bootstrap, batch, meta, returns=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-step policy, value and entropy terms, ``[T, B]`` each."""
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, batch["actions"].long().unsqueeze(-1)).squeeze(-1)
        if returns is None:
            returns = self.targets(logp, values, bootstrap, batch, meta)
        return -logp * returns.pg_advantages, 0.5 * (returns.vs - values).square(), -(logp_all.exp() * logp_all).sum(-1)

    def __call__(
        self, params: Params, batch: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss_of(self.forward(params, batch), batch, meta)

    def loss_of(
        self,
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        meta: Mapping[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss from ``forward``'s outputs (a learner that keeps them calls the two halves itself)."""
        logits, values, bootstrap = outputs
        heads, t, b = values.shape
        if heads == 1:
            return self.head_loss(logits[0], values[0], bootstrap[0], batch, head_meta(meta, 0))

        # All heads in one pass: head h's unroll becomes columns h*B .. h*B + B - 1 (one V-trace scan, not H).
        def wide(x: torch.Tensor) -> torch.Tensor:  # [H, T, B, ...] -> [T, H*B, ...]
            return x.movedim(0, 1).reshape(t, heads * b, *x.shape[3:])

        columns = {k: batch[k].repeat(1, heads) for k in ("actions", "behaviour_log_probs", "rewards", "discounts")}
        per_column = {k: v.repeat_interleave(b) if isinstance(v, torch.Tensor) and v.dim() == 1 else v for k, v in meta.items()}
        terms = self._terms(wide(logits), wide(values), bootstrap.reshape(heads * b), columns, per_column)
        policy, value, ent = (x.reshape(t, heads, b).mean((0, 2)) for x in terms)  # per head, [H]

        def weight(key: str) -> torch.Tensor | float:
            v = meta[key]
            per_head = isinstance(v, torch.Tensor) and v.dim() == 1
            return v if per_head else torch.ones(heads, dtype=value.dtype, device=value.device) * v

        loss = (weight("g_p") * policy + weight("g_v") * value - weight("g_e") * ent).sum()
        return loss, torch.stack([policy[0], value[0], ent[0]]).detach()


@dataclass(frozen=True, kw_only=True)
class IMPALAConfig(ActorCriticConfig):
    """Structure of an IMPALA learner; defaults follow Espeholt et al. (2018) at a small scale."""

    num_envs: int = 8
    """environments per unroll (per actor process in asynchronous mode)"""
    num_steps: int = 20
    """unroll length"""
    optimizer: str = "rmsprop"
    """update rule: ``rmsprop`` (IMPALA), ``adam`` or ``sgd``"""
    policy_lag: int = 1
    """synchronous mode: collect with the parameters of this many updates ago (0 is on-policy)"""
    asynchronous: bool = False
    """collect in ``num_actors`` actor processes instead (not reproducible)"""
    num_actors: int = 2
    """actor processes in asynchronous mode"""
    queue_size: int = 2
    """unrolls that may wait in the queue (bounds the lag in asynchronous mode)"""
    start_method: str = "spawn"
    """multiprocessing start method of the actors"""
    actor_timeout: float = 120.0
    """seconds the learner waits for an unroll before it gives up with an error"""
    aux_heads: int = 0
    """auxiliary policy/value heads (STACX uses 2); only head 0 acts"""
    head_hidden: tuple[int, ...] = ()
    """hidden widths inside each head"""
    clip_rho: float = 1.0
    """V-trace's rho-bar"""
    clip_c: float = 1.0
    """V-trace's c-bar; at most ``clip_rho``"""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("policy_lag", "aux_heads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        # Leaky V-trace contracts to the value of a policy between mu and pi when rho-bar >= c-bar (STAC's Theorem 1).
        if not 0 < self.clip_c <= self.clip_rho:
            raise ValueError(
                f"clip_c must lie in (0, clip_rho] (V-trace needs rho-bar >= c-bar), "
                f"got clip_c={self.clip_c}, clip_rho={self.clip_rho}"
            )
        if self.num_actors < 1 or self.queue_size < 1:
            raise ValueError(f"num_actors and queue_size must be >= 1, got {self.num_actors}, {self.queue_size}")


class InnerStep(NamedTuple):
    """The differentiable record of one update, kept when ``keep_graph`` is set."""

    meta: dict[str, torch.Tensor]
    """the update's metaparameters as leaf tensors (scalars, or ``[H]`` with auxiliary heads)"""
    grads: dict[str, torch.Tensor]
    """``grad_theta L(theta; meta)`` before clipping, with its graph (``create_graph=True``)"""


class IMPALALearner(ActorCriticLearner):
    """IMPALA behind the Learner protocol; see the module docstring for the two collection modes.

    White-box extras for metagradient solvers: ``objective``, ``batch_of(...)``,
    ``last_batch``, ``last_params`` and ``last_logits`` (the unroll, the parameters
    of the latest update, before it, and head 0's logits there, ``[T, B, A]``,
    detached), and ``aux_meta`` (metaparameters of the auxiliary heads,
    ``{key: tensor [aux_heads]}``; None shares head 0's).  A solver that
    differentiates through the update sets ``keep_graph``: the next updates then
    leave their meta and gradient, with the graph, in ``last_inner``, so it
    need not redo that forward and backward pass (until it clears ``last_inner``,
    the graph stays in memory).
    """

    Hyperparams: ClassVar[type] = IMPALAHyperparams

    def __init__(self, config: IMPALAConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config or IMPALAConfig(), **kwargs)
        cfg: IMPALAConfig = self.config
        self.objective = IMPALAObjective(self.network, clip_rho=cfg.clip_rho, clip_c=cfg.clip_c)
        self.aux_meta: dict[str, torch.Tensor] | None = None
        self.last_batch: dict[str, torch.Tensor] | None = None
        self.last_params: Params | None = None
        self.last_logits: torch.Tensor | None = None
        self.keep_graph = False
        self.last_inner: InnerStep | None = None
        self._behaviour: deque[Params] = deque([_detached(self.params)], maxlen=cfg.policy_lag + 1)
        self._actors: _ActorPool | None = None
        if cfg.asynchronous:
            self._actors = _ActorPool(cfg, self.seed, self.params)

    @staticmethod
    def build_network(config: IMPALAConfig, obs_space: gym.Space, act_space: gym.Space) -> IMPALANetwork:
        if not isinstance(act_space, gym.spaces.Discrete):
            raise ValueError(f"IMPALA here supports discrete actions only; {config.task} has {act_space}")
        image = len(obs_space.shape) == 3
        return IMPALANetwork(
            obs_dim=0 if image else int(np.prod(obs_space.shape)),
            action_dim=int(act_space.n),
            hidden=config.hidden,
            activation=config.activation,
            cnn_channels=obs_space.shape[0] if image else 0,
            heads=1 + getattr(config, "aux_heads", 0),
            head_hidden=getattr(config, "head_hidden", ()),
        )

    # -- collection --------------------------------------------------------------
    def batch_of(self, batch: Batch, bootstrap_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's batch from a collector ``Batch`` and the observation after its last step."""
        return {
            "obs": batch.obs,
            "actions": batch.actions,
            "behaviour_log_probs": batch.log_probs,
            "rewards": batch.rewards,
            "discounts": batch.discounts,
            "bootstrap_obs": bootstrap_obs,
        }

    def _collect(self, hp: IMPALAHyperparams) -> tuple[dict[str, torch.Tensor], list[Episode], dict[str, float]]:
        if self._actors is not None:
            try:
                return self._actors.get(self.device, hp.gamma, self.iterations)
            except BaseException:
                self.close()
                raise
        behaviour = self._behaviour[0]
        batch, episodes = self.collector.collect(behaviour, self.config.num_steps, hp.gamma)
        bootstrap_obs = torch.as_tensor(self.collector.normalize(self.collector._obs), device=self.device)
        return self.batch_of(batch, bootstrap_obs), episodes, {"policy_lag": float(len(self._behaviour) - 1)}

    # -- the black-box path -------------------------------------------------------
    def iterate(self, hparams: Mapping[str, float] | Any | None = None) -> IterationReport:
        """Collect one unroll (lagged or from an actor), then one V-trace update with ``hparams``."""
        hp = self.resolve_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        batch, episodes, lag = self._collect(hp)
        steps = int(batch["rewards"].numel())
        self.timesteps += steps
        try:
            losses, stats = self._update(batch, hp)
        except BaseException:
            self.close()
            raise
        self.iterations += 1
        self.diverged = not self._finite(losses)
        return IterationReport(
            timesteps=self.timesteps,
            env_steps=steps,
            episode_returns=tuple(e.ret for e in episodes),
            episode_lengths=tuple(e.length for e in episodes),
            losses=losses,
            stats={**stats, **lag},
            diverged=self.diverged,
            wall_time=time.perf_counter() - start,
        )

    def meta(self, hp: IMPALAHyperparams, *, leaves: bool = False) -> dict[str, Any]:
        """The objective's ``meta`` for ``hp``: scalars, or ``[H]`` tensors when auxiliary heads have their own.

        ``leaves``: every value as a tensor that requires grad (on the learner's device).
        """
        main = hp.meta()
        dtype = next(iter(self.params.values())).dtype
        if self.aux_meta is not None:
            aux = {k: self.aux_meta[k].detach().reshape(-1).to(self.device, dtype) for k in META_KEYS}
            main = {k: torch.cat([torch.tensor([float(main[k])], dtype=dtype, device=self.device), aux[k]]) for k in META_KEYS}
        if leaves:
            return {k: torch.as_tensor(v, dtype=dtype, device=self.device).detach().requires_grad_() for k, v in main.items()}
        return main

    def _update(self, batch: dict[str, torch.Tensor], hp: IMPALAHyperparams) -> tuple[dict[str, float], dict[str, float]]:
        self.last_batch, self.last_params = batch, _detached(self.params)
        meta = self.meta(hp, leaves=self.keep_graph)
        outputs = self.objective.forward(self.params, batch)
        loss, metrics = self.objective.loss_of(outputs, batch, meta)
        grads = dict(zip(self.params, torch.autograd.grad(loss, list(self.params.values()), create_graph=self.keep_graph)))
        self.last_logits = outputs[0][0].detach()
        self.last_inner = InnerStep(meta, grads) if self.keep_graph else None
        grads, norm = clip_grad_norm({k: g.detach() for k, g in grads.items()}, hp.max_grad_norm)
        self._apply(grads, hp.lr)
        self._behaviour.append(_detached(self.params))
        if self._actors is not None:
            self._actors.publish(self.params)
        with torch.no_grad():  # how far the behaviour policy lags, in KL(mu || pi); pi's logits are the loss's
            log_rho = log_prob(self.last_logits, self.params, batch["actions"], True) - batch["behaviour_log_probs"]
            kl = ((log_rho.exp() - 1) - log_rho).mean().item()
        stats = {"grad_norm": norm.item(), "approx_kl": kl}
        return dict(zip(IMPALA_METRICS, metrics.tolist())), stats

    # -- snapshots ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """As ``ActorCriticLearner.state_dict`` plus the lagged behaviour parameters.

        Asynchronous mode: parameters, optimizer and counters only -- the
        actors' environments are not part of it, so a restore is not bit-for-bit.
        """
        if self._actors is None:
            state = super().state_dict()
        else:
            state = {
                "params": _detached(self.params),
                "opt_state": _clone(self.opt_state),
                "generator": self.generator.get_state(),
                "timesteps": self.timesteps,
                "iterations": self.iterations,
                "diverged": self.diverged,
                "grad_history": [_clone(g) for g in self._grads],
            }
        state["behaviour"] = [_detached(p) for p in self._behaviour]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._actors is None:
            super().load_state_dict(state)
        else:
            if set(state["params"]) != set(self.params):
                raise ValueError(f"state has parameters {sorted(state['params'])}, this learner has {sorted(self.params)}")
            self.params = {k: v.detach().clone().to(self.device).requires_grad_() for k, v in state["params"].items()}
            self.opt_state = _clone(dict(state["opt_state"]))
            self.generator.set_state(state["generator"])
            self.timesteps, self.iterations = int(state["timesteps"]), int(state["iterations"])
            self.diverged = bool(state["diverged"])
            self._grads = deque((_clone(g) for g in state["grad_history"]), maxlen=self.config.grad_history)
            self._actors.publish(self.params)
        self._behaviour = deque(
            ({k: v.detach().clone().to(self.device) for k, v in p.items()} for p in state["behaviour"]),
            maxlen=self.config.policy_lag + 1,
        )

    def close(self) -> None:
        if self._actors is not None:
            self._actors.shutdown()
        super().close()


def _detached(params: Params) -> Params:
    return {k: v.detach().clone() for k, v in params.items()}


# -- asynchronous actors ----------------------------------------------------------------------


class ActorError(RuntimeError):
    """An IMPALA actor process failed or died; the learner has shut the others down."""


def _flat(params: Params) -> torch.Tensor:
    return torch.cat([v.detach().reshape(-1).cpu().float() for v in params.values()])


def _unflat(flat: torch.Tensor, shapes: list[tuple[str, tuple[int, ...]]]) -> Params:
    out, offset = {}, 0
    for name, shape in shapes:
        n = math.prod(shape)
        out[name] = flat[offset : offset + n].view(shape)
        offset += n
    return out


def _actor_main(index, config, seed, shared, shapes, version, gamma, lock, out, stop, parent_pid) -> None:
    """One actor process: collect unrolls with the latest published parameters, forever."""
    torch.set_num_threads(1)
    envs = None
    try:
        envs = make_vector_env(config.task, config.num_envs)
        network = IMPALALearner.build_network(config, envs.single_observation_space, envs.single_action_space)
        collector = Collector(
            envs,
            network,
            torch.Generator().manual_seed(seed),
            device=torch.device("cpu"),
            normalize_obs=config.normalize_obs,
            normalize_reward=config.normalize_reward,
            sign_reward=config.sign_reward,
        )
        collector.reset(seed=seed)
        while not stop.is_set() and os.getppid() == parent_pid:
            if not lock.acquire(timeout=1.0):  # a sibling killed while holding it must not hang us
                continue
            try:
                params, ver, g = _unflat(shared.clone(), shapes), version.value, gamma.value
            finally:
                lock.release()
            batch, episodes = collector.collect(params, config.num_steps, g)
            item = (
                "unroll",
                index,
                ver,
                {
                    "obs": batch.obs.numpy(),
                    "actions": batch.actions.numpy(),
                    "behaviour_log_probs": batch.log_probs.numpy(),
                    "rewards": batch.rewards.numpy(),
                    "discounts": batch.discounts.numpy(),
                    "bootstrap_obs": np.asarray(collector.normalize(collector._obs)),
                },
                [(e.ret, e.length) for e in episodes],
            )
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue_lib.Full:
                    if os.getppid() != parent_pid:
                        return
    except BaseException:  # report anything, then exit: the learner raises it
        try:
            out.put(("error", index, traceback.format_exc()), timeout=5)
        except BaseException:
            pass
    finally:
        if envs is not None:
            envs.close()


def _stop_actors(procs: list, stop: Any, out: Any) -> None:
    """Stop, drain, join, then terminate whatever is left (also the finaliser of a pool)."""
    stop.set()
    deadline = time.monotonic() + 5.0
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        try:
            while True:
                out.get_nowait()  # free actors blocked on a full queue
        except (queue_lib.Empty, OSError, ValueError):
            pass
        for p in procs:
            p.join(timeout=0.05)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
    try:
        out.cancel_join_thread()
        out.close()
    except (OSError, ValueError):
        pass


def _failure(item: tuple) -> str:
    return f"IMPALA actor impala-actor-{item[1]} failed; all actors stopped. Its traceback:\n{item[2]}"


class _ActorPool:
    """Actor processes, a shared parameter buffer they read, and the queue they fill."""

    def __init__(self, config: IMPALAConfig, seed: int, params: Params) -> None:
        import torch.multiprocessing as tmp

        ctx = tmp.get_context(config.start_method)
        self.config = config
        self.shapes = [(k, tuple(v.shape)) for k, v in params.items()]
        self.shared = _flat(params).share_memory_()
        self.version = ctx.Value("l", 0)
        self.gamma = ctx.Value("d", 0.99)
        self.lock = ctx.Lock()
        self.stop = ctx.Event()
        self.queue = ctx.Queue(maxsize=config.queue_size)
        self.procs = [
            ctx.Process(
                target=_actor_main,
                args=(
                    i,
                    config,
                    seed * 1_000 + 17 * (i + 1),
                    self.shared,
                    self.shapes,
                    self.version,
                    self.gamma,
                    self.lock,
                    self.queue,
                    self.stop,
                    os.getpid(),
                ),
                daemon=True,
                name=f"impala-actor-{i}",
            )  # fmt: skip
            for i in range(config.num_actors)
        ]
        for p in self.procs:
            p.start()
        self._finalizer = weakref.finalize(self, _stop_actors, self.procs, self.stop, self.queue)

    def publish(self, params: Params) -> None:
        flat = _flat(params)
        if not self.lock.acquire(timeout=10.0):
            dead = [p.name for p in self.procs if not p.is_alive()]
            self.shutdown()
            raise ActorError(f"cannot publish parameters: the lock is held (dead actors: {dead}); all actors stopped")
        try:
            self.shared.copy_(flat)
            self.version.value += 1
        finally:
            self.lock.release()

    def get(self, device: torch.device, gamma: float, learner_version: int) -> tuple[dict, list[Episode], dict]:
        """The next unroll; ``ActorError`` when an actor failed or died."""
        self.gamma.value = float(gamma)
        deadline = time.monotonic() + self.config.actor_timeout
        while True:
            # Checked on every call: the other actors would otherwise hide a dead one for ever.
            dead = [(p.name, p.exitcode) for p in self.procs if not p.is_alive()]
            if dead:
                report = self._pending_error()
                self.shutdown()
                raise ActorError(report or f"IMPALA actor {dead[0][0]} died with exit code {dead[0][1]}; all actors stopped")
            try:
                item = self.queue.get(timeout=0.2)
            except queue_lib.Empty:
                if time.monotonic() > deadline:
                    self.shutdown()
                    timeout = self.config.actor_timeout
                    raise ActorError(f"no unroll from the IMPALA actors in {timeout:g} s; all actors stopped") from None
                continue
            if item[0] == "error":
                self.shutdown()
                raise ActorError(_failure(item))
            _, _, version, arrays, episodes = item
            batch = {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}
            return batch, [Episode(ret=r, length=n) for r, n in episodes], {"policy_lag": float(learner_version - version)}

    def _pending_error(self) -> str | None:
        """The report of an actor that failed with an exception, if one is waiting in the queue."""
        # Bounded: the surviving actors keep filling the queue, and a fast one would keep it from ever draining.
        deadline = time.monotonic() + 1.0
        try:
            while time.monotonic() < deadline:
                item = self.queue.get(timeout=0.05)
                if item[0] == "error":
                    return _failure(item)
        except (queue_lib.Empty, OSError, ValueError):
            pass
        return None

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.is_alive()]

    def shutdown(self) -> None:
        self._finalizer()
