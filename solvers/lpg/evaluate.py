"""Fresh lifetimes trained by a frozen LPG (Eq. 2) or by A2C, vectorised over seeds.

``train_lifetimes(env, seeds, rule=(network, weights), ...)`` runs ``len(seeds)`` lifetimes of one
environment side by side (the population machinery of meta-training, without the meta-gradient) and
returns each lifetime's learning curve and final return; ``rule=None`` trains A2C instead (n-step
advantages, entropy bonus, value loss 1/2, the same per-batch mean loss), the paper's baseline.  A tabular
environment's agents are tables stepped by SGD; a network environment's (``NETWORK_AGENTS``: random grids,
distractor chain) are its Table 3 network stepped by Adam, A2C's value a second output of the same network.
The final return is the mean return of the episodes that finished in the last
``final_fraction`` of the lifetime, as the bandit's R.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from agents.base import Batch, Params
from agents.returns import lambda_returns
from agents.seeding import derive
from solvers.lpg.lifetimes import NETWORK_AGENTS, LifetimeEnvs, task_sizes
from solvers.lpg.network import LPGNetwork, Weights
from solvers.lpg.networks import NetworkPopulationAgent, NetworkPopulationLearner, adam_state, lifetime_adam
from solvers.lpg.objective import probs
from solvers.lpg.population import PopulationAgent, PopulationLearner, detach_tree, per_lifetime_mean


@dataclass(frozen=True, kw_only=True)
class Lifetimes:
    """What ``train_lifetimes`` returns."""

    curves: torch.Tensor
    """``[windows, N]``: mean return of the episodes finished in each window of ``log_every`` updates (NaN: none)"""
    final: torch.Tensor
    """``[N]``: mean return of the episodes finished in the last ``final_fraction`` of the lifetime (NaN: none)"""
    final_rate: torch.Tensor
    """``[N]``: mean reward per step and environment over the same window (the score where episodes outlast it)"""
    params: Params
    """the agents' final tables (``pi``, ``y`` or ``v``), ``[N * S, ...]`` (lifetime ``j``'s rows: ``agent.block(j)``),
    or their networks' weights"""
    agent: PopulationAgent | NetworkPopulationAgent
    envs: LifetimeEnvs


def a2c_step(agent: PopulationAgent, params: Params, batch: Batch, lr: float, gamma: float, ent_coef: float) -> Params:
    """One tabular A2C step of every lifetime: ``-A log pi - ent_coef H(pi) + 1/2 (G - V)^2``, mean per lifetime."""
    with torch.enable_grad():
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        t, b = batch.rewards.shape
        v_flat = p["v"].reshape(-1)
        values = v_flat[batch.obs]
        returns = lambda_returns(
            batch.rewards, batch.discounts * gamma, values.detach(), v_flat[batch.bootstrap_obs].detach(), 1.0
        )
        logits, _ = agent.forward(p, batch.obs.flatten(0, 1))
        log_pi = torch.log_softmax(logits, -1)
        logp = log_pi.gather(-1, batch.actions.reshape(-1, 1).long()).view(t, b)
        ent = -(probs(log_pi) * log_pi).sum(-1).view(t, b)
        per_step = -logp * (returns - values).detach() - ent_coef * ent + 0.5 * (returns - values).square()
        loss = per_lifetime_mean(per_step, agent.n).sum()
        grads = torch.autograd.grad(loss, [p["pi"], p["v"]])
    return {**params, "pi": (p["pi"] - lr * grads[0]).detach(), "v": (p["v"] - lr * grads[1]).detach()}


def a2c_network_step(
    agent: NetworkPopulationAgent, params: Params, opt: dict, batch: Batch, lr: torch.Tensor, gamma: float, ent_coef: float
) -> tuple[Params, dict]:
    """One A2C step of every network lifetime (the loss of ``a2c_step``; the value is the agent's one prediction
    output), then ``lifetime_adam``."""
    with torch.enable_grad():
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        t, b = batch.rewards.shape
        logits, value = agent.forward(p, torch.cat([batch.obs.flatten(0, 1), batch.bootstrap_obs]))
        values, boot = value[: t * b, 0].view(t, b), value[t * b :, 0]
        returns = lambda_returns(batch.rewards, batch.discounts * gamma, values.detach(), boot.detach(), 1.0)
        log_pi = torch.log_softmax(logits[: t * b], -1)
        logp = log_pi.gather(-1, batch.actions.reshape(-1, 1).long()).view(t, b)
        ent = -(probs(log_pi) * log_pi).sum(-1).view(t, b)
        per_step = -logp * (returns - values).detach() - ent_coef * ent + 0.5 * (returns - values).square()
        grads = torch.autograd.grad(per_lifetime_mean(per_step, agent.n).sum(), list(p.values()))
    new, opt = lifetime_adam(p, grads, opt, lr)
    return detach_tree(new), detach_tree(opt)


def _observe(agent: PopulationAgent | NetworkPopulationAgent, envs: LifetimeEnvs) -> torch.Tensor:
    """What the agents read now, ``[N * E, ...]`` (a copy: the environments overwrite their buffer)."""
    if isinstance(agent, NetworkPopulationAgent):
        return envs.obs.reshape(-1, *envs.obs.shape[2:]).to(torch.float32, copy=True)
    n, e = envs.obs.shape
    return agent.global_obs(envs.obs, torch.arange(n).view(n, 1).expand(n, e)).reshape(-1)


@torch.no_grad()
def _collect(agent, params, envs, num_steps, generator, stats) -> Batch:
    n, e = envs.obs.shape[:2]
    rows = {k: [] for k in ("obs", "actions", "rewards", "discounts")}
    for _ in range(num_steps):
        obs = _observe(agent, envs)
        logits, _ = agent.forward(params, obs)
        action = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=generator).view(n, e)
        reward, ended, finished = envs.step(action)
        stats[0] += finished.sum(1)
        stats[1] += ended.double().sum(1)
        stats[2] += reward.sum(1) / e
        for k, v in zip(rows, (obs, action.reshape(-1), reward.reshape(-1), (~ended).reshape(-1).double())):
            rows[k].append(v)
    cols = {k: torch.stack(v) for k, v in rows.items()}
    zeros = torch.zeros(num_steps, n * e, dtype=torch.float64)
    boot = _observe(agent, envs)
    return Batch(
        obs=cols["obs"],
        actions=cols["actions"],
        log_probs=zeros,
        values=zeros,
        rewards=cols["rewards"],
        discounts=cols["discounts"],
        bootstrap_value=torch.zeros(n * e, dtype=torch.float64),
        bootstrap_obs=boot,
    )


def train_lifetimes(
    env: str,
    seeds: list[int],
    *,
    rule: tuple[LPGNetwork, Weights] | None,
    lr: float,
    kl_coef: float = 0.5,
    gamma: float = 0.99,
    ent_coef: float = 0.01,
    updates: int = 200,
    envs_per_lifetime: int = 8,
    num_steps: int = 20,
    log_every: int = 10,
    final_fraction: float = 0.2,
    collect_actions: bool = False,
) -> Lifetimes:
    """``len(seeds)`` lifetimes of ``updates`` agent updates in ``env``; LPG with ``rule``, else tabular A2C."""
    n = len(seeds)
    size, actions = task_sizes(env)
    m = rule[0].config.m if rule is not None else 1
    network = env in NETWORK_AGENTS
    dtype = torch.float32 if network else torch.float64
    if network:
        agent = NetworkPopulationAgent(n, envs_per_lifetime, size, actions, m, NETWORK_AGENTS[env])
        envs = LifetimeEnvs([env] * n, envs_per_lifetime, size)
    else:
        agent = PopulationAgent(n, size, actions, m)
        envs = LifetimeEnvs([env] * n, envs_per_lifetime)
    for j, seed in enumerate(seeds):
        agent.action_mask[j] = torch.arange(actions) < envs.reset_slot(j, derive(seed, "eval-task"), collect_actions)
    if network:
        params = agent.net.init([torch.Generator().manual_seed(derive(seed, "eval-agent")) for seed in seeds], dtype)
        opt = adam_state(params)
    else:
        params = agent.init()
    # float32 as before the network agents came, so the tabular numbers in benchmarks/lpg/README.md rerun exactly
    hp = {k: torch.full((n,), float(v)) for k, v in (("lr", lr), ("kl_coef", kl_coef), ("gamma", gamma))}
    if rule is None and not network:
        params["v"] = torch.zeros(agent.num_rows, dtype=torch.float64)
    elif rule is not None:
        learner = NetworkPopulationLearner(agent, rule[0], params, opt) if network else PopulationLearner(agent, rule[0], params)
        weights = {k: v.to(dtype) for k, v in rule[1].items()}
    generator = torch.Generator().manual_seed(derive(seeds[0], "eval-actions", n))
    curves, window = [], [torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)]
    final = [torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)]
    start_final = int(updates * (1 - final_fraction))
    for u in range(updates):
        stats = [torch.zeros(n, dtype=torch.float64) for _ in range(3)]
        batch = _collect(agent, params, envs, num_steps, generator, stats)
        if network:
            batch = _cast(batch, dtype)
        if rule is None and network:
            params, opt = a2c_network_step(agent, params, opt, batch, hp["lr"], gamma, ent_coef)
        elif rule is None:
            params = a2c_step(agent, params, batch, lr, gamma, ent_coef)
        else:
            params, state, _ = learner.train_step(params, opt if network else {}, batch, hp, {"lpg": weights})
            params, opt = {k: v.detach() for k, v in params.items()}, state
        for acc, s in zip(window, stats):
            acc += s
        if u >= start_final:
            for acc, s in zip(final, stats):
                acc += s
        if (u + 1) % log_every == 0:
            curves.append(torch.where(window[1] > 0, window[0] / window[1].clamp(min=1), float("nan")))
            window = [torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)]
    final_return = torch.where(final[1] > 0, final[0] / final[1].clamp(min=1), float("nan"))
    rate = final[2] / ((updates - start_final) * num_steps)
    return Lifetimes(curves=torch.stack(curves), final=final_return, final_rate=rate, params=params, agent=agent, envs=envs)


def _cast(batch: Batch, dtype: torch.dtype) -> Batch:
    """The float fields of ``batch`` in the agents' dtype (the statistics stay float64)."""
    fields = ("log_probs", "values", "rewards", "discounts", "bootstrap_value")
    return dataclasses.replace(batch, **{k: getattr(batch, k).to(dtype) for k in fields})


__all__ = ["Lifetimes", "a2c_network_step", "a2c_step", "train_lifetimes"]
