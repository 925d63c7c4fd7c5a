"""N lifetimes of one A2C learner as stacked tensors, updated together by one vmapped ``train_step``.

``StackedA2C`` is the update; ``agents.stacked_tasks.StackedTaskA2C`` runs N
task lifetimes (collection and update) as one program.  Parameters
and update-rule states carry a leading lifetime axis ``[N, ...]`` (the step
counter too, so staggered lifetimes keep their own bias corrections), and
``train_step`` is the learner's own objective and update rule mapped over
that axis with ``torch.func.vmap`` and ``torch.func.grad``: one program for the
N updates, equal to N calls of ``learner.train_step`` (to float rounding).

``StackedPPO`` is PPO's schedule the same way: epochs x minibatches, each
lifetime's minibatch order drawn from its own generator as its lone learner
draws it, each minibatch's gradients one vmapped call, its step the stock rule
on the stacked tensors (on Catch the parameters equal the lone learner's bit
for bit, tested).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.func import grad, vmap

from agents.a2c import A2CLearner
from agents.base import Batch, Params
from agents.optim import SGD, Adam, RMSProp
from agents.ppo import PPO_METRICS, PPOLearner
from agents.returns import explained_variance

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


def _clip(grads: Params, max_norm: float | torch.Tensor) -> tuple[Params, torch.Tensor]:
    """``agents.optim.clip_grad_norm``'s arithmetic, op by op (the fused ops have no batching rule).

    A tensor ``max_norm`` (one per lifetime under vmap) clips where it is positive and finite.
    """
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    if isinstance(max_norm, torch.Tensor):
        on = (max_norm > 0) & torch.isfinite(max_norm)
        scale = torch.where(on, torch.clamp(max_norm / (total + 1e-6), max=1.0), 1.0)
        return {k: g * scale for k, g in grads.items()}, total
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
        self,
        params: Params,
        opt_state: Mapping[str, Any],
        batch: StackedBatch,
        hparams: Mapping[str, Any] | None = None,
        *,
        return_grads: bool = False,
    ) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor]]:
        """One A2C update of every lifetime on its own rows of ``batch``; metrics are ``[N]`` tensors.

        ``hparams`` are shared by the lifetimes; a ``[N]`` tensor value gives each its own.  The metrics
        are the lone learner's (``policy``, ``value``, ``entropy``, ``explained_variance``, ``grad_norm``);
        ``return_grads`` adds a fourth result, the clipped gradients ``[N, ...]`` (``gradient_history``).
        """
        hp = self.learner.hparam_values(hparams)
        # Tensor coefficients send the update rule down its op-by-op path, which vmap can batch.
        exact = {k: v for k, v in hp.items() if isinstance(v, torch.Tensor) and v.dim() == 1}
        # float32 coefficients in the objective, as a lone learner's numbers act there; the rule's groups read the exact values
        per_lifetime = {k: v.float() if v.dtype == torch.float64 else v for k, v in exact.items()}
        shared = {k: v if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for k, v in hp.items() if k not in per_lifetime}
        objective, rule = self.learner.objective, self.learner.update_rule
        clip_each = "max_grad_norm" in per_lifetime
        max_norm = None if clip_each else float(hp["max_grad_norm"])

        def gradient(p, fields, own):
            h = {**shared, **own}
            full = objective.targets(Batch(**fields), h)
            g = grad(lambda q: objective(q, full, h)[0])(p)
            _, metrics = objective(p, full, h)
            g, norm = _clip(g, h["max_grad_norm"] if clip_each else max_norm)
            ev = explained_variance(full.values.flatten(), full.returns.flatten())
            return g, {**metrics, "explained_variance": ev, "grad_norm": norm}

        def update(g, state, p, own):
            return rule.update(g, dict(state), p, {**shared, **own})

        with torch.no_grad():
            grads, metrics = vmap(gradient)(params, batch, per_lifetime)
            if isinstance(rule, STOCK_RULES) and not any(v.requires_grad for v in exact.values()):
                new, state = _grouped_update(rule, grads, opt_state, params, hp)
            else:
                new, state = vmap(update)(grads, dict(opt_state), params, per_lifetime)
        if return_grads:
            return new, state, metrics, grads
        return new, state, metrics


STOCK_RULES = (SGD, Adam, RMSProp)
"""rules ``train_step`` applies to the stacked tensors directly (their arithmetic is elementwise)"""


def _grouped_update(rule: Any, grads: Params, state: Mapping[str, Any], params: Params, hp: Mapping[str, Any]) -> tuple:
    """A stock rule's step on the stacked tensors, once per group of lifetimes sharing a step count and hyperparameters.

    Each group runs the rule exactly as a lone learner does (numbers, not tensors, as coefficients: the
    fused ops), so the result equals each lifetime's own ``train_step`` bit for bit; one group (the
    usual case of lifetimes started together under shared hyperparameters) costs one rule step in all.
    """
    steps = state["step"].tolist()
    per = {k: v.tolist() for k, v in hp.items() if isinstance(v, torch.Tensor) and v.dim() == 1}
    groups: dict[tuple, list[int]] = {}
    for j, step in enumerate(steps):
        groups.setdefault((step, *(per[k][j] for k in sorted(per))), []).append(j)
    rest = {k: v for k, v in state.items() if k != "step"}
    new_params = {k: torch.empty_like(v) for k, v in params.items()}
    new_rest = _tree(lambda v: torch.empty_like(v), rest)
    for key, rows in groups.items():
        own = {**{k: v for k, v in hp.items() if k not in per}, **{k: key[1 + i] for i, k in enumerate(sorted(per))}}
        idx = torch.tensor(rows, device=state["step"].device)
        take = (lambda v: v) if len(groups) == 1 else (lambda v, idx=idx: v[idx])
        sub = {**_tree(take, rest), "step": int(key[0])}
        p, s = rule.update(_tree(take, grads), sub, _tree(take, params), own)
        _tree_put(new_params, p, rows, len(groups) == 1)
        _tree_put(new_rest, {k: v for k, v in s.items() if k != "step"}, rows, len(groups) == 1)
    return new_params, {**new_rest, "step": state["step"] + 1}


def _tree(fn: Any, tree: Any) -> Any:
    return {k: _tree(fn, v) for k, v in tree.items()} if isinstance(tree, Mapping) else fn(tree)


def _tree_put(out: Any, values: Any, rows: list[int], whole: bool) -> None:
    for k, v in values.items():
        if isinstance(v, Mapping):
            _tree_put(out[k], v, rows, whole)
        elif whole:
            out[k] = v
        else:
            out[k][rows] = v


class StackedPPO:
    """The PPO schedule of N lifetimes at once: epochs x minibatches, each lifetime's minibatch order drawn from
    its own generator as its lone learner draws it, each minibatch's gradients one vmapped call and its step the
    stock rule on the stacked tensors (``_grouped_update``).  Lifetimes with different ``epochs`` or
    ``minibatch_size`` run as separate groups (their schedules have different lengths)."""

    def __init__(self, learner: PPOLearner) -> None:
        if not isinstance(learner, PPOLearner):
            raise ValueError(f"learner must be a PPO learner, got {type(learner).__name__}")
        if not isinstance(learner.update_rule, STOCK_RULES):
            raise ValueError(f"a stacked PPO update needs a stock update rule ({STOCK_RULES}), got {learner.update_rule!r}")
        self.learner = learner

    stack = StackedA2C.stack

    @torch.no_grad()
    def train_step(
        self, params: Params, opt_state: Mapping[str, Any], batch: StackedBatch, hparams: Sequence[Mapping[str, Any]], generators
    ) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor], list[list[Params]]]:
        """Every lifetime's PPO update on its rows of ``batch`` (``hparams``: one resolved mapping per lifetime).

        Returns the new stacked params and state, ``[N]`` metrics and, per lifetime, its last
        ``grad_history`` clipped gradients, oldest first (views)."""
        n = len(hparams)
        steps = batch["rewards"].shape[1] * batch["rewards"].shape[2]
        full = self._targets(batch, hparams)
        groups: dict[tuple[int, int], list[int]] = {}
        for j, h in enumerate(hparams):
            groups.setdefault((int(h["epochs"]), max(1, min(int(h["minibatch_size"]), steps))), []).append(j)
        if len(groups) == 1:  # the usual case: one schedule for all, nothing to pick out and put back
            ((epochs, size),) = groups
            p, s, m, g = self._schedule(params, dict(opt_state), full, list(hparams), list(generators), epochs, size)
            return p, s, m, [[{k: t[j] for k, t in step.items()} for step in g] for j in range(n)]
        new_params = {k: v.clone() for k, v in params.items()}
        new_state = _tree(lambda v: v.clone(), dict(opt_state))
        metrics: dict[str, torch.Tensor] = {}
        grads: list[list[Params]] = [[] for _ in range(n)]
        for (epochs, size), rows in groups.items():
            idx = torch.tensor(rows, device=batch["rewards"].device)
            take = lambda v, idx=idx: v[idx]  # noqa: E731
            p, s, m, g = self._schedule(
                _tree(take, params),
                _tree(take, dict(opt_state)),
                _tree(take, full),
                [hparams[j] for j in rows],
                [generators[j] for j in rows],
                epochs,
                size,
            )
            _tree_put(new_params, p, rows, False)
            _tree_put(new_state, {k: v for k, v in s.items() if k != "step"}, rows, False)
            new_state["step"][idx] = s["step"]
            for k, v in m.items():
                metrics.setdefault(k, torch.full((n,), float("nan"), dtype=v.dtype, device=v.device))[idx] = v
            for i, j in enumerate(rows):
                grads[j] = [{k: t[i] for k, t in step.items()} for step in g]
        return new_params, new_state, metrics, grads

    def _targets(self, batch: StackedBatch, hparams: Sequence[Mapping[str, Any]]) -> StackedBatch:
        """Every lifetime's GAE targets by the objective's own ``targets``, vmapped (its own gamma and lambda:
        numbers where the lifetimes share them, as the lone learner's arithmetic, else float32 per lifetime)."""
        per = _split_hparams([{k: h[k] for k in ("gamma", "gae_lambda")} for h in hparams])
        numbers = {k: v for k, v in per.items() if not isinstance(v, torch.Tensor)}
        tensors = {k: v.float() for k, v in per.items() if isinstance(v, torch.Tensor)}

        def targets(fields, own):
            full = self.learner.objective.targets(Batch(**fields), {**numbers, **own})
            return full.advantages, full.returns

        advantages, returns = vmap(targets)(batch, tensors)
        return {**batch, "advantages": advantages, "returns": returns}

    def _schedule(self, params, state, full, hps, gens, epochs: int, size: int):
        objective, rule = self.learner.objective, self.learner.update_rule
        g_count, steps = len(hps), full["rewards"].shape[1] * full["rewards"].shape[2]
        flat = {k: v.reshape(g_count, steps, *v.shape[3:]) for k, v in full.items() if k in STEP_FIELDS}
        per = _split_hparams(hps)
        numbers = {k: v for k, v in per.items() if not isinstance(v, torch.Tensor)}
        tensors = {k: v.float() for k, v in per.items() if isinstance(v, torch.Tensor)}
        max_norm = per["max_grad_norm"]
        clip_each = isinstance(max_norm, torch.Tensor)

        def gradient(p, fields, own):
            h = {**numbers, **own}
            mb = Batch(**fields, bootstrap_value=fields["rewards"].new_zeros(fields["rewards"].shape[1]))
            g = grad(lambda q: objective(q, mb, h)[0])(p)
            _, m = objective(p, mb, h)
            g, norm = _clip(g, h["max_grad_norm"] if clip_each else float(max_norm))
            return g, torch.stack([*m.values(), norm])

        arange = torch.arange(g_count, device=full["rewards"].device).unsqueeze(1)
        recorded, kept = [], []
        for _ in range(epochs):
            perm = torch.stack([torch.randperm(steps, generator=gen, device=gen.device) for gen in gens])
            shuffled = {k: v[arange, perm] for k, v in flat.items()}
            for start in range(0, steps - size + 1, size):
                mb = {k: v[:, start : start + size].unsqueeze(1) for k, v in shuffled.items()}
                g, m = vmap(gradient)(params, mb, tensors)
                params, state = _grouped_update(rule, g, state, params, per)
                recorded.append(m)
                kept = [*kept, g][-self.learner.config.grad_history :]
        mean = torch.stack(recorded).mean(0)  # [G, metrics + norm], the mean over steps as the lone learner takes it
        names = list(PPO_METRICS)
        metrics = {k: mean[:, i] for i, k in enumerate(names)}
        metrics["grad_norm"] = mean[:, len(names)]
        metrics["explained_variance"] = vmap(explained_variance)(full["values"].flatten(1), full["returns"].flatten(1))
        return params, state, metrics, kept


STEP_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "discounts", "advantages", "returns")
"""the ``[N, T, B, ...]`` fields of a stacked batch with targets (a PPO minibatch is cut from these)"""


def _split_hparams(hps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Values the lifetimes share as numbers (the lone learner's arithmetic), values that differ as ``[G]`` float64."""
    out = {}
    for k in hps[0]:
        values = [h[k] for h in hps]
        out[k] = (
            values[0] if all(v == values[0] for v in values) else torch.tensor([float(v) for v in values], dtype=torch.float64)
        )
    return out
