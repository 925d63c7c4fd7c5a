"""The LPG network of the paper's appendix ("Details of LPG Architecture"), as a pure function of its weights.

Per step ``t`` of a time-major trajectory it reads ``x_t = [r_t, d_t, gamma, pi(a_t|s_t), phi(y(s_t)),
phi(y(s_{t+1}))]``, where ``phi`` = Dense(16)-ReLU-Dense(1) is shared by both m-dim prediction vectors,
runs an LSTM *backward* in time (from ``t = T-1`` down to 0, so each target can see the rest of its
episode), and maps the LSTM output at each step to ``pi_hat_t`` (a scalar) and ``y_hat_t`` (a softmax over
m).  The LSTM state is zeroed where an episode ended (``d_t = 0``, the ``Batch.discounts`` convention, as the
paper writes "reset for terminal states (d_t = 0)"): the state carried back from step ``t+1`` then belongs to
the next episode and must not reach step ``t``.  Weights are a flat ``dict`` of tensors so that a
meta-gradient can differentiate through them (``torch.func``-free, like ``agents.networks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Weights = dict[str, torch.Tensor]
"""the LPG's meta-parameters eta, by name"""


@dataclass(frozen=True, kw_only=True)
class LPGConfig:
    """Structure of an LPG network: fixed once built (its weights are meta-trained, not this)."""

    hidden: int = 256
    """LSTM units (the paper: 256; small in tests)"""
    embed: int = 16
    """hidden width of the shared prediction embedding phi = Dense(embed)-ReLU-Dense(1) (the paper: 16)"""
    m: int = 30
    """width of the agent's categorical prediction y and of the target y_hat (the paper: 30)"""

    def __post_init__(self) -> None:
        for name in ("hidden", "embed", "m"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LPGConfig.{name} must be >= 1, got {getattr(self, name)}")


INPUT_SIZE = 6
"""r, d, gamma, pi(a|s), phi(y(s)), phi(y(s'))"""


@dataclass(frozen=True, kw_only=True)
class LPGInputs:
    """One trajectory as the LPG sees it, all time-major ``[T, B]`` unless stated."""

    rewards: torch.Tensor
    """r_t"""
    discounts: torch.Tensor
    """d_t: 0 where the episode ended at step t, else 1 (``Batch.discounts``)"""
    gamma: torch.Tensor | float
    """the lifetime's discount factor (a number or a 0-d tensor)"""
    pi_taken: torch.Tensor
    """pi(a_t | s_t), the agent's probability of the action taken"""
    y: torch.Tensor
    """the agent's prediction y(s_t), ``[T, B, m]`` (a probability vector)"""
    y_next: torch.Tensor
    """the agent's prediction y(s_{t+1}), ``[T, B, m]``"""


def _dense(gen: torch.Generator, fan_in: int, fan_out: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights (the usual LSTM / Dense default) and zero biases."""
    bound = fan_in**-0.5
    w = (torch.rand(fan_in, fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
    return w, torch.zeros(fan_out, dtype=dtype)


class LPGNetwork:
    """``forward(weights, inputs) -> (pi_hat [T, B], y_hat [T, B, m])``; ``init(generator)`` draws weights."""

    def __init__(self, config: LPGConfig | None = None) -> None:
        self.config = config or LPGConfig()

    def init(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Weights:
        c = self.config
        w: Weights = {}
        w["phi0.w"], w["phi0.b"] = _dense(generator, c.m, c.embed, dtype)
        w["phi1.w"], w["phi1.b"] = _dense(generator, c.embed, 1, dtype)
        # One matrix for the four gates (input, forget, cell, output) on [x, h].
        w["lstm.w"], w["lstm.b"] = _dense(generator, INPUT_SIZE + c.hidden, 4 * c.hidden, dtype)
        w["pi.w"], w["pi.b"] = _dense(generator, c.hidden, 1, dtype)
        w["y.w"], w["y.b"] = _dense(generator, c.hidden, c.m, dtype)
        return w

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.init(torch.Generator().manual_seed(0)).items()}

    def embed(self, weights: Weights, y: torch.Tensor) -> torch.Tensor:
        """phi(y): ``[..., m] -> [...]``."""
        if y.shape[-1] != self.config.m:
            raise ValueError(f"prediction width is {y.shape[-1]}, LPGConfig.m is {self.config.m}")
        h = torch.relu(y @ weights["phi0.w"] + weights["phi0.b"])
        return (h @ weights["phi1.w"] + weights["phi1.b"]).squeeze(-1)

    def features(self, weights: Weights, inputs: LPGInputs) -> torch.Tensor:
        """``x_t``, ``[T, B, 6]``."""
        gamma = torch.as_tensor(inputs.gamma, dtype=inputs.rewards.dtype).expand_as(inputs.rewards)
        cols = (inputs.rewards, inputs.discounts, gamma, inputs.pi_taken)
        return torch.stack([*cols, self.embed(weights, inputs.y), self.embed(weights, inputs.y_next)], dim=-1)

    def forward(self, weights: Weights, inputs: LPGInputs) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(weights, inputs)
        t_len, batch = x.shape[:2]
        n = self.config.hidden
        h = x.new_zeros(batch, n)
        c = x.new_zeros(batch, n)
        outs: list[torch.Tensor] = [x] * t_len
        for t in range(t_len - 1, -1, -1):
            # An episode ended at t: the state coming back from t+1 is the next episode's.
            keep = inputs.discounts[t].to(x.dtype).unsqueeze(-1)
            h, c = h * keep, c * keep
            gates = torch.cat([x[t], h], dim=-1) @ weights["lstm.w"] + weights["lstm.b"]
            i, f, g, o = gates.split(n, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs[t] = h
        out = torch.stack(outs)
        pi_hat = (out @ weights["pi.w"] + weights["pi.b"]).squeeze(-1)
        y_hat = torch.softmax(out @ weights["y.w"] + weights["y.b"], dim=-1)
        return pi_hat, y_hat

    __call__ = forward
