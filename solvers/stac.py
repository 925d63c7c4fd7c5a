"""STAC and STACX (Zahavy et al., 2020): self-tuning IMPALA by metagradients, white-box.

Each hyper-step, the solver emits eta as the env's action, so the env's own
IMPALA update trains with it; then, on the unroll and the parameters of that
update (``learner.last_batch``, ``learner.last_params``), it differentiates
the outer loss through one inner step of the learner's own objective:

    theta~(eta) = theta - lr * P * grad_theta L_inner(theta; eta)       (paper Eq. 1)
    eta <- Adam(1e-3) on grad_eta L_outer(theta~(eta))                  (Eq. 2, Eq. 6)

with ``torch.func.grad`` nested in ``torch.func.grad`` (the objective is pure
and the parameters are a dict, so no ``functional_call``) and the pure
``agents.optim.sgd`` as the differentiable update.  ``P`` holds the learner's
RMSProp statistics as constants (``precondition=True``), so the differentiated
step points where the real one went; ``precondition=False`` is plain SGD.

Metaparameters: eta = {gamma, lambda, g_v, g_p, g_e, alpha}, each
``scale * sigmoid(logit)``: scale 1 for gamma, lambda, alpha and the outer
value for the loss weights (so a loss weight lies in (0, outer)).  The logits
start where eta equals the outer value (the paper's rule of thumb), with
``init_one`` (0.99) standing in for an outer value of 1, which a sigmoid
cannot reach.  Outer loss (Eq. 6): the IMPALA loss of head 0 at the env's
default gamma and loss weights, with lambda = 1, alpha = 1 (V-trace), plus
``g_kl * KL(pi_theta~ || pi_theta)``, g_kl = 1.  Its V-trace targets and
advantages are stop-gradient, as in the inner loss.

STACX adds two auxiliary policy/value heads, each with its own eta (18
metaparameters); only head 0 acts and enters the outer loss.  The env must
carry the heads: ``gym.make(id, config={"aux_heads": 2})``.  The auxiliary
heads' eta reach the learner through ``learner.aux_meta`` (white-box), and
are recorded in the RunLog as ``gamma/aux1`` and so on.
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
from solvers.base import EpisodeSolver

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
    backend: str = "func"
    """how to differentiate: ``func`` (torch.func) or ``autograd`` (create_graph; same result, faster on CPU)"""

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
    """eta as ``scale * sigmoid(logits)``; ``logits`` is ``[heads, 6]`` in ``META_KEYS`` order."""

    def __init__(self, outer: Mapping[str, float], heads: int, init_one: float) -> None:
        self.heads = heads
        self.scale = torch.tensor([outer[k] if k in _WEIGHTS else 1.0 for k in META_KEYS], dtype=torch.float64)
        if not (self.scale > 0).all():
            raise ValueError(f"STAC needs positive outer loss weights, got {dict(zip(META_KEYS, self.scale.tolist()))}")
        init = torch.tensor([outer[k] for k in META_KEYS], dtype=torch.float64) / self.scale
        init = torch.where(init >= 1.0, torch.tensor(init_one, dtype=torch.float64), init).clamp(1e-4, 1 - 1e-4)
        self.init_logits = torch.logit(init).repeat(heads, 1)

    def values(self, logits: torch.Tensor, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The objective's ``meta``: scalars for one head, ``[heads]`` tensors for several."""
        eta = (self.scale * torch.sigmoid(logits)).to(dtype)
        return {k: eta[:, i] if self.heads > 1 else eta[0, i] for i, k in enumerate(META_KEYS)}


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
    logits, values, bootstrap = objective.forward(params, batch)
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
    dtype = next(iter(theta.values())).dtype
    meta = eta.values(logits, dtype)
    grads = torch.func.grad(lambda th: objective(th, batch, meta)[0])(theta)
    if preconditioner is not None:
        grads = {k: g / preconditioner[k] for k, g in grads.items()}
    new_theta, _ = sgd(theta, grads, {"step": 0}, lr=lr)
    return outer_loss(objective, new_theta, batch, outer_meta, old_logits, g_kl, returns)


def metagradient(logits: torch.Tensor, *, backend: str = "func", **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad, value)`` of ``meta_objective`` with respect to ``logits``.

    ``backend="func"``: ``torch.func.grad`` nested in ``torch.func.grad_and_value``.
    ``backend="autograd"``: the same maths with ``torch.autograd.grad(create_graph=True)``,
    which pays less per-op overhead on small networks (the tests check both agree).
    """
    if backend == "func":
        return torch.func.grad_and_value(lambda lg: meta_objective(lg, **kwargs))(logits)
    if backend != "autograd":
        raise ValueError(f"backend must be 'func' or 'autograd', got {backend!r}")
    return _autograd_metagradient(logits, **kwargs)


def _autograd_metagradient(
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
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.detach().requires_grad_()
    theta = {k: v.detach().requires_grad_() for k, v in theta.items()}
    meta = eta.values(logits, next(iter(theta.values())).dtype)
    loss = objective(theta, batch, meta)[0]
    grads = dict(zip(theta, torch.autograd.grad(loss, list(theta.values()), create_graph=True)))
    if preconditioner is not None:
        grads = {k: g / preconditioner[k] for k, g in grads.items()}
    new_theta, _ = sgd(theta, grads, {"step": 0}, lr=lr)
    value = outer_loss(objective, new_theta, batch, outer_meta, old_logits, g_kl, returns)
    return torch.autograd.grad(value, logits)[0], value.detach()


def preconditioner_of(learner: IMPALALearner) -> dict[str, torch.Tensor] | None:
    """The learner's adaptive-optimizer denominators, detached (None for SGD)."""
    state, name = learner.opt_state, learner.config.optimizer
    if name == "rmsprop":
        return {k: v.detach().sqrt() + 1e-5 for k, v in state["square_avg"].items()}
    if name == "adam" and state["step"] > 0:
        bias2 = 1 - 0.999 ** state["step"]
        return {k: (v.detach() / bias2).sqrt() + 1e-8 for k, v in state["exp_avg_sq"].items()}
    return None


class STACSolver(EpisodeSolver):
    """Self-Tuning Actor-Critic: metagradients on eta = {gamma, lambda, g_v, g_p, g_e, alpha} of an IMPALA id."""

    name = "stac"
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
        if self.config.iterations_per_step is not None:
            base.iterations_per_step = self.config.iterations_per_step
        self._env = base
        self._space = base.hparam_space
        self._defaults = {**base.defaults, **self._space.defaults()}
        outer = {k: float(self._defaults[v]) for k, v in ENV_NAMES.items()}
        self.outer_meta = {**outer, "lambda": self.config.outer_lambda, "alpha": self.config.outer_alpha}
        self.eta = Metaparameters(outer, 1 + self.config.aux_heads, self.config.init_one)
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
        if self.config.aux_heads:
            self._env.learner.aux_meta = {k: torch.as_tensor(v[1:], dtype=torch.float32) for k, v in eta.items()}
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
        theta, batch = learner.last_params, learner.last_batch
        with torch.no_grad():
            old_logits = learner.objective.forward(theta, batch)[0][0]
        grad, value = metagradient(
            self.logits,
            eta=self.eta,
            objective=learner.objective,
            theta=theta,
            batch=batch,
            lr=lr,
            outer_meta=self.outer_meta,
            g_kl=self.config.g_kl,
            old_logits=old_logits,
            preconditioner=preconditioner_of(learner) if self.config.precondition else None,
            backend=self.config.backend,
        )
        if torch.isfinite(grad).all():
            new, self._adam = adam({"logits": self.logits}, {"logits": grad}, self._adam, lr=self.config.meta_lr)
            self.logits = new["logits"]
        self.meta_losses.append(float(value))
        return float(value)


class STACXSolver(STACSolver):
    """STACX: STAC with two auxiliary policy/value heads, each self-tuning its own eta (18 metaparameters)."""

    name = "stacx"
    heads_default = 2
    env_config = {"aux_heads": 2}
    """learner config the env needs (the command line applies it): the auxiliary heads"""
