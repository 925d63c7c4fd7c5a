"""STAC and STACX (Zahavy et al., 2020): self-tuning IMPALA by metagradients, white-box.

Each hyper-step, the solver emits eta as the env's action, so the env's own
IMPALA update trains with it; then, on the unroll and the parameters of that
update (``learner.last_batch``, ``learner.last_params``), it differentiates
the outer loss through one inner step of the learner's own objective:

    theta~(eta) = theta - lr * grad_theta L_inner(theta; eta) / P       (paper Eq. 1)
    eta <- Adam(1e-3) on grad_eta L_outer(theta~(eta))                  (Eq. 2, Eq. 6)

with ``inner_update`` as the differentiable update.  ``P`` holds the learner's
RMSProp denominators as constants (``precondition=True``), so the
differentiated step points where the real one went; ``precondition=False`` is
plain SGD (``agents.optim.sgd``).  Two ways to differentiate, one result (the
tests check both against a finite difference):

- ``backend="autograd"`` (default): the learner's own update is the inner step.
  The solver sets ``learner.keep_graph``, so that update takes its meta as
  leaf tensors and its gradient with ``create_graph``; the solver then only
  adds the SGD step, the outer loss and one backward pass to those leaves,
  chained through ``eta(logits)``.  The learner's forward/backward is not run
  twice, and the metagradient is taken at the very meta values that update
  used (the env's action, decoded).
- ``backend="func"``: ``torch.func.grad`` nested in ``torch.func.grad`` on the
  pure objective (parameters are a dict, so no ``functional_call``), redoing
  the inner forward/backward; slower on small networks.

Metaparameters: eta = {gamma, lambda, g_v, g_p, g_e, alpha}, each
``scale * sigmoid(logit)``: scale 1 for gamma, lambda, alpha and the outer
value for the loss weights (so a loss weight lies in (0, outer)).  The logits
start where eta equals the outer value (the paper's rule of thumb), with
``init_one`` (0.99) standing in for an outer value of 1, which a sigmoid
cannot reach.  After each Adam step the logits are projected onto the env's
ranges (gamma: [0.8, 0.9999] on the IMPALA ids), so what the learner trains
with -- the env would clip silently -- is the eta the metagradient was taken
at.  Outer loss (Eq. 6): the IMPALA loss of head 0 at the env's default gamma
and loss weights, with lambda = 1, alpha = 1 (V-trace), plus
``g_kl * KL(pi_theta~ || pi_theta)``, g_kl = 1.  Its V-trace targets and
advantages are stop-gradient, as in the inner loss.

STACX adds two auxiliary policy/value heads, each with its own eta (18
metaparameters); only head 0 acts and enters the outer loss.  The env must
carry the heads: ``gym.make(id, config={"aux_heads": 2})``.  The auxiliary
heads' eta reach the learner through ``learner.aux_meta`` (white-box), and
are recorded in the RunLog as ``gamma/aux1`` and so on.  Deviation: the paper
(Section 3.2) makes each head's policy and value a 2-layer MLP on the shared
torso (width not given); the IMPALA learner's heads are linear by default
(``head_hidden=()``), the same for all three agents, so that IMPALA, STAC and
STACX differ only in the metaparameters.  ``config={"aux_heads": 2,
"head_hidden": (256,)}`` gives 2-layer heads (for every head, the acting one
included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.impala import META_KEYS, IMPALALearner, IMPALAObjective
from agents.optim import adam, adam_init, sgd
from agents.vtrace import VTraceReturns
from solvers.base import EpisodeSolver, SolverSpec

ENV_NAMES = {"gamma": "gamma", "lambda": "lambda_", "g_v": "g_v", "g_p": "g_p", "g_e": "g_e", "alpha": "alpha"}
"""Objective meta key -> the env's hyperparameter name."""

_WEIGHTS = ("g_v", "g_p", "g_e")


@dataclass(frozen=True, kw_only=True)
class STACConfig:
    """STAC's own hyperparameters (the paper's, unless noted)."""

    meta_lr: float = 1e-3
    """Adam step size on the metaparameter logits"""
    g_kl: float = 1.0
    """weight of KL(pi_new || pi_old) in the outer loss"""
    outer_lambda: float = 1.0
    """lambda of the outer loss's V-trace"""
    outer_alpha: float = 1.0
    """alpha of the outer loss (1: V-trace)"""
    init_one: float = 0.99
    """initial sigmoid where the outer value is 1 (lambda, alpha, the loss weights' multipliers)"""
    aux_heads: int = 0
    """auxiliary heads with their own eta: 0 is STAC, 2 is STACX"""
    precondition: bool = True
    """divide the differentiated step by the learner's RMSProp/Adam statistics (held constant)"""
    iterations_per_step: int | None = 1
    """set the lifetime's learner iterations per hyper-step (1: a metagradient step after every
    IMPALA update, as in the paper); None keeps the env's"""
    meta_interval: int = 1
    """take a metagradient step after every this many hyper-steps (1, the paper: after every update;
    larger trades adaptation speed for wall time)"""
    backend: str = "autograd"
    """how to differentiate: ``autograd`` (reuses the learner's update, create_graph; faster) or ``func``
    (torch.func, recomputes it); the same metagradient"""

    def __post_init__(self) -> None:
        if self.backend not in ("func", "autograd"):
            raise ValueError(f"backend must be 'func' or 'autograd', got {self.backend!r}")
        if self.meta_interval < 1:
            raise ValueError(f"meta_interval must be >= 1, got {self.meta_interval}")
        if self.aux_heads < 0 or self.meta_lr <= 0:
            raise ValueError(f"aux_heads must be >= 0 and meta_lr > 0, got {self.aux_heads}, {self.meta_lr}")
        if not 0 < self.init_one < 1:
            raise ValueError(f"init_one must lie in (0, 1), got {self.init_one}")


class Metaparameters:
    """eta as ``scale * sigmoid(logits)``; ``logits`` is ``[heads, 6]`` in ``META_KEYS`` order.

    ``ranges``: ``{meta key: (low, high)}`` that eta must stay in (the env's); ``project``
    clamps logits so that it does, and the initial logits are projected too.
    """

    def __init__(
        self,
        outer: Mapping[str, float],
        heads: int,
        init_one: float,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.heads = heads
        self.scale = torch.tensor([outer[k] if k in _WEIGHTS else 1.0 for k in META_KEYS], dtype=torch.float64)
        if not (self.scale > 0).all():
            raise ValueError(f"STAC needs positive outer loss weights, got {dict(zip(META_KEYS, self.scale.tolist()))}")
        bounds = torch.tensor(
            [(ranges or {}).get(k, (0.0, float(s))) for k, s in zip(META_KEYS, self.scale)], dtype=torch.float64
        )
        # logit(0) = -inf and logit(1) = inf: a range as wide as the sigmoid's does not bind.
        self.low, self.high = torch.logit((bounds / self.scale.unsqueeze(1)).clamp(0.0, 1.0)).unbind(1)
        init = torch.tensor([outer[k] for k in META_KEYS], dtype=torch.float64) / self.scale
        init = torch.where(init >= 1.0, torch.tensor(init_one, dtype=torch.float64), init).clamp(1e-4, 1 - 1e-4)
        self.init_logits = self.project(torch.logit(init).repeat(heads, 1))

    def project(self, logits: torch.Tensor) -> torch.Tensor:
        """The nearest logits whose eta lies in the ranges."""
        return torch.clamp(logits, self.low, self.high)

    def values(
        self, logits: torch.Tensor, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """The objective's ``meta``: scalars for one head, ``[heads]`` tensors for several."""
        eta = (self.scale * torch.sigmoid(logits)).to(device=device, dtype=dtype)
        return {k: eta[:, i] if self.heads > 1 else eta[0, i] for i, k in enumerate(META_KEYS)}

    def chain(self, logits: torch.Tensor, d_meta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``dL/dlogits`` from ``dL/dmeta`` (shaped as ``values``): the sigmoid's derivative, written out
        (a few ops, where autograd's vector-Jacobian product through ``values`` takes dozens)."""
        d_eta = torch.stack([d_meta[k].reshape(-1) for k in META_KEYS], dim=1).to(logits)
        sig = torch.sigmoid(logits)
        return d_eta * self.scale * sig * (1 - sig)


def outer_loss(
    objective: IMPALAObjective,
    params: dict[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    meta: Mapping[str, float],
    old_logits: torch.Tensor,
    g_kl: float,
    returns: VTraceReturns | None = None,
) -> torch.Tensor:
    """Paper Eq. 6 on head 0: the IMPALA loss at the outer hyperparameters plus ``g_kl KL(pi_params || pi_old)``."""
    logits, values, bootstrap = objective.forward(params, batch, heads=1)  # the auxiliary heads play no part
    loss, _ = objective.head_loss(logits[0], values[0], bootstrap[0], batch, meta, returns)
    logp_new, logp_old = torch.log_softmax(logits[0], -1), torch.log_softmax(old_logits, -1)
    kl = (logp_new.exp() * (logp_new - logp_old)).sum(-1).mean()
    return loss + g_kl * kl


def meta_objective(
    logits: torch.Tensor,
    *,
    eta: Metaparameters,
    objective: IMPALAObjective,
    theta: dict[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    lr: float,
    outer_meta: Mapping[str, float],
    g_kl: float,
    old_logits: torch.Tensor,
    preconditioner: dict[str, torch.Tensor] | None = None,
    returns: VTraceReturns | None = None,
) -> torch.Tensor:
    """``L_outer(theta~(eta(logits)))``: one differentiable inner step, then the outer loss."""
    first = next(iter(theta.values()))
    meta = eta.values(logits, first.dtype, first.device)
    grads = torch.func.grad(lambda th: objective(th, batch, meta)[0])(theta)
    new_theta = inner_update(theta, grads, lr, preconditioner)
    return outer_loss(objective, new_theta, batch, outer_meta, old_logits, g_kl, returns)


def inner_update(
    theta: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor],
    lr: float,
    preconditioner: Mapping[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """``theta - lr * grads / P``, differentiable in ``grads``; ``P`` is held constant, None is plain SGD."""
    if preconditioner is None:
        return sgd(dict(theta), dict(grads), {"step": 0}, lr=lr)[0]
    keys = list(theta)
    # One fused op per list rather than a divide and an update per tensor: the step is on the metagradient's path.
    new = torch._foreach_addcdiv([theta[k] for k in keys], [grads[k] for k in keys], [preconditioner[k] for k in keys], value=-lr)
    return dict(zip(keys, new))


def metagradient(logits: torch.Tensor, *, backend: str = "autograd", **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad, value)`` of ``meta_objective`` with respect to ``logits``, the inner step computed here.

    ``backend="autograd"``: the inner step with ``torch.autograd.grad(create_graph=True)``, then
    ``metagradient_of_step``, which pays less per-op overhead on small networks.
    ``backend="func"``: ``torch.func.grad`` nested in ``torch.func.grad_and_value``.
    The tests check both agree.
    """
    if backend == "func":
        return torch.func.grad_and_value(lambda lg: meta_objective(lg, **kwargs))(logits)
    if backend != "autograd":
        raise ValueError(f"backend must be 'func' or 'autograd', got {backend!r}")
    eta, objective, theta, batch = kwargs["eta"], kwargs["objective"], kwargs["theta"], kwargs["batch"]
    theta = {k: v.detach().requires_grad_() for k, v in theta.items()}
    first = next(iter(theta.values()))
    meta = {k: v.detach().requires_grad_() for k, v in eta.values(logits, first.dtype, first.device).items()}
    loss = objective(theta, batch, meta)[0]
    grads = dict(zip(theta, torch.autograd.grad(loss, list(theta.values()), create_graph=True)))
    return metagradient_of_step(logits, meta=meta, grads=grads, **{**kwargs, "theta": theta})


def metagradient_of_step(
    logits: torch.Tensor,
    *,
    eta: Metaparameters,
    meta: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor],
    objective: IMPALAObjective,
    theta: dict[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    lr: float,
    outer_meta: Mapping[str, float],
    g_kl: float,
    old_logits: torch.Tensor,
    preconditioner: dict[str, torch.Tensor] | None = None,
    returns: VTraceReturns | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad, value)`` as ``metagradient``, from an inner step already taken (the learner's, say).

    ``meta``: the step's metaparameters, leaf tensors equal to ``eta.values(logits)`` (up to the
    rounding of the env's action); ``grads``: ``grad_theta L_inner(theta; meta)`` with its graph.
    The chain rule does the rest: ``dL/dlogits = (dL/dmeta) (dmeta/dlogits)``.
    """
    new_theta = inner_update({k: v.detach() for k, v in theta.items()}, grads, lr, preconditioner)
    value = outer_loss(objective, new_theta, batch, outer_meta, old_logits, g_kl, returns)
    d_meta = torch.autograd.grad(value, [meta[k] for k in META_KEYS])
    return eta.chain(logits.detach(), dict(zip(META_KEYS, d_meta))), value.detach()


def preconditioner_of(learner: IMPALALearner) -> dict[str, torch.Tensor] | None:
    """The learner's adaptive-optimizer denominators, detached (None for SGD)."""
    state, name = learner.opt_state, learner.config.optimizer
    if name == "rmsprop":
        avg = state["square_avg"]
        return dict(zip(avg, torch._foreach_add(torch._foreach_sqrt([v.detach() for v in avg.values()]), 1e-5)))
    if name == "adam" and state["step"] > 0:
        bias2 = 1 - 0.999 ** state["step"]
        return {k: (v.detach() / bias2).sqrt() + 1e-8 for k, v in state["exp_avg_sq"].items()}
    return None


class STACSolver(EpisodeSolver):
    """Self-Tuning Actor-Critic: metagradients on eta = {gamma, lambda, g_v, g_p, g_e, alpha} of an IMPALA id."""

    name = "stac"
    spec = SolverSpec()
    heads_default = 0

    def __init__(self, config: STACConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = STACConfig(**{"aux_heads": self.heads_default, **overrides})
        self.config = config
        self.meta_losses: list[float] = []

    # -- the template's hooks ----------------------------------------------------
    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        base = env.unwrapped
        learner = getattr(base, "learner", None)
        if not isinstance(learner, IMPALALearner):
            got = env.spec.id if env.spec else env
            raise ValueError(f"{type(self).__name__} needs a HyperRL IMPALA id (e.g. HyperRL/IMPALA-CartPole-v0), got {got}")
        have, want = learner.config.aux_heads, self.config.aux_heads
        if have != want:
            raise ValueError(
                f"{type(self).__name__} needs an IMPALA learner with {want} auxiliary heads, this one has {have}: "
                f"make the env with gym.make(id, config={{'aux_heads': {want}}})"
            )
        missing = [n for n in ENV_NAMES.values() if n not in base.hparam_space.names]
        if missing:
            raise ValueError(f"{type(self).__name__} tunes {list(ENV_NAMES.values())}; the env does not control {missing}")
        if base.hparam_space.action_type != "continuous":
            # Bins would round eta, and the learner would train with other values than those differentiated.
            raise ValueError(
                f"{type(self).__name__} emits continuous metaparameters; this env has action_type="
                f"{base.hparam_space.action_type!r}: make it with gym.make(id, action_type='continuous')"
            )
        if self.config.iterations_per_step is not None:
            base.iterations_per_step = self.config.iterations_per_step
        self._env = base
        self._space = base.hparam_space
        self._defaults = {**base.defaults, **self._space.defaults()}
        outer = {k: float(self._defaults[v]) for k, v in ENV_NAMES.items()}
        self.outer_meta = {**outer, "lambda": self.config.outer_lambda, "alpha": self.config.outer_alpha}
        ranges = {h.name: (h.low, h.high) for h in self._space.hyperparameters}
        self.eta = Metaparameters(
            outer, 1 + self.config.aux_heads, self.config.init_one, {k: ranges[v] for k, v in ENV_NAMES.items()}
        )
        self.logits = self.eta.init_logits.clone()
        self._adam = adam_init({"logits": self.logits})
        self.meta_losses = []
        self._steps = 0

    def current(self) -> dict[str, np.ndarray]:
        """eta per meta key, one value per head."""
        eta = self.eta.scale * torch.sigmoid(self.logits)
        return {k: eta[:, i].numpy().copy() for i, k in enumerate(META_KEYS)}

    def act(self, obs: Any) -> np.ndarray:
        eta = self.current()
        values = {**self._defaults, **{ENV_NAMES[k]: float(v[0]) for k, v in eta.items()}}
        learner = self._env.learner
        if self.config.aux_heads:
            learner.aux_meta = {k: torch.as_tensor(v[1:], dtype=torch.float32, device=learner.device) for k, v in eta.items()}
        # The autograd backend differentiates the coming update itself, when a metagradient step follows it.
        learner.keep_graph = self.config.backend == "autograd" and (self._steps + 1) % self.config.meta_interval == 0
        return self._space.encode({n: values[n] for n in self._space.names})

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        if self.config.aux_heads:  # the RunLog records what every head trained with
            eta = self.current()
            aux = {f"{ENV_NAMES[k]}/aux{h}": float(v[h]) for k, v in eta.items() for h in range(1, len(v))}
            info["hyperparameters"] = {**info["hyperparameters"], **aux}
        learner = self._env.learner
        self._steps += 1
        if done or info.get("diverged") or learner.last_batch is None or self._steps % self.config.meta_interval:
            return
        self.update(learner, float(info["hyperparameters"].get("lr", self._defaults["lr"])))

    # -- the metagradient step ------------------------------------------------------
    def update(self, learner: IMPALALearner, lr: float) -> float:
        """One Adam step on the logits from the learner's latest update; returns the outer loss."""
        common = dict(
            eta=self.eta,
            objective=learner.objective,
            theta=learner.last_params,
            batch=learner.last_batch,
            lr=lr,
            outer_meta=self.outer_meta,
            g_kl=self.config.g_kl,
            old_logits=learner.last_logits,  # pi_theta, from the learner's own forward pass
            preconditioner=preconditioner_of(learner) if self.config.precondition else None,
        )
        inner, learner.last_inner = learner.last_inner, None  # frees the graph whichever way we go
        if self.config.backend == "autograd" and inner is not None:
            grad, value = metagradient_of_step(self.logits, meta=inner.meta, grads=inner.grads, **common)
        else:
            grad, value = metagradient(self.logits, backend=self.config.backend, **common)
        if torch.isfinite(grad).all():
            new, self._adam = adam({"logits": self.logits}, {"logits": grad}, self._adam, lr=self.config.meta_lr)
            self.logits = self.eta.project(new["logits"])
        self.meta_losses.append(float(value))
        return float(value)


class STACXSolver(STACSolver):
    """STACX: STAC with two auxiliary policy/value heads, each self-tuning its own eta (18 metaparameters)."""

    name = "stacx"
    heads_default = 2
    spec = SolverSpec(env_config={"aux_heads": 2})
    """the learner needs the auxiliary heads (the command line applies it)"""
