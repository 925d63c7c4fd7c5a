"""STAC and STACX (Zahavy et al., 2020): self-tuning IMPALA by metagradients, white-box.

Each hyper-step, the solver emits eta as the env's action, so the env's own
IMPALA update u trains with it:

    theta_u = learner.train_step(theta_{u-1}, state_{u-1}, B_u, hparams, eta)   (paper Eq. 1)

and the learner takes that update differentiably (``IMPALALearner.graph_meta``:
eta as functions of the solver's logits), so theta_u keeps its graph to eta;
``replay=True`` instead replays the update -- ``learner.last_update`` -- through
the shared differentiable unroll (``agents.unroll``), the same operations.
Then, with ``outer_batch="next"`` (the default):

    eta <- Adam(1e-3) on grad_eta L_outer(theta_u(eta); B_{u+1})                (Eq. 2, Eq. 6)

where B_{u+1} is the batch the learner's next update trains on, collected by its
actors after update u.  So the outer loss scores theta_u on a fresh, independent
unroll (Xu et al., 2018) at no extra env step; the meta step is taken one
hyper-step late (after update u+1), at the eta update u trained with, and
applied to the current logits.  The metagradient is exact for that definition:
B_{u+1} is data, not differentiated; with the ids' ``policy_lag=1`` it was
collected with theta_{u-1}, so it does not depend on eta_u at all.
``outer_batch="same"`` scores theta_u on B_u itself (on one batch
dL_outer/dg_x is then always negative: "take a bigger step on the data you are
scored on").

The inner step is the learner's own: its objective, its gradient clipping and
its update rule (RMSProp on the IMPALA ids, with its real statistics), so the
differentiated step is the step that was taken, and nothing of the learner's
maths is re-derived here.

Metaparameters: eta = {gamma, lambda, g_v, g_p, g_e, alpha}, each
``scale * sigmoid(logit)``: scale 1 for gamma, lambda, alpha and the outer
value for the loss weights, so a loss weight is a multiplier in (0, 1) on
IMPALA's coefficient.  That is how we read the paper's g_{v,p,e}^outer = 1
(Section 4): the outer loss is IMPALA's (g_v 0.5, g_p 1, g_e 0.01, the id's
defaults), i.e. multipliers of 1.  Taken literally (g_v = g_p = g_e = 1 in
the loss) it did no better on CartPole (benchmarks/stac/README.md, cell ``g_outer=1``).
The logits start where eta equals the outer value (the paper's rule of thumb),
with ``init_one`` (0.99) standing in for an outer value of 1, which a sigmoid
cannot reach, or at ``init`` where given (met exactly; Fig. 8 varies it).
``outer`` overrides the outer loss's gamma and weights (Section 4.3 perturbs
them).  After each Adam step the logits are projected onto the env's ranges
(gamma: [0.8, 0.9999] on the IMPALA ids), so what the learner trains with --
the env would clip silently -- is the eta the metagradient was taken at.
Outer loss (Eq. 6): the IMPALA loss of head 0 at the outer gamma and loss
weights, with lambda = 1, alpha = 1 (V-trace), plus
``g_kl * KL(pi_theta~ || pi_theta)``, g_kl = 1, on the scored batch.  Its
V-trace targets and advantages are stop-gradient, as in the inner loss.

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

``state_dict()`` / ``load_state_dict()`` hold the logits, the meta-optimizer's
state, the counters and the update awaiting its next-unroll score (replayed
after a restore: a graph cannot be saved), so ``hyperrl run stac ... --resume``
continues a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import Batch, LastUpdate
from agents.impala import META_KEYS, IMPALALearner, IMPALAObjective
from agents.impala_objective import HPARAM_OF
from agents.optim import adam, adam_init
from agents.unroll import unroll
from agents.vtrace import VTraceReturns
from solvers.base import EpisodeSolver, SolverSpec

ENV_NAMES = HPARAM_OF
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
    iterations_per_step: int | None = 1
    """set the lifetime's learner iterations per hyper-step (1: a metagradient step after every
    IMPALA update, as in the paper); None keeps the env's"""
    meta_interval: int = 1
    """take a metagradient step after every this many hyper-steps (1, the paper: after every update;
    larger trades adaptation speed for wall time)"""
    outer_batch: str = "next"
    """where the outer loss scores theta~: ``"next"``, the next unroll (the batch the learner's
    following update trains on, collected after this update; Xu et al. 2018), or ``"same"``, the
    batch of the inner step itself"""
    outer: Mapping[str, float] | None = None
    """the outer loss's values of ``gamma``, ``g_v``, ``g_p``, ``g_e`` where they differ from the env's
    defaults (the robustness experiments perturb them, paper Section 4.3); eta starts there too
    unless ``init`` says otherwise"""
    replay: bool = False
    """take the metagradient by replaying the learner's update through ``agents.unroll`` (True), or
    through the graph of the learner's own update (False, ``IMPALALearner.graph_meta``): the same
    operations, so the same numbers, without redoing the inner forward and backward pass"""
    init: Mapping[str, float] | None = None
    """initial eta per meta key (``gamma``, ``lambda``, ``g_v``, ``g_p``, ``g_e``, ``alpha``), every head
    alike; a key left out starts at its outer value (the paper's rule of thumb, Fig. 8 varies it)"""

    def __post_init__(self) -> None:
        if self.outer_batch not in ("next", "same"):
            raise ValueError(f"outer_batch must be 'next' or 'same', got {self.outer_batch!r}")
        unknown = set(self.init or {}) - set(META_KEYS)
        if unknown:
            raise ValueError(f"init has unknown meta keys {sorted(unknown)}; known: {list(META_KEYS)}")
        unknown = set(self.outer or {}) - {"gamma", *_WEIGHTS}
        if unknown:
            raise ValueError(
                f"outer has unknown keys {sorted(unknown)}; it sets gamma, g_v, g_p, g_e (outer_lambda, outer_alpha the rest)"
            )
        bad = {k: v for k, v in {**(self.outer or {}), **(self.init or {})}.items() if not v > 0}
        if bad:
            raise ValueError(f"outer and init values must be > 0, got {bad}")
        if self.meta_interval < 1:
            raise ValueError(f"meta_interval must be >= 1, got {self.meta_interval}")
        if self.aux_heads < 0 or self.meta_lr <= 0:
            raise ValueError(f"aux_heads must be >= 0 and meta_lr > 0, got {self.aux_heads}, {self.meta_lr}")
        if not 0 < self.init_one < 1:
            raise ValueError(f"init_one must lie in (0, 1), got {self.init_one}")


class Metaparameters:
    """eta as ``scale * sigmoid(logits)``; ``logits`` is ``[heads, 6]`` in ``META_KEYS`` order.

    ``ranges``: ``{meta key: (low, high)}`` that eta must stay in (the env's); ``project``
    clamps logits so that it does, and the initial logits are projected too.  ``init``:
    ``{meta key: value}`` to start at instead of the outer value; such a value is met exactly
    (a loss weight started at or above its outer value gets the scale ``init / init_one``).
    """

    def __init__(
        self,
        outer: Mapping[str, float],
        heads: int,
        init_one: float,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        init: Mapping[str, float] | None = None,
    ) -> None:
        self.heads = heads
        init = dict(init or {})
        scale = [outer[k] if k in _WEIGHTS else 1.0 for k in META_KEYS]
        for i, k in enumerate(META_KEYS):
            if k in init and k in _WEIGHTS and init[k] >= scale[i]:
                scale[i] = init[k] / init_one
            elif k in init and not 0 < init[k] < scale[i]:
                raise ValueError(f"init[{k!r}] must lie in (0, 1), got {init[k]}")
        self.scale = torch.tensor(scale, dtype=torch.float64)
        if not (self.scale > 0).all():
            raise ValueError(f"STAC needs positive outer loss weights, got {dict(zip(META_KEYS, self.scale.tolist()))}")
        bounds = torch.tensor(
            [(ranges or {}).get(k, (0.0, float(s))) for k, s in zip(META_KEYS, self.scale)], dtype=torch.float64
        )
        for k, (low, high) in zip(META_KEYS, bounds.tolist()):
            if k in init and not low <= init[k] <= high:
                raise ValueError(f"init[{k!r}] = {init[k]} lies outside the env's range [{low}, {high}]")
        # logit(0) = -inf and logit(1) = inf: a range as wide as the sigmoid's does not bind.
        self.low, self.high = torch.logit((bounds / self.scale.unsqueeze(1)).clamp(0.0, 1.0)).unbind(1)
        start = torch.tensor([init.get(k, outer[k]) for k in META_KEYS], dtype=torch.float64) / self.scale
        start = torch.where(start >= 1.0, torch.tensor(init_one, dtype=torch.float64), start).clamp(1e-4, 1 - 1e-4)
        self.init_logits = self.project(torch.logit(start).repeat(heads, 1))

    def project(self, logits: torch.Tensor) -> torch.Tensor:
        """The nearest logits whose eta lies in the ranges."""
        return torch.clamp(logits, self.low, self.high)

    def values(
        self, logits: torch.Tensor, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """The objective's ``meta``: scalars for one head, ``[heads]`` tensors for several."""
        eta = (self.scale * torch.sigmoid(logits)).to(device=device, dtype=dtype)
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
    logits, values, bootstrap = objective.forward(params, batch, heads=1)  # the auxiliary heads play no part
    loss, _ = objective.head_loss(logits[0], values[0], bootstrap[0], batch, meta, returns)
    logp_new, logp_old = torch.log_softmax(logits[0], -1), torch.log_softmax(old_logits, -1)
    kl = (logp_new.exp() * (logp_new - logp_old)).sum(-1).mean()
    return loss + g_kl * kl


def meta_objective(
    logits: torch.Tensor,
    *,
    eta: Metaparameters,
    learner: IMPALALearner,
    update: LastUpdate,
    outer_meta: Mapping[str, float],
    g_kl: float,
    outer_batch: Batch | None = None,
    returns: VTraceReturns | None = None,
) -> torch.Tensor:
    """``L_outer(theta~(eta(logits)))``: the learner's ``update`` replayed with eta (one differentiable
    ``train_step`` through ``agents.unroll``), then the outer loss on ``outer_batch`` (None: the
    update's own batch).  The KL term compares with the policy before the update on that batch."""
    first = next(iter(update.params.values()))
    meta = eta.values(logits, first.dtype, first.device)
    theta = {k: v.detach().requires_grad_() for k, v in update.params.items()}
    out = unroll(learner, [update.batch], update.hparams, meta, params=theta, opt_state=update.opt_state)
    scored = update.batch if outer_batch is None else outer_batch
    with torch.no_grad():  # pi_theta, the policy before the update
        old_logits = learner.objective.forward(update.params, scored, heads=1)[0][0]
    return outer_loss(learner.objective, out.params, scored, outer_meta, old_logits, g_kl, returns)


def metagradient(logits: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d meta_objective / d logits, meta_objective)`` at ``logits``; ``kwargs`` as ``meta_objective``'s."""
    leaf = logits.detach().requires_grad_()
    value = meta_objective(leaf, **kwargs)
    (grad,) = torch.autograd.grad(value, leaf)
    return grad, value.detach()


def graph_metagradient(
    leaf: torch.Tensor,
    theta: dict[str, torch.Tensor],
    *,
    learner: IMPALALearner,
    update: LastUpdate,
    outer_meta: Mapping[str, float],
    g_kl: float,
    outer_batch: Batch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``metagradient`` from an update already taken with eta as functions of ``leaf``: ``theta`` is
    its result with the graph (``IMPALALearner.last_graph``), ``update`` its inputs."""
    scored = update.batch if outer_batch is None else outer_batch
    with torch.no_grad():
        old_logits = learner.objective.forward(update.params, scored, heads=1)[0][0]
    value = outer_loss(learner.objective, theta, scored, outer_meta, old_logits, g_kl)
    (grad,) = torch.autograd.grad(value, leaf)
    return grad, value.detach()


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
        self.logits = torch.zeros(0)
        self.last_metagradient: torch.Tensor | None = None
        """the latest metagradient d L_outer / d logits, ``[heads, 6]`` (for diagnostics)"""
        self._leaf: torch.Tensor | None = None
        """the logits leaf of the coming update's graph (``graph_meta``), or None"""
        self._pending: tuple[LastUpdate, torch.Tensor, Any] | None = None
        """outer_batch "next": the latest update and the logits it trained with, scored at the next hyper-step"""

    # -- the template's hooks ----------------------------------------------------
    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self._bind(env)
        self.logits = self.eta.init_logits.clone()
        self._adam = adam_init({"logits": self.logits})
        self.meta_losses = []
        self._steps = 0
        self._pending = None
        self._leaf = None

    def resume(self, env: gym.Env, obs: Any, log: Any, *, callback: Any = None) -> Any:
        """Continue a lifetime after ``load_state_dict``: bind to the restored env, keep the loaded state."""
        self._bind(env, fresh=False)
        return super().resume(env, obs, log, callback=callback)

    def _bind(self, env: gym.Env, fresh: bool = True) -> None:
        """Check the env and derive what the solver needs from it (the outer values, eta's ranges)."""
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
        outer = {k: float(self._defaults[v]) for k, v in ENV_NAMES.items()} | dict(self.config.outer or {})
        self.outer_meta = {**outer, "lambda": self.config.outer_lambda, "alpha": self.config.outer_alpha}
        ranges = {h.name: (h.low, h.high) for h in self._space.hyperparameters}
        self.eta = Metaparameters(
            outer,
            1 + self.config.aux_heads,
            self.config.init_one,
            {k: ranges[v] for k, v in ENV_NAMES.items()},
            self.config.init,
        )
        if not fresh and tuple(self.logits.shape) != tuple(self.eta.init_logits.shape):
            raise ValueError(
                f"loaded logits have shape {tuple(self.logits.shape)}, this env needs {tuple(self.eta.init_logits.shape)}"
            )

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
        self._leaf, learner.graph_meta = None, None
        if not self.config.replay and self._differentiated(self._steps + 1):
            # the coming update, taken with eta as functions of these logits, keeps its graph for the metagradient
            self._leaf = self.logits.detach().requires_grad_()
            first = next(iter(learner.parameters().values()))
            learner.graph_meta = self.eta.values(self._leaf, first.dtype, first.device)
        return self._space.encode({n: values[n] for n in self._space.names})

    def _differentiated(self, n: int) -> bool:
        """Whether a metagradient step will differentiate the lifetime's update ``n`` (1-based)."""
        scored_at = n if self.config.outer_batch == "same" else n + 1
        return scored_at % self.config.meta_interval == 0

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        if self.config.aux_heads:  # the RunLog records what every head trained with
            eta = self.current()
            aux = {f"{ENV_NAMES[k]}/aux{h}": float(v[h]) for k, v in eta.items() for h in range(1, len(v))}
            info["hyperparameters"] = {**info["hyperparameters"], **aux}
        learner, last = self._env.learner, self._env.learner.last_update
        self._steps += 1
        if done or info.get("diverged") or last is None:
            self._pending = None  # no later update will use eta: nothing to tune it for
            return
        due = self._steps % self.config.meta_interval == 0
        graph = None if self._leaf is None or learner.last_graph is None else (self._leaf, learner.last_graph)
        self._leaf = None
        if self.config.outer_batch == "same":
            if due:
                self.update(learner, last, graph=graph)
            return
        # "next": score the previous update on the batch this one trained on, at the eta it trained with.
        pending, self._pending = self._pending, (last, self.logits.clone(), graph)
        if pending is not None and due:
            self.update(learner, pending[0], outer_batch=last.batch, at=pending[1], graph=pending[2])

    # -- the metagradient step ------------------------------------------------------
    def update(
        self,
        learner: IMPALALearner,
        last: LastUpdate,
        *,
        outer_batch: Batch | None = None,
        at: torch.Tensor | None = None,
        graph: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None,
    ) -> float:
        """One Adam step on the logits from the learner's update ``last``, scored on ``outer_batch``
        (None: ``last``'s own batch), the metagradient taken at the logits ``at`` (None: the current
        ones, which ``last`` trained with).  ``graph``: ``(logits leaf, theta~)`` from the update's own
        graph (``IMPALALearner.last_graph``); None replays ``last``.  Returns the outer loss."""
        common = dict(learner=learner, update=last, outer_meta=self.outer_meta, g_kl=self.config.g_kl, outer_batch=outer_batch)
        if graph is None:
            grad, value = metagradient(self.logits if at is None else at, eta=self.eta, **common)
        else:
            grad, value = graph_metagradient(*graph, **common)
        self.last_metagradient = grad
        if torch.isfinite(grad).all():
            new, self._adam = adam({"logits": self.logits}, {"logits": grad}, self._adam, lr=self.config.meta_lr)
            self.logits = self.eta.project(new["logits"])
        self.meta_losses.append(float(value))
        return float(value)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The logits, the meta-optimizer's state and the counters: tensors and numbers only."""
        return {
            "logits": self.logits.clone(),
            "adam": {
                "step": int(self._adam["step"]),
                "exp_avg": self._adam["exp_avg"]["logits"].clone(),
                "exp_avg_sq": self._adam["exp_avg_sq"]["logits"].clone(),
            },
            "steps": self._steps,
            "meta_losses": torch.tensor(self.meta_losses, dtype=torch.float64),
            "pending": None if self._pending is None else _pending_state(*self._pending[:2]),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        heads = 1 + self.config.aux_heads
        logits = torch.as_tensor(state["logits"], dtype=torch.float64)
        if tuple(logits.shape) != (heads, len(META_KEYS)):
            raise ValueError(f"state has logits of shape {tuple(logits.shape)}; {type(self).__name__} needs ({heads}, 6)")
        self.logits = logits.clone()
        adam_state = state["adam"]
        self._adam = {
            "step": int(adam_state["step"]),
            "exp_avg": {"logits": adam_state["exp_avg"].clone()},
            "exp_avg_sq": {"logits": adam_state["exp_avg_sq"].clone()},
        }
        self._steps = int(state["steps"])
        self.meta_losses = [float(x) for x in state["meta_losses"]]
        pending = state.get("pending")
        self._pending = None if pending is None else _pending_of(pending)


def _pending_state(update: LastUpdate, logits: torch.Tensor) -> dict[str, Any]:
    """A pending update as plain tensors and numbers (for ``torch.load(weights_only=True)``)."""
    batch = {f.name: getattr(update.batch, f.name) for f in dataclasses.fields(update.batch)}
    return {
        "params": dict(update.params),
        "opt_state": update.opt_state,
        "batch": batch,
        "hparams": dict(update.hparams),
        "logits": logits.clone(),
    }


def _pending_of(state: Mapping[str, Any]) -> tuple[LastUpdate, torch.Tensor, None]:
    update = LastUpdate(
        params=dict(state["params"]),
        opt_state=state["opt_state"],
        batch=Batch(**state["batch"]),
        hparams=dict(state["hparams"]),
        meta=None,
    )
    return update, torch.as_tensor(state["logits"], dtype=torch.float64), None  # no graph: replayed


class STACXSolver(STACSolver):
    """STACX: STAC with two auxiliary policy/value heads, each self-tuning its own eta (18 metaparameters)."""

    name = "stacx"
    heads_default = 2
    spec = SolverSpec(env_config={"aux_heads": 2})
    """the learner needs the auxiliary heads (the command line applies it)"""
