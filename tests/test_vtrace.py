"""V-trace and leaky V-trace: golden values, the alpha = 1 / alpha = 0 / on-policy invariances, gradient flow."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from agents.returns import lambda_returns
from agents.vtrace import leaky_vtrace, vtrace

scans = importlib.import_module("agents.vtrace")  # the module (``agents.vtrace`` is also the function)


def explicit_vtrace(v, boot, r, disc, is_ratio, lam, alpha, rho_bar=1.0, c_bar=1.0):
    """Paper Eq. 8 as written, one column: v_s = V(x_s) + sum_t gamma^(t-s) (prod c_i) delta_t (no recursion)."""
    t_len = len(r)
    v_next = np.append(v[1:], boot)
    rho = alpha * np.minimum(rho_bar, is_ratio) + (1 - alpha) * is_ratio
    c = lam * (alpha * np.minimum(c_bar, is_ratio) + (1 - alpha) * is_ratio)
    delta = rho * (r + disc * v_next - v)
    vs = np.zeros(t_len)
    for s in range(t_len):
        total, weight = 0.0, 1.0
        for t in range(s, t_len):
            total += weight * delta[t]
            weight *= disc[t] * c[t]
        vs[s] = v[s] + total
    return vs


def random_case(seed: int, t: int = 6, b: int = 4):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(t, b, generator=g, dtype=torch.float64)
    boot = torch.randn(b, generator=g, dtype=torch.float64)
    r = torch.randn(t, b, generator=g, dtype=torch.float64)
    flags = (torch.rand(t, b, generator=g) > 0.2).double()  # some episodes end inside the unroll
    log_rho = torch.randn(t, b, generator=g, dtype=torch.float64) * 0.7
    return v, boot, r, 0.9 * flags, log_rho


def run(v, boot, r, disc, log_rho, **kw):
    v_t = torch.cat([v[1:], boot[None]])
    return leaky_vtrace(v, v_t, r, disc, log_rho, **kw)


def test_hand_computed_t3():
    # V = [1, 2, 3], bootstrap 4, r = [1, 0, 2], gamma 0.9, IS = [2, 0.5, 1]; worked by hand:
    # V-trace: rho = c = [1, 0.5, 1]; deltas [1.8, 0.35, 2.6]; acc [3.168, 1.52, 2.6].
    v = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    boot = torch.tensor([4.0], dtype=torch.float64)
    r = torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64)
    disc = torch.full((3, 1), 0.9, dtype=torch.float64)
    log_rho = torch.log(torch.tensor([[2.0], [0.5], [1.0]], dtype=torch.float64))
    out = run(v, boot, r, disc, log_rho)
    torch.testing.assert_close(out.vs[:, 0], torch.tensor([4.168, 3.52, 5.6], dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages[:, 0], torch.tensor([3.168, 1.52, 2.6], dtype=torch.float64))
    # Leaky, alpha = 0.5: rho~_0 = 0.5 * 1 + 0.5 * 2 = 1.5, so delta_0 = 2.7 and acc_0 = 2.7 + 0.9 * 1.5 * 1.52.
    leaky = run(v, boot, r, disc, log_rho, alpha=0.5)
    torch.testing.assert_close(leaky.vs[:, 0], torch.tensor([5.752, 3.52, 5.6], dtype=torch.float64))
    # lambda = 0.5 cuts the traces: acc_1 = 0.35 + 0.9 * 0.25 * 2.6, acc_0 = 1.8 + 0.9 * 0.5 * acc_1.
    acc1 = 0.35 + 0.9 * 0.25 * 2.6
    lam = run(v, boot, r, disc, log_rho, lambda_=0.5)
    torch.testing.assert_close(lam.vs[:, 0], torch.tensor([1 + 1.8 + 0.45 * acc1, 2 + acc1, 5.6], dtype=torch.float64))


@pytest.mark.parametrize("alpha", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_matches_the_explicit_sum_of_eq8(alpha, lam):
    v, boot, r, disc, log_rho = random_case(0)
    out = run(v, boot, r, disc, log_rho, alpha=alpha, lambda_=lam)
    for col in range(v.shape[1]):
        want = explicit_vtrace(v[:, col].numpy(), boot[col].item(), r[:, col].numpy(), disc[:, col].numpy(),
                               log_rho[:, col].exp().numpy(), lam, alpha)  # fmt: skip
        np.testing.assert_allclose(out.vs[:, col].numpy(), want, rtol=1e-12, atol=1e-12)


def test_leaky_with_alpha_one_is_vtrace():
    v, boot, r, disc, log_rho = random_case(1)
    v_t = torch.cat([v[1:], boot[None]])
    a, b = leaky_vtrace(v, v_t, r, disc, log_rho, alpha=1.0, lambda_=0.9), vtrace(v, v_t, r, disc, log_rho, lambda_=0.9)
    torch.testing.assert_close(a.vs, b.vs, rtol=0, atol=0)
    torch.testing.assert_close(a.pg_advantages, b.pg_advantages, rtol=0, atol=0)


def test_leaky_with_alpha_zero_is_importance_sampled_returns():
    # Per-decision importance sampling with a control variate: G_s = IS_s (r_s + gamma G_{s+1}) + (1 - IS_s) V_s.
    v, boot, r, disc, log_rho = random_case(2)
    is_ratio = log_rho.exp()
    assert (is_ratio > 1).any(), "the case must exercise the truncation"
    g, want = boot.clone(), []
    for t in range(v.shape[0] - 1, -1, -1):
        g = is_ratio[t] * (r[t] + disc[t] * g) + (1 - is_ratio[t]) * v[t]
        want.append(g)
    want = torch.stack(want[::-1])
    out = run(v, boot, r, disc, log_rho, alpha=0.0)
    torch.testing.assert_close(out.vs, want, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out.vs, run(v, boot, r, disc, log_rho, alpha=1.0).vs)
    # with IS = 1 that is the n-step bootstrapped return
    nstep = run(v, boot, r, disc, torch.zeros_like(log_rho), alpha=0.0).vs
    torch.testing.assert_close(nstep, lambda_returns(r, disc, v, boot, 1.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_on_policy_vtrace_is_td_lambda(lam, alpha):
    v, boot, r, disc, _ = random_case(3)
    out = run(v, boot, r, disc, torch.zeros_like(v), lambda_=lam, alpha=alpha)
    torch.testing.assert_close(out.vs, lambda_returns(r, disc, v, boot, lam), rtol=1e-12, atol=1e-12)


def test_two_episodes_in_one_column_are_independent():
    v, boot, r, disc, log_rho = random_case(4, t=6, b=1)
    disc[2] = 0.0  # the first episode ends at t = 2
    whole = run(v, boot, r, disc, log_rho, alpha=0.5, lambda_=0.8).vs
    first = run(v[:3], v[3], r[:3], disc[:3], log_rho[:3], alpha=0.5, lambda_=0.8).vs
    second = run(v[3:], boot, r[3:], disc[3:], log_rho[3:], alpha=0.5, lambda_=0.8).vs
    torch.testing.assert_close(whole, torch.cat([first, second]), rtol=1e-12, atol=1e-12)


def test_gradients_reach_gamma_lambda_alpha_but_not_values():
    v, boot, r, flags, log_rho = random_case(5)
    v = v.requires_grad_()
    log_rho = log_rho.requires_grad_()
    gamma = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    out = run(v, boot, r, flags / 0.9 * gamma, log_rho, lambda_=lam, alpha=alpha)
    (out.vs.sum() + out.pg_advantages.sum()).backward()
    for name, x in (("gamma", gamma), ("lambda", lam), ("alpha", alpha)):
        assert x.grad is not None and x.grad.abs() > 0, name
    assert v.grad is None and log_rho.grad is None


def test_shape_checks_name_the_argument():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"discount_t has shape \(3,\), expected \[T, B\]"):
        leaky_vtrace(x, x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match=r"r_t must be \[T, B\], got shape \(3,\)"):
        leaky_vtrace(x, x, torch.zeros(3), x, x)
    with pytest.raises(ValueError, match=r"lambda_ has shape \(3,\); expected a scalar, \[B\] or \[T, B\]"):
        leaky_vtrace(x, x, x, x, x, lambda_=torch.ones(3))
    with pytest.raises(ValueError, match=r"alpha has shape \(2, 3\)"):
        leaky_vtrace(x, x, x, x, x, alpha=torch.ones(2, 3))
    for ok in (torch.tensor(0.5), torch.ones(2), torch.ones(3, 2)):  # shared, per column, per step
        leaky_vtrace(x, x, x, x, x, lambda_=ok, alpha=ok)


@pytest.mark.parametrize("t, b", [(1, 3), (7, 4), (20, 8)])
def test_closed_form_scan_equals_the_loop_in_value_and_gradient(t, b):
    g = torch.Generator().manual_seed(t)
    deltas = torch.randn(t, b, dtype=torch.float64, generator=g).requires_grad_()
    decay = torch.rand(t, b, dtype=torch.float64, generator=g)
    decay[t // 2] = 0.0  # an episode boundary: a zero in the running product
    decay.requires_grad_()
    closed, loop = scans._reverse_scan(deltas, decay), scans._reverse_loop(deltas, decay)
    torch.testing.assert_close(closed, loop, rtol=1e-12, atol=1e-12)
    weights = torch.randn(t, b, dtype=torch.float64, generator=g)
    grads_closed = torch.autograd.grad((closed * weights).sum(), (deltas, decay))
    grads_loop = torch.autograd.grad((loop * weights).sum(), (deltas, decay))
    for got, want in zip(grads_closed, grads_loop):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_long_unrolls_fall_back_to_the_loop(monkeypatch):
    deltas, decay = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    want = scans._reverse_scan(deltas, decay)
    monkeypatch.setattr(scans, "_CLOSED_FORM_MAX", 1)
    called = []
    monkeypatch.setattr(scans, "_reverse_loop", lambda d, c: called.append(1) or want)
    scans._reverse_scan(deltas, decay)
    assert called == [1]


def test_closed_form_scan_has_exact_first_and_second_derivatives():
    # Its backward is written out (autograd's, through cumprod, is slow at zeros); check it against finite differences.
    g = torch.Generator().manual_seed(11)
    deltas = torch.randn(5, 3, dtype=torch.float64, generator=g).requires_grad_()
    decay = torch.rand(5, 3, dtype=torch.float64, generator=g)
    decay[2, 0] = decay[4, 1] = 0.0  # episode ends
    decay.requires_grad_()
    assert torch.autograd.gradcheck(scans._reverse_scan, (deltas, decay))
    assert torch.autograd.gradgradcheck(scans._reverse_scan, (deltas, decay))


def test_closed_form_scan_under_torch_func():
    deltas, decay = torch.randn(4, 2, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    got = torch.func.grad(lambda c: scans._reverse_scan(deltas, c).sum())(decay)
    want = torch.func.grad(lambda c: scans._reverse_loop(deltas, c).sum())(decay)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
