"""GAE and lambda-returns: hand-computed golden values, invariances, shape checks."""

from __future__ import annotations

import pytest
import torch

from agents.returns import explained_variance, gae, lambda_returns

GAMMA, LAM = 0.9, 0.8


def col(*xs: float) -> torch.Tensor:
    """A ``[T, 1]`` float64 column."""
    return torch.tensor(xs, dtype=torch.float64).unsqueeze(1)


def three_step():
    r = col(1.0, 2.0, 3.0)
    v = col(0.5, 1.0, 1.5)
    d = col(GAMMA, GAMMA, GAMMA)
    boot = torch.tensor([2.0], dtype=torch.float64)
    return r, d, v, boot


def test_gae_three_steps_by_hand():
    # delta_t = r_t + gamma v_{t+1} - v_t, with v_3 = bootstrap = 2.0:
    #   delta_2 = 3 + 0.9 * 2.0 - 1.5 = 3.3
    #   delta_1 = 2 + 0.9 * 1.5 - 1.0 = 2.35
    #   delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    # A_t = delta_t + gamma * lambda * A_{t+1}, gamma * lambda = 0.72:
    #   A_2 = 3.3
    #   A_1 = 2.35 + 0.72 * 3.3   = 4.726
    #   A_0 = 1.4  + 0.72 * 4.726 = 4.80272
    adv = gae(*three_step(), LAM)
    assert adv.shape == (3, 1)
    torch.testing.assert_close(adv, col(4.80272, 4.726, 3.3), rtol=0, atol=1e-12)


def test_lambda_returns_are_advantages_plus_values():
    r, d, v, boot = three_step()
    # G_t = A_t + v_t = [4.80272 + 0.5, 4.726 + 1.0, 3.3 + 1.5]
    torch.testing.assert_close(lambda_returns(r, d, v, boot, LAM), col(5.30272, 5.726, 4.8), rtol=0, atol=1e-12)


def test_lambda_one_gives_bootstrapped_discounted_returns():
    r, d, v, boot = three_step()
    # G_2 = 3 + 0.9 * 2 = 4.8; G_1 = 2 + 0.9 * 4.8 = 6.32; G_0 = 1 + 0.9 * 6.32 = 6.688
    torch.testing.assert_close(lambda_returns(r, d, v, boot, 1.0), col(6.688, 6.32, 4.8), rtol=0, atol=1e-12)


def test_lambda_zero_gives_td_errors():
    torch.testing.assert_close(gae(*three_step(), 0.0), col(1.4, 2.35, 3.3), rtol=0, atol=1e-12)


def test_terminal_step_cuts_bootstrap():
    r, d, v, boot = three_step()
    d[1, 0] = 0.0  # the episode ends at t=1
    # delta_2 = 3.3 (as before); delta_1 = 2 + 0 - 1.0 = 1.0; delta_0 = 1.4
    # A_2 = 3.3; A_1 = 1.0 + 0 * ... = 1.0; A_0 = 1.4 + 0.72 * 1.0 = 2.12
    torch.testing.assert_close(gae(r, d, v, boot, LAM), col(2.12, 1.0, 3.3), rtol=0, atol=1e-12)


def test_two_concatenated_episodes_equal_each_alone():
    gen = torch.Generator().manual_seed(0)
    r1, v1 = torch.randn(4, 1, generator=gen, dtype=torch.float64), torch.randn(4, 1, generator=gen, dtype=torch.float64)
    r2, v2 = torch.randn(3, 1, generator=gen, dtype=torch.float64), torch.randn(3, 1, generator=gen, dtype=torch.float64)
    d1 = torch.full((4, 1), GAMMA, dtype=torch.float64)
    d1[-1] = 0.0  # episode 1 terminates: discount 0 at the boundary
    d2 = torch.full((3, 1), GAMMA, dtype=torch.float64)
    boot2 = torch.tensor([0.7], dtype=torch.float64)
    # Episode 1 alone: its bootstrap value is irrelevant because the last discount is 0.
    alone1 = gae(r1, d1, v1, torch.tensor([123.0], dtype=torch.float64), LAM)
    alone2 = gae(r2, d2, v2, boot2, LAM)
    joint = gae(torch.cat([r1, r2]), torch.cat([d1, d2]), torch.cat([v1, v2]), boot2, LAM)
    torch.testing.assert_close(joint, torch.cat([alone1, alone2]), rtol=0, atol=1e-12)


def test_columns_are_independent():
    gen = torch.Generator().manual_seed(1)
    r, v = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    d = (torch.rand(5, 3, generator=gen) > 0.3).float() * 0.95
    boot = torch.randn(3, generator=gen)
    joint = gae(r, d, v, boot, 0.9)
    for b in range(3):
        alone = gae(r[:, b : b + 1], d[:, b : b + 1], v[:, b : b + 1], boot[b : b + 1], 0.9)
        torch.testing.assert_close(joint[:, b : b + 1], alone)


def test_differentiable_in_lambda_and_discount():
    r, d, v, boot = three_step()
    lam = torch.tensor(LAM, dtype=torch.float64, requires_grad=True)
    (a0,) = torch.autograd.grad(gae(r, d, v, boot, lam)[0, 0], lam)
    # A_0 = delta_0 + (gamma lambda) delta_1 + (gamma lambda)^2 delta_2
    # dA_0/dlambda = gamma delta_1 + 2 gamma^2 lambda delta_2 = 0.9 * 2.35 + 2 * 0.81 * 0.8 * 3.3 = 6.3918
    assert a0.item() == pytest.approx(6.3918, abs=1e-12)
    disc = d.clone().requires_grad_()
    (grad_d,) = torch.autograd.grad(gae(r, disc, v, boot, LAM).sum(), disc)
    eps = 1e-6
    bumped = d.clone()
    bumped[0, 0] += eps
    fd = (gae(r, bumped, v, boot, LAM).sum() - gae(r, d, v, boot, LAM).sum()) / eps
    assert grad_d[0, 0].item() == pytest.approx(fd.item(), abs=1e-4)


def test_inputs_are_not_modified():
    r, d, v, boot = three_step()
    copies = [x.clone() for x in (r, d, v, boot)]
    gae(r, d, v, boot, LAM)
    for original, copy in zip((r, d, v, boot), copies):
        assert torch.equal(original, copy)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(())), r"r_t must be \[T, B\], got shape \(3,\)"),
        ((torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, 2), torch.zeros(2)), r"discount_t \(3, 1\).*must all be \[T, B\]"),
        ((torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(2)), r"v_t \(2, 2\) must all be \[T, B\]"),
        (
            (torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3)),
            r"bootstrap value must be \[B\] = \(2,\), got \(3,\)",
        ),
    ],
)
def test_shape_errors(args, match):
    with pytest.raises(ValueError, match=match):
        gae(*args, 0.95)
    with pytest.raises(ValueError, match=match):
        lambda_returns(*args, 0.95)


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target).item() == 1.0
    assert explained_variance(torch.full((4,), target.mean().item()), target).item() == pytest.approx(0.0)
    # residual [1, -1, 1, -1]: var 4/3; target var 5/3 -> 1 - 4/5 = 0.2
    assert explained_variance(target - torch.tensor([1.0, -1.0, 1.0, -1.0]), target).item() == pytest.approx(0.2)


def test_rollout_return_golden():
    from agents.returns import rollout_return

    r = torch.tensor([[1.0, 0.0], [2.0, -1.0], [4.0, 3.0]])
    # column 0: 1 + 0.5 * 2 + 0.25 * 4 = 3; column 1: 0 - 0.5 + 0.75 = 0.25; mean 1.625
    assert rollout_return(r, 0.5) == pytest.approx(1.625, abs=1e-12)
    assert rollout_return(r.numpy(), 1.0) == pytest.approx((7.0 + 2.0) / 2, abs=1e-12)
    with pytest.raises(ValueError, match=r"r_raw must be \[T, B\], got shape \(3,\)"):
        rollout_return(r[:, 0], 0.5)
