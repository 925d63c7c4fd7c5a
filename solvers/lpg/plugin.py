"""A frozen LPG as the objective of a discrete-action actor-critic learner (``config={"objective": "lpg"}``).

The loss is the paper's meta-testing update (appendix B.2, Eq. 7):

    - mean[(pi_hat - f(s)) log pi(a|s)] + kl_coef * mean KL(y(s) || y_hat) + 1/2 mean (f(s) - pi_hat)^2

with pi_hat and y_hat from the frozen LPG, fixed from the agent's view; the learner's critic head plays the
action-independent baseline f (it regresses on pi_hat, never on returns: the learner has no value function).
The prediction y is a head this objective brings (``init_params``): one hidden layer of the learner's width
over the flattened observation, softmax over the LPG's m.  ``kl_coef``: the rule file's ``hparams`` or 0.5
(Table 4).  Reported metrics keep the learner's names: ``value`` is the baseline's loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from agents.a2c import A2CObjective
from agents.base import Batch, Params
from solvers.lpg.files import DEFAULT_RULE, load_rule
from solvers.lpg.network import LPGInputs, LPGNetwork, Weights

PREFIX = "lpg_y."


class FrozenLPGObjective:
    """``loss(params, batch, hparams, meta=None) -> (loss, metrics)`` of Eq. 7 for ``network`` (the learner's)."""

    def __init__(self, network: Any, lpg: LPGNetwork, weights: Weights, *, obs_size: int, hidden: int, kl_coef: float) -> None:
        if not getattr(network, "discrete", False):
            raise ValueError("the LPG objective needs a discrete-action learner (pi(a|s) of the action taken)")
        self.network, self.lpg, self.weights = network, lpg, {k: v.detach() for k, v in weights.items()}
        self.obs_size, self.hidden, self.kl_coef = int(obs_size), int(hidden), float(kl_coef)

    def init_params(self, generator: torch.Generator) -> Params:
        """The prediction head: ``obs -> hidden (ReLU) -> m`` logits, uniform(+-1/sqrt(fan_in)) weights, zero biases."""
        shapes = {"hidden": (self.hidden, self.obs_size), "out": (self.lpg.config.m, self.hidden)}
        params: Params = {}
        for name, (rows, cols) in shapes.items():
            params[f"{PREFIX}{name}.weight"] = (torch.rand(rows, cols, generator=generator) * 2 - 1) / math.sqrt(cols)
            params[f"{PREFIX}{name}.bias"] = torch.zeros(rows)
        return params

    def predict(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """Prediction logits ``[N, m]`` for observations ``[N, ...]``."""
        x = obs.float().reshape(obs.shape[0], -1)
        h = F.relu(F.linear(x, params[PREFIX + "hidden.weight"], params[PREFIX + "hidden.bias"]))
        return F.linear(h, params[PREFIX + "out.weight"], params[PREFIX + "out.bias"])

    @staticmethod
    def targets(batch: Batch, hparams: Mapping[str, Any]) -> Batch:
        """The learner's schedule reads returns for its explained-variance statistic; the loss does not."""
        return A2CObjective.targets(batch, hparams)

    def __call__(
        self, params: Params, batch: Batch, hparams: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t, b = batch.rewards.shape
        if batch.bootstrap_obs is None:
            raise ValueError("the LPG objective needs Batch.bootstrap_obs (y of the state after the last step)")
        logits, baseline = self.network.forward(params, batch.obs.flatten(0, 1))
        log_pi = torch.log_softmax(logits, -1)
        logp = log_pi.gather(-1, batch.actions.flatten(0, 1).long().view(-1, 1)).view(t, b)
        log_y = torch.log_softmax(self.predict(params, batch.obs.flatten(0, 1)), -1).view(t, b, -1)
        with torch.no_grad():
            y = log_y.exp()
            y_boot = torch.softmax(self.predict(params, batch.bootstrap_obs), -1).unsqueeze(0)
            inputs = LPGInputs(
                rewards=batch.rewards,
                discounts=batch.discounts,
                gamma=float(hparams["gamma"]),
                pi_taken=logp.exp(),
                y=y,
                y_next=torch.cat([y[1:], y_boot]),
            )
            pi_hat, y_hat = self.lpg.forward(self.weights, inputs)
        baseline = baseline.view(t, b)
        policy = -((pi_hat - baseline.detach()) * logp).mean()
        prediction = (log_y.exp() * (log_y - torch.log(y_hat))).sum(-1).mean()
        value = 0.5 * (baseline - pi_hat).square().mean()
        loss = policy + self.kl_coef * prediction + value
        ent = -(log_pi.exp() * log_pi).sum(-1).mean()
        names = ("policy", "value", "entropy", "prediction")
        return loss, dict(zip(names, torch.stack([policy, value, ent, prediction]).detach()))


def from_spec(arg: str, learner: Any) -> FrozenLPGObjective:
    """``""``: the shipped LPG; else ``arg`` is a rule file (``hyperrl lpg-train``'s output)."""
    lpg, weights, hparams = load_rule(arg or DEFAULT_RULE)
    space = learner.envs.single_observation_space
    obs_size = int(space.n) if not space.shape else math.prod(space.shape)
    return FrozenLPGObjective(
        learner.network,
        lpg,
        weights,
        obs_size=obs_size,
        hidden=int(learner.config.hidden[0]),
        kl_coef=float(hparams.get("kl_coef", 0.5)),
    )
