"""N tabular LPG agents updated as one program: stacked tables, per-lifetime hyperparameters.

Every lifetime ``n`` owns ``S_n`` rows of a policy table ``pi [R, A]`` and a prediction table ``y [R, m]``
(``R = sum S_n``: lifetime ``n``'s rows start at ``offsets[n]``, so a lifetime on a 122-state chain does not pay
for one on an 8064-state grid; ``A`` is the most actions of the training environments, and the actions a
lifetime's environment lacks are masked out of its policy).  A ``Batch`` of the population is ``[T, N * E]``
(``E`` environments per lifetime, lifetime-major columns) whose observations are *global* rows
``offsets[n] + s``, so one gather reads every lifetime's table and the LPG runs once over all ``N * E``
trajectories.

``PopulationLearner.train_step`` is Eq. 2 for all lifetimes at once: the loss is the *sum* over lifetimes of
each lifetime's mean loss (so lifetime ``n``'s table receives exactly its own gradient), ``kl_coef`` and the
SGD step size ``lr`` are ``[N]`` tensors, ``gamma`` (fed to the LPG) is ``[N]``.  With
``differentiable=True`` the step is the meta-gradient's (targets fixed for the agent, graph to the LPG kept,
as ``solvers.lpg.meta.LPGAgentLearner`` does for one lifetime) and the metrics carry the per-lifetime
``[N]`` squared targets Eq. 4's L2 regularisers read, with their graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.base import Batch, Params
from solvers.lpg.objective import UpdateTargets, agent_terms, lpg_inputs

MASKED_LOGIT = -1e4
"""the logit of an action the lifetime's environment does not have: probability 0, finite log (no NaN in entropies)"""


class PopulationAgent:
    """``N`` tabular agents of ``num_states`` states each (one number, or one per lifetime);
    ``forward(params, global_obs) -> (policy logits [n, A], prediction logits [n, m])``."""

    def __init__(self, num_lifetimes: int, num_states: int | Sequence[int], num_actions: int, m: int) -> None:
        states = [num_states] * num_lifetimes if isinstance(num_states, int) else [int(s) for s in num_states]
        sizes = (("num_lifetimes", num_lifetimes), ("num_states", min(states, default=0)), ("num_actions", num_actions), ("m", m))
        for name, v in sizes:
            if v < 1:
                raise ValueError(f"PopulationAgent.{name} must be >= 1, got {v}")
        if len(states) != num_lifetimes:
            raise ValueError(f"PopulationAgent.num_states needs one size per lifetime ({num_lifetimes}), got {len(states)}")
        self.n, self.num_actions, self.m = num_lifetimes, num_actions, m
        self.states = torch.tensor(states)
        """``[N]``: each lifetime's number of states"""
        self.offsets = torch.cumsum(self.states, 0) - self.states
        """``[N]``: the first row of each lifetime's tables"""
        self.num_rows = int(self.states.sum())
        self.row_lifetime = torch.repeat_interleave(torch.arange(num_lifetimes), self.states)
        """``[R]``: whose each row is"""
        self.action_mask = torch.ones(num_lifetimes, num_actions, dtype=torch.bool)
        """``[N, A]``: which actions lifetime ``n``'s environment has"""

    def block(self, j: int) -> slice:
        """Lifetime ``j``'s rows of the stacked tables."""
        start = int(self.offsets[j])
        return slice(start, start + int(self.states[j]))

    def init(self, dtype: torch.dtype = torch.float64) -> Params:
        """Zero logits: uniform policies and predictions (the paper's tabular start)."""
        return {
            "pi": torch.zeros(self.num_rows, self.num_actions, dtype=dtype),
            "y": torch.zeros(self.num_rows, self.m, dtype=dtype),
        }

    def global_obs(self, obs: torch.Tensor, lifetime: torch.Tensor) -> torch.Tensor:
        """``offsets[lifetime] + obs``: the row of the stacked tables."""
        return self.offsets[lifetime] + obs.long()

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = obs.long().reshape(-1)
        mask = self.action_mask.to(idx.device)[self.row_lifetime.to(idx.device)[idx]]
        return torch.where(mask, params["pi"][idx], MASKED_LOGIT), params["y"][idx]


class RowsAgent:
    """Some rows of a population's stacked tables as an agent of their own: ``forward(rows_params, local)`` reads
    row ``local`` of ``rows_params`` (``[len(rows), .]`` tensors), masked as the population masks ``rows[local]``."""

    def __init__(self, agent: PopulationAgent, rows: torch.Tensor) -> None:
        self.mask = agent.action_mask.to(rows.device)[agent.row_lifetime.to(rows.device)[rows]]

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = obs.long().reshape(-1)
        return torch.where(self.mask[idx], params["pi"][idx], MASKED_LOGIT), params["y"][idx]


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
        rows, local = self._visited(batch)
        view = RowsAgent(self.agent, rows)
        with torch.enable_grad():
            params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            # Only the rows this batch reads move: the step gathers them, updates them and writes them back,
            # so no op (forward or backward) touches the whole [R, .] tables but one copy per step.
            seen = {k: v[rows] for k, v in params.items()}
            grads, metrics = eq2_gradients(self.network, view, seen, local, hparams, meta, self.agent.n, differentiable)
            lr = torch.as_tensor(hparams["lr"], dtype=batch.rewards.dtype)[self.agent.row_lifetime[rows]].unsqueeze(1)
            # the rows are distinct, so a plain index_put writes them (cheaper than index_add, same values)
            new = {k: v.index_put((rows,), seen[k] - lr * g) for (k, v), g in zip(params.items(), grads)}
        return finish_step(new, {}, metrics, differentiable)

    def _visited(self, batch: Batch) -> tuple[torch.Tensor, Batch]:
        """The rows of the stacked tables ``batch`` reads (sorted, distinct) and the batch re-indexed to them."""
        if batch.bootstrap_obs is None:
            raise ValueError("the LPG objective needs Batch.bootstrap_obs (y of the state after the last step)")
        obs = batch.obs.reshape(-1).long()
        rows, inverse = torch.unique(torch.cat([obs, batch.bootstrap_obs.reshape(-1).long()]), return_inverse=True)
        local = dataclasses.replace(batch, obs=inverse[: obs.numel()].view_as(batch.obs), bootstrap_obs=inverse[obs.numel() :])
        return rows, local


def eq2_gradients(
    network: UpdateTargets,
    agent: Any,
    params: Params,
    batch: Batch,
    hparams: Mapping[str, Any],
    meta: Mapping[str, Any],
    n: int,
    differentiable: bool,
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Eq. 2's gradient for ``n`` lifetimes at once, in ``params``' order, and the step's ``[n]`` metrics.

    The loss is the sum over lifetimes of each lifetime's mean loss; it reads a clone of ``params`` only, so its
    gradient holds the LPG's targets fixed while, with ``differentiable``, the graph to the LPG and to
    ``params`` (through the targets) is kept for the metagradient.
    """
    source = params if differentiable else {k: v.detach() for k, v in params.items()}
    gamma = repeat_per_env(torch.as_tensor(hparams["gamma"], dtype=batch.rewards.dtype), batch.rewards.shape[1])
    pi_hat, y_hat = network.forward(meta["lpg"], lpg_inputs(agent, source, batch, gamma))
    read = {k: v.clone() if differentiable else v.detach().requires_grad_() for k, v in params.items()}
    logp, kl, ent = agent_terms(agent, read, batch, y_hat)
    terms = {
        "policy": per_lifetime_mean(-pi_hat * logp, n),
        "prediction": per_lifetime_mean(kl, n),
        "entropy": per_lifetime_mean(ent.detach(), n),
    }
    kl_coef = torch.as_tensor(hparams["kl_coef"], dtype=batch.rewards.dtype)
    loss = (terms["policy"] + kl_coef * terms["prediction"]).sum()
    grads = torch.autograd.grad(loss, list(read.values()), create_graph=differentiable)
    metrics = {
        **terms,
        "pi_hat_sq": per_lifetime_mean(pi_hat.square(), n),
        "y_hat_sq": per_lifetime_mean(y_hat.square().sum(-1), n),
    }
    return grads, metrics


def finish_step(
    new: Params, opt_state: dict[str, Any], metrics: dict[str, torch.Tensor], differentiable: bool
) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor]]:
    """A population step's return: outside a metagradient, everything detached (the new parameters leaves again)."""
    if differentiable:
        return new, opt_state, metrics
    return {k: v.detach().requires_grad_() for k, v in new.items()}, detach_tree(opt_state), detach_tree(metrics)


def detach_tree(tree: Any) -> Any:
    """Nested dicts with every tensor detached (other leaves as they are)."""
    if isinstance(tree, Mapping):
        return {k: detach_tree(v) for k, v in tree.items()}
    return tree.detach() if isinstance(tree, torch.Tensor) else tree
