"""N small-network LPG agents as one program: stacked per-lifetime weights, grouped convolutions, per-lifetime Adam.

The paper's random grids and distractor chain need function approximation (Table 3: ``C(16)-D(32)``, ``D(32)``,
``D(16)``, Adam).  ``StackedNet`` holds ``n`` such networks, every weight with a leading lifetime axis, and
runs all of them in one call: the convolutions are one ``conv2d`` with ``groups=n`` (lifetime ``l``'s channels
see only its own filters), the dense layers one ``bmm``.  Rows follow the population's ``Batch`` layout:
``[T, n * E]`` columns lifetime-major, flattened time-major to ``T * n * E`` rows, so row ``t * n * E + l * E + e``
belongs to lifetime ``l``.

``lifetime_adam`` is Adam with a step counter and a learning rate per lifetime (a lifetime restarted later has
its own bias correction); it keeps ``eps`` inside the square root so that the metagradient through an element
whose gradient is exactly zero (a dead ReLU, an unused action) stays finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from agents.base import Params
from solvers.lpg.population import MASKED_LOGIT, eq2_gradients, finish_step

KERNEL = 3
"""the convolutions' kernel size (the paper gives only the filter counts; 3x3, stride 1, no padding)"""

OUTPUT_SCALE = 0.01
"""the last layer starts this much smaller than the others: near-uniform policies and predictions at birth"""


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """One environment's agent (paper Table 3)."""

    conv: tuple[int, ...] = ()
    """filters of each 3x3 convolution over the observation planes (empty: the observation is flattened)"""
    hidden: int = 32
    """units of the dense layer after the convolutions"""
    lrs: tuple[float, ...] = (5e-4, 1e-3, 2e-3, 5e-3)
    """Adam step sizes the bandit chooses from"""


class StackedNet:
    """``n`` networks ``obs -> [conv ReLU]* -> dense ReLU -> outputs``; ``forward(params, obs [R, *shape]) -> [R, outputs]``."""

    def __init__(self, n: int, envs: int, obs_shape: Sequence[int], outputs: int, spec: NetSpec) -> None:
        if n < 1 or envs < 1 or outputs < 1:
            raise ValueError(f"StackedNet needs n, envs, outputs >= 1, got {n}, {envs}, {outputs}")
        if spec.conv and len(obs_shape) != 3:
            raise ValueError(f"a convolutional agent needs [C, H, W] observations, got shape {tuple(obs_shape)}")
        self.n, self.envs, self.obs_shape, self.outputs, self.spec = n, envs, tuple(obs_shape), outputs, spec
        self.shapes = self._shapes()
        """parameter name -> shape of one lifetime's tensor"""

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        channels, size = (self.obs_shape[0], self.obs_shape[1:]) if self.spec.conv else (0, ())
        for i, filters in enumerate(self.spec.conv):
            shapes[f"conv{i}.w"], shapes[f"conv{i}.b"] = (filters, channels, KERNEL, KERNEL), (filters,)
            channels, size = filters, tuple(s - KERNEL + 1 for s in size)
            if min(size) < 1:
                raise ValueError(f"observations {self.obs_shape} are too small for {len(self.spec.conv)} 3x3 convolutions")
        features = channels * size[0] * size[1] if self.spec.conv else int(torch.tensor(self.obs_shape).prod())
        shapes["dense.w"], shapes["dense.b"] = (features, self.spec.hidden), (self.spec.hidden,)
        shapes["out.w"], shapes["out.b"] = (self.spec.hidden, self.outputs), (self.outputs,)
        return shapes

    def init_one(self, generator: torch.Generator, dtype: torch.dtype) -> Params:
        """One lifetime's weights: uniform(+-1/sqrt(fan_in)) (torch's default), zero biases, the last layer scaled."""
        out: Params = {}
        for name, shape in self.shapes.items():
            if name.endswith(".b"):
                out[name] = torch.zeros(shape, dtype=dtype)
                continue
            fan_in = shape[0] if len(shape) == 2 else shape[1] * KERNEL * KERNEL
            bound = fan_in**-0.5 * (OUTPUT_SCALE if name == "out.w" else 1.0)
            out[name] = (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound
        return out

    def init(self, generators: Sequence[torch.Generator], dtype: torch.dtype = torch.float32) -> Params:
        """All ``n`` lifetimes' weights stacked, lifetime ``l`` drawn from ``generators[l]``."""
        if len(generators) != self.n:
            raise ValueError(f"StackedNet.init needs one generator per lifetime ({self.n}), got {len(generators)}")
        ones = [self.init_one(g, dtype) for g in generators]
        return {k: torch.stack([o[k] for o in ones]) for k in self.shapes}

    def forward(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        n, e = self.n, self.envs
        rows = obs.shape[0]
        if rows % (n * e) or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"StackedNet.forward needs [k * {n * e}, *{self.obs_shape}] observations, got {tuple(obs.shape)}")
        # [T * n * E, ...] -> [n, T * E, ...]: each lifetime's rows together
        x = obs.reshape(-1, n, e, *self.obs_shape).transpose(0, 1).reshape(n, -1, *self.obs_shape)
        batch = x.shape[1]
        if self.spec.conv:
            h = x.transpose(0, 1).reshape(batch, n * self.obs_shape[0], *self.obs_shape[1:])
            for i in range(len(self.spec.conv)):
                w, b = params[f"conv{i}.w"], params[f"conv{i}.b"]
                h = F.relu(F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), groups=n))
            x = h.reshape(batch, n, -1).transpose(0, 1)
        else:
            x = x.reshape(n, batch, -1)
        h = F.relu(torch.baddbmm(params["dense.b"].unsqueeze(1), x, params["dense.w"]))
        out = torch.baddbmm(params["out.b"].unsqueeze(1), h, params["out.w"])
        # back to the population's row order
        return out.reshape(n, -1, e, self.outputs).transpose(0, 1).reshape(rows, self.outputs)


class NetworkPopulationAgent:
    """``n`` network agents with policy logits over the most actions (the ones a lifetime lacks masked) and ``m``
    prediction logits; ``forward(params, obs) -> (policy logits [R, A], prediction logits [R, m])``."""

    def __init__(self, n: int, envs: int, obs_shape: Sequence[int], num_actions: int, m: int, spec: NetSpec) -> None:
        self.n, self.envs, self.num_actions, self.m = n, envs, num_actions, m
        self.net = StackedNet(n, envs, obs_shape, num_actions + m, spec)
        self.action_mask = torch.ones(n, num_actions, dtype=torch.bool)
        """``[n, A]``: which actions lifetime ``l``'s environment has"""

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net.forward(params, obs)
        logits, y = out[:, : self.num_actions], out[:, self.num_actions :]
        rows = out.shape[0] // (self.n * self.envs)
        mask = self.action_mask.repeat_interleave(self.envs, 0).repeat(rows, 1)
        return torch.where(mask, logits, MASKED_LOGIT), y


def adam_state(params: Params) -> dict[str, Any]:
    """Zero moments and a zero step counter per lifetime (the leading axis)."""
    n = next(iter(params.values())).shape[0]
    zeros = {k: torch.zeros_like(v) for k, v in params.items()}
    return {
        "step": torch.zeros(n, dtype=torch.long),
        "exp_avg": zeros,
        "exp_avg_sq": {k: torch.zeros_like(v) for k, v in params.items()},
    }


def lifetime_adam(
    params: Params, grads: Sequence[torch.Tensor], state: Mapping[str, Any], lr: torch.Tensor, *, eps: float = 1e-8
) -> tuple[Params, dict[str, Any]]:
    """One Adam step of every lifetime (betas 0.9, 0.999): ``lr [n]`` and the step counter per lifetime; pure."""
    step = state["step"] + 1
    bias1, bias2 = 1 - 0.9 ** step.to(lr.dtype), 1 - 0.999 ** step.to(lr.dtype)
    new, m, v = {}, {}, {}
    for (k, p), g in zip(params.items(), grads):
        shape = (-1,) + (1,) * (p.dim() - 1)
        m[k] = 0.9 * state["exp_avg"][k] + 0.1 * g
        v[k] = 0.999 * state["exp_avg_sq"][k] + 0.001 * g * g
        new[k] = p - (lr / bias1).view(shape) * m[k] / (v[k] / bias2.view(shape) + eps * eps).sqrt()
    return new, {"step": step, "exp_avg": m, "exp_avg_sq": v}


def restart(params: Params, state: Mapping[str, Any] | None, j: int, fresh: Params) -> None:
    """Lifetime ``j`` starts again (in place): weights ``fresh``, zero Adam moments and step."""
    with torch.no_grad():
        for k, v in params.items():
            v[j] = fresh[k]
        if state is not None:
            state["step"][j] = 0
            for moments in (state["exp_avg"], state["exp_avg_sq"]):
                for v in moments.values():
                    v[j] = 0.0


class NetworkPopulationLearner:
    """What ``agents.unroll.unroll`` reads for ``n`` network lifetimes: Eq. 2's gradient, then ``lifetime_adam``."""

    def __init__(self, agent: NetworkPopulationAgent, network: Any, params: Params, opt_state: dict[str, Any]) -> None:
        self.agent, self.network = agent, network
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.opt_state = opt_state

    def parameters(self) -> Params:
        return self.params

    def train_step(
        self,
        params: Params,
        opt_state: Mapping[str, Any],
        batch: Any,
        hparams: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        *,
        differentiable: bool = False,
    ) -> tuple[Params, dict[str, Any], dict[str, torch.Tensor]]:
        """One Adam step of every lifetime; ``hparams``: ``lr``, ``kl_coef``, ``gamma`` (``[n]``); metrics as
        ``PopulationLearner.train_step``'s."""
        if meta is None or "lpg" not in meta:
            raise ValueError("NetworkPopulationLearner.train_step needs meta={'lpg': weights}")
        with torch.enable_grad():
            params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            grads, metrics = eq2_gradients(self.network, self.agent, params, batch, hparams, meta, self.agent.n, differentiable)
            lr = torch.as_tensor(hparams["lr"], dtype=batch.rewards.dtype)
            new, state = lifetime_adam(params, grads, opt_state, lr)
        return finish_step(new, state, metrics, differentiable)
