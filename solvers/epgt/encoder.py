"""phi: EPGT's hyper-state embedding, a VAE over the env's ``projection`` observation.

Convention (one for keys and training alike): the encoder's input is
``u = sigmoid(projection)``, squashing projected weights and gradients of any
scale into (0, 1), which is also the decoder's output range, so the MSE target
is ``u`` itself.  The memory key is the VAE mean through a fixed random linear
map to ``key_dim`` dimensions and a tanh.  Keys are re-encoded after every
training step by the owner (see ``EPGTSolver``), so stored and fresh keys come
from the same encoder.

All randomness (initialisation, input dropout, the reparameterisation noise)
comes from explicit ``torch.Generator`` objects, never the global RNG, so a run
is reproducible and can be saved and resumed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
        layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)


class HyperStateVAE(nn.Module):
    """Encoder ``D -> D/4 (tanh) -> 2h (tanh)`` = (mean, log-variance); decoder ``h -> D/4 (ReLU) -> D (sigmoid)``."""

    def __init__(self, input_dim: int, *, latent_dim: int = 32, key_dim: int = 5, seed: int = 0) -> None:
        super().__init__()
        if min(input_dim, latent_dim, key_dim) < 1:
            raise ValueError(f"input_dim, latent_dim and key_dim must be >= 1, got {input_dim}, {latent_dim}, {key_dim}")
        hidden = max(latent_dim, input_dim // 4)
        self.input_dim, self.latent_dim, self.key_dim = input_dim, latent_dim, key_dim
        self.enc1, self.enc2 = nn.Linear(input_dim, hidden), nn.Linear(hidden, 2 * latent_dim)
        self.dec1, self.dec2 = nn.Linear(latent_dim, hidden), nn.Linear(hidden, input_dim)
        gen = torch.Generator().manual_seed(seed)
        for layer in (self.enc1, self.enc2, self.dec1, self.dec2):
            _init_linear(layer, gen)
        # Fixed, never trained: keys live in a small space where exact kNN is cheap.
        self.register_buffer("key_map", torch.randn(latent_dim, key_dim, generator=gen) / math.sqrt(latent_dim))

    @staticmethod
    def prepare(projection: torch.Tensor) -> torch.Tensor:
        """The encoder's input for a raw ``projection`` observation."""
        return torch.sigmoid(projection.to(torch.float32))

    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = torch.tanh(self.enc2(torch.tanh(self.enc1(u)))).chunk(2, dim=-1)
        return mean, logvar

    @torch.no_grad()
    def key(self, u: torch.Tensor) -> torch.Tensor:
        """Memory key(s) of prepared input(s) ``u`` (``[D]`` or ``[N, D]``): no dropout, no sampling."""
        mean, _ = self.encode(u)
        return torch.tanh(mean @ self.key_map)

    def loss(self, u: torch.Tensor, gen: torch.Generator, *, dropout: float = 0.5) -> torch.Tensor:
        """Negative ELBO on a batch ``[N, D]``: summed squared error plus KL to N(0, I), input dropout on the encoder side."""
        keep = 1.0 - dropout
        corrupted = u * (torch.rand(u.shape, generator=gen) < keep) / keep if dropout > 0 else u
        mean, logvar = self.encode(corrupted)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        recon = torch.sigmoid(self.dec2(torch.relu(self.dec1(z))))
        mse = (recon - u).square().sum(-1).mean()
        kl = -0.5 * (1.0 + logvar - mean.square() - logvar.exp()).sum(-1).mean()
        return mse + kl
