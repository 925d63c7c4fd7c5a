"""phi: EPGT's hyper-state embedding, a VAE over the env's ``projection`` observation.

One input convention for keys and training alike, chosen by ``key_input``:

- ``standardised`` (default): ``u = (projection - mean) / std`` with per-dimension
  statistics the owner refits on the hyper-states in memory (``fit_input``) and
  then re-keys the whole memory with, so every stored and fresh key comes from the
  same input map.  A standardisation is affine, so it keeps the ordering of
  distances within each dimension; the decoder's output is linear (Gaussian
  likelihood, MSE target ``u``).
- ``sigmoid`` (the earlier convention, kept for the ablation): ``u = sigmoid(projection)``
  with a sigmoid decoder.  Projected weights and gradients are small, so ``u`` sits
  at 0.50 +- 0.05 and the keys collapse (issue 14).

The memory key is the VAE mean through a fixed random linear map to ``key_dim``
dimensions and a tanh.  The KL term of the ELBO pulls every mean toward 0, which
shrinks the keys; ``free_bits`` (Kingma et al., 2016) stops that pull once a
latent dimension's batch-mean KL is below the floor, so the means keep the spread
the reconstruction needs.

All randomness (initialisation, input dropout, the reparameterisation noise)
comes from explicit ``torch.Generator`` objects, never the global RNG, so a run
is reproducible and can be saved and resumed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

KEY_INPUTS = ("standardised", "sigmoid")
MIN_STD = 1e-6
"""floor of a standardised dimension's std: a constant dimension maps to 0, not to inf"""


def _init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
        layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)


class HyperStateVAE(nn.Module):
    """Encoder ``D -> D/4 (tanh) -> 2h (tanh)`` = (mean, log-variance); decoder ``h -> D/4 (ReLU) -> D``."""

    def __init__(
        self,
        input_dim: int,
        *,
        latent_dim: int = 32,
        key_dim: int = 5,
        seed: int = 0,
        key_input: str = "standardised",
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if min(input_dim, latent_dim, key_dim) < 1:
            raise ValueError(f"input_dim, latent_dim and key_dim must be >= 1, got {input_dim}, {latent_dim}, {key_dim}")
        if key_input not in KEY_INPUTS:
            raise ValueError(f"key_input must be one of {KEY_INPUTS}, got {key_input!r}")
        if free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {free_bits}")
        hidden = max(latent_dim, input_dim // 4)
        self.input_dim, self.latent_dim, self.key_dim = input_dim, latent_dim, key_dim
        self.key_input, self.free_bits = key_input, free_bits
        self.enc1, self.enc2 = nn.Linear(input_dim, hidden), nn.Linear(hidden, 2 * latent_dim)
        self.dec1, self.dec2 = nn.Linear(latent_dim, hidden), nn.Linear(hidden, input_dim)
        gen = torch.Generator().manual_seed(seed)
        for layer in (self.enc1, self.enc2, self.dec1, self.dec2):
            _init_linear(layer, gen)
        # Fixed, never trained: keys live in a small space where exact kNN is cheap.
        self.register_buffer("key_map", torch.randn(latent_dim, key_dim, generator=gen) / math.sqrt(latent_dim))
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))

    @torch.no_grad()
    def fit_input(self, raw: torch.Tensor) -> None:
        """Refit the standardisation on raw hyper-states ``[N, D]`` (no effect for ``sigmoid``)."""
        if self.key_input != "standardised" or len(raw) == 0:
            return
        raw = raw.to(torch.float32)
        self.input_mean.copy_(raw.mean(0))
        self.input_std.copy_(raw.std(0, unbiased=False).clamp_min(MIN_STD) if len(raw) > 1 else torch.ones(self.input_dim))

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        """The encoder's input for raw ``projection`` observation(s)."""
        raw = raw.to(torch.float32)
        if self.key_input == "sigmoid":
            return torch.sigmoid(raw)
        return (raw - self.input_mean) / self.input_std

    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = torch.tanh(self.enc2(torch.tanh(self.enc1(u)))).chunk(2, dim=-1)
        return mean, logvar

    @torch.no_grad()
    def key(self, raw: torch.Tensor) -> torch.Tensor:
        """Memory key(s) of raw hyper-state(s) (``[D]`` or ``[N, D]``): no dropout, no sampling."""
        mean, _ = self.encode(self.prepare(raw))
        return torch.tanh(mean @ self.key_map)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.dec2(torch.relu(self.dec1(z)))
        return torch.sigmoid(out) if self.key_input == "sigmoid" else out

    def loss(self, raw: torch.Tensor, gen: torch.Generator, *, dropout: float = 0.5) -> torch.Tensor:
        """Negative ELBO on raw hyper-states ``[N, D]``: summed squared error plus KL to N(0, I) (with free bits)."""
        u = self.prepare(raw)
        keep = 1.0 - dropout
        corrupted = u * (torch.rand(u.shape, generator=gen) < keep) / keep if dropout > 0 else u
        mean, logvar = self.encode(corrupted)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        mse = (self.decode(z) - u).square().sum(-1).mean()
        kl_per_dim = (-0.5 * (1.0 + logvar - mean.square() - logvar.exp())).mean(0)
        return mse + kl_per_dim.clamp_min(self.free_bits).sum()
