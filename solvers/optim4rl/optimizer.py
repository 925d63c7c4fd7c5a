"""The Optim4RL learned optimizer (Lan et al., 2024, Algorithm 1) as an ``agents.optim.UpdateRule``.

Coordinate-wise: one small network, shared by every element of every agent
parameter, reads that element's gradient ``g`` and keeps a per-element
recurrent state.  Two GRUs (hidden 8, tanh candidate) read ``g`` and ``g^2``;
a head on each GRU's output gives ``o1`` and ``o2``; the step is

    delta = -lr * sign(g) * exp(o1) / sqrt(exp(o2) + eps)

The GRU inputs are stop-gradient (the meta-gradient does not reach through the
agent-gradient's own dependence on the parameters) and, optionally, clipped
element-wise to [-1, 1] first (the paper's gridworld runs clip, its Catch run
does not).  The sign comes from the unclipped gradient.

Initialisation (the paper does not give one): GRU weights and biases are
uniform in +-1/sqrt(hidden), hidden layers of an MLP head likewise in
+-1/sqrt(fan_in), and the last layer of each head is zero, so a fresh optimizer
outputs o1 = o2 = 0 and its step is exactly sign-SGD,
``-lr * sign(g) / sqrt(1 + eps)``, whatever the gradients were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from agents.base import Params
from agents.optim import Hparams, OptState
from solvers.optim4rl import kernel
from solvers.optim4rl.config import Optim4RLConfig


def weight_shapes(config: Optim4RLConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a learned optimizer's weights (the GRUs follow torch's ``GRUCell`` layout, gates r, z, n)."""
    h = config.hidden
    shapes: dict[str, tuple[int, ...]] = {}
    for i in (1, 2):
        shapes |= {f"gru{i}.weight_ih": (3 * h, 1), f"gru{i}.weight_hh": (3 * h, h)}
        shapes |= {f"gru{i}.bias_ih": (3 * h,), f"gru{i}.bias_hh": (3 * h,)}
        widths = (h, *config.head, 1)
        for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            shapes |= {f"head{i}.{k}.weight": (fan_out, fan_in), f"head{i}.{k}.bias": (fan_out,)}
    return shapes


def init_weights(config: Optim4RLConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> Params:
    """Fresh weights: uniform GRUs and hidden layers, zero last layers (a sign-SGD start; see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    widths = (config.hidden, *config.head)
    out = {}
    for name, shape in weight_shapes(config).items():
        layer = None if name.startswith("gru") else int(name.split(".")[1])
        if layer == len(config.head):
            out[name] = torch.zeros(shape, dtype=dtype)
            continue
        bound = (config.hidden if layer is None else widths[layer]) ** -0.5
        out[name] = ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)
    return out


def gru_cell(x: torch.Tensor, h: torch.Tensor, w: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """One GRU step for N independent elements: ``x`` ``[N, 1]``, ``h`` ``[N, H]`` -> ``[N, H]``.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h.
    """
    gi = torch.addmm(w[f"{prefix}.bias_ih"], x, w[f"{prefix}.weight_ih"].t())
    gh = torch.addmm(w[f"{prefix}.bias_hh"], h, w[f"{prefix}.weight_hh"].t())
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def head(x: torch.Tensor, w: Mapping[str, torch.Tensor], prefix: str, depth: int) -> torch.Tensor:
    """The output head: ``depth`` ReLU layers then a linear one; ``[N, H]`` -> ``[N]``."""
    for k in range(depth):
        x = torch.relu(torch.addmm(w[f"{prefix}.{k}.bias"], x, w[f"{prefix}.{k}.weight"].t()))
    return torch.addmm(w[f"{prefix}.{depth}.bias"], x, w[f"{prefix}.{depth}.weight"].t()).squeeze(1)


@dataclass(frozen=True, kw_only=True, eq=False)
class Optim4RL:
    """The learned optimizer as an ``UpdateRule``; ``parameters()`` are its weights (the same tensors, so a
    meta-optimiser can train them in place).

    State: ``{"step": int, "h1": {name: [*shape, H]}, "h2": {...}}``, the two GRUs' hidden state per
    parameter element; ``init`` gives zeros, so it resets whenever the agent is (re)initialised.
    """

    name: ClassVar[str] = "optim4rl"
    config: Optim4RLConfig = field(default_factory=Optim4RLConfig)
    """the network's structure"""
    weights: Params = field(default_factory=dict)
    """its weights by name (``weight_shapes(config)``); empty: fresh ones from ``init_weights(config)``"""

    def __post_init__(self) -> None:
        if not self.weights:
            object.__setattr__(self, "weights", init_weights(self.config))
        check_weights(self.config, self.weights, source="Optim4RL.weights")

    def parameters(self) -> Params:
        return self.weights

    def init(self, params: Params) -> OptState:
        h = self.config.hidden
        zeros = {k: torch.zeros(*v.shape, h, dtype=v.dtype, device=v.device) for k, v in params.items()}
        return {"step": 0, "h1": zeros, "h2": {k: z.clone() for k, z in zeros.items()}}

    def update(self, grads: Params, state: OptState, params: Params, hparams: Hparams) -> tuple[Params, OptState]:
        if params.keys() != grads.keys():
            raise ValueError(f"grads have keys {sorted(grads)}, params have {sorted(params)}")
        names, hidden = list(params), self.config.hidden
        sizes = [params[k].numel() for k in names]
        g = torch.cat([grads[k].reshape(-1) for k in names])
        h1 = torch.cat([state["h1"][k].reshape(-1, hidden) for k in names])
        h2 = torch.cat([state["h2"][k].reshape(-1, hidden) for k in names])
        direction, h1, h2 = self.flat_step(g, h1, h2)
        new, s1, s2 = {}, {}, {}
        for k, d, a, b in zip(names, direction.split(sizes), h1.split(sizes), h2.split(sizes)):
            p = params[k]
            new[k] = p + hparams["lr"] * d.view(p.shape).to(p.dtype)
            s1[k], s2[k] = a.reshape(*p.shape, hidden), b.reshape(*p.shape, hidden)
        return new, {"step": state["step"] + 1, "h1": s1, "h2": s2}

    def flat_step(self, g: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The maths on flat tensors: gradients ``g`` ``[N]``, hidden states ``[N, H]`` -> the step per unit of
        learning rate, ``-sign(g) exp(o1) / sqrt(exp(o2) + eps)`` ``[N]``, and the new hidden states.

        Where ``kernel.applies`` (float32 on the CPU, linear heads, hidden 8) the compiled kernel computes it,
        differentiably; the torch maths below are the reference it is tested against."""
        w = self.weights
        if kernel.applies(self.config, w, g, h1, h2):  # compiled: the same numbers, a fraction of the time
            if torch.is_grad_enabled() and any(t.requires_grad for t in (*w.values(), h1, h2)):
                return kernel.Step.apply(self.config, tuple(w), g, h1, h2, *w.values())
            return kernel.step(self.config, w, g, h1, h2)
        first = next(iter(w.values()))
        g = g.detach().to(first.dtype)  # stop-gradient: the meta-gradient does not flow through the agent-gradient
        if first.device != g.device:  # an agent on another device: the weights follow it (differentiably)
            w = {k: v.to(g.device) for k, v in w.items()}
        x = g * self.config.input_scale if self.config.input_scale != 1.0 else g
        x = x.clamp(-1.0, 1.0) if self.config.clip_inputs else x
        h1 = gru_cell(x.unsqueeze(1), h1.to(first.dtype), w, "gru1")
        h2 = gru_cell(x.square().unsqueeze(1), h2.to(first.dtype), w, "gru2")
        depth = len(self.config.head)
        o1, o2 = head(h1, w, "head1", depth), head(h2, w, "head2", depth)
        return -torch.sign(g) * torch.exp(o1) / torch.sqrt(torch.exp(o2) + self.config.eps), h1, h2

    # -- files ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data for ``torch.save``: the format tag, the config and the weights (detached copies)."""
        config = asdict(self.config) | {"head": list(self.config.head)}
        return {"format": FORMAT, "config": config, "weights": {k: v.detach().clone() for k, v in self.weights.items()}}


FORMAT = "optim4rl-v1"
"""Tag of an Optim4RL state_dict file."""


def check_weights(config: Optim4RLConfig, weights: Mapping[str, torch.Tensor], *, source: str) -> None:
    """ValueError naming ``source`` and the first thing that does not fit ``config``."""
    expected = weight_shapes(config)
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise ValueError(f"{source}: weights do not fit {config}: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        value = weights[name]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{source}: weight {name} is {got}, expected shape {shape} for {config}")
        if not torch.is_floating_point(value):
            raise ValueError(f"{source}: weight {name} has dtype {value.dtype}, expected a floating-point tensor")
