"""A frozen LPG as a learner's objective: ``gym.make(ID, config={"objective": "lpg:PATH"})``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import hyperenvs
from agents.base import Batch
from agents.objectives import OBJECTIVE_FACTORIES, make_objective
from solvers.lpg.files import save_rule
from solvers.lpg.network import LPGConfig, LPGNetwork
from solvers.lpg.plugin import PREFIX, FrozenLPGObjective

gym.register_envs(hyperenvs)
SMALL = LPGConfig(hidden=8, embed=4, m=6)


@pytest.fixture
def rule(tmp_path):
    net = LPGNetwork(SMALL)
    return str(save_rule(tmp_path / "rule.pt", SMALL, net.init(torch.Generator().manual_seed(0)), {"kl_coef": 0.25}))


@pytest.mark.parametrize(
    "env_id",
    [f"HyperRL/{a}-{t}-v0" for a, t in (("A2C", "CartPole"), ("A2C", "Catch"), ("PPO", "CartPole"), ("PPO", "Catch"))]
    + ["HyperRL/IMPALA-CartPole-v0"],
)
def test_learners_train_with_a_frozen_lpg_and_a_prediction_head(env_id, rule):
    env = gym.make(env_id, config={"objective": f"lpg:{rule}"}, total_timesteps=4000)
    env.reset(seed=0)
    learner = env.unwrapped.learner
    assert isinstance(learner.objective, FrozenLPGObjective) and learner.objective.kl_coef == 0.25
    head = {k: v.detach().clone() for k, v in learner.params.items() if k.startswith(PREFIX)}
    assert head[PREFIX + "out.weight"].shape[0] == SMALL.m
    lpg_before = {k: v.clone() for k, v in learner.objective.weights.items()}
    _, _, terminated, _, info = env.step(env.action_space.sample())
    assert not terminated and np.isfinite(info["losses"]["policy"]) and np.isfinite(info["losses"]["value"])
    moved = [k for k, v in head.items() if not torch.equal(learner.params[k].detach(), v)]
    assert moved  # the prediction head is trained by the KL towards y_hat
    for k, v in lpg_before.items():  # the LPG itself is frozen
        assert torch.equal(learner.objective.weights[k], v)


def test_ppo_gives_a_learned_objective_whole_trajectories(rule):
    env = gym.make("HyperRL/PPO-CartPole-v0", config={"objective": f"lpg:{rule}"}, total_timesteps=4000)
    env.reset(seed=0)
    learner = env.unwrapped.learner
    seen, inner = [], learner.objective

    def spy(params, batch, hparams, meta=None):
        seen.append(tuple(batch.rewards.shape))
        return inner(params, batch, hparams, meta)

    learner.objective = spy
    hp = learner.resolve_hparams({"epochs": 3, "minibatch_size": 64})
    learner.iterate(hp)
    t, b = learner.config.num_steps, learner.config.num_envs  # 32 steps x 8 envs: 64 // 32 = 2 envs a minibatch
    assert seen == [(t, 2)] * (3 * b // 2)


def test_batch_columns_keep_whole_trajectories():
    g = torch.Generator().manual_seed(0)
    t, b = 4, 5
    batch = Batch(
        obs=torch.randn(t, b, 3, generator=g),
        actions=torch.randint(2, (t, b), generator=g),
        log_probs=torch.randn(t, b, generator=g),
        values=torch.randn(t, b, generator=g),
        rewards=torch.randn(t, b, generator=g),
        discounts=torch.ones(t, b),
        bootstrap_value=torch.randn(b, generator=g),
        bootstrap_obs=torch.randn(b, 3, generator=g),
    )
    cols = batch.columns(torch.tensor([3, 0]))
    assert torch.equal(cols.obs, batch.obs[:, [3, 0]]) and torch.equal(cols.rewards, batch.rewards[:, [3, 0]])
    assert torch.equal(cols.bootstrap_obs, batch.bootstrap_obs[[3, 0]]) and cols.advantages is None


def test_a_learned_objective_population_runs_lifetime_by_lifetime(rule):
    from hyperenvs.population import vectorisable

    plain = gym.make("HyperRL/A2C-Catch-v0").unwrapped
    learned = gym.make("HyperRL/A2C-Catch-v0", config={"objective": f"lpg:{rule}"}).unwrapped
    assert vectorisable(plain) and not vectorisable(learned)


def test_plain_a2c_has_no_prediction_head():
    env = gym.make("HyperRL/A2C-CartPole-v0")
    env.reset(seed=0)
    assert not any(k.startswith(PREFIX) for k in env.unwrapped.learner.params)


def test_unknown_objective_lists_the_known_ones_and_a_bad_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"one of \['lpg'\].*'nope'"):
        make_objective("nope", None)
    bad = tmp_path / "broken.pt"
    bad.write_text("not a torch file")
    with pytest.raises(ValueError, match="broken.pt"):
        gym.make("HyperRL/A2C-CartPole-v0", config={"objective": f"lpg:{bad}"}).reset(seed=0)
    assert OBJECTIVE_FACTORIES["lpg"] == "solvers.lpg.plugin:from_spec"


def test_eq7_loss_by_hand(rule):
    """With the LPG replaced by fixed targets the loss is -(pi_hat - f) log pi + kl KL + 1/2 (f - pi_hat)^2."""
    env = gym.make("HyperRL/A2C-CartPole-v0", config={"objective": f"lpg:{rule}"})
    env.reset(seed=1)
    learner = env.unwrapped.learner
    batch, _ = learner.collector.collect(learner.params, 5, 0.99)
    objective = learner.objective
    t, b = batch.rewards.shape
    pi_hat = torch.randn(t, b, generator=torch.Generator().manual_seed(2))
    y_hat = torch.softmax(torch.randn(t, b, SMALL.m, generator=torch.Generator().manual_seed(3)), -1)

    class Fixed:
        config = SMALL

        def forward(self, weights, inputs):
            return pi_hat, y_hat

    objective.lpg = Fixed()
    loss, metrics = objective(learner.params, batch, {"gamma": 0.99})
    logits, f = learner.network.forward(learner.params, batch.obs.flatten(0, 1))
    logp = torch.log_softmax(logits, -1).gather(-1, batch.actions.flatten(0, 1).long().view(-1, 1)).view(t, b)
    y = torch.softmax(objective.predict(learner.params, batch.obs.flatten(0, 1)), -1).view(t, b, -1)
    kl = (y * (y.log() - y_hat.log())).sum(-1).mean()
    f = f.view(t, b)
    expected = -((pi_hat - f) * logp).mean() + 0.25 * kl + 0.5 * (f - pi_hat).square().mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(metrics["prediction"], kl.detach())


def test_the_shipped_rule_is_the_default_objective():
    from solvers.lpg.files import DEFAULT_RULE, load_rule

    network, weights, hparams = load_rule(DEFAULT_RULE)
    assert network.config.m == 30 and network.config.embed == 16 and hparams["kl_coef"] in (0.1, 0.5, 1.0)
    env = gym.make("HyperRL/A2C-Catch-v0", config={"objective": "lpg"}, total_timesteps=2000)
    env.reset(seed=0)
    objective = env.unwrapped.learner.objective
    torch.testing.assert_close(objective.weights["lstm.w"], weights["lstm.w"])
    _, _, terminated, _, info = env.step(env.action_space.sample())
    assert not terminated and np.isfinite(info["losses"]["policy"])


def test_a_learned_objective_refuses_compile_true():
    from agents.a2c import A2CConfig, A2CLearner

    with pytest.raises(ValueError, match="compile=True needs A2C's own objective"):
        A2CLearner(A2CConfig(objective="lpg", compile=True), seed=0)
    assert not A2CLearner(A2CConfig(objective="a2c"), seed=0).learned_objective  # the learner's own name is its own
