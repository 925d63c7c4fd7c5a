"""LPG: the network's shapes and episode masking, the agent update of Eq. 2, the meta-gradient through K = 2 updates."""

from __future__ import annotations

import pytest
import torch
from _helpers import assert_matches_central_differences

from agents.base import Batch
from solvers.lpg.meta import LPGAgentLearner, meta_loss
from solvers.lpg.network import LPGConfig, LPGInputs, LPGNetwork
from solvers.lpg.objective import LPGObjective, TabularAgent

S, A, M = 4, 3, 5


def _batch(seed: int, t: int = 6, b: int = 3, dtype=torch.float64, done_at: int | None = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    discounts = torch.ones(t, b, dtype=dtype)
    if done_at is not None:
        discounts[done_at] = 0.0
    return Batch(
        obs=torch.randint(S, (t, b), generator=g),
        actions=torch.randint(A, (t, b), generator=g),
        log_probs=torch.zeros(t, b, dtype=dtype),
        values=torch.randn(t, b, generator=g, dtype=dtype),
        rewards=torch.randn(t, b, generator=g, dtype=dtype),
        discounts=discounts,
        bootstrap_value=torch.randn(b, generator=g, dtype=dtype),
        bootstrap_obs=torch.randint(S, (b,), generator=g),
    )


def _inputs(batch: Batch, m: int = M, seed: int = 0) -> LPGInputs:
    g = torch.Generator().manual_seed(seed)
    t, b = batch.rewards.shape
    y = torch.softmax(torch.randn(t + 1, b, m, generator=g, dtype=torch.float64), -1)
    return LPGInputs(
        rewards=batch.rewards,
        discounts=batch.discounts,
        gamma=0.99,
        pi_taken=torch.full((t, b), 0.3, dtype=torch.float64),
        y=y[:-1],
        y_next=y[1:],
    )


def _network(hidden: int = 8) -> tuple[LPGNetwork, dict[str, torch.Tensor]]:
    net = LPGNetwork(LPGConfig(hidden=hidden, embed=4, m=M))
    return net, net.init(torch.Generator().manual_seed(1), dtype=torch.float64)


def test_network_shapes_and_softmax():
    net, w = _network()
    pi_hat, y_hat = net.forward(w, _inputs(_batch(0, t=7, b=2)))
    assert pi_hat.shape == (7, 2) and y_hat.shape == (7, 2, M)
    torch.testing.assert_close(y_hat.sum(-1), torch.ones(7, 2, dtype=torch.float64))
    assert LPGNetwork().shapes()["lstm.w"] == (6 + 256, 4 * 256) and LPGNetwork().shapes()["y.w"] == (256, 30)


def test_backward_lstm_state_does_not_cross_an_episode_end():
    net, w = _network()
    batch = _batch(0, t=6, b=2, done_at=2)
    x = _inputs(batch)
    pi_hat, y_hat = net.forward(w, x)
    changed = x.rewards.clone()
    changed[3:] += 5.0  # only the steps of the next episode
    pi2, y2 = net.forward(w, LPGInputs(**{**x.__dict__, "rewards": changed}))
    torch.testing.assert_close(pi2[:3], pi_hat[:3], rtol=0, atol=0)
    torch.testing.assert_close(y2[:3], y_hat[:3], rtol=0, atol=0)
    assert not torch.allclose(pi2[3:], pi_hat[3:])
    # Without the episode end the same change does reach back (the LSTM runs backward in time).
    x_open = LPGInputs(**{**x.__dict__, "discounts": torch.ones_like(x.discounts)})
    pi3, _ = net.forward(w, x_open)
    pi4, _ = net.forward(w, LPGInputs(**{**x_open.__dict__, "rewards": changed}))
    assert not torch.allclose(pi3[:3], pi4[:3])


def test_config_and_width_errors():
    with pytest.raises(ValueError, match="LPGConfig.hidden"):
        LPGConfig(hidden=0)
    net, w = _network()
    x = _inputs(_batch(0), m=M + 1)
    with pytest.raises(ValueError, match="LPGConfig.m"):
        net.forward(w, x)


class _HandSet:
    """An "LPG" that outputs fixed targets: pi_hat = a given advantage, y_hat = a given distribution."""

    def __init__(self, pi_hat, y_hat):
        self.pi_hat, self.y_hat = pi_hat, y_hat

    def forward(self, weights, inputs):
        return self.pi_hat, self.y_hat


def test_agent_update_is_a_policy_gradient_step_and_a_kl_step():
    batch = _batch(3, t=5, b=2)
    t, b = batch.rewards.shape
    g = torch.Generator().manual_seed(7)
    advantage = torch.randn(t, b, generator=g, dtype=torch.float64)
    y_target = torch.softmax(torch.randn(t, b, M, generator=g, dtype=torch.float64), -1)
    agent = TabularAgent(S, A, M)
    params = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in agent.init().items()}
    lr, kl_coef = 20.0, 0.5
    learner = LPGAgentLearner(LPGObjective(agent, _HandSet(advantage, y_target), weights={}), params, "sgd")
    new, _, _ = learner.train_step(params, learner.opt_state, batch, {"lr": lr, "kl_coef": kl_coef, "gamma": 0.99})

    # By hand: d/dz [-A log softmax(z)_a] = -A (onehot(a) - pi); d/dz KL(softmax(z) || q) = y (log y - log q - KL).
    n = t * b
    grad_pi = torch.zeros(S, A, dtype=torch.float64)
    grad_y = torch.zeros(S, M, dtype=torch.float64)
    for s, a, adv, q in zip(batch.obs.flatten(), batch.actions.flatten(), advantage.flatten(), y_target.flatten(0, 1)):
        pi = torch.softmax(params["pi"][s], -1)
        grad_pi[s] += -adv * (torch.nn.functional.one_hot(a, A).double() - pi) / n
        y = torch.softmax(params["y"][s], -1)
        f = y.log() - q.log()
        grad_y[s] += kl_coef * y * (f - (y * f).sum()) / n
    torch.testing.assert_close(new["pi"], params["pi"] - lr * grad_pi)
    torch.testing.assert_close(new["y"], params["y"] - lr * grad_y)


def test_missing_weights_and_bootstrap_obs_are_clear_errors():
    agent = TabularAgent(S, A, M)
    net, _ = _network()
    with pytest.raises(ValueError, match="meta=\\{'lpg'"):
        LPGObjective(agent, net)(agent.init(torch.float64), _batch(0), {"kl_coef": 1.0, "gamma": 0.9})
    batch = _batch(0)
    no_boot = Batch(**{**batch.__dict__, "bootstrap_obs": None})
    with pytest.raises(ValueError, match="bootstrap_obs"):
        LPGObjective(agent, net, net.init(torch.Generator().manual_seed(0), torch.float64))(
            agent.init(torch.float64), no_boot, {"kl_coef": 1.0, "gamma": 0.9}
        )


def test_meta_gradient_through_two_updates_matches_central_differences():
    net, w = _network(hidden=4)
    agent = TabularAgent(S, A, M)
    g = torch.Generator().manual_seed(5)
    params = {k: 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in agent.init().items()}
    batches = [_batch(10 + k, done_at=1 + k) for k in range(3)]
    hp = {"lr": 5.0, "kl_coef": 0.5, "gamma": 0.9}

    def loss(weights):
        learner = LPGAgentLearner(LPGObjective(agent, net), params, "sgd")
        return meta_loss(learner, weights, batches, hp, steps=2)

    leaves = {k: v.clone().requires_grad_() for k, v in w.items()}
    grads = dict(zip(leaves, torch.autograd.grad(loss(leaves), list(leaves.values()))))
    eps = 1e-6
    # A weight on each path: the embedding phi (reads y), the LSTM, both heads.  y.w reaches the loss only
    # through the second update (y_hat moves y at step 1, y feeds the LPG at step 2): the cross-step path.
    for name, index in (("phi0.w", (1, 0)), ("lstm.w", (3, 5)), ("lstm.w", (6, 1)), ("pi.w", (2, 0)), ("y.w", (0, 0))):
        plus = {k: v.clone() for k, v in w.items()}
        minus = {k: v.clone() for k, v in w.items()}
        plus[name][index] += eps
        minus[name][index] -= eps
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(grads[name][index]) > 1e-7, (name, index)
        torch.testing.assert_close(grads[name][index], fd.detach(), rtol=1e-4, atol=1e-11)


def test_differentiable_update_holds_the_targets_fixed_like_the_plain_one():
    # The meta path computes the targets with their graph; the step itself must still be Eq. 2's.
    net, w = _network()
    agent = TabularAgent(S, A, M)
    g = torch.Generator().manual_seed(2)
    params = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in agent.init().items()}
    learner = LPGAgentLearner(LPGObjective(agent, net), params, "sgd")
    hp = {"lr": 3.0, "kl_coef": 0.5, "gamma": 0.95}
    batch = _batch(4)
    plain, _, _ = learner.train_step(params, learner.opt_state, batch, hp, {"lpg": w})
    graph, _, _ = learner.train_step(params, learner.opt_state, batch, hp, {"lpg": w}, differentiable=True)
    for k in params:
        torch.testing.assert_close(graph[k].detach(), plain[k].detach(), rtol=1e-12, atol=1e-12)
        assert graph[k].requires_grad and plain[k].is_leaf


def _chain_batches(agent, params, values, count: int, *, t: int = 8, b: int = 4, seed: int = 0) -> list[Batch]:
    """``count`` consecutive rollouts of ``params``' policy on the short delayed chain; ``values``: a fixed critic table."""
    from hyperenvs.tasks.registration import make_task

    task = make_task("chain_short", b, seed=seed)
    g = torch.Generator().manual_seed(seed)
    obs = task.reset(seed=seed).clone()
    out = []
    for _ in range(count):
        rows = {"obs": [], "actions": [], "rewards": [], "discounts": []}
        for _ in range(t):
            logits, _ = agent.forward(params, obs)
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(-1)
            nxt, reward, terminated, truncated = task.step(action)
            for k, v in zip(rows, (obs, action, reward.double(), 1.0 - (terminated | truncated).double())):
                rows[k].append(v)
            obs = nxt.clone()
        cols = {k: torch.stack(v) for k, v in rows.items()}
        out.append(
            Batch(
                **cols,
                log_probs=torch.zeros(t, b, dtype=torch.float64),
                values=values[cols["obs"].long()],
                bootstrap_value=values[obs.long()],
                bootstrap_obs=obs.clone(),
            )
        )
    return out


def test_meta_gradient_on_a_delayed_chain_matches_central_differences():
    states = 2 + 4 * 30  # chain_short's index observations: Discrete(2 + 4 * high), high = 30
    agent = TabularAgent(states, 2, M)
    net, w = _network(hidden=4)
    params = agent.init(torch.float64)
    values = 0.1 * torch.randn(states, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batches = _chain_batches(agent, params, values, 3)
    assert any((bt.discounts == 0).any() and (bt.rewards != 0).any() for bt in batches)
    hp = {"lr": 20.0, "kl_coef": 0.5, "gamma": 0.99}

    def loss(weights):
        return meta_loss(LPGAgentLearner(LPGObjective(agent, net), params, "sgd"), weights, batches, hp, steps=2)

    assert_matches_central_differences(loss, w, ("phi1.b", "lstm.b", "pi.w", "pi.b"), smallest=1e-7)
