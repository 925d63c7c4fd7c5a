"""The differentiable K-step unroll every metagradient solver shares (STAC, Optim4RL, LPG).

``unroll(learner, batches, hparams, meta)`` runs ``learner.train_step(...,
differentiable=True)`` K times and returns the final parameters and update-rule
state with the graph kept: to the starting parameters, to every tensor in
``hparams`` and ``meta``, and to the update rule's own ``parameters()``.  A
solver then evaluates its outer loss on ``Unrolled.params`` and differentiates
it with ``torch.autograd.grad`` -- it never re-derives the learner's maths.

``batches`` is a sequence of K ``Batch`` objects (fixed data: an exact
function of the inputs) or a ``collect(params, k) -> Batch`` callable, called
before step ``k`` with the current parameters detached (collection is not
differentiated; the policy-gradient through the data is not part of a
metagradient here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agents.base import Batch, Params
from agents.optim import OptState

Collect = Callable[[Params, int], Batch]
"""``collect(params, k) -> Batch``: the batch of step ``k``, collected with ``params`` (detached)."""


@dataclass(frozen=True, kw_only=True)
class Unrolled:
    """What ``unroll`` returns."""

    params: Params
    """the parameters after the last step, with their graph"""
    opt_state: OptState
    """the update rule's state after the last step, with its graph"""
    metrics: list[dict[str, torch.Tensor]]
    """each step's ``train_step`` metrics, in order"""
    batches: list[Batch]
    """the batch each step trained on (the collected ones, when ``batches`` was a callable)"""


def unroll(
    learner: Any,
    batches: Sequence[Batch] | Collect,
    hparams: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    *,
    params: Params | None = None,
    opt_state: OptState | None = None,
    steps: int | None = None,
) -> Unrolled:
    """K differentiable ``train_step``\\ s of ``learner`` from ``params`` and ``opt_state``.

    ``params`` / ``opt_state`` default to the learner's current ones, detached (the graph
    then starts there: parameters become leaves that require grad).  Pass leaves of your
    own to differentiate with respect to the starting point.  ``steps`` is K, required
    with a ``collect`` callable and, with a sequence, at most its length (default: all).
    The learner's own parameters, state and counters are not changed.
    """
    if params is None:
        params = {k: v.detach().requires_grad_() for k, v in learner.parameters().items()}
    if opt_state is None:
        opt_state = learner.opt_state
    if callable(batches):
        if steps is None or steps < 1:
            raise ValueError(f"unroll with a collect function needs steps >= 1, got {steps}")
    else:
        steps = len(batches) if steps is None else steps
        if not 1 <= steps <= len(batches):
            raise ValueError(f"steps must lie in [1, {len(batches)}] (the batches given), got {steps}")
    metrics, used = [], []
    for k in range(steps):
        if callable(batches):
            with torch.no_grad():
                batch = batches({n: v.detach() for n, v in params.items()}, k)
        else:
            batch = batches[k]
        params, opt_state, m = learner.train_step(params, opt_state, batch, hparams, meta, differentiable=True)
        metrics.append(m)
        used.append(batch)
    return Unrolled(params=params, opt_state=opt_state, metrics=metrics, batches=used)
