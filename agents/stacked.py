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
