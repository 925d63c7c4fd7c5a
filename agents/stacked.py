"""N lifetimes of one A2C learner as stacked tensors, updated together by one vmapped ``train_step``.

The white-box handle of a population (``hyperenvs.population``): parameters
and update-rule states carry a leading lifetime axis ``[N, ...]`` (the step
counter too, so staggered lifetimes keep their own bias corrections), and
``train_step`` is the learner's own objective and update rule mapped over
that axis with ``torch.func.vmap`` and ``torch.func.grad``: one program for the
N updates, equal to N calls of ``learner.train_step`` (to float rounding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.func import grad, vmap

from agents.a2c import A2CLearner
from agents.base import Batch, Params

StackedBatch = dict[str, torch.Tensor]
"""A ``Batch``'s set fields stacked along a leading lifetime axis, ``[N, T, B, ...]``."""


def stack_batches(batches: Sequence[Batch]) -> StackedBatch:
    """``N`` batches of one shape as a ``StackedBatch``."""
    names = [f.name for f in dataclasses.fields(Batch) if getattr(batches[0], f.name) is not None]
    return {k: torch.stack([getattr(b, k) for b in batches]) for k in names}


def stack_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tensors and numbers (nested in dicts) of ``N`` like-shaped states, stacked along a new first axis."""
    first = states[0]
    if isinstance(first, Mapping):
        return {k: stack_states([s[k] for s in states]) for k in first}
    return torch.stack([torch.as_tensor(s) for s in states])


def unstack_state(state: Any, j: int) -> Any:
    """Lifetime ``j``'s slice of a stacked state."""
    if isinstance(state, Mapping):
        return {k: unstack_state(v, j) for k, v in state.items()}
    return state[j]


def _clip(grads: Params, max_norm: float) -> tuple[Params, torch.Tensor]:
    """``agents.optim.clip_grad_norm``'s arithmetic, op by op (the fused ops have no batching rule)."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    if not 0 < max_norm < float("inf"):
        return grads, total
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return {k: g * scale for k, g in grads.items()}, total


class StackedA2C:
    """The functional A2C update of ``learner`` (its objective and update rule) mapped over N lifetimes."""

    def __init__(self, learner: A2CLearner) -> None:
        if not isinstance(learner, A2CLearner):
            raise ValueError(f"learner must be an A2C learner (one update per batch), got {type(learner).__name__}")
        self.learner = learner

    def stack(self, learners: Sequence[A2CLearner]) -> tuple[Params, dict[str, Any]]:
        """The learners' parameters and update-rule states, stacked ``[N, ...]`` (detached copies)."""
        params = {k: torch.stack([lr.params[k].detach() for lr in learners]) for k in learners[0].params}
        return params, stack_states([lr.opt_state for lr in learners])

    def train_step(
        self, params: Params, opt_state: Mapping[str, Any], batch: StackedBatch, hparams: Mapping[str, Any] | None = None
    ) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor]]:
        """One A2C update of every lifetime on its own rows of ``batch``; metrics are ``[N]`` tensors.

        ``hparams`` are shared by the lifetimes; a ``[N]`` tensor value gives each its own.
        """
        hp = self.learner.hparam_values(hparams)
        # Tensor coefficients send the update rule down its op-by-op path, which vmap can batch.
        per_lifetime = {k: v for k, v in hp.items() if isinstance(v, torch.Tensor) and v.dim() == 1}
        shared = {k: v if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for k, v in hp.items() if k not in per_lifetime}
        objective, rule, max_norm = self.learner.objective, self.learner.update_rule, float(hp["max_grad_norm"])

        def one(p, state, fields, own):
            h = {**shared, **own}
            full = objective.targets(Batch(**fields), h)
            g = grad(lambda q: objective(q, full, h)[0])(p)
            _, metrics = objective(p, full, h)
            g, norm = _clip(g, max_norm)
            new, new_state = rule.update(g, dict(state), p, h)
            return new, new_state, {**metrics, "grad_norm": norm}

        with torch.no_grad():
            return vmap(one)(params, dict(opt_state), batch, per_lifetime)


class StackedTaskA2C:
    """N A2C lifetimes on batched tasks run together: one vmapped network per step, one vmapped update.

    Each lifetime keeps its own task and generator (so it is the lifetime a lone
    ``TaskA2CLearner`` with its seed would live); those are stepped in turn, the
    network evaluations and the updates of all N are one program.  The learners'
    ``params``/``opt_state`` are views of the stacked tensors after every ``iterate``.
    """

    def __init__(self, learners: Sequence[Any]) -> None:
        if not learners:
            raise ValueError("learners must hold at least one learner")
        self.learners = list(learners)
        self.update = StackedA2C(self.learners[0])
        self.network = self.learners[0].network
        self.params, self.opt_state = self.update.stack(self.learners)
        self._forward = vmap(self.network.forward)
        self._value = vmap(self.network.value)

    @property
    def num_lifetimes(self) -> int:
        return len(self.learners)

    @torch.no_grad()
    def collect(self, num_steps: int, gamma: float) -> tuple[StackedBatch, torch.Tensor, list[list[float]]]:
        """``num_steps`` steps of every lifetime: the stacked batch, raw rewards ``[N, T, B]``, each one's finished returns."""
        cols = [lr.collector for lr in self.learners]
        obs = torch.stack([c._obs for c in cols])
        ep_ret = torch.stack([c._ep_return for c in cols])
        ep_len = torch.stack([c._ep_length for c in cols])
        fields: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "actions", "log_probs", "values", "rewards", "discounts")}
        raw, done_buf, ret_buf = [], [], []
        for _ in range(num_steps):
            logits, value = self._forward(self.params, obs)
            probs = torch.softmax(logits, -1)
            # each lifetime draws from its own generator, as its lone learner would (agents.networks.sample)
            action = torch.stack(
                [torch.multinomial(probs[j], 1, generator=lr.generator).squeeze(-1) for j, lr in enumerate(self.learners)]
            )
            logp = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            steps = [lr.envs.step(action[j]) for j, lr in enumerate(self.learners)]
            next_obs, reward, term, trunc = (torch.stack([s[i] for s in steps]) for i in range(4))
            final = self._value(self.params, torch.stack([s[4]["final_obs"] for s in steps]))
            done = term | trunc
            ep_ret += reward
            ep_len += 1
            done_buf.append(done)
            ret_buf.append(ep_ret.clone())
            ep_ret.masked_fill_(done, 0.0)
            ep_len.masked_fill_(done, 0)
            bootstrapped = reward + gamma * torch.where(trunc & ~term, final, 0.0)
            for k, v in zip(fields, (obs, action, logp, value, bootstrapped, (~done).float())):
                fields[k].append(v)
            raw.append(reward)
            obs = next_obs.clone()
        for j, c in enumerate(cols):
            c._obs, c._ep_return, c._ep_length = obs[j], ep_ret[j].clone(), ep_len[j].clone()
        batch = {k: torch.stack(v, 1) for k, v in fields.items()}
        batch["bootstrap_value"] = self._value(self.params, obs)
        batch["bootstrap_obs"] = obs
        done, rets = torch.stack(done_buf, 1), torch.stack(ret_buf, 1)
        returns = [rets[j][done[j]].tolist() for j in range(self.num_lifetimes)]
        return batch, torch.stack(raw, 1), returns

    def iterate(self, hparams: Mapping[str, Any] | None = None) -> list[list[float]]:
        """One collection and one update of every lifetime; returns each one's finished episode returns."""
        hp = self.learners[0].hparam_values(hparams)
        batch, _, returns = self.collect(self.learners[0].config.num_steps, float(hp["gamma"]))
        self.params, self.opt_state, _ = self.update.train_step(self.params, self.opt_state, batch, hparams)
        steps = batch["log_probs"].shape[1] * batch["log_probs"].shape[2]
        for j, lr in enumerate(self.learners):
            lr.params = {k: v[j] for k, v in self.params.items()}
            lr.opt_state = unstack_state(self.opt_state, j)
            lr.timesteps += steps
        return returns
