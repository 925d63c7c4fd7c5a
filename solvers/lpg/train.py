"""LPG meta-training (paper Algorithm 1, Eq. 3-4, appendix B.1) over N tabular lifetimes at once.

One ``MetaTrainer.step()``: every lifetime makes K agent updates (Eq. 2) on fresh 20-step rollouts through
``agents.unroll.unroll`` (graph kept to the LPG's weights), then acts once more with theta_K; on that
rollout the meta-objective of Eq. 4 is an A2C policy gradient of theta_K (advantages from the lifetime's
meta-critic, a value table trained on every rollout) plus the entropy and L2 regularisers, averaged over
lifetimes; one Adam step (1e-4) descends it.  A lifetime ends after ``lifetime_updates`` updates or when
its policy's entropy collapses; at its end the bandit p(alpha | E) (Eq. 6) learns its final return and the
slot starts a new lifetime: new agent, new environment draws, gamma / beta0 / alpha sampled anew.
The first lifetimes' lengths are staggered so that lifetimes end at different meta-iterations.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from agents.base import Batch
from agents.returns import lambda_returns
from agents.seeding import derive
from agents.unroll import unroll
from solvers.lpg.bandit import HyperBandit
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.lifetimes import GRIDS, LifetimeEnvs, expand_envs, task_sizes
from solvers.lpg.network import LPGNetwork, Weights
from solvers.lpg.population import PopulationAgent, PopulationLearner, per_lifetime_mean, repeat_per_env


class MetaTrainer:
    """The LPG being meta-trained, its Adam state, the bandit and the N lifetimes (agents, critics, tasks)."""

    def __init__(self, config: MetaTrainConfig | None = None) -> None:
        c = self.config = config or MetaTrainConfig()
        self.dtype = getattr(torch, c.dtype)
        self.env_names = expand_envs(c.envs)
        self.slot_env = [self.env_names[j % len(self.env_names)] for j in range(c.lifetimes)]
        sizes = {name: task_sizes(name) for name in self.env_names}
        states = [sizes[name][0] for name in self.slot_env]
        self.agent = PopulationAgent(c.lifetimes, states, max(a for _, a in sizes.values()), c.lpg.m)
        self.network = LPGNetwork(c.lpg)
        init = self.network.init(torch.Generator().manual_seed(derive(c.seed, "lpg-init")), dtype=self.dtype)
        self.weights: Weights = {k: v.requires_grad_() for k, v in init.items()}
        self.optimizer = torch.optim.Adam(list(self.weights.values()), lr=c.meta_lr)
        self.bandit = HyperBandit.grid(self.env_names, c.lrs, c.kl_coefs, tau=c.tau, rho=c.rho, seed=derive(c.seed, "bandit"))
        self.generator = torch.Generator().manual_seed(derive(c.seed, "lifetimes"))
        self.envs = LifetimeEnvs(self.slot_env, c.envs_per_lifetime)
        self.params = self.agent.init(self.dtype)
        self.critic = torch.zeros(self.agent.num_rows, dtype=self.dtype)
        """each lifetime's value table (its rows ``agent.block(j)``): the meta-critic"""
        n = c.lifetimes
        self.age = torch.zeros(n, dtype=torch.long)
        self.length = torch.tensor([max(c.unroll, round(c.lifetime_updates * (j + 1) / n)) for j in range(n)])
        self.gamma = torch.zeros(n, dtype=self.dtype)
        self.beta0 = torch.zeros(n, dtype=self.dtype)
        self.arm = torch.zeros(n, dtype=torch.long)
        self.births = torch.zeros(n, dtype=torch.long)
        """how many lifetimes each slot has started (seeds of its tasks derive from it)"""
        self.final_sum = torch.zeros(n, dtype=torch.float64)
        self.final_count = torch.zeros(n, dtype=torch.float64)
        self.final_reward = torch.zeros(n, dtype=torch.float64)
        self.iteration = 0
        self._reset_counters()
        for j in range(n):
            self._new_lifetime(j)

    # -- lifetimes ----------------------------------------------------------------------------
    def _draw(self, values: tuple[float, ...]) -> float:
        return values[int(torch.randint(len(values), (1,), generator=self.generator))]

    def _new_lifetime(self, j: int) -> None:
        c, name = self.config, self.slot_env[j]
        collect = name in GRIDS and bool(torch.randint(2, (1,), generator=self.generator))
        actions = self.envs.reset_slot(j, derive(c.seed, "task", j, int(self.births[j])), collect)
        self.agent.action_mask[j] = torch.arange(self.agent.num_actions) < actions
        with torch.no_grad():
            for v in self.params.values():
                v[self.agent.block(j)] = 0.0
            self.critic[self.agent.block(j)] = 0.0
        self.gamma[j], self.beta0[j] = self._draw(c.gammas), self._draw(c.beta0s)
        self.arm[j] = self.bandit.sample(name) if c.bandit else self._fixed_arm()
        self.age[j], self.births[j] = 0, self.births[j] + 1
        self.final_sum[j] = self.final_count[j] = self.final_reward[j] = 0.0

    def _fixed_arm(self) -> int:
        c = self.config
        return self.bandit.arms.index((c.lrs[len(c.lrs) // 2], c.kl_coefs[len(c.kl_coefs) // 2]))

    def hparams(self) -> dict[str, torch.Tensor]:
        """Each lifetime's ``lr``, ``kl_coef`` and ``gamma``, ``[N]``."""
        arms = torch.tensor(self.bandit.arms, dtype=self.dtype)[self.arm]
        return {"lr": arms[:, 0], "kl_coef": arms[:, 1], "gamma": self.gamma.clone()}

    # -- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, params: dict[str, torch.Tensor]) -> Batch:
        """One ``num_steps`` rollout of every lifetime with ``params``; trains the meta-critic on it."""
        c, n, e = self.config, self.config.lifetimes, self.config.envs_per_lifetime
        lifetime = torch.arange(n).view(n, 1).expand(n, e)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "actions", "rewards", "discounts")}
        late = (self.age >= (self.length.double() * (1 - c.final_fraction)).ceil().long()).double()
        for _ in range(c.num_steps):
            obs = self.agent.global_obs(self.envs.obs, lifetime).reshape(-1)
            logits, _ = self.agent.forward(params, obs)
            action = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=self.generator).view(n, e)
            reward, ended, finished = self.envs.step(action)
            self.final_sum += late * finished.sum(1)
            self.final_count += late * ended.double().sum(1)
            self.final_reward += late * reward.sum(1) / e
            self.episodes_sum += finished.sum(1)
            self.episodes_count += ended.double().sum(1)
            self.reward_sum += reward.sum(1) / e
            for k, v in zip(rows, (obs, action.reshape(-1), reward.reshape(-1), (~ended).reshape(-1))):
                rows[k].append(v)
        cols = {k: torch.stack(v) for k, v in rows.items()}
        boot = self.agent.global_obs(self.envs.obs, lifetime).reshape(-1)
        table = self.critic
        batch = Batch(
            obs=cols["obs"],
            actions=cols["actions"],
            log_probs=torch.zeros(c.num_steps, n * e, dtype=self.dtype),
            values=table[cols["obs"]],
            rewards=cols["rewards"].to(self.dtype),
            discounts=cols["discounts"].to(self.dtype),
            bootstrap_value=table[boot],
            bootstrap_obs=boot,
        )
        self._train_critic(batch)
        return batch

    def _critic_targets(self, batch: Batch) -> torch.Tensor:
        gamma = repeat_per_env(self.gamma, batch.rewards.shape[1])
        return lambda_returns(
            batch.rewards, batch.discounts * gamma, batch.values, batch.bootstrap_value, self.config.critic_lambda
        )

    def _train_critic(self, batch: Batch) -> None:
        """Move each visited state's value ``critic_lr`` of the way to its mean TD(lambda) return."""
        error = self._critic_targets(batch) - batch.values
        self.critic_losses.append(float(0.5 * error.square().mean()))
        if not self.config.train_critic:
            return
        flat = self.critic
        total = torch.zeros_like(flat).index_add_(0, batch.obs.reshape(-1), error.reshape(-1))
        visits = torch.zeros_like(flat).index_add_(0, batch.obs.reshape(-1), torch.ones_like(error).reshape(-1))
        flat += self.config.critic_lr * total / visits.clamp(min=1)

    # -- the meta-objective (Eq. 4) -----------------------------------------------------------------
    def meta_loss(self, out: Any, batch: Batch, hp: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """``mean_n [-PG_n - beta0_n H(pi_K) - beta1 H(y_K) + beta2 |pi_hat|^2 + beta3 |y_hat|^2]`` (descend it)."""
        c, n = self.config, self.config.lifetimes
        t, b = batch.rewards.shape
        advantages = (self._critic_targets(batch) - batch.values).detach()
        logits, y_logits = self.agent.forward(out.params, batch.obs.flatten(0, 1))
        log_pi = torch.log_softmax(logits, -1)
        logp = log_pi.gather(-1, batch.actions.reshape(-1, 1).long()).view(t, b)
        log_y = torch.log_softmax(y_logits, -1)
        terms = {
            "pg": per_lifetime_mean(-logp * advantages, n),
            "entropy_pi": per_lifetime_mean(-(log_pi.exp() * log_pi).sum(-1).view(t, b), n),
            "entropy_y": per_lifetime_mean(-(log_y.exp() * log_y).sum(-1).view(t, b), n),
            "l2_pi_hat": torch.stack([m["pi_hat_sq"] for m in out.metrics]).mean(0),
            "l2_y_hat": torch.stack([m["y_hat_sq"] for m in out.metrics]).mean(0),
        }
        per = (
            terms["pg"]
            - self.beta0 * terms["entropy_pi"]
            - c.beta1 * terms["entropy_y"]
            + c.beta2 * terms["l2_pi_hat"]
            + c.beta3 * terms["l2_y_hat"]
        )
        return per.mean(), {k: float(v.detach().mean()) for k, v in terms.items()}

    # -- one meta-iteration -----------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """K updates of every lifetime, one meta-gradient step, lifetime ends; returns the iteration's metrics."""
        c = self.config
        self._reset_counters()
        hp = self.hparams()
        learner = PopulationLearner(self.agent, self.network, self.params)
        out = unroll(learner, lambda p, k: self.collect(p), hp, {"lpg": self.weights}, steps=c.unroll)
        validation = self.collect({k: v.detach() for k, v in out.params.items()})
        loss, terms = self.meta_loss(out, validation, hp)
        self.optimizer.zero_grad()
        grads = torch.autograd.grad(loss, list(self.weights.values()))
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = min(1.0, c.meta_grad_clip / (float(norm) + 1e-12)) if c.meta_grad_clip > 0 else 1.0
        for w, g in zip(self.weights.values(), grads):
            w.grad = g * scale
        self.optimizer.step()
        self.params = {k: v.detach() for k, v in out.params.items()}
        self.age += c.unroll
        entropy = out.metrics[-1]["entropy"].detach()
        ended = self._end_lifetimes(entropy)
        self.iteration += 1
        return self._metrics(float(loss.detach()), terms, float(norm), entropy, ended)

    def _reset_counters(self) -> None:
        """What one meta-iteration's metrics sum: episodes per slot, rewards, the critic's losses."""
        n = self.config.lifetimes
        self.episodes_sum = torch.zeros(n, dtype=torch.float64)
        self.episodes_count = torch.zeros(n, dtype=torch.float64)
        self.reward_sum = torch.zeros(n, dtype=torch.float64)
        self.critic_losses: list[float] = []

    def _end_lifetimes(self, entropy: torch.Tensor) -> dict[str, int]:
        done = self.age >= self.length
        collapsed = ~done & (entropy < self.config.entropy_floor)
        for j in torch.nonzero(done | collapsed).flatten().tolist():
            if done[j]:
                final = self.final_sum[j] / self.final_count[j] if self.final_count[j] > 0 else self.final_reward[j]
                if self.config.bandit:
                    self.bandit.update(self.slot_env[j], int(self.arm[j]), float(final))
            self.length[j] = self.config.lifetime_updates
            self._new_lifetime(j)
        return {"ended": int(done.sum()), "collapsed": int(collapsed.sum())}

    def _metrics(self, loss: float, terms: dict, norm: float, entropy: torch.Tensor, ended: dict) -> dict[str, Any]:
        steps = (self.config.unroll + 1) * self.config.num_steps
        per_env: dict[str, dict[str, float]] = {}
        for name in self.env_names:
            slots = torch.tensor([e == name for e in self.slot_env])
            count = float(self.episodes_count[slots].sum())
            per_env[name] = {
                "return": float(self.episodes_sum[slots].sum()) / count if count else float("nan"),
                "reward_rate": float(self.reward_sum[slots].mean()) / steps,
                "arm": list(self.bandit.best(name)),
            }
        return {
            "iteration": self.iteration,
            "meta_loss": loss,
            **terms,
            "meta_grad_norm": norm,
            "critic_loss_first": self.critic_losses[0],
            "critic_loss_last": self.critic_losses[-1],
            "policy_entropy": float(entropy.mean()),
            **ended,
            "envs": per_env,
        }

    # -- snapshots ------------------------------------------------------------------------------------
    def describe(self) -> str:
        """The configuration as text, less ``iterations`` (a checkpoint keeps it; a resume with other options is
        refused, one that only runs longer is not)."""
        fields = {k: v for k, v in dataclasses.asdict(self.config).items() if k != "iterations"}
        return json.dumps(fields, sort_keys=True, default=str)

    def state_dict(self) -> dict[str, Any]:
        """Everything the run needs to continue bit-for-bit (``torch.load(weights_only=True)`` reads it)."""
        slots = {k: getattr(self, k).clone() for k in _SLOT_TENSORS}
        return {
            "format": STATE_FORMAT,
            "config": self.describe(),
            "iteration": self.iteration,
            "weights": {k: v.detach().clone() for k, v in self.weights.items()},
            "optimizer": self.optimizer.state_dict(),
            "bandit": self.bandit.state_dict(),
            "generator": self.generator.get_state(),
            "params": {k: v.clone() for k, v in self.params.items()},
            "critic": self.critic.clone(),
            "action_mask": self.agent.action_mask.clone(),
            "slots": slots,
            "envs": self.envs.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"the state is of format {state.get('format', 1)}, this MetaTrainer reads format {STATE_FORMAT} "
                "(tables stacked row-wise, one task per environment kind): start the run afresh"
            )
        if state.get("config") != self.describe():
            raise ValueError("the state was written by a meta-training run with other options: give the same ones")
        with torch.no_grad():
            for k, v in self.weights.items():
                v.copy_(state["weights"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bandit.load_state_dict(state["bandit"])
        self.envs.load_state_dict(state["envs"])
        self.generator.set_state(state["generator"])
        self.params = {k: v.clone() for k, v in state["params"].items()}
        self.critic = state["critic"].clone()
        self.agent.action_mask = state["action_mask"].clone()
        for k in _SLOT_TENSORS:
            setattr(self, k, state["slots"][k].clone())
        self.iteration = int(state["iteration"])


STATE_FORMAT = 2
"""the layout ``state_dict`` writes (1: tables padded to [N, S, .], a task per slot)"""

_SLOT_TENSORS = ("age", "length", "gamma", "beta0", "arm", "births", "final_sum", "final_count", "final_reward")
"""per-lifetime bookkeeping a snapshot keeps"""
