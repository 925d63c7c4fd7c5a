"""Advantage Actor-Critic (Mnih et al., 2016), synchronous: one gradient step per batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from agents.actor_critic_hparams import (
    ent_coef_hyperparameter,
    gamma_hyperparameter,
    max_grad_norm_hyperparameter,
    vf_coef_hyperparameter,
)
from agents.base import Batch, Params
from agents.hparams import declare, hyperparameter
from agents.learner import ActorCriticConfig, ActorCriticLearner
from agents.networks import ActorCritic, entropy, log_prob
from agents.objectives import use_config_objective
from agents.optim import UpdateRule
from agents.returns import explained_variance, lambda_returns

A2C_METRICS = ("policy", "value", "entropy")


@declare
@dataclass(frozen=True, kw_only=True)
class A2CHyperparams:
    """What a hyper-agent may change between A2C iterations."""

    lr: float = hyperparameter(
        7e-4,
        low=1e-5,
        high=1e-2,
        log=True,
        # EPGT's classic-control bins: 7 log-even multipliers 0.4 .. 2.5 (1e-2 collapses RMSProp A2C on CartPole)
        multipliers=tuple(2.5 ** (k / 3) for k in range(-3, 4)),
        doc="RMSProp/Adam step size (7e-4 in Mnih et al., 2016)",
    )
    gamma: float = gamma_hyperparameter()
    gae_lambda: float = hyperparameter(
        1.0, low=0.8, high=1.0, bins=(0.9, 0.95, 0.975, 0.99, 1.0), doc="1 gives n-step bootstrapped returns, below 1 GAE"
    )
    ent_coef: float = ent_coef_hyperparameter("entropy bonus weight (0.01 on Atari in Mnih et al., 2016)")
    vf_coef: float = vf_coef_hyperparameter()
    max_grad_norm: float = max_grad_norm_hyperparameter()


class A2CObjective:
    """``loss(params, batch, hparams, meta=None) -> (loss, metrics)`` on one time-major ``Batch``.

    The targets are TD(lambda) returns (n-step at ``gae_lambda = 1``) computed here from
    the batch with ``hparams["gamma"]`` and ``hparams["gae_lambda"]``, from the
    collection-time values (so no gradient reaches the parameters through them);
    advantages are ``returns - values``.  ``hparams`` also holds ``vf_coef`` and
    ``ent_coef``; all four may be tensors and the loss is differentiable in them.
    ``meta`` is unused.  ``metrics``: ``A2C_METRICS``, detached 0-d tensors.
    """

    def __init__(self, network: ActorCritic) -> None:
        self.network = network

    @staticmethod
    def targets(batch: Batch, hparams: Mapping[str, Any]) -> Batch:
        """``batch`` with its TD(lambda) returns and advantages."""
        discounts = batch.discounts * hparams["gamma"]
        returns = lambda_returns(batch.rewards, discounts, batch.values, batch.bootstrap_value, hparams["gae_lambda"])
        return batch.with_targets(returns - batch.values, returns)

    def __call__(
        self, params: Params, batch: Batch, hparams: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if batch.advantages is None:
            batch = self.targets(batch, hparams)
        net = self.network
        policy_out, value = net.forward(params, batch.obs.flatten(0, 1))
        logp = log_prob(policy_out, params, batch.actions.flatten(0, 1), net.discrete)
        policy_loss = -(logp * batch.advantages.flatten()).mean()
        value_loss = 0.5 * (batch.returns.flatten() - value).square().mean()
        ent = entropy(policy_out, params, net.discrete).mean()
        loss = policy_loss + hparams["vf_coef"] * value_loss - hparams["ent_coef"] * ent
        return loss, dict(zip(A2C_METRICS, torch.stack([policy_loss, value_loss, ent]).detach()))


@dataclass(frozen=True, kw_only=True)
class A2CConfig(ActorCriticConfig):
    """Structure of an A2C learner; defaults are the classic 16 envs x 5 steps with RMSProp."""

    num_envs: int = 16
    """parallel inner environments"""
    num_steps: int = 5
    """vector steps per update (the n of n-step returns)"""
    update_rule: str | UpdateRule = "rmsprop"
    """update rule: ``rmsprop`` (A2C standard), ``adam``, ``sgd`` or an ``UpdateRule`` object"""


class A2CLearner(ActorCriticLearner):
    """A2C with n-step or GAE returns and a single update per collected batch."""

    Hyperparams: ClassVar[type] = A2CHyperparams

    def __init__(self, config: A2CConfig | None = None, **kwargs) -> None:
        super().__init__(config or A2CConfig(), **kwargs)
        self.objective = A2CObjective(self.network)
        self.learned_objective = use_config_objective(self, "a2c")

    def _schedule(self, params, opt_state, batch, hp, meta, differentiable, grads_out):
        """One clipped update-rule step on the whole batch."""
        with torch.set_grad_enabled(differentiable):
            full = self.objective.targets(batch, hp)
        # the compiled step traces A2C's own loss: a learned objective always runs the pure path
        own = not self.learned_objective
        fast = self._fast_steps("a2c", params, opt_state) if own and not differentiable else None
        if fast is not None:  # compiled (agents.compiled)
            stacked, norm = fast.step(full, hp)
            metrics = dict(zip(A2C_METRICS, stacked))
            params, opt_state = self._finish_fast(fast, grads_out)
        else:
            loss, metrics = self.objective(params, full, hp, meta)
            params, opt_state, norm = self._gradient_step(params, opt_state, loss, hp, differentiable, grads_out)
        with torch.no_grad():
            ev = explained_variance(batch.values.flatten(), full.returns.detach().flatten())
        return params, opt_state, {**metrics, "explained_variance": ev, "grad_norm": norm}
