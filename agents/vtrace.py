"""V-trace (Espeholt et al., 2018) and leaky V-trace (Zahavy et al., 2020), pure and time-major.

Every input is ``[T, B]``: ``v_tm1`` are the values of the states actions were
taken in, ``v_t`` the values of the states that followed (``v_t[t] =
v_tm1[t + 1]``, and the bootstrap value at ``t = T - 1``), ``r_t`` the rewards,
``discount_t`` gamma times the continuation flag (0 where the episode ended at
``t``) and ``log_rho_tm1 = log pi(a|x) - log mu(a|x)``.

The targets carry no gradient into the values or the importance weights (the
critic regresses towards them; they are not trained through them), but they
do carry gradient into ``discount_t`` (gamma), ``lambda_`` and ``alpha``:
that is what a metagradient through the inner loss differentiates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch


class VTraceReturns(NamedTuple):
    """What ``vtrace`` / ``leaky_vtrace`` return, both ``[T, B]``."""

    vs: torch.Tensor
    """value targets ``v_s`` (paper Eq. 4 / Eq. 8)"""
    pg_advantages: torch.Tensor
    """``rho_s (r_s + gamma v_{s+1} - V(x_s))``, the policy-gradient weights of Eq. 3"""


def _check(
    v_tm1: torch.Tensor,
    v_t: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    log_rho_tm1: torch.Tensor,
    lambda_: float | torch.Tensor,
    alpha: float | torch.Tensor,
) -> None:
    if r_t.dim() != 2:
        raise ValueError(f"r_t must be [T, B], got shape {tuple(r_t.shape)}")
    for name, x in (("v_tm1", v_tm1), ("v_t", v_t), ("discount_t", discount_t), ("log_rho_tm1", log_rho_tm1)):
        if x.shape != r_t.shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected [T, B] = {tuple(r_t.shape)} like r_t")
    # A coefficient is shared (a scalar), per column ([B]: STACX's heads side by side) or per step ([T, B]).
    allowed = ((), (r_t.shape[1],), tuple(r_t.shape))
    for name, x in (("lambda_", lambda_), ("alpha", alpha)):
        if isinstance(x, torch.Tensor) and tuple(x.shape) not in allowed:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; expected a scalar, [B] or [T, B] with [T, B] = {tuple(r_t.shape)}"
            )


_CLOSED_FORM_MAX = 1 << 20
"""largest ``T * T * B`` scanned in closed form (a ``[T, T, B]`` product table); longer unrolls loop"""


def _reverse_scan(deltas: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """``acc_t = deltas_t + decay_t acc_{t+1}`` (``acc_T = 0``), backwards over the time axis.

    For short unrolls it uses the closed form ``acc_s = sum_{k >= s} (prod_{s <= j < k} decay_j) deltas_k``:
    a handful of tensor ops instead of ``3 T``, which is what a metagradient pays for
    when it differentiates through the targets (STAC: about a third of its time went here).
    """
    t = deltas.shape[0]
    if t * t * deltas[0].numel() > _CLOSED_FORM_MAX:
        return _reverse_loop(deltas, decay)
    return _ClosedFormScan.apply(deltas, decay)


def _scan_weights(decay: torch.Tensor) -> torch.Tensor:
    """``W [s, k, ...] = prod_{s <= j < k} decay_j`` for ``k >= s``, else 0: the closed form is ``acc = W deltas``."""
    t = decay.shape[0]
    upper = torch.ones(t, t, dtype=torch.bool, device=decay.device).triu()  # [s, j]: j >= s
    shape = (t, t) + (1,) * (decay.dim() - 1)
    factors = torch.where(upper.view(shape), decay.unsqueeze(0), torch.ones_like(decay).unsqueeze(0))
    prods = torch.cumprod(factors, dim=1)  # [s, j]: prod_{s <= i <= j} decay_i where j >= s
    return torch.cat([torch.ones_like(prods[:, :1]), prods[:, :-1]], dim=1) * upper.view(shape)


class _ClosedFormScan(torch.autograd.Function):
    """The closed-form scan with its backward written out.

    Autograd's own backward of the closed form runs through ``cumprod``'s, which takes a
    slow path whenever a factor is zero -- at every episode end -- and a metagradient pays
    it on every update.  With ``acc = W deltas``: ``grad_deltas = W^T grad_acc`` and, since
    ``d acc_s / d decay_j = W[s, j] acc_{j+1}``, ``grad_decay_j = grad_deltas_j acc_{j+1}``.
    The backward is made of differentiable ops on an input and the output, so higher
    derivatives stay correct.
    """

    @staticmethod
    def forward(deltas: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
        return (_scan_weights(decay) * deltas.unsqueeze(0)).sum(1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[1], output)

    @staticmethod
    def backward(ctx: Any, grad_acc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decay, acc = ctx.saved_tensors
        grad_deltas = (_scan_weights(decay) * grad_acc.unsqueeze(1)).sum(0)
        acc_next = torch.cat([acc[1:], torch.zeros_like(acc[:1])])
        return grad_deltas, grad_deltas * acc_next


def _reverse_loop(deltas: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    acc = torch.zeros_like(deltas[0])
    out = []
    for t in range(deltas.shape[0] - 1, -1, -1):
        acc = deltas[t] + decay[t] * acc
        out.append(acc)
    return torch.stack(out[::-1])


def leaky_vtrace(
    v_tm1: torch.Tensor,
    v_t: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    log_rho_tm1: torch.Tensor,
    *,
    lambda_: float | torch.Tensor = 1.0,
    alpha: float | torch.Tensor = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> VTraceReturns:
    """Leaky V-trace targets and advantages (paper Eq. 8, one ``alpha = alpha_rho = alpha_c``).

    With ``IS = exp(log_rho)``: ``rho~ = alpha min(rho_bar, IS) + (1 - alpha) IS``,
    ``c~ = lambda (alpha min(c_bar, IS) + (1 - alpha) IS)``,
    ``delta_t = rho~_t (r_t + discount_t v_t - v_tm1)`` and, backwards in time,
    ``acc_t = delta_t + discount_t c~_t acc_{t+1}``; ``vs = v_tm1 + acc``.
    ``alpha = 1`` is V-trace; ``alpha = 0`` is per-decision importance sampling.
    """
    _check(v_tm1, v_t, r_t, discount_t, log_rho_tm1, lambda_, alpha)
    v_tm1, v_t = v_tm1.detach(), v_t.detach()
    is_ratio = log_rho_tm1.detach().exp()

    def leak(threshold: float) -> torch.Tensor:
        return alpha * torch.clamp(is_ratio, max=threshold) + (1 - alpha) * is_ratio

    rho = leak(clip_rho_threshold)
    c = lambda_ * leak(clip_c_threshold)
    deltas = rho * (r_t + discount_t * v_t - v_tm1)
    vs = _reverse_scan(deltas, discount_t * c) + v_tm1
    # v_{s+1} of the policy-gradient target: the next target, and the bootstrap value after the last step.
    vs_tp1 = torch.cat([vs[1:], v_t[-1:]], dim=0)
    pg_rho = leak(clip_pg_rho_threshold)
    return VTraceReturns(vs=vs, pg_advantages=pg_rho * (r_t + discount_t * vs_tp1 - v_tm1))


def vtrace(
    v_tm1: torch.Tensor,
    v_t: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    log_rho_tm1: torch.Tensor,
    *,
    lambda_: float | torch.Tensor = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> VTraceReturns:
    """V-trace (paper Eq. 4): truncated importance weights; leaky V-trace with ``alpha = 1``."""
    return leaky_vtrace(
        v_tm1,
        v_t,
        r_t,
        discount_t,
        log_rho_tm1,
        lambda_=lambda_,
        alpha=1.0,
        clip_rho_threshold=clip_rho_threshold,
        clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
