"""LPG's meta-gradient (paper Eq. 3, without the regularisers of Eq. 4 and without the bandit) through K agent updates.

``LPGAgentLearner`` is the agent's update as the shared ``train_step(params, opt_state, batch, hparams, meta,
*, differentiable)`` (an ``agents.optim`` update rule, SGD for tabular agents), so ``agents.unroll.unroll``
differentiates through K of them to the LPG's weights in ``meta["lpg"]``.  Eq. 2 holds the targets fixed
from the agent's view but they stay functions of theta and eta for the meta-gradient: the agent's gradient
is taken with respect to a fresh node ``theta'`` (a clone of theta) that only the loss reads, while the LPG
reads theta itself, so ``d theta_{k+1} / d eta`` keeps every path, also through the next step's LPG inputs.

The meta-objective (``meta_loss``) is a policy-gradient estimate of the updated agent's return, as the
paper's appendix computes it: A2C advantages ``lambda_returns - values`` from a *given* value function (the
``values`` / ``bootstrap_value`` of a validation batch; training that critic alongside is not part of this
module), and the loss ``-mean(log pi_{theta_K}(a|s) * A)``, whose gradient in eta is the meta-gradient's
descent direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.base import Batch, Params
from agents.optim import OptState, UpdateRule, get_update_rule
from agents.returns import lambda_returns
from agents.unroll import unroll
from solvers.lpg.network import Weights
from solvers.lpg.objective import LPGObjective

Metrics = dict[str, torch.Tensor]


class LPGAgentLearner:
    """An agent trained by an LPG objective, with what ``agents.unroll.unroll`` reads: ``parameters``,
    ``opt_state``, ``train_step``."""

    def __init__(self, objective: LPGObjective, params: Params, update_rule: str | UpdateRule = "sgd") -> None:
        self.objective = objective
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.update_rule = get_update_rule(update_rule)
        self.opt_state: OptState = self.update_rule.init(self.params)

    def parameters(self) -> Params:
        return self.params

    def train_step(
        self,
        params: Params,
        opt_state: OptState,
        batch: Batch,
        hparams: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        *,
        differentiable: bool = False,
    ) -> tuple[Params, OptState, Metrics]:
        """One update-rule step on the LPG loss of ``batch``; ``hparams``: ``lr``, ``kl_coef``, ``gamma``.

        ``differentiable=True`` keeps the graph to ``params``, the tensors in ``hparams`` and ``meta["lpg"]``.
        """
        with torch.enable_grad():
            params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            if differentiable:
                targets = self.objective.targets(params, batch, hparams, meta)
                # The loss reads theta' only, so its gradient holds the targets fixed (Eq. 2) yet keeps their graph.
                read = {k: v.clone() for k, v in params.items()}
            else:
                targets, read = None, params
            loss, metrics = self.objective(read, batch, hparams, meta, targets=targets)
            grads = dict(zip(params, torch.autograd.grad(loss, list(read.values()), create_graph=differentiable)))
            new, state = self.update_rule.update(grads, opt_state, params, hparams)
        if not differentiable:
            new = {k: v.detach().requires_grad_() for k, v in new.items()}
        return new, state, metrics


def policy_gradient_loss(
    objective: LPGObjective, params: Params, batch: Batch, gamma: float, gae_lambda: float = 1.0
) -> torch.Tensor:
    """``-mean(log pi(a|s) * A)`` with A2C advantages from the batch's (fixed) critic values."""
    returns = lambda_returns(batch.rewards, batch.discounts * gamma, batch.values, batch.bootstrap_value, gae_lambda)
    advantages = (returns - batch.values).detach()
    t, b = batch.rewards.shape
    logits, _ = objective.agent.forward(params, batch.obs.flatten(0, 1))
    logp = torch.log_softmax(logits, -1).gather(-1, batch.actions.flatten(0, 1).long().view(-1, 1)).view(t, b)
    return -(logp * advantages).mean()


def meta_loss(
    learner: LPGAgentLearner, weights: Weights, batches: Sequence[Batch], hparams: Mapping[str, Any], *, steps: int = 2
) -> torch.Tensor:
    """K = ``steps`` agent updates on ``batches[:steps]`` then the policy-gradient loss on ``batches[steps]``.

    Differentiable in ``weights`` (the LPG's eta): ``torch.autograd.grad(meta_loss(...), weights.values())``
    is the meta-gradient (descend it to raise the updated agent's return).
    """
    if len(batches) != steps + 1:
        raise ValueError(f"meta_loss needs steps + 1 = {steps + 1} batches (the last for validation), got {len(batches)}")
    out = unroll(learner, list(batches[:steps]), hparams, {"lpg": weights}, steps=steps)
    return policy_gradient_loss(learner.objective, out.params, batches[steps], hparams["gamma"])
