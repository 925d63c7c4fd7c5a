"""IMPALA (Espeholt et al., 2018): actor-critic with (leaky) V-trace and a lagging behaviour policy.

Actors produce unrolls of ``num_steps`` (20) steps with a behaviour policy
``mu`` that lags the learner's ``pi``; the learner corrects with V-trace.  Two
ways to get that lag:

- synchronous (default, reproducible): the learner collects itself, with the
  parameters of ``policy_lag`` updates ago (a small deque);
- asynchronous (``asynchronous=True``): ``num_actors`` processes
  (``agents.actors``) collect with the latest published parameters and feed
  unrolls through a bounded queue; the lag is whatever it is.

The network is ``agents.impala_network``, the objective (leaky V-trace,
differentiable in every metaparameter) ``agents.impala_objective``; this
module holds the hyperparameters, the config and the learner: one update per
unroll, through ``train_step``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch

from agents.actors import ActorError, ActorPool
from agents.base import Batch, IterationReport, Params
from agents.hparams import declare, hyperparameter
from agents.impala_network import IMPALANetwork, build_impala_network
from agents.impala_objective import IMPALA_METRICS, META_KEYS, IMPALAObjective, head_meta, meta_of
from agents.learner import ActorCriticConfig, ActorCriticLearner, _clone
from agents.objectives import use_config_objective
from agents.optim import UpdateRule
from agents.returns import rollout_return
from agents.rollout import Episode

__all__ = [
    "IMPALA_METRICS",
    "META_KEYS",
    "ActorError",
    "IMPALAConfig",
    "IMPALAHyperparams",
    "IMPALALearner",
    "IMPALANetwork",
    "IMPALAObjective",
    "head_meta",
]


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
class IMPALAConfig(ActorCriticConfig):
    """Structure of an IMPALA learner; defaults follow Espeholt et al. (2018) at a small scale."""

    num_envs: int = 8
    """environments per unroll (per actor process in asynchronous mode)"""
    num_steps: int = 20
    """unroll length"""
    update_rule: str | UpdateRule = "rmsprop"
    """update rule: ``rmsprop`` (IMPALA), ``adam``, ``sgd`` or an ``UpdateRule`` object"""
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


class IMPALALearner(ActorCriticLearner):
    """IMPALA behind the Learner protocol; see the module docstring for the two collection modes.

    White-box extras for metagradient solvers: ``objective``, ``meta(hparams)`` (the
    objective's metaparameters for these hyperparameters), ``last_update`` (the inputs
    of the latest update: replay it through ``agents.unroll``), ``aux_meta``
    (metaparameters of the auxiliary heads, ``{key: tensor [aux_heads]}``; None shares
    head 0's), and ``graph_meta`` / ``last_graph`` (differentiate the update itself, below).

    ``graph_meta``: when a solver sets it (the objective's ``meta`` as tensors with their
    graph, e.g. functions of its metaparameter logits), the next ``iterate`` takes its
    update as ``train_step(..., meta=graph_meta, differentiable=True)`` and leaves the
    parameters it produced, graph and all, in ``last_graph``; the learner continues from
    detached copies of the same values.  ``graph_meta`` is then cleared: it holds for one
    update.  That is the replay of ``last_update`` through ``agents.unroll`` without
    redoing its forward and backward pass (the same operations, so the same numbers).
    """

    Hyperparams: ClassVar[type] = IMPALAHyperparams

    def __init__(self, config: IMPALAConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config or IMPALAConfig(), **kwargs)
        cfg: IMPALAConfig = self.config
        self.objective = IMPALAObjective(self.network, clip_rho=cfg.clip_rho, clip_c=cfg.clip_c)
        self.learned_objective = use_config_objective(self, "impala")
        self.aux_meta: dict[str, torch.Tensor] | None = None
        self.graph_meta: dict[str, torch.Tensor] | None = None
        self.last_graph: Params | None = None
        """the parameters of the latest update taken with ``graph_meta``, with their graph (else None)"""
        self._recording: dict[str, torch.Tensor] | None = None
        self._behaviour: deque[Params] = deque([_detached(self.params)], maxlen=cfg.policy_lag + 1)
        self._actors: ActorPool | None = None
        if cfg.asynchronous:
            self._actors = ActorPool(cfg, self.seed, self.params)

    @staticmethod
    def build_network(config: IMPALAConfig, obs_space: gym.Space, act_space: gym.Space) -> IMPALANetwork:
        return build_impala_network(config, obs_space, act_space)

    # -- collection --------------------------------------------------------------
    def _collect(self, hp: Any) -> tuple[Batch, Any, list[Episode], dict[str, float]]:
        if self._actors is not None:
            try:
                return self._actors.get(self.device, hp.gamma, self.iterations)
            except BaseException:
                self.close()
                raise
        batch, episodes = self.collector.collect(self._behaviour[0], self.config.num_steps, hp.gamma)
        return batch, self.collector.last_raw_rewards, episodes, {"policy_lag": float(len(self._behaviour) - 1)}

    # -- the black-box path -------------------------------------------------------
    def iterate(self, hparams: Mapping[str, float] | Any | None = None) -> IterationReport:
        """Collect one unroll (lagged or from an actor), then one V-trace ``train_step`` with ``hparams``."""
        hp = self.resolve_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True, divergence=self.divergence)
        batch, raw_rewards, episodes, lag = self._collect(hp)
        self.timesteps += batch.num_steps
        try:
            losses, stats = self._update(batch, self.hparam_values(hp))
        except BaseException:
            self.close()
            raise
        self._behaviour.append(_detached(self.params))
        if self._actors is not None:
            self._actors.publish(self.params)
        report = self._report(batch.num_steps, episodes, losses, {**stats, **lag}, start)
        return dataclasses.replace(report, rollout_return=rollout_return(raw_rewards, hp.gamma))

    def meta(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """The objective's ``meta`` for these hyperparameters: scalars, or ``[H]`` tensors when the
        auxiliary heads have their own (``aux_meta``); tensor values keep their graph."""
        main = meta_of(hparams)
        if self.aux_meta is None:
            return main
        dtype = next(iter(self.params.values())).dtype
        aux = {k: self.aux_meta[k].detach().reshape(-1).to(self.device, dtype) for k in META_KEYS}
        return {k: torch.cat([torch.as_tensor(main[k], dtype=dtype, device=self.device).reshape(1), aux[k]]) for k in META_KEYS}

    def _update(self, batch: Batch, hp: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
        """The learner's own update; with ``graph_meta`` set, differentiable, its result kept in ``last_graph``."""
        self.last_graph, self._recording, self.graph_meta = None, self.graph_meta, None
        try:
            return super()._update(batch, hp)
        finally:
            self._recording = None

    def _schedule(self, params, opt_state, batch, hp, meta, differentiable, grads_out):
        """One clipped update-rule step on the unroll; ``meta`` defaults to ``self.meta(hp)``."""
        if self._recording is not None:  # the learner's own update, taken differentiably for a solver
            meta, self._recording = self._recording, None
            new, state, metrics = self._schedule(params, opt_state, batch, hp, meta, True, grads_out)
            self.last_graph = new
            detached = {k: v.detach().requires_grad_() for k, v in new.items()}
            return detached, _clone(state), {k: v.detach() for k, v in metrics.items()}
        meta = self.meta(hp) if meta is None else meta
        loss, metrics = self.objective(params, batch, hp, meta)
        params, opt_state, norm = self._gradient_step(params, opt_state, loss, hp, differentiable, grads_out)
        return params, opt_state, {**metrics, "grad_norm": norm}

    # -- snapshots ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """As ``ActorCriticLearner.state_dict`` plus the lagged behaviour parameters.

        Asynchronous mode: parameters, optimizer and counters only -- the
        actors' environments are not part of it, so a restore is not bit-for-bit.
        """
        state = super().state_dict() if self._actors is None else self.training_state()
        state["behaviour"] = [_detached(p) for p in self._behaviour]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._actors is None:
            super().load_state_dict(state)
        else:
            self.load_training_state(state)
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
