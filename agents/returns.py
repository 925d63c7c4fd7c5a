"""Pure, time-major return estimators with shape checks (rlax style).

Every input is ``[T, B]`` except bootstrap values ``[B]``.  ``discount_t`` is
``gamma`` times the continuation flag of step ``t``: zero where the episode
ended at ``t``, so one call handles any number of episodes per column.
Everything is differentiable in ``discount_t`` and ``lambda_`` (metagradients).
"""

from __future__ import annotations

import numpy as np
import torch


def _check_time_major(r_t: torch.Tensor, discount_t: torch.Tensor, v_t: torch.Tensor, bootstrap: torch.Tensor) -> None:
    if r_t.dim() != 2:
        raise ValueError(f"r_t must be [T, B], got shape {tuple(r_t.shape)}")
    if discount_t.shape != r_t.shape or v_t.shape != r_t.shape:
        raise ValueError(
            f"r_t {tuple(r_t.shape)}, discount_t {tuple(discount_t.shape)} and v_t {tuple(v_t.shape)} must all be [T, B]"
        )
    if bootstrap.shape != r_t.shape[1:]:
        raise ValueError(f"bootstrap value must be [B] = {tuple(r_t.shape[1:])}, got {tuple(bootstrap.shape)}")


def gae(
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    v_t: torch.Tensor,
    bootstrap_value: torch.Tensor,
    lambda_: float | torch.Tensor,
) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al., 2016), ``[T, B]``.

    ``A_t = delta_t + discount_t * lambda * A_{t+1}``, with
    ``delta_t = r_t + discount_t * v_{t+1} - v_t`` and ``v_T = bootstrap_value``.
    """
    _check_time_major(r_t, discount_t, v_t, bootstrap_value)
    v_tp1 = torch.cat([v_t[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = r_t + discount_t * v_tp1 - v_t
    decay = discount_t * lambda_
    advantages = []
    acc = torch.zeros_like(bootstrap_value)
    for t in range(r_t.shape[0] - 1, -1, -1):
        acc = deltas[t] + decay[t] * acc
        advantages.append(acc)
    return torch.stack(advantages[::-1])


def lambda_returns(
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    v_t: torch.Tensor,
    bootstrap_value: torch.Tensor,
    lambda_: float | torch.Tensor,
) -> torch.Tensor:
    """TD(lambda) returns ``G_t = A_t + v_t``; ``lambda_=1`` gives n-step bootstrapped returns."""
    return gae(r_t, discount_t, v_t, bootstrap_value, lambda_) + v_t


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Var[target - predicted] / Var[target]``; NaN when the target is constant."""
    var = target.var()
    return 1 - (target - predicted).var() / var


def rollout_return(r_raw: torch.Tensor | np.ndarray, gamma: float) -> float:
    """The mean over columns of ``sum_t gamma^t r_raw[t, b]``: the discounted return of a ``[T, B]`` rollout window.

    Not bootstrapped, and an episode that ends inside the window is not treated specially; ``r_raw``
    are the env's own rewards (before any scaling or clipping).  ``IterationReport.rollout_return``.
    """
    # A tensor is summed where it lives (a batched task's rewards stay on its device).
    r = r_raw.detach().double() if isinstance(r_raw, torch.Tensor) else torch.as_tensor(np.asarray(r_raw), dtype=torch.float64)
    if r.dim() != 2:
        raise ValueError(f"r_raw must be [T, B], got shape {tuple(r.shape)}")
    weights = float(gamma) ** torch.arange(r.shape[0], dtype=torch.float64, device=r.device)
    return float((weights.unsqueeze(1) * r).sum(0).mean())
