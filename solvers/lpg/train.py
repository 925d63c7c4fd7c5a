"""LPG meta-training (paper Algorithm 1, Eq. 3-4, appendix B.1) over N lifetimes at once, tabular and network agents.

One ``MetaTrainer.step()``: every lifetime makes K agent updates (Eq. 2) on fresh 20-step rollouts through
``agents.unroll.unroll`` (graph kept to the LPG's weights), then acts once more with theta_K; on that
rollout the meta-objective of Eq. 4 is an A2C policy gradient of theta_K (advantages from the lifetime's
meta-critic, a value table or network trained on every rollout) plus the entropy and L2 regularisers, averaged over
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
from solvers.lpg.cohorts import NetworkCohort, TabularCohort
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.lifetimes import ACTION_SETS, NETWORK_AGENTS, TABULAR, expand_envs
from solvers.lpg.network import LPGNetwork, Weights
from solvers.lpg.objective import probs
from solvers.lpg.population import detach_tree, per_lifetime_mean, repeat_per_env


class MetaTrainer:
    """The LPG being meta-trained, its Adam state, the bandit and the N lifetimes, in cohorts by agent kind
    (``solvers.lpg.cohorts``: the tables of every tabular slot, the networks of each other environment)."""

    def __init__(self, config: MetaTrainConfig | None = None) -> None:
        c = self.config = config or MetaTrainConfig()
        self.dtype = getattr(torch, c.dtype)
        self.env_names = expand_envs(c.envs)
        self.slot_env = [self.env_names[j % len(self.env_names)] for j in range(c.lifetimes)]
        self.cohorts = self._cohorts()
        self.slot_cohort = {int(j): (i, local) for i, co in enumerate(self.cohorts) for local, j in enumerate(co.slots)}
        """slot -> (its cohort, its index there)"""
        self.network = LPGNetwork(c.lpg)
        init = self.network.init(torch.Generator().manual_seed(derive(c.seed, "lpg-init")), dtype=self.dtype)
        self.weights: Weights = {k: v.requires_grad_() for k, v in init.items()}
        self.optimizer = torch.optim.Adam(list(self.weights.values()), lr=c.meta_lr)
        lrs = {name: c.lrs if name in TABULAR else NETWORK_AGENTS[name].lrs for name in self.env_names}
        self.bandit = HyperBandit.grid(self.env_names, lrs, c.kl_coefs, tau=c.tau, rho=c.rho, seed=derive(c.seed, "bandit"))
        self.generator = torch.Generator().manual_seed(derive(c.seed, "lifetimes"))
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

    def _cohorts(self) -> list[TabularCohort | NetworkCohort]:
        c = self.config
        tabular = [j for j, name in enumerate(self.slot_env) if name in TABULAR]
        cohorts: list[TabularCohort | NetworkCohort] = []
        if tabular:
            names = [self.slot_env[j] for j in tabular]
            cohorts.append(TabularCohort(tabular, names, c.envs_per_lifetime, c.lpg.m, self.dtype, c.critic_lr))
        for name in (nm for nm in self.env_names if nm in NETWORK_AGENTS):
            slots = [j for j, nm in enumerate(self.slot_env) if nm == name]
            if slots:
                spec = NETWORK_AGENTS[name]
                cohorts.append(NetworkCohort(slots, name, spec, c.envs_per_lifetime, c.lpg.m, self.dtype, c.critic_adam_lr))
        return cohorts

    # -- lifetimes ----------------------------------------------------------------------------
    def _draw(self, values: tuple[float, ...]) -> float:
        return values[int(torch.randint(len(values), (1,), generator=self.generator))]

    def _new_lifetime(self, j: int) -> None:
        c, name = self.config, self.slot_env[j]
        collect = name in ACTION_SETS and bool(torch.randint(2, (1,), generator=self.generator))
        cohort, local = self.slot_cohort[j]
        births = int(self.births[j])
        self.cohorts[cohort].start(local, derive(c.seed, "task", j, births), collect, derive(c.seed, "agent", j, births))
        self.gamma[j], self.beta0[j] = self._draw(c.gammas), self._draw(c.beta0s)
        self.arm[j] = self.bandit.sample(name) if c.bandit else self._fixed_arm(name)
        self.age[j], self.births[j] = 0, self.births[j] + 1
        self.final_sum[j] = self.final_count[j] = self.final_reward[j] = 0.0

    def _fixed_arm(self, name: str) -> int:
        """The middle of both lists (the no-bandit ablation)."""
        arms = self.bandit.arms(name)
        lrs = list(dict.fromkeys(a[0] for a in arms))
        kls = self.config.kl_coefs
        return arms.index((lrs[len(lrs) // 2], kls[len(kls) // 2]))

    def hparams(self) -> dict[str, torch.Tensor]:
        """Each lifetime's ``lr``, ``kl_coef`` and ``gamma``, ``[N]``."""
        chosen = [self.bandit.arms(name)[int(arm)] for name, arm in zip(self.slot_env, self.arm)]
        arms = torch.tensor(chosen, dtype=self.dtype)
        return {"lr": arms[:, 0], "kl_coef": arms[:, 1], "gamma": self.gamma.clone()}

    # -- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, cohort: TabularCohort | NetworkCohort, params: dict[str, torch.Tensor]) -> Batch:
        """One ``num_steps`` rollout of the cohort's lifetimes with ``params``; trains its meta-critic on it."""
        c, e, slots = self.config, self.config.envs_per_lifetime, cohort.slots
        n = len(slots)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "actions", "rewards", "discounts")}
        late = (self.age[slots] >= (self.length[slots].double() * (1 - c.final_fraction)).ceil().long()).double()
        for _ in range(c.num_steps):
            obs = cohort.policy_obs()
            logits, _ = cohort.agent.forward(params, obs)
            action = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=self.generator).view(n, e)
            reward, ended, finished = cohort.envs.step(action)
            self.final_sum[slots] += late * finished.sum(1)
            self.final_count[slots] += late * ended.double().sum(1)
            self.final_reward[slots] += late * reward.sum(1) / e
            self.episodes_sum[slots] += finished.sum(1)
            self.episodes_count[slots] += ended.double().sum(1)
            self.reward_sum[slots] += reward.sum(1) / e
            for k, v in zip(rows, (obs, action.reshape(-1), reward.reshape(-1), (~ended).reshape(-1))):
                rows[k].append(v)
        cols = {k: torch.stack(v) for k, v in rows.items()}
        boot = cohort.policy_obs()
        batch = Batch(
            obs=cols["obs"],
            actions=cols["actions"],
            log_probs=torch.zeros(c.num_steps, n * e, dtype=self.dtype),
            values=cohort.values(cols["obs"]),
            rewards=cols["rewards"].to(self.dtype),
            discounts=cols["discounts"].to(self.dtype),
            bootstrap_value=cohort.values(boot),
            bootstrap_obs=boot,
        )
        self._train_critic(cohort, batch)
        return batch

    def _critic_targets(self, cohort: TabularCohort | NetworkCohort, batch: Batch) -> torch.Tensor:
        gamma = repeat_per_env(self.gamma[cohort.slots], batch.rewards.shape[1])
        return lambda_returns(
            batch.rewards, batch.discounts * gamma, batch.values, batch.bootstrap_value, self.config.critic_lambda
        )

    def _train_critic(self, cohort: TabularCohort | NetworkCohort, batch: Batch) -> None:
        """One step of the cohort's meta-critic towards the TD(lambda) returns of ``batch``."""
        error = self._critic_targets(cohort, batch) - batch.values
        self.critic_losses.setdefault(cohort.kind + ":" + cohort.names[0], []).append(float(0.5 * error.square().mean()))
        if self.config.train_critic:
            cohort.train_critic(batch.obs, error)

    # -- the meta-objective (Eq. 4) -----------------------------------------------------------------
    def meta_loss(
        self, cohort: TabularCohort | NetworkCohort, out: Any, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per lifetime of the cohort, ``[n]``: ``-PG - beta0 H(pi_K) - beta1 H(y_K) + beta2 |pi_hat|^2 + beta3
        |y_hat|^2`` (the trainer descends their mean over all lifetimes), and those terms."""
        c, n = self.config, len(cohort.slots)
        t, b = batch.rewards.shape
        advantages = (self._critic_targets(cohort, batch) - batch.values).detach()
        logits, y_logits = cohort.agent.forward(out.params, batch.obs.flatten(0, 1))
        log_pi = torch.log_softmax(logits, -1)
        logp = log_pi.gather(-1, batch.actions.reshape(-1, 1).long()).view(t, b)
        log_y = torch.log_softmax(y_logits, -1)
        terms = {
            "pg": per_lifetime_mean(-logp * advantages, n),
            "entropy_pi": per_lifetime_mean(-(probs(log_pi) * log_pi).sum(-1).view(t, b), n),
            "entropy_y": per_lifetime_mean(-(log_y.exp() * log_y).sum(-1).view(t, b), n),
            "l2_pi_hat": torch.stack([m["pi_hat_sq"] for m in out.metrics]).mean(0),
            "l2_y_hat": torch.stack([m["y_hat_sq"] for m in out.metrics]).mean(0),
        }
        per = (
            terms["pg"]
            - self.beta0[cohort.slots] * terms["entropy_pi"]
            - c.beta1 * terms["entropy_y"]
            + c.beta2 * terms["l2_pi_hat"]
            + c.beta3 * terms["l2_y_hat"]
        )
        return per, terms

    # -- one meta-iteration -----------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """K updates of every lifetime, one meta-gradient step, lifetime ends; returns the iteration's metrics."""
        c = self.config
        self._reset_counters()
        hp = self.hparams()
        outs, pers, terms = [], [], []
        for cohort in self.cohorts:
            # each cohort unrolls on its own graph to the same LPG weights; one backward joins them
            hp_c = {k: v[cohort.slots] for k, v in hp.items()}
            collect = lambda p, k, cohort=cohort: self.collect(cohort, p)  # noqa: E731
            out = unroll(cohort.learner(self.network), collect, hp_c, {"lpg": self.weights}, steps=c.unroll)
            validation = self.collect(cohort, {k: v.detach() for k, v in out.params.items()})
            per, parts = self.meta_loss(cohort, out, validation)
            outs.append(out), pers.append(per), terms.append(parts)
        loss = torch.cat(pers).mean()
        self.optimizer.zero_grad()
        grads = torch.autograd.grad(loss, list(self.weights.values()))
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = min(1.0, c.meta_grad_clip / (float(norm) + 1e-12)) if c.meta_grad_clip > 0 else 1.0
        for w, g in zip(self.weights.values(), grads):
            w.grad = g * scale
        self.optimizer.step()
        entropy = torch.zeros(c.lifetimes, dtype=self.dtype)
        for cohort, out in zip(self.cohorts, outs):
            cohort.params = {k: v.detach() for k, v in out.params.items()}
            cohort.opt_state = detach_tree(out.opt_state)
            entropy[cohort.slots] = out.metrics[-1]["entropy"].detach()
        self.age += c.unroll
        ended = self._end_lifetimes(entropy)
        self.iteration += 1
        means = {k: float(torch.cat([t[k] for t in terms]).detach().mean()) for k in terms[0]}
        return self._metrics(float(loss.detach()), means, float(norm), entropy, ended)

    def _reset_counters(self) -> None:
        """What one meta-iteration's metrics sum: episodes per slot, rewards, the critics' losses (per cohort)."""
        n = self.config.lifetimes
        self.episodes_sum = torch.zeros(n, dtype=torch.float64)
        self.episodes_count = torch.zeros(n, dtype=torch.float64)
        self.reward_sum = torch.zeros(n, dtype=torch.float64)
        self.critic_losses: dict[str, list[float]] = {}

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
            "critic_loss_first": sum(v[0] for v in self.critic_losses.values()) / len(self.critic_losses),
            "critic_loss_last": sum(v[-1] for v in self.critic_losses.values()) / len(self.critic_losses),
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
            "cohorts": [cohort.state_dict() for cohort in self.cohorts],
            "slots": slots,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"the state is of format {state.get('format', 1)}, this MetaTrainer reads format {STATE_FORMAT} "
                "(the tabular grids in one task, the tabular chains in another): start the run afresh"
            )
        if state.get("config") != self.describe():
            raise ValueError("the state was written by a meta-training run with other options: give the same ones")
        with torch.no_grad():
            for k, v in self.weights.items():
                v.copy_(state["weights"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bandit.load_state_dict(state["bandit"])
        self.generator.set_state(state["generator"])
        for cohort, saved in zip(self.cohorts, state["cohorts"]):
            cohort.load_state_dict(saved)
        for k in _SLOT_TENSORS:
            setattr(self, k, state["slots"][k].clone())
        self.iteration = int(state["iteration"])


STATE_FORMAT = 4
"""the layout ``state_dict`` writes (1: tables padded to [N, S, .], a task per slot; 2: one tabular population;
3: lifetimes in cohorts by agent kind, a task per environment)"""

_SLOT_TENSORS = ("age", "length", "gamma", "beta0", "arm", "births", "final_sum", "final_count", "final_reward")
"""per-lifetime bookkeeping a snapshot keeps"""
