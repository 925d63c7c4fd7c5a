"""Fused gradient steps for the small MLP actor-critics on CPU: PPO's and A2C's gradient by hand, in NumPy.

On CartPole-sized networks an eager torch step costs one to two milliseconds that are almost
all dispatch: autograd records a node per op and replays them, and each of the few hundred ops
on 64-row tensors costs 3-10 us whatever its size.  Here one step is about eighty array ops
with no autograd, each about a microsecond in NumPy (on views of the same memory as the torch
buffers, so nothing is copied):

- **The backward written out.**  The gradients of the clipped surrogate (or A2C's policy
  gradient), the value loss and the entropy with respect to the logits (or the Gaussian mean and
  ``log_std``) and the value are closed-form (``agents.fused_loss``); each layer's backward is two
  matrix products and a sum.  Gradients land in views of one flat buffer (``agents.optim.FlatSteps``).
- **One update kernel.**  Global-norm clipping on the flat gradient, then Adam as torch's fused
  kernel (``torch._fused_adam_``, what ``torch.optim.adam.adam(fused=True)`` calls) or SGD/RMSProp
  as the rules' in-place twins.
- **Per epoch, not per step, where it can be.**  An epoch's minibatches have their advantages
  standardised in one pass, their rows gathered in NumPy, and the metrics computed at its end from
  what the steps recorded (``agents.fused_loss``); both heads share one matmul a hidden layer
  (``layout``: each layer's actor and critic weights side by side in the flat buffer).

The numbers are the eager objective's to float rounding (``tests/test_fused.py`` compares both
over ten updates).  Every hyperparameter is a plain number read at each step, so changing one
costs nothing and nothing is compiled.  The step returns the eager path's metrics and norm.
``FusedPolicy`` is the collector's side: the policy's forward and sampling in NumPy
(``agents.tensor_rollout.TensorCollector`` with ``fused_policy``, set by the learner with these steps).

For categorical policies both sides go one step further where ``agents.native`` can build its C kernel:
``NativeGradient`` computes a step's gradient (and its records) in one call, ``FusedPolicy`` acts in one
call; the same maths as the NumPy code here, which stays the fall-back (``tests/test_native.py``).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.base import Batch, Params
from agents.fused_loss import metrics, policy_gradient, records, standardized
from agents.optim import SGD, Adam, FlatSteps, OptState, RMSProp, UpdateRule

_RULES = (SGD, Adam, RMSProp)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def fusable(network: Any, rule: UpdateRule, params: Params) -> str:
    """Why a learner's steps cannot be fused ("" when they can)."""
    from agents.networks import ActorCritic

    if type(network) is not ActorCritic or network.cnn_channels:
        return "only the MLP ActorCritic has fused steps (image and task networks stay eager)"
    if type(rule) not in _RULES:
        return f"update rule {type(rule).__name__} has no in-place form (only the stock sgd, adam, rmsprop)"
    if {(p.dtype, p.device.type) for p in params.values()} != {(torch.float32, "cpu")}:
        return "fused steps run on CPU float32 parameters (on a GPU the eager or compiled path applies)"
    if set(params) != set(network.shapes()):
        return "the parameters are not the network's own (a learned objective added some)"
    return ""


def layout(network: Any) -> dict[str, tuple[int, ...]]:
    """The actor-critic's parameter shapes in the fused steps' flat order: each hidden layer's actor and critic
    weights side by side, then their biases, so that one ``[2, out, in]`` view (one ``np.matmul``) serves both
    heads; the two output layers (of different widths) and ``log_std`` after."""
    shapes, depth = network.shapes(), len(network.hidden)
    names = [f"{head}.{i}.{kind}" for i in range(depth) for kind in ("weight", "bias") for head in ("actor", "critic")]
    names += [f"{head}.{depth}.{kind}" for head in ("actor", "critic") for kind in ("weight", "bias")]
    names += [n for n in shapes if n not in names]  # log_std
    return {n: shapes[n] for n in names}


class Heads:
    """NumPy views of a flat buffer in ``layout`` order: ``hidden`` ``[(weight [2, out, in], bias [2, 1, out])]``
    (actor first), ``actor`` and ``critic`` their output layers ``(weight, bias)``, ``log_std`` (or None)."""

    def __init__(self, flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]], depth: int) -> None:
        views, offset = {}, 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            views[name] = (offset, size, shape)
            offset += size

        def pair(i: int, kind: str) -> np.ndarray:
            start, size, shape = views[f"actor.{i}.{kind}"]
            return (
                flat[start : start + 2 * size].reshape(2, *shape)
                if kind == "weight"
                else flat[start : start + 2 * size].reshape(2, 1, -1)
            )

        def one(name: str) -> np.ndarray:
            start, size, shape = views[name]
            return flat[start : start + size].reshape(shape)

        self.hidden = [(pair(i, "weight"), pair(i, "bias")) for i in range(depth)]
        self.actor, self.critic = ((one(f"{h}.{depth}.weight"), one(f"{h}.{depth}.bias")) for h in ("actor", "critic"))
        self.log_std = one("actor.log_std") if "actor.log_std" in views else None


def heads_forward(x: np.ndarray, heads: Heads, tanh: bool) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Both heads of an ``agents.networks.ActorCritic`` on ``x`` ``[M, in]``: ``(policy_out [M, A], value [M, 1],
    inputs)``, ``inputs[i]`` hidden layer ``i``'s input (``x``, then ``[2, M, h]``: actor's rows, critic's)."""
    inputs = [x]
    for weight, bias in heads.hidden:
        z = np.matmul(inputs[-1], weight.transpose(0, 2, 1))  # x broadcasts against both heads' weights
        z += bias
        inputs.append(np.tanh(z, out=z) if tanh else np.maximum(z, 0.0, out=z))
    top = inputs[-1]
    (wa, ba), (wc, bc) = heads.actor, heads.critic
    policy_out, value = np.dot(top[0] if heads.hidden else x, wa.T), np.dot(top[1] if heads.hidden else x, wc.T)
    policy_out += ba
    value += bc
    return policy_out, value, inputs


def heads_backward(
    g_policy: np.ndarray, g_value: np.ndarray, inputs: list[np.ndarray], heads: Heads, grads: Heads, tanh: bool
) -> None:
    """Every weight and bias gradient of both heads, written into ``grads`` (views of the gradient buffer), from
    ``d loss / d policy_out`` ``[M, A]`` and ``d loss / d value`` ``[M, 1]``."""
    top = inputs[-1]
    for g, (g_weight, g_bias), h in (
        (g_policy, grads.actor, top[0] if heads.hidden else top),
        (g_value, grads.critic, top[1] if heads.hidden else top),
    ):
        np.dot(g.T, h, out=g_weight)
        np.add.reduce(g, axis=0, out=g_bias)
    if not heads.hidden:
        return
    g = np.empty_like(top)
    np.dot(g_policy, heads.actor[0], out=g[0])
    np.dot(g_value, heads.critic[0], out=g[1])
    for i in range(len(heads.hidden) - 1, -1, -1):
        h = inputs[i + 1]
        if tanh:
            g *= 1.0 - h * h
        else:
            g *= h > 0
        g_weight, g_bias = grads.hidden[i]
        np.matmul(g.transpose(0, 2, 1), inputs[i], out=g_weight)
        np.add.reduce(g, axis=1, keepdims=True, out=g_bias)
        if i:
            g = np.matmul(g, heads.hidden[i][0])


_BATCH_FIELDS = ("obs", "actions", "log_probs", "advantages", "returns")


def _batch_arrays(batch: Batch) -> dict[str, np.ndarray]:
    """NumPy views of the fields a step reads, one row per transition."""
    m = batch.log_probs.numel()
    arrays = {k: getattr(batch, k).reshape(m, *getattr(batch, k).shape[2:]).numpy() for k in _BATCH_FIELDS}
    arrays["obs"] = arrays["obs"].reshape(m, -1)
    return arrays


def _minibatches(arrays: dict[str, np.ndarray], size: int, normalize: bool, actions: int | None) -> list[dict[str, np.ndarray]]:
    """The rows ``[k * size, (k + 1) * size)`` of ``arrays`` for each whole minibatch, with what the steps need
    from each computed for all at once: standardised advantages, and (``actions``: a categorical policy's
    count) the taken actions' flat positions in a ``[size, actions]`` array."""
    k = arrays["log_probs"].shape[0] // size
    extra = {}
    if normalize and size > 1:
        extra["advantages"] = standardized(arrays["advantages"][: k * size].reshape(k, size))
    if actions is not None:
        extra["index"] = (arrays["actions"][: k * size].reshape(k, size) + np.arange(size) * actions).astype(np.intp)
    cut = [{name: v[i * size : (i + 1) * size] for name, v in arrays.items()} for i in range(k)]
    for name, v in extra.items():
        for i, rows in enumerate(cut):
            rows[name] = v[i]
    return cut


def _versions(params: Params, state: OptState) -> list[int]:
    tensors = [*params.values(), *(t for v in state.values() if isinstance(v, dict) for t in v.values())]
    return [t._version for t in tensors]


_RECORDS = ("ratio", "log_ratio", "unclipped", "clipped", "surrogate", "error", "probs", "logp_all")
"""the records ``fused_step.c`` fills, in its order (a kind's absent ones as null pointers)"""
_NATIVE_FIELDS = tuple((name, np.int64 if name == "actions" else np.float32) for name in _BATCH_FIELDS)
"""the minibatch fields ``fused_step.c`` reads, in its order, with their dtypes"""


class NativeGradient:
    """``agents/native/fused_step.c`` for one ``FusedSteps`` (a categorical policy): the gradient of a step in one
    call, the same numbers as the NumPy step to float rounding."""

    def __init__(self, lib: Any, steps: FusedSteps) -> None:
        hidden = [shape[0] for name, shape in steps._shapes.items() if name.startswith("actor.") and name.endswith(".weight")]
        obs_dim = next(iter(steps._shapes.values()))[1]
        self.lib, self.params = lib, steps.buffers.buffer.data_ptr()
        self.head = [obs_dim, steps.actions, len(hidden) - 1, int(steps.kind == "ppo"), int(steps.tanh), *hidden[:-1]]
        self.dims: dict[int, np.ndarray] = {}  # per minibatch size
        self.hp = np.zeros(3)
        self.rec = (ctypes.c_void_p * len(_RECORDS))()

    @classmethod
    def build(cls, steps: FusedSteps) -> NativeGradient | None:
        lib = _native_lib()
        return None if lib is None or steps._depth > 32 else cls(lib, steps)

    def prepare(self, minibatches: list[dict[str, np.ndarray]], hp: Mapping[str, Any], rec: dict[str, np.ndarray]) -> None:
        """Every step's arguments of one epoch at once (the minibatches are consecutive rows of one array per
        field, so each field's pointers step by a fixed stride; checked, else each minibatch is laid out alone)."""
        m, k = minibatches[0]["log_probs"].shape[0], len(minibatches)
        if m not in self.dims:
            self.dims[m] = np.array([m, *self.head], dtype=np.int64)
        self.hp[:] = (float(hp.get("clip", 0.0)), float(hp["ent_coef"]), float(hp["vf_coef"]))
        self.held = []  # arrays whose memory the pointers name, alive until the next epoch
        columns = []
        for name, dtype in _NATIVE_FIELDS:
            first, last = minibatches[0][name], minibatches[-1][name]
            stride = (minibatches[1][name].ctypes.data - first.ctypes.data) if k > 1 else 0
            even = first.dtype == dtype and first.flags.c_contiguous and last.ctypes.data == first.ctypes.data + (k - 1) * stride
            if even:
                columns.append([first.ctypes.data + i * stride for i in range(k)])
            else:
                self.held += [np.ascontiguousarray(rows[name], dtype=dtype) for rows in minibatches]
                columns.append([a.ctypes.data for a in self.held[-k:]])
        tables = [(rec[name].ctypes.data, rec[name][0].nbytes) if name in rec else None for name in _RECORDS]
        fixed = (self.dims[m].ctypes.data, self.params)
        self.steps = []
        for i in range(k):
            pointers = (ctypes.c_void_p * len(_RECORDS))(*(t[0] + i * t[1] if t else None for t in tables))
            self.steps.append((fixed, tuple(c[i] for c in columns), pointers))

    def gradient(self, i: int, grad: int) -> float:
        """Step ``i`` of the prepared epoch: its gradient into the flat buffer at ``grad``, its records into the
        epoch's; returns the gradient's norm."""
        (dims, params), fields, records = self.steps[i]
        return self.lib.fused_step(dims, params, grad, *fields, self.hp.ctypes.data, records)


class FusedSteps:
    """The fused gradient steps of one ``train_step`` (the interface of ``agents.compiled.CompiledSteps``).

    Built from ``(params, opt_state)`` (neither is modified); ``step(batch, hp)`` applies one
    clipped update and returns ``(metrics, norm)``, ``epoch(batch, size, hp)`` one per minibatch of a
    shuffled flat batch; ``result()`` gives new params and state in the pure rules' format.
    """

    seconds_compiling = 0.0

    def __init__(
        self,
        kind: str,
        objective: Any,
        rule: UpdateRule,
        params: Params,
        opt_state: OptState,
        grads_kept: int,
        *,
        native: bool = True,
    ) -> None:
        self.kind, self.rule, self.grads_kept = kind, rule, grads_kept
        self.normalize = bool(getattr(objective, "normalize_advantages", False))
        network = objective.network
        self.tanh, self.discrete = network.activation == "tanh", network.discrete
        self.actions = network.action_dim if network.discrete else None
        self.names, shapes = list(params), layout(network)
        ordered = {n: params[n] for n in shapes}
        state = {k: {n: v[n] for n in shapes} if isinstance(v, dict) else v for k, v in opt_state.items()}
        self.buffers = FlatSteps(rule, ordered, state, grads_kept=grads_kept)
        self._shapes, self._depth = shapes, len(network.hidden)
        self.heads = Heads(self.buffers.buffer.detach().numpy(), shapes, self._depth)
        self._grads: dict[int, tuple[np.ndarray, Heads]] = {}  # per ring slot used: its flat NumPy view, per layer
        self._given: tuple | None = None  # what result() last returned, and its tensors' version counters
        self._adam_step = torch.tensor([float(opt_state["step"])])  # the fused Adam kernel's counter
        self._native = NativeGradient.build(self) if native and self.discrete else None
        """the gradient in one compiled call (``agents.native``), or None: the NumPy step"""
        self._adam_count = self._adam_step.numpy()

    def _apply(self, grad: torch.Tensor, hp: Mapping[str, Any]) -> None:
        buffers, state = self.buffers, self.buffers.state
        if type(self.rule) is Adam:
            # torch's fused Adam kernel called directly: its Python wrapper (grouping by device, a foreach add for
            # the step count) costs twice the kernel on one flat buffer; the count is bumped on a NumPy view.
            r = self.rule
            self._adam_count += 1
            torch._fused_adam_(
                [buffers.buffer], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [self._adam_step],
                lr=float(hp["lr"]), beta1=r.beta1, beta2=r.beta2, weight_decay=0.0, eps=r.eps, amsgrad=False, maximize=False,
            )  # fmt: skip
            state["step"] += 1
        else:
            self.rule.update_(buffers.buffer, grad, state, hp)

    def _update(self, arrays: Mapping[str, np.ndarray], hp: Mapping[str, Any], rec: dict[str, np.ndarray], i: int) -> float:
        """One clipped update; returns the gradient norm before clipping, and records what the metrics need in
        row ``i`` of ``rec`` (``agents.fused_loss.records``)."""
        grad = self.buffers.grad_slot()
        if grad.data_ptr() not in self._grads:
            self._grads[grad.data_ptr()] = (grad.numpy(), Heads(grad.numpy(), self._shapes, self._depth))
        flat, grads = self._grads[grad.data_ptr()]
        if self._native is not None:
            norm = self._native.gradient(i, grad.data_ptr())
        else:
            m = arrays["log_probs"].shape[0]
            heads = self.heads
            policy_out, value, inputs = heads_forward(arrays["obs"], heads, self.tanh)
            g_policy, g_log_std = policy_gradient(self.kind, policy_out, heads.log_std, arrays, hp, rec, i)
            error = np.subtract(value[:, 0], arrays["returns"], out=rec["error"][i])
            heads_backward(g_policy, (error * (float(hp["vf_coef"]) / m))[:, None], inputs, heads, grads, self.tanh)
            if grads.log_std is not None:
                grads.log_std[:] = g_log_std
            norm = math.sqrt(float(np.dot(flat, flat)))
        max_norm = float(hp["max_grad_norm"])
        if 0 < max_norm < float("inf"):  # clip_grad_norm's rule: otherwise the gradient is left alone
            flat *= min(1.0, max_norm / (norm + 1e-6))
        self._apply(grad, hp)
        self.buffers.advance()
        return norm

    @torch.no_grad()
    def step(self, batch: Batch, hp: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """One clipped update on ``batch`` (A2C's whole batch, or a minibatch, carrying its targets): ``(metrics, norm)``."""
        arrays = _batch_arrays(batch)
        metrics, norms = self._steps(_minibatches(arrays, arrays["log_probs"].shape[0], self.normalize, self.actions), hp)
        return metrics[0], norms[0]

    @torch.no_grad()
    def epoch(
        self, batch: Batch, size: int, hp: Mapping[str, Any], order: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A step on each minibatch ``[k * size, (k + 1) * size)`` of a flat ``[1, N]`` batch, its rows first taken in
        ``order`` (a permutation) when given (a remainder smaller than ``size`` is left out, as PPO's schedule
        does); returns metrics ``[K, n_metrics]`` and norms ``[K]``."""
        arrays = _batch_arrays(batch)
        if order is not None:  # the fields the steps read, not all of Batch.rows'
            index = order.numpy()
            arrays = {k: v[index] for k, v in arrays.items()}
        return self._steps(_minibatches(arrays, size, self.normalize, self.actions), hp)

    def _steps(self, minibatches: list[dict[str, np.ndarray]], hp: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """A step on each minibatch in turn; the metrics of all of them at the end, from the steps' records."""
        rec = records(self.kind, self.actions or 0, self.discrete, len(minibatches), minibatches[0]["log_probs"].shape[0])
        if self._native is not None:
            self._native.prepare(minibatches, hp, rec)
        norms = torch.tensor([self._update(rows, hp, rec, i) for i, rows in enumerate(minibatches)], dtype=torch.float32)
        return torch.from_numpy(metrics(self.kind, rec, hp).astype(np.float32)), norms

    def recent_grads(self) -> list[Params]:
        """The clipped gradients of the last steps (at most ``grads_kept``), oldest first."""
        return [{n: g[n] for n in self.names} for g in self.buffers.recent_grads()]

    def result(self) -> tuple[Params, OptState]:
        """Independent parameters (leaves requiring grad) and optimizer state in the pure format (the network's order)."""
        params, state = self.buffers.result()
        state = {k: {n: v[n] for n in self.names} if isinstance(v, dict) else v for k, v in state.items()}
        params = {n: params[n] for n in self.names}
        self._given = (params, state, _versions(params, state))
        return params, state

    def holds(self, params: Params, opt_state: OptState) -> bool:
        """Whether ``params`` and ``opt_state`` are the very tensors ``result()`` last returned, unmodified: the
        buffers then hold them still, and a next iteration may step on here instead of packing them again.
        Unmodified means their version counters are unchanged: every in-place torch op bumps them (a write
        through ``.data`` or a NumPy view does not, as it escapes autograd's own check)."""
        if self._given is None or not np.may_share_memory(self.heads.actor[0], self.buffers.buffer.detach().numpy()):
            return False  # (a copy of these steps no longer views its own buffers)
        given, state, versions = self._given
        same = list(params) == list(given) and all(params[n] is given[n] for n in given)
        same = same and opt_state.keys() == state.keys()
        for key, value in state.items():
            other = opt_state[key]
            if isinstance(value, dict):
                same = same and other.keys() == value.keys() and all(other[n] is value[n] for n in value)
            else:
                same = same and other == value
        return same and _versions(params, opt_state) == versions

    @classmethod
    def resume(cls, kept: FusedSteps | None, *args: Any) -> FusedSteps:
        """``kept`` restarted for a new iteration (its kept gradients its own) if it ``holds`` the iteration's
        params and state (``args`` as the constructor's), else new steps built from them."""
        kind, objective, rule, params, opt_state, grads_kept = args
        if (
            kept is None
            or not kept.holds(params, opt_state)
            or (kind, rule, grads_kept) != (kept.kind, kept.rule, kept.grads_kept)
        ):
            return cls(*args)
        kept.buffers.restart()
        return kept


class FusedPolicy:
    """The collector's policy step in NumPy for a CPU float32 MLP ``ActorCritic`` (about 10x fewer microseconds
    than the torch forward at a few environments).

    The same distribution as ``agents.networks.sample``: Gaussian actions from the same ``torch.randn`` draw
    (so the same actions to float rounding), categorical ones by inverse CDF from one ``torch.rand`` per row
    (``torch.multinomial`` consumes the generator differently, so the draws differ).
    """

    def __init__(self, network: Any, params: Params, generator: torch.Generator) -> None:
        self.generator = generator
        shapes = layout(network)
        flat = np.concatenate([params[n].detach().numpy().reshape(-1) for n in shapes])  # once a collection
        self.heads = Heads(flat, shapes, len(network.hidden))
        self.tanh = network.activation == "tanh"
        self._flat = flat
        self._native = _native_lib() if network.discrete and len(network.hidden) <= 32 else None
        """``policy_act`` of ``agents/native/fused_step.c`` (categorical policies), or None: the NumPy step"""
        if self._native is not None:
            head = [shapes[next(iter(shapes))][1], network.action_dim, len(network.hidden), 0, int(self.tanh)]
            self._head = [*head, *network.hidden]
            self._dims: dict[int, np.ndarray] = {}

    def act(
        self, obs: np.ndarray, obs_out: np.ndarray, act_out: np.ndarray, value_out: np.ndarray, logp_out: np.ndarray
    ) -> np.ndarray:
        """Act on ``obs`` ``[B, obs_dim]``; writes it, the action, the value and the log-probability into the ``*_out``
        arrays (a step's rows of the collector's buffers) and returns the action array (``act_out``)."""
        if self._native is not None and obs.dtype == np.float32 and obs.flags.c_contiguous:
            return self._act_native(obs, obs_out, act_out, value_out, logp_out)
        obs_out[...] = obs
        policy_out, value, _ = heads_forward(obs, self.heads, self.tanh)
        value_out[...] = value[:, 0]
        log_std = self.heads.log_std
        b, a = policy_out.shape
        if log_std is None:
            shifted = policy_out - policy_out.max(axis=1, keepdims=True)
            cdf = np.cumsum(np.exp(shifted), axis=1)
            u = torch.rand(b, generator=self.generator).numpy() * cdf[:, -1]
            action = np.minimum((cdf < u[:, None]).sum(axis=1), a - 1, out=act_out)
            logp_out[...] = np.take(shifted, action + np.arange(0, b * a, a)) - np.log(cdf[:, -1])
        else:
            noise = torch.randn((b, a), generator=self.generator).numpy()
            act_out[...] = policy_out + noise * np.exp(log_std)
            logp_out[...] = (-0.5 * noise * noise - log_std).sum(axis=1) - a * _LOG_SQRT_2PI
        return act_out

    def _act_native(
        self, obs: np.ndarray, obs_out: np.ndarray, act_out: np.ndarray, value_out: np.ndarray, logp_out: np.ndarray
    ) -> np.ndarray:
        """``act`` in one compiled call: the same forward and inverse-CDF draw from the same ``torch.rand`` row."""
        b = obs.shape[0]
        if b not in self._dims:
            self._dims[b] = np.array([b, *self._head], dtype=np.int64)
        u = torch.rand(b, generator=self.generator).numpy()
        outs = (obs_out, act_out, value_out, logp_out)
        if not all(o.flags.c_contiguous for o in outs) or act_out.dtype != np.int64:
            raise ValueError("FusedPolicy.act writes into C-contiguous rows (int64 actions)")
        self._native.policy_act(self._dims[b].ctypes.data, self._flat.ctypes.data, obs.ctypes.data, u.ctypes.data,
                                *(o.ctypes.data for o in outs))  # fmt: skip
        return act_out


def _native_lib() -> Any:
    from agents import native

    return native.fused_step()
