"""Functional update rules: ``update(params, grads, state, **hparams) -> (params, state)``.

Hyperparameters are arguments of each call, never stored in the state, so a
learning rate changed by a hyper-agent acts on the very next update (the
failure mode where a restored optimizer silently keeps its old learning rate
cannot happen here).  The maths is pure: new tensors are returned and inputs
are left untouched, which keeps the rules usable under ``torch.func`` and
inside differentiable inner loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _addcdiv(params: list[torch.Tensor], num: list[torch.Tensor], den: list[torch.Tensor], scale: float | torch.Tensor):
    """``p + scale * num / den`` per tensor; a tensor ``scale`` (a learning rate being differentiated) stays in the graph."""
    if isinstance(scale, torch.Tensor):
        return [p + scale * (n / d) for p, n, d in zip(params, num, den)]
    return torch._foreach_addcdiv(params, num, den, value=scale)


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
    lr: float | torch.Tensor,
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
    new = _addcdiv(list(params.values()), m, denom, -lr / bias1)
    names = list(params)
    return dict(zip(names, new)), {"step": step, "exp_avg": dict(zip(names, m)), "exp_avg_sq": dict(zip(names, v))}


def rmsprop_init(params: Params) -> OptState:
    return {"step": 0, "square_avg": {k: torch.zeros_like(v) for k, v in params.items()}}


def rmsprop(
    params: Params, grads: Params, state: OptState, *, lr: float | torch.Tensor, alpha: float = 0.99, eps: float = 1e-5
) -> tuple[Params, OptState]:
    """RMSProp as in A2C/IMPALA: ``theta - lr * g / (sqrt(E[g^2]) + eps)``."""
    _check(params, grads)
    g = list(grads.values())
    sq = torch._foreach_addcmul(torch._foreach_mul(list(state["square_avg"].values()), alpha), g, g, value=1 - alpha)
    denom = torch._foreach_add(torch._foreach_sqrt(sq), eps)
    new = _addcdiv(list(params.values()), g, denom, -lr)
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


# -- in-place twins: the learner's black-box hot path only -----------------------------
#
# A PPO iteration takes hundreds of tiny gradient steps, where every tensor op costs
# microseconds of dispatch whatever its size.  The twins below do the same arithmetic
# as the pure rules, element by element and in the same order, but in place on one
# flat buffer, so a step costs a handful of ops instead of a handful per parameter
# tensor.  They are not differentiable and not for torch.func: solvers use the pure
# rules above, which stay the API.


def sgd_(param: torch.Tensor, grad: torch.Tensor, state: OptState, *, lr: float) -> None:
    """In-place twin of ``sgd`` on single tensors: ``param`` and ``state`` are updated."""
    param.sub_(grad.mul(lr))
    state["step"] += 1


def adam_(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: OptState,
    *,
    lr: float | torch.Tensor,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """In-place twin of ``adam``; ``state["exp_avg"]`` and ``state["exp_avg_sq"]`` are single tensors."""
    state["step"] += 1
    step = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = v.sqrt().div_(bias2**0.5).add_(eps)
    param.addcdiv_(m, denom, value=-lr / bias1)


def rmsprop_(
    param: torch.Tensor, grad: torch.Tensor, state: OptState, *, lr: float, alpha: float = 0.99, eps: float = 1e-5
) -> None:
    """In-place twin of ``rmsprop``; ``state["square_avg"]`` is a single tensor."""
    sq = state["square_avg"]
    sq.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    param.addcdiv_(grad, sq.sqrt().add_(eps), value=-lr)
    state["step"] += 1


IN_PLACE: dict[UpdateRule, Callable[..., None]] = {sgd: sgd_, adam: adam_, rmsprop: rmsprop_}
"""The in-place twin of each stock update rule, keyed by the pure rule."""


class FlatSteps:
    """Many clipped update-rule steps on flat buffers, for one learner iteration.

    ``FlatSteps(rule, params, state)`` (``rule`` a pure update rule or its name
    in ``OPTIMIZERS``) copies the parameters and the optimizer
    state into fresh contiguous buffers (the caller's tensors are never
    modified); ``params`` (and ``leaves``, the same tensors as a list) are leaf
    views of the parameter buffer, requiring grad, to differentiate the loss
    with.  ``step(grads, ...)`` clips and applies one update in place;
    ``result()`` returns new, independent ``(params, state)`` in the pure
    rules' format.  Each step is, element by element, ``clip_grad_norm``
    followed by the pure rule, so a learner gets bit-for-bit the parameters
    the pure path would give.  The ``grads_kept`` most recent clipped
    gradients stay readable through ``recent_grads()``.

    ``supported`` is False, and nothing is packed, when ``rule`` has no
    in-place twin (a learned or user-supplied rule) or the parameters do not
    share one dtype and device: the caller then takes the pure path.
    """

    def __init__(self, rule: UpdateRule | str, params: Params, state: OptState, *, grads_kept: int = 1) -> None:
        if isinstance(rule, str):
            rule = get_optimizer(rule)[1]
        kinds = {(p.dtype, p.device) for p in params.values()}
        self.supported = rule in IN_PLACE and len(kinds) == 1
        if not self.supported:
            return
        self._rule = IN_PLACE[rule]
        self.names = list(params)
        self._shapes = [p.shape for p in params.values()]
        self._sizes = [p.numel() for p in params.values()]
        with torch.no_grad():
            self._param_buf = self._pack(list(params.values()))
            self.state: OptState = {
                k: self._pack([v[n] for n in self.names]) if isinstance(v, dict) else v for k, v in state.items()
            }
        self._state_keys = [k for k, v in state.items() if isinstance(v, dict)]
        self.leaves = [v.requires_grad_() for v in self._views(self._param_buf)]
        self.params: Params = dict(zip(self.names, self.leaves))
        # A small ring of gradient buffers: fresh enough to keep the last ``grads_kept``, reused after.
        self._ring = [torch.empty_like(self._param_buf) for _ in range(max(1, grads_kept))]
        self._ring_views = [self._views(buf) for buf in self._ring]
        self.steps = 0

    def _pack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.view(shape) for chunk, shape in zip(flat.split(self._sizes), self._shapes)]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], *, max_norm: float, **hparams: float) -> torch.Tensor:
        """Clip ``grads`` (one per parameter, in order) to global norm ``max_norm`` and apply the rule.

        Returns the norm before clipping, as ``clip_grad_norm`` does.
        """
        slot = self.steps % len(self._ring)
        buf = self._ring[slot]
        torch._foreach_copy_(self._ring_views[slot], grads)
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if 0 < max_norm < float("inf"):
            buf.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
        self._rule(self._param_buf, buf, self.state, **hparams)
        self.steps += 1
        return total

    def recent_grads(self) -> list[Params]:
        """Copies of the clipped gradients of the last steps this object still holds, oldest first."""
        kept = min(self.steps, len(self._ring))
        slots = [(self.steps - kept + i) % len(self._ring) for i in range(kept)]
        return [{n: v.clone() for n, v in zip(self.names, self._ring_views[s])} for s in slots]

    def result(self) -> tuple[Params, OptState]:
        """Independent parameters (leaves requiring grad) and optimizer state in the pure format."""
        with torch.no_grad():
            params = {n: v.detach().clone().requires_grad_() for n, v in self.params.items()}
            state = dict(self.state)
            for key in self._state_keys:
                state[key] = {n: v.clone() for n, v in zip(self.names, self._views(self.state[key]))}
        return params, state
