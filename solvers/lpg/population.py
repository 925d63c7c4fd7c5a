"""N tabular LPG agents updated as one program: stacked tables, per-lifetime hyperparameters.

Every lifetime ``n`` owns a policy table ``pi[n] [S, A]`` and a prediction table ``y[n] [S, m]`` (padded to
the largest ``S`` and ``A`` of the training environments; the actions a lifetime's environment lacks are
masked out of its policy).  A ``Batch`` of the population is ``[T, N * E]`` (``E`` environments per
lifetime, lifetime-major columns) whose observations are *global* state indices ``n * S + s``, so one
gather reads every lifetime's table and the LPG runs once over all ``N * E`` trajectories.

``PopulationLearner.train_step`` is Eq. 2 for all lifetimes at once: the loss is the *sum* over lifetimes of
each lifetime's mean loss (so lifetime ``n``'s table receives exactly its own gradient), ``kl_coef`` and the
SGD step size ``lr`` are ``[N]`` tensors, ``gamma`` (fed to the LPG) is ``[N]``.  With
``differentiable=True`` the step is the meta-gradient's (targets fixed for the agent, graph to the LPG kept,
as ``solvers.lpg.meta.LPGAgentLearner`` does for one lifetime) and the metrics carry the per-lifetime
``[N]`` squared targets Eq. 4's L2 regularisers read, with their graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from agents.base import Batch, Params
from solvers.lpg.objective import UpdateTargets, agent_terms, lpg_inputs

MASKED_LOGIT = -1e4
"""the logit of an action the lifetime's environment does not have: probability 0, finite log (no NaN in entropies)"""


class PopulationAgent:
    """``N`` tabular agents; ``forward(params, global_obs) -> (policy logits [n, A], prediction logits [n, m])``."""

    def __init__(self, num_lifetimes: int, num_states: int, num_actions: int, m: int) -> None:
        for name, v in (("num_lifetimes", num_lifetimes), ("num_states", num_states), ("num_actions", num_actions), ("m", m)):
            if v < 1:
                raise ValueError(f"PopulationAgent.{name} must be >= 1, got {v}")
        self.n, self.num_states, self.num_actions, self.m = num_lifetimes, num_states, num_actions, m
        self.action_mask = torch.ones(num_lifetimes, num_actions, dtype=torch.bool)
        """``[N, A]``: which actions lifetime ``n``'s environment has"""

    def init(self, dtype: torch.dtype = torch.float64) -> Params:
        """Zero logits: uniform policies and predictions (the paper's tabular start)."""
        return {
            "pi": torch.zeros(self.n, self.num_states, self.num_actions, dtype=dtype),
            "y": torch.zeros(self.n, self.num_states, self.m, dtype=dtype),
        }

    def global_obs(self, obs: torch.Tensor, lifetime: torch.Tensor) -> torch.Tensor:
        """``lifetime * S + obs``: the row of the stacked tables."""
        return lifetime * self.num_states + obs.long()

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = obs.long().reshape(-1)
        logits = params["pi"].reshape(-1, self.num_actions)[idx]
        mask = self.action_mask.to(logits.device)[idx // self.num_states]
        return torch.where(mask, logits, MASKED_LOGIT), params["y"].reshape(-1, self.m)[idx]


def per_lifetime_mean(x: torch.Tensor, n: int) -> torch.Tensor:
    """``[T, N * E] -> [N]``: each lifetime's mean over its steps and environments."""
    return x.reshape(x.shape[0], n, -1).mean(dim=(0, 2))


def repeat_per_env(x: torch.Tensor, batch_columns: int) -> torch.Tensor:
    """``[N] -> [N * E]`` (lifetime-major columns)."""
    return x.repeat_interleave(batch_columns // x.shape[0])


class PopulationLearner:
    """What ``agents.unroll.unroll`` reads (``parameters``, ``opt_state``, ``train_step``) for N tabular lifetimes."""

    def __init__(self, agent: PopulationAgent, network: UpdateTargets, params: Params) -> None:
        self.agent, self.network = agent, network
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.opt_state: dict[str, Any] = {}

    def parameters(self) -> Params:
        return self.params

    def train_step(
        self,
        params: Params,
        opt_state: Mapping[str, Any],
        batch: Batch,
        hparams: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        *,
        differentiable: bool = False,
    ) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor]]:
        """One SGD step of every lifetime; ``hparams``: ``lr``, ``kl_coef``, ``gamma`` (``[N]`` tensors);
        ``meta["lpg"]``: the LPG's weights.  Metrics (``[N]``): ``policy``, ``prediction``, ``entropy``,
        ``pi_hat_sq`` (mean pi_hat^2), ``y_hat_sq`` (mean ||y_hat||^2)."""
        if meta is None or "lpg" not in meta:
            raise ValueError("PopulationLearner.train_step needs meta={'lpg': weights}")
        n = self.agent.n
        with torch.enable_grad():
            params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            source = params if differentiable else {k: v.detach() for k, v in params.items()}
            gamma = repeat_per_env(torch.as_tensor(hparams["gamma"], dtype=batch.rewards.dtype), batch.rewards.shape[1])
            pi_hat, y_hat = self.network.forward(meta["lpg"], lpg_inputs(self.agent, source, batch, gamma))
            # The loss reads theta' (a clone) only: its gradient holds the targets fixed (Eq. 2), the graph stays.
            read = {k: v.clone() for k, v in params.items()} if differentiable else params
            terms = self._loss_terms(read, batch, pi_hat, y_hat)
            kl_coef = torch.as_tensor(hparams["kl_coef"], dtype=batch.rewards.dtype)
            loss = (terms["policy"] + kl_coef * terms["prediction"]).sum()
            grads = torch.autograd.grad(loss, list(read.values()), create_graph=differentiable)
            lr = torch.as_tensor(hparams["lr"], dtype=batch.rewards.dtype).view(n, 1, 1)
            new = {k: v - lr * g for (k, v), g in zip(params.items(), grads)}
        metrics = {
            **terms,
            "pi_hat_sq": per_lifetime_mean(pi_hat.square(), n),
            "y_hat_sq": per_lifetime_mean(y_hat.square().sum(-1), n),
        }
        if not differentiable:
            new = {k: v.detach().requires_grad_() for k, v in new.items()}
            metrics = {k: v.detach() for k, v in metrics.items()}
        return new, {}, metrics

    def _loss_terms(self, params: Params, batch: Batch, pi_hat: torch.Tensor, y_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        logp, kl, ent = agent_terms(self.agent, params, batch, y_hat)
        n = self.agent.n
        return {
            "policy": per_lifetime_mean(-pi_hat * logp, n),
            "prediction": per_lifetime_mean(kl, n),
            "entropy": per_lifetime_mean(ent.detach(), n),
        }
