"""Advantage Actor-Critic (Mnih et al., 2016), synchronous: one gradient step per batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from agents.actor_critic import ActorCriticConfig, ActorCriticLearner
from agents.base import Batch, Params
from agents.hparams import declare, hyperparameter
from agents.networks import ActorCritic, entropy, log_prob
from agents.optim import clip_grad_norm
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
    gamma: float = hyperparameter(
        0.99,
        low=0.9,
        high=0.999,
        bins=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
        doc="discount factor; horizon about 1 / (1 - gamma)",
    )
    gae_lambda: float = hyperparameter(
        1.0, low=0.8, high=1.0, bins=(0.9, 0.95, 0.975, 0.99, 1.0), doc="1 gives n-step bootstrapped returns, below 1 GAE"
    )
    ent_coef: float = hyperparameter(
        0.0,
        low=0.0,
        high=0.1,
        bins=(0.0, 0.001, 0.01, 0.02, 0.05),
        doc="entropy bonus weight (0.01 on Atari in Mnih et al., 2016)",
    )
    vf_coef: float = hyperparameter(0.5, low=0.1, high=1.0, bins=(0.25, 0.5, 0.75, 1.0), doc="value loss weight")
    max_grad_norm: float = hyperparameter(
        0.5, low=0.1, high=10.0, log=True, multipliers=(0.5, 1, 2), doc="global gradient-norm clip"
    )


class A2CObjective:
    """``loss(params, batch, meta) -> (loss, metrics)`` on flat ``obs, actions, advantages, returns``.

    ``meta`` holds ``vf_coef`` and ``ent_coef``; ``metrics`` follows ``A2C_METRICS``.
    """

    def __init__(self, network: ActorCritic) -> None:
        self.network = network

    def __call__(
        self, params: Params, batch: dict[str, torch.Tensor], meta: dict[str, float | torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.network
        policy_out, value = net.forward(params, batch["obs"])
        logp = log_prob(policy_out, params, batch["actions"], net.discrete)
        policy_loss = -(logp * batch["advantages"]).mean()
        value_loss = 0.5 * (batch["returns"] - value).square().mean()
        ent = entropy(policy_out, params, net.discrete).mean()
        loss = policy_loss + meta["vf_coef"] * value_loss - meta["ent_coef"] * ent
        return loss, torch.stack([policy_loss, value_loss, ent]).detach()


@dataclass(frozen=True, kw_only=True)
class A2CConfig(ActorCriticConfig):
    """Structure of an A2C learner; defaults are the classic 16 envs x 5 steps with RMSProp."""

    num_envs: int = 16
    """parallel inner environments"""
    num_steps: int = 5
    """vector steps per update (the n of n-step returns)"""
    optimizer: str = "rmsprop"
    """update rule: ``rmsprop`` (A2C standard), ``adam`` or ``sgd``"""


class A2CLearner(ActorCriticLearner):
    """A2C with n-step or GAE returns and a single update per collected batch."""

    Hyperparams: ClassVar[type] = A2CHyperparams

    def __init__(self, config: A2CConfig | None = None, **kwargs) -> None:
        super().__init__(config or A2CConfig(), **kwargs)
        self.objective = A2CObjective(self.network)

    def _update(self, batch: Batch, hp: A2CHyperparams) -> tuple[dict[str, float], dict[str, float]]:
        with torch.no_grad():
            discounts = batch.discounts * hp.gamma
            returns = lambda_returns(batch.rewards, discounts, batch.values, batch.bootstrap_value, hp.gae_lambda)
        flat = {
            "obs": batch.obs.flatten(0, 1),
            "actions": batch.actions.flatten(0, 1),
            "advantages": (returns - batch.values).flatten(),
            "returns": returns.flatten(),
        }
        loss, metrics = self.objective(self.params, flat, {"vf_coef": hp.vf_coef, "ent_coef": hp.ent_coef})
        grads = dict(zip(self.params, torch.autograd.grad(loss, list(self.params.values()))))
        grads, norm = clip_grad_norm(grads, hp.max_grad_norm)
        self._apply(grads, hp.lr)
        with torch.no_grad():
            ev = explained_variance(batch.values.flatten(), flat["returns"]).item()
        return dict(zip(A2C_METRICS, metrics.tolist())), {"explained_variance": ev, "grad_norm": norm.item()}
