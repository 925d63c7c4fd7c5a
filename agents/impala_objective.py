"""IMPALA's objective: the actor-critic loss of STAC's Eq. 3/5 with leaky V-trace (Eq. 8), summed over heads.

``loss(params, batch, hparams, meta=None) -> (loss, metrics)`` over the
collector's time-major ``Batch`` (its ``log_probs`` are the behaviour policy's,
its ``bootstrap_obs`` the observation after the unroll).  The metaparameters
``meta = {gamma, lambda, g_v, g_p, g_e, alpha}`` (STAC's eta) default to the
hyperparameters' values (``meta_of(hparams)``); floats or tensors, the loss is
differentiable in all of them.  With auxiliary heads (STACX) a meta value of
shape ``[H]`` gives one per head, a scalar is shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from agents.base import Batch, Params
from agents.impala_network import IMPALANetwork
from agents.vtrace import VTraceReturns, leaky_vtrace

IMPALA_METRICS = ("policy", "value", "entropy", "approx_kl")
"""Head 0's loss terms, and KL(mu || pi) of the behaviour policy to the one being trained."""
META_KEYS = ("gamma", "lambda", "g_v", "g_p", "g_e", "alpha")
"""The metaparameters of the objective (STAC's eta), in this order."""
HPARAM_OF = {"gamma": "gamma", "lambda": "lambda_", "g_v": "g_v", "g_p": "g_p", "g_e": "g_e", "alpha": "alpha"}
"""Meta key -> the IMPALA hyperparameter it defaults to."""


def meta_of(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The objective's ``meta`` from IMPALA's hyperparameters (``lambda_`` is ``lambda`` here)."""
    return {k: hparams[HPARAM_OF[k]] for k in META_KEYS}


def head_meta(meta: Mapping[str, Any], h: int) -> dict[str, Any]:
    """Head ``h``'s metaparameters: entry ``h`` of a ``[H]`` tensor, or the shared scalar."""
    return {k: v[h] if isinstance(v, torch.Tensor) and v.dim() == 1 else v for k, v in meta.items()}


class Steps(NamedTuple):
    """The per-step fields of a batch that the loss reads, ``[T, B]`` each (several heads: ``[T, H*B]``)."""

    actions: torch.Tensor
    behaviour_log_probs: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor
    """continuation flags (0 where an episode ended)"""

    @classmethod
    def of(cls, batch: Batch) -> Steps:
        return cls(batch.actions, batch.log_probs, batch.rewards, batch.discounts)


class IMPALAObjective:
    """``loss(params, batch, hparams, meta=None) -> (loss, metrics)``: see the module docstring.

    The value term is ``g_v 0.5 (v_s - V)^2``, means over ``T x B``; ``metrics`` are head 0's
    ``IMPALA_METRICS``, detached 0-d tensors.
    """

    def __init__(self, network: IMPALANetwork, *, clip_rho: float = 1.0, clip_c: float = 1.0, clip_pg_rho: float = 1.0):
        self.network = network
        self.clips = {"clip_rho_threshold": clip_rho, "clip_c_threshold": clip_c, "clip_pg_rho_threshold": clip_pg_rho}

    def forward(self, params: Params, batch: Batch, heads: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first ``heads`` heads (all when None) on the unroll and its bootstrap observation:
        logits ``[H, T, B, A]``, values ``[H, T, B]``, bootstrap values ``[H, B]``."""
        if batch.bootstrap_obs is None:
            raise ValueError("IMPALAObjective needs Batch.bootstrap_obs (V-trace re-evaluates the critic after the unroll)")
        obs = batch.obs
        t, b = obs.shape[:2]
        logits, values = self.network.forward_heads(params, torch.cat([obs.flatten(0, 1), batch.bootstrap_obs]), heads)
        h = logits.shape[0]
        return logits[:, : t * b].reshape(h, t, b, -1), values[:, : t * b].reshape(h, t, b), values[:, t * b :]

    def targets(
        self, logp: torch.Tensor, values: torch.Tensor, bootstrap: torch.Tensor, steps: Steps, meta: Mapping[str, Any]
    ) -> VTraceReturns:
        """Leaky V-trace targets of one head from its log-probabilities of the taken actions and values."""
        return leaky_vtrace(
            values,
            torch.cat([values[1:], bootstrap.unsqueeze(0)]),
            steps.rewards,
            steps.discounts * meta["gamma"],
            logp - steps.behaviour_log_probs,
            lambda_=meta["lambda"],
            alpha=meta["alpha"],
            **self.clips,
        )

    def head_loss(
        self,
        logits: torch.Tensor,
        values: torch.Tensor,
        bootstrap: torch.Tensor,
        batch: Batch,
        meta: Mapping[str, Any],
        returns: VTraceReturns | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One head's loss from its ``[T, B, A]`` logits, ``[T, B]`` values and ``[B]`` bootstrap values.

        ``returns``: precomputed targets to use instead (they carry no gradient into the
        parameters anyway; fixing them turns the pseudo-loss into a plain function).
        """
        steps = Steps.of(batch)
        policy, value, ent, logp = self._terms(logits, values, bootstrap, steps, meta, returns)
        policy_loss, value_loss, ent = policy.mean(), value.mean(), ent.mean()
        loss = meta["g_p"] * policy_loss + meta["g_v"] * value_loss - meta["g_e"] * ent
        return loss, self._metrics(policy_loss, value_loss, ent, logp, steps)

    def _terms(self, logits, values, bootstrap, steps: Steps, meta, returns=None):
        """Per-step policy, value and entropy terms and the log-probabilities of the actions, ``[T, B]`` each."""
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, steps.actions.long().unsqueeze(-1)).squeeze(-1)
        if returns is None:
            returns = self.targets(logp, values, bootstrap, steps, meta)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return -logp * returns.pg_advantages, 0.5 * (returns.vs - values).square(), entropy, logp

    @staticmethod
    def _metrics(policy, value, ent, logp, steps: Steps) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # how far the behaviour policy lags, KL(mu || pi)
            log_rho = logp - steps.behaviour_log_probs
            kl = ((log_rho.exp() - 1) - log_rho).mean()
            return dict(zip(IMPALA_METRICS, torch.stack([policy, value, ent, kl]).detach()))

    def __call__(
        self, params: Params, batch: Batch, hparams: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss_of(self.forward(params, batch), batch, meta if meta is not None else meta_of(hparams or {}))

    def loss_of(
        self, outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: Batch, meta: Mapping[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss from ``forward``'s outputs."""
        logits, values, bootstrap = outputs
        heads, t, b = values.shape
        if heads == 1:
            return self.head_loss(logits[0], values[0], bootstrap[0], batch, head_meta(meta, 0))

        # All heads in one pass: head h's unroll becomes columns h*B .. h*B + B - 1 (one V-trace scan, not H).
        def wide(x: torch.Tensor) -> torch.Tensor:  # [H, T, B, ...] -> [T, H*B, ...]
            return x.movedim(0, 1).reshape(t, heads * b, *x.shape[3:])

        steps = Steps.of(batch)
        columns = Steps(*(x.repeat(1, heads) for x in steps))
        per_column = {k: v.repeat_interleave(b) if isinstance(v, torch.Tensor) and v.dim() == 1 else v for k, v in meta.items()}
        *terms, logp = self._terms(wide(logits), wide(values), bootstrap.reshape(heads * b), columns, per_column)
        policy, value, ent = (x.reshape(t, heads, b).mean((0, 2)) for x in terms)  # per head, [H]

        def weight(key: str) -> torch.Tensor | float:
            v = meta[key]
            per_head = isinstance(v, torch.Tensor) and v.dim() == 1
            return v if per_head else torch.ones(heads, dtype=value.dtype, device=value.device) * v

        loss = (weight("g_p") * policy + weight("g_v") * value - weight("g_e") * ent).sum()
        return loss, self._metrics(policy[0], value[0], ent[0], logp[:, :b], steps)
