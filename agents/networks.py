"""Functional actor-critic networks: parameters are a plain dict of tensors.

Networks here are stateless descriptions: ``init(generator)`` builds a
parameter dict, ``forward(params, obs)`` evaluates it.  That keeps every
parameter visible to solvers and lets ``torch.func`` differentiate through
updates without ``functional_call`` gymnastics.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agents.base import Params

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _orthogonal(shape: tuple[int, ...], gain: float, generator: torch.Generator) -> torch.Tensor:
    """Orthogonal init (Saxe et al.), drawn from ``generator`` for per-instance seeding."""
    rows, cols = shape[0], math.prod(shape[1:])
    flat = torch.randn(max(rows, cols), min(rows, cols), generator=generator)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r))
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).reshape(shape).contiguous()


def mlp_shapes(prefix: str, sizes: list[int]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of an MLP: ``{prefix}.{i}.weight`` is ``[out, in]``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(len(sizes) - 1):
        shapes[f"{prefix}.{i}.weight"] = (sizes[i + 1], sizes[i])
        shapes[f"{prefix}.{i}.bias"] = (sizes[i + 1],)
    return shapes


def init_mlp(prefix: str, sizes: list[int], out_gain: float, generator: torch.Generator) -> Params:
    """Orthogonal weights (gain sqrt 2, ``out_gain`` on the last layer) and zero biases."""
    last = f"{prefix}.{len(sizes) - 2}.weight"
    params: Params = {}
    for name, shape in mlp_shapes(prefix, sizes).items():
        if name.endswith("bias"):
            params[name] = torch.zeros(shape)
        else:
            params[name] = _orthogonal(shape, out_gain if name == last else math.sqrt(2.0), generator)
    return params


@functools.cache
def _layer_names(prefix: str, n_layers: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}.{i}.weight", f"{prefix}.{i}.bias") for i in range(n_layers))


def mlp(params: Params, prefix: str, x: torch.Tensor, n_layers: int, activation: str) -> torch.Tensor:
    """Evaluate the MLP ``prefix`` built by ``init_mlp`` on ``x`` of shape ``[N, in]``."""
    act = _ACTIVATIONS[activation]
    # F.linear on a 2-D input is addmm(bias, x, weight.t()): the same kernel, less Python per layer.
    names = _layer_names(prefix, n_layers)
    for weight, bias in names[:-1]:
        x = act(F.linear(x, params[weight], params[bias]))
    weight, bias = names[-1]
    return F.linear(x, params[weight], params[bias])


def nature_cnn_shapes(prefix: str, in_channels: int) -> dict[str, tuple[int, ...]]:
    """The DQN/IMPALA "Nature" torso for 84x84 frames: 3 convs then a 512-unit layer."""
    shapes: dict[str, tuple[int, ...]] = {}
    layers = {"conv0": (32, in_channels, 8, 8), "conv1": (64, 32, 4, 4), "conv2": (64, 64, 3, 3), "fc": (512, 3136)}
    for name, shape in layers.items():
        shapes[f"{prefix}.{name}.weight"] = shape
        shapes[f"{prefix}.{name}.bias"] = (shape[0],)
    return shapes


def init_nature_cnn(prefix: str, in_channels: int, generator: torch.Generator) -> Params:
    return {
        name: torch.zeros(shape) if name.endswith("bias") else _orthogonal(shape, math.sqrt(2.0), generator)
        for name, shape in nature_cnn_shapes(prefix, in_channels).items()
    }


def nature_cnn(params: Params, prefix: str, frames: torch.Tensor) -> torch.Tensor:
    """``frames``: uint8 or float ``[N, C, 84, 84]`` in 0..255 -> features ``[N, 512]``."""
    x = frames.float() / 255.0
    for name, stride in (("0", 4), ("1", 2), ("2", 1)):
        x = F.relu(F.conv2d(x, params[f"{prefix}.conv{name}.weight"], params[f"{prefix}.conv{name}.bias"], stride=stride))
    return F.relu(F.linear(x.flatten(1), params[f"{prefix}.fc.weight"], params[f"{prefix}.fc.bias"]))


@dataclass(frozen=True, kw_only=True)
class ActorCritic:
    """Shape of an actor-critic: separate MLPs, or a shared CNN torso for images.

    ``forward`` returns ``(policy_out, value)``: Gaussian means or categorical
    logits ``[N, A]`` and values ``[N]``.  A Gaussian policy has a
    state-independent ``log_std`` parameter.
    """

    obs_dim: int
    """flat observation size (vector observations)"""
    action_dim: int
    """number of action dimensions (Box) or of discrete actions"""
    discrete: bool
    """categorical policy over ``action_dim`` actions when True, else diagonal Gaussian"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer widths of the actor and of the critic MLP"""
    activation: str = "tanh"
    """hidden activation: ``tanh`` (MuJoCo PPO standard) or ``relu``"""
    cnn_channels: int = 0
    """stacked frames of an image observation; 0 means vector observations"""
    init_log_std: float = 0.0
    """initial log standard deviation of the Gaussian policy"""

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes by name, in the order ``init`` creates them."""
        if self.cnn_channels:
            return {
                **nature_cnn_shapes("torso", self.cnn_channels),
                **mlp_shapes("actor", [512, self.action_dim]),
                **mlp_shapes("critic", [512, 1]),
            }
        shapes = mlp_shapes("actor", [self.obs_dim, *self.hidden, self.action_dim])
        shapes |= mlp_shapes("critic", [self.obs_dim, *self.hidden, 1])
        if not self.discrete:
            shapes["actor.log_std"] = (self.action_dim,)
        return shapes

    def init(self, generator: torch.Generator) -> Params:
        if self.cnn_channels:
            params = init_nature_cnn("torso", self.cnn_channels, generator)
            params |= init_mlp("actor", [512, self.action_dim], 0.01, generator)
            params |= init_mlp("critic", [512, 1], 1.0, generator)
            return params
        params = init_mlp("actor", [self.obs_dim, *self.hidden, self.action_dim], 0.01, generator)
        params |= init_mlp("critic", [self.obs_dim, *self.hidden, 1], 1.0, generator)
        if not self.discrete:
            params["actor.log_std"] = torch.full((self.action_dim,), self.init_log_std)
        return params

    def forward(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cnn_channels:
            features = nature_cnn(params, "torso", obs)
            return mlp(params, "actor", features, 1, "relu"), mlp(params, "critic", features, 1, "relu").squeeze(-1)
        n = len(self.hidden) + 1
        return (
            mlp(params, "actor", obs, n, self.activation),
            mlp(params, "critic", obs, n, self.activation).squeeze(-1),
        )

    def value(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        if self.cnn_channels:
            return self.forward(params, obs)[1]
        return mlp(params, "critic", obs, len(self.hidden) + 1, self.activation).squeeze(-1)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_prob(policy_out: torch.Tensor, params: Params, actions: torch.Tensor, discrete: bool) -> torch.Tensor:
    """Log-probability of ``actions`` under the policy, ``[N]``."""
    if discrete:
        logp_all = torch.log_softmax(policy_out, dim=-1)
        return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    log_std = params["actor.log_std"]
    z = (actions - policy_out) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)


def entropy(policy_out: torch.Tensor, params: Params, discrete: bool) -> torch.Tensor:
    """Policy entropy per observation, ``[N]``."""
    if discrete:
        logp_all = torch.log_softmax(policy_out, dim=-1)
        return -(logp_all.exp() * logp_all).sum(-1)
    log_std = params["actor.log_std"]
    per_dim = 0.5 + _LOG_SQRT_2PI + log_std
    return per_dim.sum().expand(policy_out.shape[0])


def sample(
    policy_out: torch.Tensor, params: Params, discrete: bool, generator: torch.Generator, deterministic: bool = False
) -> torch.Tensor:
    """Draw one action per row (mode when ``deterministic``)."""
    if discrete:
        if deterministic:
            return policy_out.argmax(-1)
        return torch.multinomial(torch.softmax(policy_out, -1), 1, generator=generator).squeeze(-1)
    if deterministic:
        return policy_out
    noise = torch.randn(policy_out.shape, generator=generator, device=policy_out.device)
    return policy_out + noise * params["actor.log_std"].exp()
