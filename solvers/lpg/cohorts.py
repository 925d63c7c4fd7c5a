"""The lifetimes of one kind of agent inside a meta-training run: the tables, or the networks of one environment.

A ``MetaTrainer`` splits its N slots into cohorts: one ``TabularCohort`` for every slot whose environment is
tabular (their tables stacked row-wise, ``solvers.lpg.population``), and one ``NetworkCohort`` per
function-approximation environment (its networks stacked, ``solvers.lpg.networks``; one environment each, so
one observation shape and architecture).  A cohort owns what differs by kind -- the agent, its parameters and
optimizer state, the meta-critic, the environments -- behind one face:

- ``policy_obs()``: what the agents read now, ``[n * E, ...]``;
- ``values(obs)`` and ``train_critic(obs, error)``: the meta-critic (a table, or a value network per lifetime
  trained by Adam);
- ``learner(lpg)``: what ``agents.unroll.unroll`` steps;
- ``start(j, ...)``: local lifetime ``j`` starts again.

The trainer keeps what every slot shares (ages, gamma, beta0, the bandit's arm) in global ``[N]`` tensors and
indexes them by ``cohort.slots``.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.base import Params
from agents.seeding import derive
from solvers.lpg.lifetimes import LifetimeEnvs, task_sizes
from solvers.lpg.networks import (
    NetSpec,
    NetworkPopulationAgent,
    NetworkPopulationLearner,
    StackedNet,
    adam_state,
    lifetime_adam,
    restart,
)
from solvers.lpg.population import PopulationAgent, PopulationLearner


class TabularCohort:
    """The tabular lifetimes: row-stacked policy, prediction and value tables."""

    kind = "tabular"

    def __init__(
        self, slots: list[int], names: list[str], envs_per_lifetime: int, m: int, dtype: torch.dtype, critic_lr: float
    ) -> None:
        self.slots, self.names, self.e = torch.tensor(slots, dtype=torch.long), list(names), envs_per_lifetime
        self.critic_lr = critic_lr
        sizes = {name: task_sizes(name) for name in names}
        self.agent = PopulationAgent(len(slots), [sizes[nm][0] for nm in names], max(a for _, a in sizes.values()), m)
        self.envs = LifetimeEnvs(self.names, envs_per_lifetime)
        self.params = self.agent.init(dtype)
        self.opt_state: dict[str, Any] = {}
        self.critic = torch.zeros(self.agent.num_rows, dtype=dtype)
        """each lifetime's value table (its rows ``agent.block(j)``): the meta-critic"""

    def policy_obs(self) -> torch.Tensor:
        n = self.agent.n
        return self.agent.global_obs(self.envs.obs, torch.arange(n).view(n, 1).expand(n, self.e)).reshape(-1)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic[obs]

    def train_critic(self, obs: torch.Tensor, error: torch.Tensor) -> None:
        """Move each visited state's value ``critic_lr`` of the way to its mean TD(lambda) return (``error = target - v``)."""
        flat = self.critic
        total = torch.zeros_like(flat).index_add_(0, obs.reshape(-1), error.reshape(-1))
        visits = torch.zeros_like(flat).index_add_(0, obs.reshape(-1), torch.ones_like(error).reshape(-1))
        flat += self.critic_lr * total / visits.clamp(min=1)

    def learner(self, lpg: Any) -> PopulationLearner:
        return PopulationLearner(self.agent, lpg, self.params)

    def start(self, j: int, seed: int, collect_actions: bool, agent_seed: int) -> None:
        actions = self.envs.reset_slot(j, seed, collect_actions)
        self.agent.action_mask[j] = torch.arange(self.agent.num_actions) < actions
        with torch.no_grad():
            for v in self.params.values():
                v[self.agent.block(j)] = 0.0
            self.critic[self.agent.block(j)] = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.clone() for k, v in self.params.items()},
            "critic": self.critic.clone(),
            "action_mask": self.agent.action_mask.clone(),
            "envs": self.envs.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.params = {k: v.clone() for k, v in state["params"].items()}
        self.critic = state["critic"].clone()
        self.agent.action_mask = state["action_mask"].clone()
        self.envs.load_state_dict(state["envs"])


class NetworkCohort:
    """The lifetimes of one function-approximation environment: stacked agent networks trained by per-lifetime
    Adam, and per-lifetime value networks of the same architecture as the meta-critic."""

    kind = "network"

    def __init__(
        self, slots: list[int], name: str, spec: NetSpec, envs_per_lifetime: int, m: int, dtype: torch.dtype, critic_lr: float
    ) -> None:
        self.slots, self.names, self.e = torch.tensor(slots, dtype=torch.long), [name] * len(slots), envs_per_lifetime
        n = len(slots)
        obs_shape, actions = task_sizes(name)
        self.dtype, self.critic_lr = dtype, critic_lr
        self.agent = NetworkPopulationAgent(n, envs_per_lifetime, obs_shape, actions, m, spec)
        self.critic_net = StackedNet(n, envs_per_lifetime, obs_shape, 1, spec)
        self.envs = LifetimeEnvs(self.names, envs_per_lifetime, obs_shape)
        # every lifetime is re-drawn by start(); these only give the tensors their shapes
        zero = [torch.Generator().manual_seed(0)] * n
        self.params = self.agent.net.init(zero, dtype)
        self.opt_state = adam_state(self.params)
        self.critic = self.critic_net.init(zero, dtype)
        self.critic_opt = adam_state(self.critic)

    def policy_obs(self) -> torch.Tensor:
        # a copy: the environments overwrite their observation buffer in place at every step
        return self.envs.obs.reshape(-1, *self.envs.obs.shape[2:]).to(self.dtype, copy=True)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.values_of(self.critic, obs)

    def train_critic(self, obs: torch.Tensor, error: torch.Tensor) -> None:
        """One Adam step (``critic_lr``) of every value network on ``0.5 (target - v)^2`` (``error`` fixes the target)."""
        n = self.agent.n
        with torch.enable_grad():
            params = {k: v.detach().requires_grad_() for k, v in self.critic.items()}
            values = self.values_of(params, obs)
            target = (values + error).detach()
            per = 0.5 * (target - values).square().reshape(values.shape[0], n, -1).mean(dim=(0, 2))
            grads = torch.autograd.grad(per.sum(), list(params.values()))
        new, self.critic_opt = lifetime_adam(params, grads, self.critic_opt, torch.full((n,), self.critic_lr, dtype=self.dtype))
        self.critic = {k: v.detach() for k, v in new.items()}

    def values_of(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[: obs.dim() - len(self.critic_net.obs_shape)]
        return self.critic_net.forward(params, obs.reshape(-1, *self.critic_net.obs_shape).to(self.dtype)).view(lead)

    def learner(self, lpg: Any) -> NetworkPopulationLearner:
        return NetworkPopulationLearner(self.agent, lpg, self.params, self.opt_state)

    def start(self, j: int, seed: int, collect_actions: bool, agent_seed: int) -> None:
        actions = self.envs.reset_slot(j, seed, collect_actions)
        self.agent.action_mask[j] = torch.arange(self.agent.num_actions) < actions
        g = torch.Generator().manual_seed(agent_seed)
        restart(self.params, self.opt_state, j, self.agent.net.init_one(g, self.dtype))
        g = torch.Generator().manual_seed(derive(agent_seed, "critic"))
        restart(self.critic, self.critic_opt, j, self.critic_net.init_one(g, self.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": _cloned(self.params),
            "opt_state": _cloned(self.opt_state),
            "critic": _cloned(self.critic),
            "critic_opt": _cloned(self.critic_opt),
            "action_mask": self.agent.action_mask.clone(),
            "envs": self.envs.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("params", "opt_state", "critic", "critic_opt"):
            setattr(self, key, _cloned(state[key]))
        self.agent.action_mask = state["action_mask"].clone()
        self.envs.load_state_dict(state["envs"])


def _cloned(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _cloned(v) if isinstance(v, dict) else v.clone() for k, v in tree.items()}
