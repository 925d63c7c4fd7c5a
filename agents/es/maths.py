"""The ES maths: rank-based fitness shaping and the mirrored search-gradient estimate (BiERL Eq. 2-3)."""

from __future__ import annotations

import math

import numpy as np


def rank_utilities(fitness: np.ndarray) -> np.ndarray:
    """Rank-based fitness shaping: ``u_i = max(0, log2(n/2+1) - log2(rank_i))``, ``F_i = u_i/sum(u) - 1/n``.

    ``rank_i`` is 1 for the best candidate; ties keep their input order.
    """
    fitness = np.asarray(fitness, dtype=np.float64)
    if fitness.ndim != 1 or fitness.size < 1:
        raise ValueError(f"fitness must be a non-empty vector, got shape {fitness.shape}")
    n = fitness.size
    order = np.argsort(-fitness, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    u = np.maximum(0.0, math.log2(n / 2 + 1) - np.log2(ranks))
    return u / u.sum() - 1.0 / n


def mirrored_gradient(shaped: np.ndarray, noise: np.ndarray, sigma: float) -> np.ndarray:
    """ES search-gradient estimate ``1/(n sigma) sum_i F_i eps_i`` over mirrored pairs.

    ``shaped`` is ``[pairs, 2]`` (the ``+eps`` and ``-eps`` member of each pair),
    ``noise`` is ``[pairs, dim]``.
    """
    if shaped.ndim != 2 or shaped.shape[1] != 2 or noise.shape[0] != shaped.shape[0]:
        raise ValueError(f"shaped must be [pairs, 2] and noise [pairs, dim], got {shaped.shape} and {noise.shape}")
    n = shaped.size
    return (shaped[:, 0] - shaped[:, 1]) @ noise / (n * sigma)
