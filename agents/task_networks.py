"""Optim4RL's agent networks for the batched tasks: one shared torso, linear actor and critic heads.

Catch uses a Dense256 torso, the small gridworlds Dense32 and the big ones a
spatial Conv16 (2x2) -> Dense32 (Optim4RL's released code runs its conv over
the wrong axes, treating the board's width as channels; this one convolves
over H x W, without padding).  Parameters are a plain dict, as in
``agents.networks``, so the objectives, ``train_step`` and ``torch.func``
treat these networks like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agents.base import Params
from agents.networks import _orthogonal


@dataclass(frozen=True, kw_only=True)
class TaskActorCritic:
    """A shared-torso categorical actor-critic over a batched task's observations.

    ``forward(params, obs)`` returns logits ``[N, A]`` and values ``[N]``; any leading
    batch shape of ``obs`` beyond the observation's own dims is flattened into ``N``.
    """

    obs_shape: tuple[int, ...]
    """one observation's shape: ``(H, W)`` for Catch, ``(C, H, W)`` for a gridworld"""
    action_dim: int
    """number of discrete actions"""
    hidden: int = 256
    """width of the torso's dense layer"""
    conv_channels: int = 0
    """output channels of a 2x2 spatial conv before the dense layer (0: no conv, the board is flattened)"""
    discrete: bool = True
    """always categorical (the objectives read it)"""

    def __post_init__(self) -> None:
        if self.conv_channels and len(self.obs_shape) != 3:
            raise ValueError(f"conv_channels needs (C, H, W) observations, got obs_shape {self.obs_shape}")
        for name in ("action_dim", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def _dense_in(self) -> int:
        if not self.conv_channels:
            return math.prod(self.obs_shape)
        _, h, w = self.obs_shape
        return self.conv_channels * (h - 1) * (w - 1)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes by name, in the order ``init`` creates them."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.conv_channels:
            shapes["torso.conv.weight"] = (self.conv_channels, self.obs_shape[0], 2, 2)
            shapes["torso.conv.bias"] = (self.conv_channels,)
        shapes["torso.dense.weight"] = (self.hidden, self._dense_in())
        shapes["torso.dense.bias"] = (self.hidden,)
        shapes["actor.weight"] = (self.action_dim, self.hidden)
        shapes["actor.bias"] = (self.action_dim,)
        shapes["critic.weight"] = (1, self.hidden)
        shapes["critic.bias"] = (1,)
        return shapes

    def init(self, generator: torch.Generator) -> Params:
        """Orthogonal weights (gain sqrt 2 in the torso, 0.01 on the actor, 1 on the critic), zero biases."""
        gains = {"torso": math.sqrt(2.0), "actor": 0.01, "critic": 1.0}
        return {
            name: torch.zeros(shape) if name.endswith("bias") else _orthogonal(shape, gains[name.split(".")[0]], generator)
            for name, shape in self.shapes().items()
        }

    def features(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        # The board takes the parameters' dtype (float32 usually; float64 in exactness tests).
        x = obs.to(params["torso.dense.weight"].dtype).reshape(-1, *self.obs_shape)
        if self.conv_channels:
            x = F.relu(_conv2x2(x, params["torso.conv.weight"], params["torso.conv.bias"]))
        return F.relu(F.linear(x.flatten(1), params["torso.dense.weight"], params["torso.dense.bias"]))

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Actor and critic as one [A + 1]-wide matmul: a 1-wide one takes a matrix-vector kernel whose sums
        # differ (by ~1e-7) between one lifetime and the vmapped population; the joint one is the same kernel in both.
        h = self.features(params, obs)
        weight = torch.cat([params["actor.weight"], params["critic.weight"]])
        heads = F.linear(h, weight, torch.cat([params["actor.bias"], params["critic.bias"]]))
        return heads[..., : self.action_dim], heads[..., self.action_dim]

    def value(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(params, obs)[1]

    def stacked_forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` of N parameter sets ``[N, ...]`` on their own observations ``[N, B, ...]``: logits
        ``[N, B, A]`` and values ``[N, B]``, by batched matmuls (~3x faster than ``vmap(forward)`` for small
        B on a CPU, and the same per-lifetime bits as ``forward``: the same matmul kernel per lifetime)."""
        n = obs.shape[0]
        x = obs.to(params["torso.dense.weight"].dtype).reshape(n, -1, *self.obs_shape)
        b = x.shape[1]
        if self.conv_channels:
            w, bias = params["torso.conv.weight"], params["torso.conv.bias"]
            patches = _patches(x).movedim(-3, -1)  # [N, B, H-1, W-1, 4C]
            grid = patches.shape[2:4]
            y = torch.baddbmm(bias.unsqueeze(1), patches.reshape(n, -1, patches.shape[-1]), _kernel(w).transpose(1, 2))
            x = F.relu(y.view(n, b, *grid, -1).movedim(-1, -3))
        x = x.reshape(n, b, -1)
        w, bias = params["torso.dense.weight"], params["torso.dense.bias"]
        h = F.relu(torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2)))
        weight = torch.cat([params["actor.weight"], params["critic.weight"]], 1)
        heads = torch.baddbmm(torch.cat([params["actor.bias"], params["critic.bias"]], 1).unsqueeze(1), h, weight.transpose(1, 2))
        return heads[..., : self.action_dim], heads[..., self.action_dim]


def categorical_from_uniforms(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One categorical draw per row of ``logits`` ``[..., A]`` by the inverse CDF of ``u`` ``[...]`` in [0, 1).

    The draw is the first action whose cumulative probability exceeds ``u``.  Drawing from
    uniforms (one per row, from the lifetime's own generator) is what lets a population
    draw every lifetime's actions in one op and still equal each lone learner's draws.
    """
    cdf = torch.softmax(logits, -1).cumsum(-1)
    return (cdf <= u.unsqueeze(-1)).sum(-1).clamp_(max=logits.shape[-1] - 1)


def _patches(x: torch.Tensor) -> torch.Tensor:
    """The four 2x2-shifted views of ``[..., C, H, W]`` side by side: ``[..., 4C, H-1, W-1]``."""
    return torch.cat([x[..., :-1, :-1], x[..., :-1, 1:], x[..., 1:, :-1], x[..., 1:, 1:]], -3)


def _kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 2x2 conv weight ``[..., O, C, 2, 2]`` as the matrix ``[..., O, 4C]`` matching ``_patches``."""
    return torch.cat([weight[..., 0, 0], weight[..., 0, 1], weight[..., 1, 0], weight[..., 1, 1]], -1)


def _conv2x2(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 2x2 kernel without padding, as the four shifted views times one matmul.

    The same sums as a convolution (to rounding), but through the matmul kernel, which gives one lifetime
    and the vmapped population the same bits (``conv2d`` under vmap does not) and is about twice as fast
    as ``conv2d`` on these small boards on a CPU.
    """
    return F.linear(_patches(x).movedim(-3, -1), _kernel(weight), bias).movedim(-1, -3)
