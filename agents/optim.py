"""Update rules: ``UpdateRule.init(params) -> state`` and ``update(grads, state, params, hparams) -> (params, state)``.

Hyperparameters (``hparams["lr"]``, floats or tensors) are arguments of each
call, never stored in the state, so a learning rate changed by a hyper-agent
acts on the very next update (the failure mode where a restored optimizer
silently keeps its old learning rate cannot happen here).  The maths is pure:
new tensors are returned and inputs are left untouched, nothing is detached,
so a caller that keeps a graph (``create_graph=True`` gradients, tensor
hyperparameters, a rule's own trainable weights) can differentiate through
any number of updates, and the rules work under ``torch.func``.

Two layers: the functions ``sgd``/``adam``/``rmsprop`` (and their ``*_init``)
are the maths on ``{name: tensor}`` dicts, callable from anywhere (ES's one
Adam is ``adam``); the objects ``SGD``/``Adam``/``RMSProp`` are the same maths
behind the ``UpdateRule`` protocol a learner takes from
``config={"update_rule": name_or_instance}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from agents.base import Params

OptState = dict[str, Any]
"""Update-rule statistics: a step counter and per-parameter moment dicts (a learned rule adds its recurrent state)."""

Hparams = Mapping[str, Any]
"""Per-call hyperparameters of a rule: ``{"lr": float | tensor, ...}``."""


@runtime_checkable
class UpdateRule(Protocol):
    """How a learner turns gradients into new parameters.

    ``init(params) -> state``; ``update(grads, state, params, hparams) -> (new_params, new_state)``
    must be pure (return new tensors, leave its inputs alone) and must not cut the graph
    (no ``no_grad``, no ``detach``), so that ``train_step(differentiable=True)`` can
    differentiate through it.  ``parameters()`` are the rule's own trainable weights
    (``{}`` for the stock rules; a learned optimizer returns its network's).  The state
    may hold per-element tensors of any kind (moments, a recurrent cell's hidden state).
    """

    name: str

    def init(self, params: Params) -> OptState: ...

    def update(self, grads: Params, state: OptState, params: Params, hparams: Hparams) -> tuple[Params, OptState]: ...

    def parameters(self) -> Params: ...


def _check(params: Params, grads: Params) -> None:
    if params.keys() != grads.keys():
        raise ValueError(f"grads have keys {sorted(grads)}, params have {sorted(params)}")


class _PerTensor:
    """The few foreach ops the rules use, one tensor at a time.

    torch's fused ``_foreach_*`` ops are fast but their backward is not reliable (torch 2.13: wrong
    indices when only some list entries carry a graph, none for a tensor scale), so whenever a
    rule's inputs are being differentiated it runs these instead: the same arithmetic, op by op.
    """

    @staticmethod
    def norm(xs):
        return [torch.linalg.vector_norm(x) for x in xs]

    @staticmethod
    def mul(xs, c):
        return [x * c for x in xs]

    @staticmethod
    def add(xs, ys, alpha=1.0):
        return [x + alpha * y for x, y in zip(xs, ys)]

    @staticmethod
    def add_scalar(xs, c):
        return [x + c for x in xs]

    @staticmethod
    def addcmul(xs, ys, zs, value):
        return [x + value * (y * z) for x, y, z in zip(xs, ys, zs)]

    @staticmethod
    def sqrt(xs):
        return [x.sqrt() for x in xs]

    @staticmethod
    def div(xs, c):
        return [x / c for x in xs]

    @staticmethod
    def addcdiv(xs, ys, zs, value):
        return [x + value * (y / z) for x, y, z in zip(xs, ys, zs)]


class _Fused:
    """The same ops as ``_PerTensor``, fused (no graph needed)."""

    norm = staticmethod(torch._foreach_norm)
    mul = staticmethod(torch._foreach_mul)
    sqrt = staticmethod(torch._foreach_sqrt)
    div = staticmethod(torch._foreach_div)
    add_scalar = staticmethod(torch._foreach_add)

    @staticmethod
    def add(xs, ys, alpha=1.0):
        return torch._foreach_add(xs, ys, alpha=alpha)

    @staticmethod
    def addcmul(xs, ys, zs, value):
        return torch._foreach_addcmul(xs, ys, zs, value=value)

    @staticmethod
    def addcdiv(xs, ys, zs, value):
        return torch._foreach_addcdiv(xs, ys, zs, value=value)


def _ops(*groups: Any) -> type[_PerTensor] | type[_Fused]:
    """Per-tensor ops when a coefficient is a tensor (the fused ops take numbers only), or when grad
    mode is on and any input requires grad; else the fused ones."""
    if any(isinstance(g, torch.Tensor) for g in groups):
        return _PerTensor
    if torch.is_grad_enabled():
        if any(x.requires_grad for group in groups if isinstance(group, list) for x in group):
            return _PerTensor
    return _Fused


def clip_grad_norm(grads: Params, max_norm: float) -> tuple[Params, torch.Tensor]:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the clipped gradients and the norm before clipping.  A non-positive
    or infinite ``max_norm`` disables clipping.  Differentiable when the gradients carry a graph.
    """
    values = list(grads.values())
    ops = _ops(values)
    total = torch.linalg.vector_norm(torch.stack(ops.norm(values)))
    if not 0 < max_norm < float("inf"):
        return grads, total
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return dict(zip(grads, ops.mul(values, scale))), total


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
    g, p = list(grads.values()), list(params.values())
    m0, v0 = list(state["exp_avg"].values()), list(state["exp_avg_sq"].values())
    ops = _ops(g, p, m0, v0, lr)
    m = ops.add(ops.mul(m0, beta1), g, alpha=1 - beta1)
    v = ops.addcmul(ops.mul(v0, beta2), g, g, value=1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = ops.add_scalar(ops.div(ops.sqrt(v), bias2**0.5), eps)
    new = ops.addcdiv(p, m, denom, -lr / bias1)
    names = list(params)
    return dict(zip(names, new)), {"step": step, "exp_avg": dict(zip(names, m)), "exp_avg_sq": dict(zip(names, v))}


def rmsprop_init(params: Params) -> OptState:
    return {"step": 0, "square_avg": {k: torch.zeros_like(v) for k, v in params.items()}}


def rmsprop(
    params: Params, grads: Params, state: OptState, *, lr: float | torch.Tensor, alpha: float = 0.99, eps: float = 1e-5
) -> tuple[Params, OptState]:
    """RMSProp as in A2C/IMPALA: ``theta - lr * g / (sqrt(E[g^2]) + eps)``."""
    _check(params, grads)
    g, p, sq0 = list(grads.values()), list(params.values()), list(state["square_avg"].values())
    ops = _ops(g, p, sq0, lr)
    sq = ops.addcmul(ops.mul(sq0, alpha), g, g, value=1 - alpha)
    denom = ops.add_scalar(ops.sqrt(sq), eps)
    new = ops.addcdiv(p, g, denom, -lr)
    names = list(params)
    return dict(zip(names, new)), {"step": state["step"] + 1, "square_avg": dict(zip(names, sq))}


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


# -- the stock rules as UpdateRule objects -----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SGD:
    """Plain gradient descent, ``theta - lr * g``."""

    name: ClassVar[str] = "sgd"

    def init(self, params: Params) -> OptState:
        return sgd_init(params)

    def update(self, grads: Params, state: OptState, params: Params, hparams: Hparams) -> tuple[Params, OptState]:
        return sgd(params, grads, state, lr=hparams["lr"])

    def parameters(self) -> Params:
        return {}

    def update_(self, param: torch.Tensor, grad: torch.Tensor, state: OptState, hparams: Hparams) -> None:
        """In-place twin of ``update`` on single flat tensors (``FlatSteps``)."""
        sgd_(param, grad, state, lr=hparams["lr"])


@dataclass(frozen=True, kw_only=True)
class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction; ``eps`` outside the square root."""

    name: ClassVar[str] = "adam"
    beta1: float = 0.9
    """first-moment decay"""
    beta2: float = 0.999
    """second-moment decay"""
    eps: float = 1e-8
    """added to the bias-corrected root of the second moment"""

    def init(self, params: Params) -> OptState:
        return adam_init(params)

    def update(self, grads: Params, state: OptState, params: Params, hparams: Hparams) -> tuple[Params, OptState]:
        return adam(params, grads, state, lr=hparams["lr"], beta1=self.beta1, beta2=self.beta2, eps=self.eps)

    def parameters(self) -> Params:
        return {}

    def update_(self, param: torch.Tensor, grad: torch.Tensor, state: OptState, hparams: Hparams) -> None:
        """In-place twin of ``update`` on single flat tensors (``FlatSteps``)."""
        adam_(param, grad, state, lr=hparams["lr"], beta1=self.beta1, beta2=self.beta2, eps=self.eps)


@dataclass(frozen=True, kw_only=True)
class RMSProp:
    """RMSProp as in A2C/IMPALA: ``theta - lr * g / (sqrt(E[g^2]) + eps)``."""

    name: ClassVar[str] = "rmsprop"
    alpha: float = 0.99
    """decay of the running mean of squared gradients"""
    eps: float = 1e-5
    """added to the root of that mean"""

    def init(self, params: Params) -> OptState:
        return rmsprop_init(params)

    def update(self, grads: Params, state: OptState, params: Params, hparams: Hparams) -> tuple[Params, OptState]:
        return rmsprop(params, grads, state, lr=hparams["lr"], alpha=self.alpha, eps=self.eps)

    def parameters(self) -> Params:
        return {}

    def update_(self, param: torch.Tensor, grad: torch.Tensor, state: OptState, hparams: Hparams) -> None:
        """In-place twin of ``update`` on single flat tensors (``FlatSteps``)."""
        rmsprop_(param, grad, state, lr=hparams["lr"], alpha=self.alpha, eps=self.eps)


UPDATE_RULES: dict[str, Callable[[], UpdateRule]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSProp}
"""The stock update rules by name, with their default constants."""

_IN_PLACE = (SGD, Adam, RMSProp)
"""Rule types whose ``update_`` is their in-place twin.  Checked by exact type: a subclass that
overrides ``update`` must not silently inherit a fast path that no longer matches it."""


RULE_FACTORIES: dict[str, str | Callable[[str], UpdateRule]] = {"optim4rl": "solvers.optim4rl.files:from_spec"}
"""Update rules that live outside ``agents/`` (learned ones), by name: a factory ``(argument) -> UpdateRule``
or its ``"module:attr"`` import string.  A string is imported only when its name is asked for, so
``agents/`` never imports ``solvers/`` and ``import hyperenvs`` stays cheap.  ``"name"`` calls the factory
with ``""`` (its default), ``"name:ARG"`` with ``ARG`` (e.g. a weights file)."""


def register_update_rule(name: str, factory: str | Callable[[str], UpdateRule]) -> None:
    """Make ``name`` (and ``name:ARG``) selectable as ``config={"update_rule": ...}``; see ``RULE_FACTORIES``."""
    if not name or ":" in name or name in UPDATE_RULES:
        raise ValueError(f"update rule name must be non-empty, without ':', and not a stock rule; got {name!r}")
    RULE_FACTORIES[name] = factory


def _from_factory(spec: str) -> UpdateRule | None:
    name, _, arg = spec.partition(":")
    factory = RULE_FACTORIES.get(name)
    if factory is None:
        return None
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(arg)


def get_update_rule(rule: str | UpdateRule) -> UpdateRule:
    """An ``UpdateRule`` from a name in ``UPDATE_RULES`` or ``RULE_FACTORIES`` (``name`` or ``name:ARG``),
    or an object that already is one."""
    if isinstance(rule, str):
        if rule in UPDATE_RULES:
            return UPDATE_RULES[rule]()
        found = _from_factory(rule)
        if found is None:
            raise ValueError(
                f"update_rule must be one of {sorted(UPDATE_RULES)} or an UpdateRule, got {rule!r} "
                f"(learned rules: {sorted(RULE_FACTORIES)}, as 'name' or 'name:ARG')"
            )
        return found
    if not isinstance(rule, UpdateRule):
        raise ValueError(
            f"update_rule must be one of {sorted(UPDATE_RULES)} or an object with name, init, update and "
            f"parameters (the UpdateRule protocol), got {rule!r}"
        )
    return rule


class FlatSteps:
    """Many clipped update-rule steps on flat buffers, for one learner iteration.

    ``FlatSteps(rule, params, state)`` (``rule`` an ``UpdateRule`` or its name
    in ``UPDATE_RULES``) copies the parameters and the optimizer
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
    in-place twin (a learned or user-supplied rule, or a subclass of a stock one) or the parameters do not
    share one dtype and device: the caller then takes the pure path.
    """

    def __init__(self, rule: UpdateRule | str, params: Params, state: OptState, *, grads_kept: int = 1) -> None:
        rule = get_update_rule(rule)
        kinds = {(p.dtype, p.device) for p in params.values()}
        self.supported = type(rule) in _IN_PLACE and len(kinds) == 1
        if not self.supported:
            return
        self._rule = rule
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
        self._ring_views: list[list[torch.Tensor] | None] = [None] * len(self._ring)  # built on first use
        self.steps = 0

    def _pack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.view(shape) for chunk, shape in zip(flat.split(self._sizes), self._shapes)]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], hparams: Hparams, *, max_norm: float) -> torch.Tensor:
        """Clip ``grads`` (one per parameter, in order) to global norm ``max_norm`` and apply the rule.

        Returns the norm before clipping, as ``clip_grad_norm`` does.
        """
        slot = self.steps % len(self._ring)
        buf = self._ring[slot]
        torch._foreach_copy_(self._ring_view(slot), grads)
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if 0 < max_norm < float("inf"):
            buf.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
        self._rule.update_(self._param_buf, buf, self.state, hparams)
        self.steps += 1
        return total

    @property
    def buffer(self) -> torch.Tensor:
        """The flat parameter buffer (``params`` are views of it)."""
        return self._param_buf

    def _ring_view(self, slot: int) -> list[torch.Tensor]:
        if self._ring_views[slot] is None:
            self._ring_views[slot] = self._views(self._ring[slot])
        return self._ring_views[slot]

    def grad_slot(self) -> torch.Tensor:
        """The flat buffer the next step's gradient goes in: for a caller that writes the gradient itself and
        applies the update to ``buffer`` and ``state`` (``agents.fused``), then ``advance()``."""
        return self._ring[self.steps % len(self._ring)]

    def advance(self) -> None:
        """Count a step applied by the caller (the gradient in ``grad_slot()``, kept for ``recent_grads``)."""
        self.steps += 1

    def restart(self) -> None:
        """Forget the kept gradients: the next steps start a new iteration on the same buffers."""
        self.steps = 0

    def recent_grads(self) -> list[Params]:
        """Copies of the clipped gradients of the last steps this object still holds, oldest first."""
        kept = min(self.steps, len(self._ring))
        slots = [(self.steps - kept + i) % len(self._ring) for i in range(kept)]
        return [{n: v.clone() for n, v in zip(self.names, self._ring_view(s))} for s in slots]

    def result(self) -> tuple[Params, OptState]:
        """Independent parameters (leaves requiring grad) and optimizer state in the pure format."""
        with torch.no_grad():
            params = {n: v.detach().clone().requires_grad_() for n, v in self.params.items()}
            state = dict(self.state)
            for key in self._state_keys:
                state[key] = {n: v.clone() for n, v in zip(self.names, self._views(self.state[key]))}
        return params, state
