"""Compiled gradient steps for the small actor-critics: PPO's minibatch step and A2C's step.

On CartPole-sized networks an eager gradient step is a few hundred tiny tensor ops, each
costing microseconds of dispatch whatever its size, plus autograd's bookkeeping.  Here one
step (objective, its gradient, global-norm clipping and the stock update rule) is traced once
with ``torch.func.grad_and_value`` and compiled by ``torch.compile`` into a single graph over
flat buffers: the parameters, the rule's moments and the gradient are one tensor each, so a
step is one call with about a dozen inputs.

The objective is the eager one (``PPOObjective``/``A2CObjective``), traced, so eager stays the
reference.  Every hyperparameter the step reads (``lr``, ``clip``, ``vf_coef``, ``ent_coef``,
``max_grad_norm``) enters as one float tensor, and the update rule's step counter as a tensor,
so changing them never recompiles; GAE (``gamma``, ``gae_lambda``) runs eager on the whole
batch before the steps.  The graph is specialised to shapes: each distinct minibatch size
compiles once.  Compiled steps are cached per (objective kind, network, rule, batch shape)
in this process, so a new lifetime of the same id reuses them; the cache holds 32 keys, and
dynamo's ``recompile_limit`` (raised here to 64) bounds the graphs of all keys together, beyond
which a step runs the same traced function eagerly.
"""

from __future__ import annotations

import functools
import shutil
import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from agents.base import Batch, Params
from agents.optim import SGD, Adam, OptState, RMSProp, UpdateRule

COMPILE_CHOICES = (False, True, "auto", "fused")
"""values of ``ActorCriticConfig.compile``"""

AUTO_AFTER = 8
"""``compile="auto"``: iterations a learner runs eagerly before it compiles, so that the short runs
of tests and smoke checks never pay a compile.  Counted per learner (restored with it), so a run's
numbers do not depend on what else ran in the process.  What the compile earns back is measured in
benchmarks/compiled/README.md: across lifetimes in one process, or from a warm inductor cache, it
pays on PPO's many minibatch steps; one lifetime from an empty cache mostly does not."""

AUTO_MAX_PARAMS = 100_000
"""``compile="auto"``: larger networks stay eager (their steps are arithmetic, not overhead); smaller ones take
the fused steps where those apply (CPU, float32: ``agents.fused``), else the compiled ones"""

_HPARAMS = ("lr", "clip", "vf_coef", "ent_coef", "max_grad_norm")
"""the hyperparameters a compiled step reads, packed in this order into one tensor"""

_RULES = (SGD, Adam, RMSProp)

# networks.mlp's lru_cache holds layer names only (strings): tracing through it is safe.
warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")

# The graphs of every key share one code object, hence one dynamo cache: room for a population of
# networks and a few minibatch sizes each (torch's default of 8 would send the ninth to eager).
torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def check_compile(value: Any) -> None:
    if value not in COMPILE_CHOICES or isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {value!r}")


def compilable(network: Any, rule: UpdateRule, params: Params) -> str:
    """Why a learner's steps cannot be compiled ("" when they can)."""
    from agents.networks import ActorCritic

    if type(network) is not ActorCritic or network.cnn_channels:
        return "only the MLP ActorCritic is compiled (image and task networks stay eager)"
    if type(rule) not in _RULES:
        return f"update rule {type(rule).__name__} has no compiled form (only the stock sgd, adam, rmsprop)"
    if len({(p.dtype, p.device) for p in params.values()}) != 1:
        return "parameters do not share one dtype and device"
    device = next(iter(params.values())).device
    if device.type == "cpu" and not _have_c_compiler():
        return "no C compiler on PATH (torch.compile's CPU backend needs one)"
    return ""


@functools.cache
def _have_c_compiler() -> bool:
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


def update_path(setting: bool | str, iterations: int, network: Any, rule: UpdateRule, params: Params) -> str:
    """How this iteration's gradient steps run (``ActorCriticConfig.compile``): ``"eager"``, ``"fused"``
    (``agents.fused``) or ``"compiled"``.  ``"auto"`` is fused where that applies (an MLP with the stock rules on
    CPU float32), else compiled once the learner has run ``AUTO_AFTER`` iterations (where it compiles), and eager
    for networks over ``AUTO_MAX_PARAMS``; the fused collector draws categorical actions by inverse CDF (the same
    distribution, another draw).  An impossible explicit setting is a ``ValueError`` naming why."""
    from agents.fused import fusable

    if setting is False:
        return "eager"
    if setting == "fused":
        reason = fusable(network, rule, params)
        if reason:
            raise ValueError(f"compile='fused', but {reason}")
        return "fused"
    reason = compilable(network, rule, params)
    if setting is True:
        if reason:
            raise ValueError(f"compile=True, but {reason}")
        return "compiled"
    if sum(p.numel() for p in params.values()) > AUTO_MAX_PARAMS:
        return "eager"
    if not fusable(network, rule, params):  # "auto" on CPU: the fused steps beat the compiled ones, with no compile
        return "fused"
    return "compiled" if not reason and iterations >= AUTO_AFTER else "eager"


class _Counter:
    """A torch.compile backend that counts the graphs it compiles (the no-recompilation check reads it)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(gm, example_inputs)


COMPILES = _Counter()
"""graphs compiled by this module in this process (``COMPILES.graphs``)"""


@functools.lru_cache(maxsize=32)
def _compiled_step(kind: str, network: Any, rule: UpdateRule, normalize_advantages: bool, shapes: tuple) -> Any:
    """The compiled step for one (objective, network, rule, shapes); cached so lifetimes share it.

    ``shapes`` is part of the key so that each entry holds one graph (every entry's closure shares
    one code object, hence dynamo's one ``recompile_limit`` for all of them)."""
    if kind == "ppo":
        from agents.ppo import PPOObjective

        objective = PPOObjective(network, normalize_advantages)
    else:
        from agents.a2c import A2CObjective

        objective = A2CObjective(network)
    names = tuple(network.shapes())
    sizes = tuple(int(torch.Size(s).numel()) for s in network.shapes().values())
    dims = tuple(tuple(s) for s in network.shapes().values())

    def unflat(flat: torch.Tensor) -> Params:
        return {n: c.view(d) for n, c, d in zip(names, flat.split(sizes), dims)}

    def step(flat, state, obs, actions, log_probs, advantages, returns, hp):
        hparams = dict(zip(_HPARAMS, hp.unbind()))
        m = log_probs.shape[-1]

        def loss(theta):
            # The objective reads obs, actions, log_probs and the targets; the other fields only fill the Batch.
            batch = Batch(
                obs=obs,
                actions=actions,
                log_probs=log_probs,
                values=returns,
                rewards=returns,
                discounts=returns,
                bootstrap_value=returns.new_zeros(m),
                advantages=advantages,
                returns=returns,
            )
            value, metrics = objective(unflat(theta), batch, hparams)
            return value, torch.stack(list(metrics.values()))

        grad, (_, metrics) = torch.func.grad_and_value(loss, has_aux=True)(flat)
        norm = torch.linalg.vector_norm(grad)
        max_norm = hparams["max_grad_norm"]
        # clip_grad_norm's rule: a non-positive or infinite bound leaves the gradient alone.
        on = (max_norm > 0) & torch.isfinite(max_norm)
        grad = grad * torch.where(on, torch.clamp(max_norm / (norm + 1e-6), max=1.0), 1.0)
        new, new_state = rule.update({"flat": grad}, state, {"flat": flat}, hparams)
        return new["flat"], new_state, grad, norm, metrics

    return torch.compile(step, backend=COMPILES, dynamic=False, fullgraph=True)


class CompiledSteps:
    """The compiled gradient steps of one ``train_step``, on flat copies of the parameters and state.

    Like ``agents.optim.FlatSteps``: built from ``(params, opt_state)`` (neither is modified),
    ``step(minibatch, hp)`` applies one clipped update, ``result()`` returns new params and
    state in the pure rules' format.  ``seconds_compiling`` is the wall time of the steps that
    compiled a graph (tracing and code generation; those steps' own arithmetic is negligible).
    """

    def __init__(self, kind: str, objective: Any, rule: UpdateRule, params: Params, opt_state: OptState, grads_kept: int):
        self.kind, self.objective, self.rule = kind, objective, rule
        self.names = list(params)
        self._shapes = [p.shape for p in params.values()]
        self._sizes = [p.numel() for p in params.values()]
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
            self.state: OptState = {
                k: {"flat": torch.cat([v[n].reshape(-1) for n in self.names])} if isinstance(v, dict) else v
                for k, v in opt_state.items()
            }
        self._start_step = int(opt_state["step"])
        self.state["step"] = torch.tensor(float(self._start_step), dtype=torch.float64, device=self.flat.device)
        self.steps = 0
        self.seconds_compiling = 0.0
        self._grads: list[torch.Tensor] = []
        self._grads_kept = max(1, grads_kept)
        self._hp_cache: tuple[tuple, torch.Tensor] | None = None

    def _hp(self, hp: Mapping[str, Any]) -> torch.Tensor:
        values = tuple(float(hp.get(k, 0.0)) for k in _HPARAMS)
        if self._hp_cache is None or self._hp_cache[0] != values:
            self._hp_cache = (values, torch.tensor(values, dtype=self.flat.dtype, device=self.flat.device))
        return self._hp_cache[1]

    @torch.no_grad()
    def step(self, batch: Batch, hp: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """One clipped update on ``batch`` (a ``[1, M]`` minibatch, or A2C's whole batch, carrying its
        targets); returns ``(metrics, norm)``: the objective's metrics stacked, the norm before clipping."""
        args = (batch.obs, batch.actions, batch.log_probs, batch.advantages, batch.returns)
        fn = _compiled_step(
            self.kind,
            self.objective.network,
            self.rule,
            bool(getattr(self.objective, "normalize_advantages", False)),
            tuple(tuple(a.shape) for a in args),
        )
        before, start = COMPILES.graphs, time.perf_counter()
        self.flat, self.state, grad, norm, metrics = fn(self.flat, self.state, *args, self._hp(hp))
        if COMPILES.graphs != before:
            self.seconds_compiling += time.perf_counter() - start
        self._grads = [*self._grads[-(self._grads_kept - 1) :], grad] if self._grads_kept > 1 else [grad]
        self.steps += 1
        return metrics, norm

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: c.view(s).clone() for n, c, s in zip(self.names, flat.split(self._sizes), self._shapes)}

    def recent_grads(self) -> list[Params]:
        """The clipped gradients of the last steps (at most ``grads_kept``), oldest first."""
        return [self._views(g) for g in self._grads]

    def result(self) -> tuple[Params, OptState]:
        """Independent parameters (leaves requiring grad) and optimizer state in the pure format."""
        params = {n: v.requires_grad_() for n, v in self._views(self.flat).items()}
        state: OptState = {k: self._views(v["flat"]) if isinstance(v, dict) else v for k, v in self.state.items()}
        state["step"] = self._start_step + self.steps
        return params, state
