"""PPO's clipped surrogate on a hand-built batch whose log-probabilities are known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from agents.a2c import A2C_METRICS, A2CObjective
from agents.base import Batch
from agents.networks import ActorCritic, entropy, log_prob
from agents.ppo import PPO_METRICS, PPOObjective

CLIP = 0.2
P0 = 0.75  # the policy's probability of action 0 in every state
VALUE = 0.5  # the critic's value of every state


def tiny_network() -> tuple[ActorCritic, dict[str, torch.Tensor]]:
    """A linear 2-action policy and critic on 1-D observations, hand-set so that
    pi(0) = 0.75, pi(1) = 0.25 and V = 0.5 for every observation."""
    net = ActorCritic(obs_dim=1, action_dim=2, discrete=True, hidden=())
    params = {
        "actor.0.weight": torch.zeros(2, 1, dtype=torch.float64),
        "actor.0.bias": torch.tensor([math.log(3.0), 0.0], dtype=torch.float64),  # softmax -> [3/4, 1/4]
        "critic.0.weight": torch.zeros(1, 1, dtype=torch.float64),
        "critic.0.bias": torch.tensor([VALUE], dtype=torch.float64),
    }
    assert set(params) == set(net.shapes())
    return net, {k: v.requires_grad_() for k, v in params.items()}


def batch(ratios, advantages, actions, returns=None):
    """Old log-probs chosen so that pi_new / pi_old equals ``ratios`` exactly."""
    actions = torch.tensor(actions)
    new_logp = torch.tensor([math.log(P0) if a == 0 else math.log(1 - P0) for a in actions.tolist()], dtype=torch.float64)
    n = len(ratios)
    return flat_batch(
        obs=torch.linspace(-1.0, 1.0, n, dtype=torch.float64).unsqueeze(1),
        actions=actions,
        log_probs=new_logp - torch.log(torch.tensor(ratios, dtype=torch.float64)),
        advantages=torch.tensor(advantages, dtype=torch.float64),
        returns=torch.tensor(returns if returns is not None else [VALUE] * n, dtype=torch.float64),
    )


def flat_batch(obs, actions, log_probs, advantages, returns) -> Batch:
    """``n`` transitions as the learner's schedule hands them to the objective: a ``[1, n]`` Batch with its targets."""
    n = len(log_probs)
    row = {"dtype": log_probs.dtype}
    return Batch(
        obs=obs.unsqueeze(0),
        actions=actions.unsqueeze(0),
        log_probs=log_probs.unsqueeze(0),
        values=torch.zeros(1, n, **row),
        rewards=torch.zeros(1, n, **row),
        discounts=torch.ones(1, n, **row),
        bootstrap_value=torch.zeros(n, **row),
        advantages=advantages.unsqueeze(0),
        returns=returns.unsqueeze(0),
    )


# ratio, advantage: min(r A, clip(r, 0.8, 1.2) A)           clipped (|r - 1| > 0.2)?
#   1.5, +1  -> min(1.5, 1.2)   = 1.2                       yes
#   0.5, +1  -> min(0.5, 0.8)   = 0.5                       yes
#   1.1, -2  -> min(-2.2, -2.2) = -2.2                      no
#   1.5, -1  -> min(-1.5, -1.2) = -1.5                      yes
RATIOS = [1.5, 0.5, 1.1, 1.5]
ADVS = [1.0, 1.0, -2.0, -1.0]
ACTIONS = [0, 1, 0, 1]
POLICY_LOSS = -(1.2 + 0.5 - 2.2 - 1.5) / 4  # = 0.5
CLIP_FRACTION = 3 / 4
APPROX_KL = sum((r - 1) - math.log(r) for r in RATIOS) / 4
ENTROPY = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # = 0.5623351446...


def metrics_dict(m: dict[str, torch.Tensor]) -> dict[str, float]:
    assert tuple(m) == PPO_METRICS
    return {k: v.item() for k, v in m.items()}


def test_log_probs_of_the_hand_set_policy():
    net, params = tiny_network()
    b = batch(RATIOS, ADVS, ACTIONS)
    out, value = net.forward(params, b.obs[0])
    logp = log_prob(out, params, b.actions[0], discrete=True)
    torch.testing.assert_close(logp, torch.tensor([math.log(0.75), math.log(0.25)] * 2, dtype=torch.float64))
    torch.testing.assert_close(value, torch.full((4,), VALUE, dtype=torch.float64))
    torch.testing.assert_close((logp - b.log_probs[0]).exp(), torch.tensor(RATIOS, dtype=torch.float64))


def test_policy_loss_and_clip_fraction_by_hand():
    net, params = tiny_network()
    returns = [1.5, 0.5, -0.5, 2.5]  # value errors 1, 0, -1, 2 -> 0.5 * mean(sq) = 0.5 * 6 / 4 = 0.75
    loss, m = PPOObjective(net, normalize_advantages=False)(
        params, batch(RATIOS, ADVS, ACTIONS, returns), {"clip": CLIP, "vf_coef": 0.5, "ent_coef": 0.01}
    )
    got = metrics_dict(m)
    assert got["policy"] == pytest.approx(POLICY_LOSS, abs=1e-12)
    assert POLICY_LOSS == pytest.approx(0.5)
    assert got["clip_fraction"] == pytest.approx(CLIP_FRACTION, abs=0)
    assert got["approx_kl"] == pytest.approx(APPROX_KL, abs=1e-12)
    assert got["value"] == pytest.approx(0.75, abs=1e-12)
    assert got["entropy"] == pytest.approx(ENTROPY, abs=1e-12)
    assert loss.item() == pytest.approx(POLICY_LOSS + 0.5 * 0.75 - 0.01 * ENTROPY, abs=1e-12)
    assert not any(v.requires_grad for v in m.values())


def test_normalized_advantages_by_hand():
    net, params = tiny_network()
    # ADVS = [1, 1, -2, -1]: mean -1/4; unbiased std sqrt(((5/4)^2 * 2 + (7/4)^2 + (3/4)^2) / 3) = sqrt(6.75 / 3) = 1.5
    mean = sum(ADVS) / 4
    std = math.sqrt(sum((a - mean) ** 2 for a in ADVS) / 3)
    assert mean == -0.25 and std == 1.5
    norm = [(a - mean) / (std + 1e-8) for a in ADVS]
    clipped = [min(r * a, min(max(r, 1 - CLIP), 1 + CLIP) * a) for r, a in zip(RATIOS, norm)]
    _, m = PPOObjective(net, normalize_advantages=True)(
        params, batch(RATIOS, ADVS, ACTIONS), {"clip": CLIP, "vf_coef": 0.5, "ent_coef": 0.0}
    )
    assert metrics_dict(m)["policy"] == pytest.approx(-sum(clipped) / 4, abs=1e-9)


def test_clip_fraction_counts_strictly_outside_the_range():
    net, params = tiny_network()
    # ratios 1.0 and 1.1 are inside [0.8, 1.2]; 1.3 and 0.7 are outside: 2 of 4.
    _, m = PPOObjective(net, normalize_advantages=False)(
        params, batch([1.0, 1.1, 1.3, 0.7], [1, 1, 1, 1], [0, 0, 1, 1]), {"clip": CLIP, "vf_coef": 0.0, "ent_coef": 0.0}
    )
    assert metrics_dict(m)["clip_fraction"] == 0.5
    _, m = PPOObjective(net, normalize_advantages=False)(
        params, batch([1.0, 1.1, 1.3, 0.7], [1, 1, 1, 1], [0, 0, 1, 1]), {"clip": 0.5, "vf_coef": 0.0, "ent_coef": 0.0}
    )
    assert metrics_dict(m)["clip_fraction"] == 0.0


def test_clipped_samples_give_no_policy_gradient():
    net, params = tiny_network()
    # r > 1 + eps with A > 0 and r < 1 - eps with A < 0: the clamp is active, so no gradient.
    loss, _ = PPOObjective(net, normalize_advantages=False)(
        params, batch([1.5, 0.5], [1.0, -1.0], [0, 1]), {"clip": CLIP, "vf_coef": 0.0, "ent_coef": 0.0}
    )
    grads = torch.autograd.grad(loss, [params["actor.0.weight"], params["actor.0.bias"]])
    for g in grads:
        assert torch.count_nonzero(g) == 0
    # The mirrored cases use the unclipped term and do move the policy.
    loss, _ = PPOObjective(net, normalize_advantages=False)(
        params, batch([1.5, 0.5], [-1.0, 1.0], [0, 1]), {"clip": CLIP, "vf_coef": 0.0, "ent_coef": 0.0}
    )
    (g_bias,) = torch.autograd.grad(loss, [params["actor.0.bias"]])
    assert torch.count_nonzero(g_bias) > 0


def test_metagradient_in_clip():
    net, params = tiny_network()
    clip = torch.tensor(CLIP, dtype=torch.float64, requires_grad=True)
    loss, _ = PPOObjective(net, normalize_advantages=False)(
        params, batch(RATIOS, ADVS, ACTIONS), {"clip": clip, "vf_coef": 0.0, "ent_coef": 0.0}
    )
    (g,) = torch.autograd.grad(loss, clip)
    # Only sample 0 (r = 1.5, A = +1) takes the clipped term (1 + clip) * A: d(-mean)/dclip = -1/4.
    assert g.item() == pytest.approx(-0.25, abs=1e-12)


def test_gaussian_log_prob_and_entropy():
    net = ActorCritic(obs_dim=1, action_dim=2, discrete=False, hidden=())
    params = {k: torch.zeros(s, dtype=torch.float64) for k, s in net.shapes().items()}
    params["actor.log_std"] = torch.tensor([0.0, math.log(2.0)], dtype=torch.float64)
    out, _ = net.forward(params, torch.zeros(1, 1, dtype=torch.float64))
    action = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    # N(1; 0, 1) and N(2; 0, 2): -0.5 - log sqrt(2 pi)  +  -0.5 - log 2 - log sqrt(2 pi)
    expected = -1.0 - math.log(2.0) - math.log(2 * math.pi)
    assert log_prob(out, params, action, discrete=False).item() == pytest.approx(expected, abs=1e-12)
    # entropy of N(0, s^2) is 0.5 + log sqrt(2 pi) + log s, summed over dims
    assert entropy(out, params, discrete=False).item() == pytest.approx(1.0 + math.log(2 * math.pi) + math.log(2.0), abs=1e-12)


def test_a2c_objective_by_hand():
    net, params = tiny_network()
    b = batch(RATIOS, ADVS, ACTIONS, returns=[1.5, 0.5, -0.5, 2.5])
    loss, m = A2CObjective(net)(params, b, {"vf_coef": 0.5, "ent_coef": 0.0})
    logp = [math.log(0.75), math.log(0.25)] * 2
    policy = -sum(lp * a for lp, a in zip(logp, ADVS)) / 4
    assert [m[k].item() for k in A2C_METRICS] == pytest.approx([policy, 0.75, ENTROPY], abs=1e-12)
    assert loss.item() == pytest.approx(policy + 0.5 * 0.75, abs=1e-12)


def _gaussian_setup():
    net = ActorCritic(obs_dim=3, action_dim=2, discrete=False, hidden=(8,))
    gen = torch.Generator().manual_seed(0)
    params = {k: (0.3 * torch.randn(s, generator=gen, dtype=torch.float64)) for k, s in net.shapes().items()}
    n = 6
    b = flat_batch(
        obs=torch.randn(n, 3, generator=gen, dtype=torch.float64),
        actions=torch.randn(n, 2, generator=gen, dtype=torch.float64),
        log_probs=torch.full((n,), -2.0, dtype=torch.float64),
        advantages=torch.randn(n, generator=gen, dtype=torch.float64),
        returns=torch.randn(n, generator=gen, dtype=torch.float64),
    )
    return net, params, b


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_objectives_are_pure_under_torch_func(name):
    net, params, b = _gaussian_setup()
    objective = PPOObjective(net) if name == "ppo" else A2CObjective(net)
    meta = {"clip": 0.2, "vf_coef": 0.5, "ent_coef": 0.01}
    func_grads = torch.func.grad(lambda p: objective(p, b, meta)[0])(params)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    auto = torch.autograd.grad(objective(leaves, b, meta)[0], list(leaves.values()))
    for (k, g), a in zip(func_grads.items(), auto):
        torch.testing.assert_close(g, a, msg=k)
    # vmap over a batch of parameter sets gives each set's own loss
    stacked = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    losses = torch.func.vmap(lambda p: objective(p, b, meta)[0])(stacked)
    doubled = {k: 2 * v for k, v in params.items()}
    torch.testing.assert_close(losses, torch.stack([objective(params, b, meta)[0], objective(doubled, b, meta)[0]]))


@pytest.mark.parametrize("rule", ["sgd", "adam", "rmsprop"])
def test_differentiating_through_one_functional_update_matches_a_finite_difference(rule):
    """d L(theta'(lr)) / d lr through the pure update rule, the white-box path solvers use."""
    from agents.optim import get_update_rule

    net, params, b = _gaussian_setup()
    objective = PPOObjective(net)
    meta = {"clip": 0.2, "vf_coef": 0.5, "ent_coef": 0.0}
    grads = torch.func.grad(lambda p: objective(p, b, meta)[0])(params)
    rule = get_update_rule(rule)

    def after_step(lr: torch.Tensor) -> torch.Tensor:
        new, _ = rule.update(grads, rule.init(params), params, {"lr": lr})
        return objective(new, b, meta)[0]

    lr = torch.tensor(1e-2, dtype=torch.float64)
    analytic = torch.func.grad(after_step)(lr)
    eps = 1e-6
    numeric = (after_step(lr + eps) - after_step(lr - eps)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-8)
    assert analytic < 0  # a small step along the negative gradient lowers the loss


def _time_major_batch(seed: int = 3, t: int = 5, b: int = 3) -> tuple[ActorCritic, dict, Batch]:
    """A collector-shaped ``[T, B]`` batch (no targets) with two episode ends, on a small Gaussian policy."""
    net = ActorCritic(obs_dim=3, action_dim=2, discrete=False, hidden=(8,))
    gen = torch.Generator().manual_seed(seed)
    params = {k: (0.3 * torch.randn(s, generator=gen, dtype=torch.float64)).requires_grad_() for k, s in net.shapes().items()}
    discounts = torch.ones(t, b, dtype=torch.float64)
    discounts[1, 0] = discounts[3, 2] = 0.0
    batch = Batch(
        obs=torch.randn(t, b, 3, generator=gen, dtype=torch.float64),
        actions=torch.randn(t, b, 2, generator=gen, dtype=torch.float64),
        log_probs=torch.full((t, b), -2.0, dtype=torch.float64),
        values=torch.randn(t, b, generator=gen, dtype=torch.float64),
        rewards=torch.randn(t, b, generator=gen, dtype=torch.float64),
        discounts=discounts,
        bootstrap_value=torch.randn(b, generator=gen, dtype=torch.float64),
    )
    return net, params, batch


HP = {"gamma": 0.97, "gae_lambda": 0.9, "clip": 0.2, "vf_coef": 0.5, "ent_coef": 0.01}


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_objectives_compute_their_own_targets_from_the_batch(name):
    from agents.returns import gae

    net, params, b = _time_major_batch()
    objective = PPOObjective(net) if name == "ppo" else A2CObjective(net)
    loss, _ = objective(params, b, HP)
    advantages = gae(b.rewards, b.discounts * HP["gamma"], b.values, b.bootstrap_value, HP["gae_lambda"])
    given, _ = objective(params, b.with_targets(advantages, advantages + b.values), HP)
    torch.testing.assert_close(loss, given, rtol=1e-12, atol=1e-12)
    # flattening to the schedule's [1, T*B] form changes nothing
    flat, _ = objective(params, objective.targets(b, HP).flat(), HP)
    torch.testing.assert_close(loss, flat, rtol=1e-12, atol=1e-12)
    assert objective.targets(b, HP).flat().obs.shape == (1, 15, 3)


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_objectives_are_differentiable_in_gamma_lambda_and_every_weight(name):
    net, params, b = _time_major_batch()
    objective = PPOObjective(net) if name == "ppo" else A2CObjective(net)
    keys = ["gamma", "gae_lambda", "vf_coef", "ent_coef"] + (["clip"] if name == "ppo" else [])
    hp = {**HP, **{k: torch.tensor(HP[k], dtype=torch.float64, requires_grad=True) for k in keys}}
    if name == "ppo":
        hp["clip"] = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)  # small, so some ratio is clipped
        b = Batch(**{**{k: getattr(b, k) for k in b.__dataclass_fields__}, "log_probs": b.log_probs - 0.3})
    loss, _ = objective(params, b, hp)
    grads = torch.autograd.grad(loss, [hp[k] for k in keys])
    for k, g in zip(keys, grads):
        assert g != 0, k

    def at(gamma: float) -> float:
        return objective(params, b, {**HP, "clip": hp["clip"].item() if name == "ppo" else 0.2, "gamma": gamma})[0].item()

    h = 1e-6
    numeric = (at(HP["gamma"] + h) - at(HP["gamma"] - h)) / (2 * h)
    assert grads[0].item() == pytest.approx(numeric, rel=1e-5)


def test_a_flat_batch_without_targets_is_refused():
    _, _, b = _time_major_batch()
    with pytest.raises(ValueError, match="Batch.flat needs precomputed targets"):
        b.flat()
    with pytest.raises(ValueError, match="Batch.advantages and Batch.returns are set together"):
        Batch(**{**{k: getattr(b, k) for k in b.__dataclass_fields__}, "advantages": b.values})
