"""The agent update of LPG (paper Eq. 2) as an objective over a time-major ``Batch``.

    Delta theta  ~  E[ grad log pi(a|s) * pi_hat  -  kl_coef * grad KL(y(s) || y_hat) ]

so the loss minimised is ``mean(-pi_hat * log pi(a_t|s_t) + kl_coef * KL(y(s_t) || y_hat_t))``, with pi_hat and
y_hat fixed targets from the agent's view (Eq. 2 writes the KL with the agent's y first; the paper is followed).
The agent is anything with ``forward(params, obs) -> (policy logits [N, A], prediction logits [N, m])``;
``TabularAgent`` is the paper's tabular one (a table of logits per state).  The learning rate and ``kl_coef``
are the lifetime's hyperparameters (``hparams["lr"]`` for the update rule, ``hparams["kl_coef"]`` here,
``hparams["gamma"]`` fed to the LPG).  The LPG's weights come from ``meta["lpg"]`` when given (the
meta-gradient's path: the unroll keeps the graph to them), else from the objective's own frozen weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch

from agents.base import Batch, Params
from solvers.lpg.network import LPGInputs, Weights

LPG_METRICS = ("policy", "prediction", "entropy")


class Agent(Protocol):
    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class UpdateTargets(Protocol):
    """The LPG network's face: ``forward(weights, inputs) -> (pi_hat [T, B], y_hat [T, B, m])``."""

    def forward(self, weights: Weights, inputs: LPGInputs) -> tuple[torch.Tensor, torch.Tensor]: ...


class TabularAgent:
    """A table of policy logits ``pi [S, A]`` and prediction logits ``y [S, m]``; observations are state indices."""

    def __init__(self, num_states: int, num_actions: int, m: int) -> None:
        for name, v in (("num_states", num_states), ("num_actions", num_actions), ("m", m)):
            if v < 1:
                raise ValueError(f"TabularAgent.{name} must be >= 1, got {v}")
        self.num_states, self.num_actions, self.m = num_states, num_actions, m

    def init(self, dtype: torch.dtype = torch.float32) -> Params:
        """Zero logits: a uniform policy and a uniform prediction (the usual tabular start)."""
        return {
            "pi": torch.zeros(self.num_states, self.num_actions, dtype=dtype),
            "y": torch.zeros(self.num_states, self.m, dtype=dtype),
        }

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = obs.long()
        return params["pi"][idx], params["y"][idx]


_SMALLEST_EXP = -87.0
"""exp of anything below is subnormal or 0 in float32"""


def probs(log_p: torch.Tensor) -> torch.Tensor:
    """``log_p.exp()``, with 0 where that would be subnormal (below about 1.6e-38): torch's vectorised exp takes a
    slow path for every lane that underflows, about 40x slower on the masked actions' -1e4 log-probabilities
    (for the policy's log-probabilities; the predictions' are never masked)."""
    return torch.where(log_p < _SMALLEST_EXP, 0.0, log_p.clamp(min=_SMALLEST_EXP).exp())


def lpg_inputs(agent: Agent, params: Params, batch: Batch, gamma: float | torch.Tensor) -> LPGInputs:
    """What the LPG reads from ``batch`` under the agent's current ``params`` (graph to ``params`` kept)."""
    if batch.bootstrap_obs is None:
        raise ValueError("the LPG objective needs Batch.bootstrap_obs (y of the state after the last step)")
    t, b = batch.rewards.shape
    logits, y_logits = agent.forward(params, batch.obs.flatten(0, 1))
    logp = torch.log_softmax(logits, -1).gather(-1, batch.actions.flatten(0, 1).long().view(-1, 1)).view(t, b)
    y = torch.softmax(y_logits, -1).view(t, b, -1)
    _, y_boot = agent.forward(params, batch.bootstrap_obs)
    y_next = torch.cat([y[1:], torch.softmax(y_boot, -1).unsqueeze(0)])
    return LPGInputs(rewards=batch.rewards, discounts=batch.discounts, gamma=gamma, pi_taken=logp.exp(), y=y, y_next=y_next)


def agent_terms(
    agent: Agent, params: Params, batch: Batch, y_hat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 2's per-step pieces, ``[T, B]`` each: log pi(a_t|s_t), KL(y_hat_t || y(s_t)) and the policy's entropy."""
    t, b = batch.rewards.shape
    logits, y_logits = agent.forward(params, batch.obs.flatten(0, 1))
    log_pi = torch.log_softmax(logits, -1)
    logp = log_pi.gather(-1, batch.actions.flatten(0, 1).long().view(-1, 1)).view(t, b)
    log_y = torch.log_softmax(y_logits, -1).view(t, b, -1)
    kl = (log_y.exp() * (log_y - torch.log(y_hat))).sum(-1)
    entropy = -(probs(log_pi) * log_pi).sum(-1).view(t, b)
    return logp, kl, entropy


class LPGObjective:
    """``loss(params, batch, hparams, meta=None, *, targets=None) -> (loss, metrics)``.

    Without ``targets`` the LPG reads the batch under the *detached* parameters (the targets are then fixed,
    as Eq. 2 asks); a meta-gradient passes ``targets`` computed with the graph instead (``LPGAgentLearner``).
    ``metrics``: ``LPG_METRICS``, detached 0-d tensors.
    """

    def __init__(self, agent: Agent, network: UpdateTargets, weights: Weights | None = None) -> None:
        self.agent, self.network, self.weights = agent, network, weights

    def lpg_weights(self, meta: Mapping[str, Any] | None) -> Weights:
        if meta is not None and "lpg" in meta:
            return meta["lpg"]
        if self.weights is None:
            raise ValueError("LPGObjective has no weights of its own: pass meta={'lpg': weights}")
        return self.weights

    def targets(
        self, params: Params, batch: Batch, hparams: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pi_hat [T, B], y_hat [T, B, m])`` for ``batch`` under ``params``, with whatever graph they carry."""
        return self.network.forward(self.lpg_weights(meta), lpg_inputs(self.agent, params, batch, hparams["gamma"]))

    def __call__(
        self,
        params: Params,
        batch: Batch,
        hparams: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        *,
        targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if targets is None:
            targets = self.targets({k: v.detach() for k, v in params.items()}, batch, hparams, meta)
        pi_hat, y_hat = targets
        logp, kl, entropy = agent_terms(self.agent, params, batch, y_hat)
        policy_loss = -(pi_hat * logp).mean()
        prediction_loss = kl.mean()
        loss = policy_loss + hparams["kl_coef"] * prediction_loss
        ent = entropy.mean()
        return loss, dict(zip(LPG_METRICS, torch.stack([policy_loss, prediction_loss, ent]).detach()))
