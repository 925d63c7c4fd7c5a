"""Functional update rules: ``update(params, grads, state, **hparams) -> (params, state)``.

Hyperparameters are arguments of each call, never stored in the state, so a
learning rate changed by a hyper-agent acts on the very next update (the
failure mode where a restored optimizer silently keeps its old learning rate
cannot happen here).  The maths is pure: new tensors are returned and inputs
are left untouched, which keeps the rules usable under ``torch.func`` and
inside differentiable inner loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from agents.base import Params

OptState = dict[str, Any]
"""Optimizer statistics: a step counter and per-parameter moment dicts."""

UpdateRule = Callable[..., tuple[Params, OptState]]


def _check(params: Params, grads: Params) -> None:
    if params.keys() != grads.keys():
        raise ValueError(f"grads have keys {sorted(grads)}, params have {sorted(params)}")


def clip_grad_norm(grads: Params, max_norm: float) -> tuple[Params, torch.Tensor]:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the clipped gradients and the norm before clipping.  A non-positive
    or infinite ``max_norm`` disables clipping.
    """
    norms = torch._foreach_norm(list(grads.values()))
    total = torch.linalg.vector_norm(torch.stack(norms))
    if not 0 < max_norm < float("inf"):
        return grads, total
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return dict(zip(grads, torch._foreach_mul(list(grads.values()), scale))), total


def sgd_init(params: Params) -> OptState:
    return {"step": 0}


def sgd(params: Params, grads: Params, state: OptState, *, lr: float | torch.Tensor) -> tuple[Params, OptState]:
    """Plain gradient descent: ``theta - lr * g``."""
    _check(params, grads)
    new = [p - lr * g for p, g in zip(params.values(), grads.values())]
    return dict(zip(params, new)), {"step": state["step"] + 1}


def adam_init(params: Params) -> OptState:
    zeros = {k: torch.zeros_like(v) for k, v in params.items()}
    return {"step": 0, "exp_avg": zeros, "exp_avg_sq": {k: torch.zeros_like(v) for k, v in params.items()}}


def adam(
    params: Params,
    grads: Params,
    state: OptState,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Params, OptState]:
    """Adam (Kingma & Ba, 2015) with bias correction; ``eps`` outside the square root."""
    _check(params, grads)
    step = state["step"] + 1
    g = list(grads.values())
    m = torch._foreach_add(torch._foreach_mul(list(state["exp_avg"].values()), beta1), g, alpha=1 - beta1)
    v = torch._foreach_addcmul(torch._foreach_mul(list(state["exp_avg_sq"].values()), beta2), g, g, value=1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(v), bias2**0.5), eps)
    new = torch._foreach_addcdiv(list(params.values()), m, denom, value=-lr / bias1)
    names = list(params)
    return dict(zip(names, new)), {"step": step, "exp_avg": dict(zip(names, m)), "exp_avg_sq": dict(zip(names, v))}


def rmsprop_init(params: Params) -> OptState:
    return {"step": 0, "square_avg": {k: torch.zeros_like(v) for k, v in params.items()}}


def rmsprop(
    params: Params, grads: Params, state: OptState, *, lr: float, alpha: float = 0.99, eps: float = 1e-5
) -> tuple[Params, OptState]:
    """RMSProp as in A2C/IMPALA: ``theta - lr * g / (sqrt(E[g^2]) + eps)``."""
    _check(params, grads)
    g = list(grads.values())
    sq = torch._foreach_addcmul(torch._foreach_mul(list(state["square_avg"].values()), alpha), g, g, value=1 - alpha)
    denom = torch._foreach_add(torch._foreach_sqrt(sq), eps)
    new = torch._foreach_addcdiv(list(params.values()), g, denom, value=-lr)
    names = list(params)
    return dict(zip(names, new)), {"step": state["step"] + 1, "square_avg": dict(zip(names, sq))}


OPTIMIZERS: dict[str, tuple[Callable[[Params], OptState], UpdateRule]] = {
    "sgd": (sgd_init, sgd),
    "adam": (adam_init, adam),
    "rmsprop": (rmsprop_init, rmsprop),
}
"""Update rules by name: ``(init, update)``."""


def get_optimizer(name: str) -> tuple[Callable[[Params], OptState], UpdateRule]:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name]
