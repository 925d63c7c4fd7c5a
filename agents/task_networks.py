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
            x = F.relu(F.conv2d(x, params["torso.conv.weight"], params["torso.conv.bias"]))
        return F.relu(F.linear(x.flatten(1), params["torso.dense.weight"], params["torso.dense.bias"]))

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(params, obs)
        logits = F.linear(h, params["actor.weight"], params["actor.bias"])
        return logits, F.linear(h, params["critic.weight"], params["critic.bias"]).squeeze(-1)

    def value(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        h = self.features(params, obs)
        return F.linear(h, params["critic.weight"], params["critic.bias"]).squeeze(-1)
