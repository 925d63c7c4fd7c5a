"""IMPALA's network: a shared torso (MLP, or the Nature CNN for images) with one or more policy/value heads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import Params
from agents.networks import _ACTIVATIONS, init_mlp, init_nature_cnn, mlp, mlp_shapes, nature_cnn, nature_cnn_shapes


@dataclass(frozen=True, kw_only=True)
class IMPALANetwork:
    """A shared torso (MLP, or the Nature CNN for images) and ``heads`` policy/value heads.

    ``forward`` is head 0, the acting head: ``(logits [N, A], value [N])``;
    ``forward_heads`` gives every head, ``([H, N, A], [H, N])``.
    """

    obs_dim: int
    """flat observation size (vector observations)"""
    action_dim: int
    """number of discrete actions"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden widths of the torso MLP (vector observations)"""
    activation: str = "tanh"
    """hidden activation of the MLPs"""
    cnn_channels: int = 0
    """stacked frames of an image observation; 0 means vector observations"""
    heads: int = 1
    """policy/value heads: 1 for IMPALA and STAC, 3 for STACX"""
    head_hidden: tuple[int, ...] = ()
    """hidden widths inside each head (STACX uses a small MLP per head; () is linear)"""
    discrete: bool = True
    """IMPALA here is for discrete actions"""

    @property
    def features(self) -> int:
        """Width of the torso's output that every head reads: 512 after the CNN, else the last hidden width."""
        return 512 if self.cnn_channels else (self.hidden[-1] if self.hidden else self.obs_dim)

    def _head_sizes(self, out: int) -> list[int]:
        return [self.features, *self.head_hidden, out]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape by name (``torso.*``, ``head{h}.policy.*``, ``head{h}.value.*``), as ``init`` builds them."""
        if self.cnn_channels:
            shapes = nature_cnn_shapes("torso", self.cnn_channels)
        else:
            shapes = mlp_shapes("torso", [self.obs_dim, *self.hidden])
        for h in range(self.heads):
            shapes |= mlp_shapes(f"head{h}.policy", self._head_sizes(self.action_dim))
            shapes |= mlp_shapes(f"head{h}.value", self._head_sizes(1))
        return shapes

    def init(self, generator: torch.Generator) -> Params:
        """Fresh parameters from ``generator``: orthogonal weights, zero biases; gain sqrt 2 in the torso and
        the heads' hidden layers, 0.01 on the policy outputs (a near-uniform first policy), 1 on the values."""
        if self.cnn_channels:
            params = init_nature_cnn("torso", self.cnn_channels, generator)
        else:
            params = init_mlp("torso", [self.obs_dim, *self.hidden], math.sqrt(2.0), generator) if self.hidden else {}
        for h in range(self.heads):
            params |= init_mlp(f"head{h}.policy", self._head_sizes(self.action_dim), 0.01, generator)
            params |= init_mlp(f"head{h}.value", self._head_sizes(1), 1.0, generator)
        return params

    def torso(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        if self.cnn_channels:
            return nature_cnn(params, "torso", obs)
        x = obs.flatten(1)
        x = x if x.is_floating_point() else x.float()
        return _ACTIVATIONS[self.activation](mlp(params, "torso", x, len(self.hidden), self.activation)) if self.hidden else x

    def _head(self, params: Params, name: str, features: torch.Tensor) -> torch.Tensor:
        act = "relu" if self.cnn_channels else self.activation
        return mlp(params, name, features, len(self.head_hidden) + 1, act)

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso(params, obs)
        return self._head(params, "head0.policy", features), self._head(params, "head0.value", features).squeeze(-1)

    def forward_heads(self, params: Params, obs: torch.Tensor, heads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``heads`` heads (all when None): ``([heads, N, A], [heads, N])``."""
        features = self.torso(params, obs)
        chosen = range(self.heads if heads is None else heads)
        logits = [self._head(params, f"head{h}.policy", features) for h in chosen]
        values = [self._head(params, f"head{h}.value", features).squeeze(-1) for h in chosen]
        return torch.stack(logits), torch.stack(values)

    def value(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        return self._head(params, "head0.value", self.torso(params, obs)).squeeze(-1)


def build_impala_network(config: Any, obs_space: gym.Space, act_space: gym.Space) -> IMPALANetwork:
    """The network an ``IMPALAConfig`` asks for on these spaces (discrete actions only)."""
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"IMPALA here supports discrete actions only; {config.task} has {act_space}")
    image = len(obs_space.shape) == 3
    return IMPALANetwork(
        obs_dim=0 if image else int(np.prod(obs_space.shape)),
        action_dim=int(act_space.n),
        hidden=config.hidden,
        activation=config.activation,
        cnn_channels=obs_space.shape[0] if image else 0,
        heads=1 + getattr(config, "aux_heads", 0),
        head_hidden=getattr(config, "head_hidden", ()),
    )
