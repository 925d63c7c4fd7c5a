"""LPG's network agents (random grids, distractor chain): stacked networks, per-lifetime Adam, mixed meta-training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from _helpers import assert_matches_central_differences

from agents.base import Batch
from agents.unroll import unroll
from solvers.lpg.bandit import HyperBandit
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.network import LPGConfig, LPGNetwork
from solvers.lpg.networks import NetSpec, NetworkPopulationAgent, NetworkPopulationLearner, StackedNet, adam_state, lifetime_adam
from solvers.lpg.train import MetaTrainer

TINY = LPGConfig(hidden=4, embed=3, m=5)
CONV = NetSpec(conv=(3,), hidden=5)


def _generators(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + j) for j in range(n)]


def test_stacked_net_rows_are_each_lifetimes_own_network():
    n, e, t, shape = 3, 2, 4, (2, 5, 6)
    net = StackedNet(n, e, shape, 7, CONV)
    params = net.init(_generators(n), torch.float64)
    obs = torch.rand(t * n * e, *shape, dtype=torch.float64)
    out = net.forward(params, obs)
    for row in (0, 5, 13, t * n * e - 1):
        lifetime = (row // e) % n  # rows are [T, n, E] flattened
        p = {k: v[lifetime] for k, v in params.items()}
        h = F.relu(F.conv2d(obs[row : row + 1], p["conv0.w"], p["conv0.b"])).flatten()
        h = F.relu(h @ p["dense.w"] + p["dense.b"])
        torch.testing.assert_close(out[row], h @ p["out.w"] + p["out.b"])
    with pytest.raises(ValueError, match=r"needs \[k \* 6, \*\(2, 5, 6\)\] observations, got \(5, 2, 5, 6\)"):
        net.forward(params, obs[:5])
    with pytest.raises(ValueError, match="too small for 1 3x3"):
        StackedNet(1, 1, (1, 2, 6), 1, CONV)


def test_lifetime_adam_is_torch_adam_per_lifetime_with_its_own_step_count():
    g = torch.Generator().manual_seed(1)
    p = {"w": torch.randn(2, 3, generator=g, dtype=torch.float64)}
    state = adam_state(p)
    state["step"][1] = 4  # lifetime 1 is older: its bias correction is its own
    lr = torch.tensor([1e-2, 3e-2], dtype=torch.float64)
    refs = [torch.nn.Parameter(p["w"][j].clone()) for j in range(2)]
    opts = [torch.optim.Adam([refs[j]], lr=float(lr[j])) for j in range(2)]
    for _ in range(4):  # bring lifetime 1's torch Adam to step 4 with zero gradients (moments stay 0)
        refs[1].grad = torch.zeros(3, dtype=torch.float64)
        opts[1].step()
    for _ in range(3):
        grad = torch.randn(2, 3, generator=g, dtype=torch.float64)
        p, state = lifetime_adam(p, [grad], state, lr)
        for j in range(2):
            refs[j].grad = grad[j].clone()
            opts[j].step()
    for j in range(2):  # equal but for eps, inside the root here and outside in torch's
        torch.testing.assert_close(p["w"][j], refs[j].detach(), rtol=1e-7, atol=1e-9)
    assert state["step"].tolist() == [3, 7]


def _batch(agent: NetworkPopulationAgent, t: int, g: torch.Generator, shape: tuple[int, ...]) -> Batch:
    cols = agent.n * agent.envs
    return Batch(
        obs=(torch.rand(t, cols, *shape, generator=g) > 0.7).double(),
        actions=torch.randint(agent.num_actions, (t, cols), generator=g),
        log_probs=torch.zeros(t, cols, dtype=torch.float64),
        values=torch.zeros(t, cols, dtype=torch.float64),
        rewards=torch.randn(t, cols, generator=g, dtype=torch.float64),
        discounts=(torch.rand(t, cols, generator=g) > 0.2).double(),
        bootstrap_value=torch.zeros(cols, dtype=torch.float64),
        bootstrap_obs=(torch.rand(cols, *shape, generator=g) > 0.7).double(),
    )


def test_network_population_step_equals_one_lifetime_at_a_time():
    n, e, t, shape, a, m = 3, 2, 5, (2, 4, 4), 4, TINY.m
    g = torch.Generator().manual_seed(0)
    lpg = LPGNetwork(TINY)
    w = lpg.init(g, torch.float64)
    agent = NetworkPopulationAgent(n, e, shape, a, m, CONV)
    agent.action_mask[1, 3] = False  # lifetime 1 has 3 actions
    params = agent.net.init(_generators(n), torch.float64)
    batch = _batch(agent, t, g, shape)
    batch = dataclasses.replace(batch, actions=torch.where(batch.actions == 3, 0, batch.actions))
    f64 = dict(dtype=torch.float64)
    hp = {"lr": torch.tensor([1e-2, 2e-2, 5e-3], **f64), "kl_coef": torch.tensor([0.1, 0.5, 1.0], **f64)}
    hp["gamma"] = torch.tensor([0.99, 0.995, 0.99], **f64)
    learner = NetworkPopulationLearner(agent, lpg, params, adam_state(params))
    new, state, metrics = learner.train_step(learner.params, learner.opt_state, batch, hp, {"lpg": w})
    for j in range(n):
        one = NetworkPopulationAgent(1, e, shape, a, m, CONV)
        one.action_mask[0] = agent.action_mask[j]
        cols = slice(j * e, (j + 1) * e)
        time_major = ("obs", "actions", "log_probs", "values", "rewards", "discounts")
        mine = dataclasses.replace(
            batch,
            **{k: getattr(batch, k)[:, cols] for k in time_major},
            bootstrap_obs=batch.bootstrap_obs[cols],
            bootstrap_value=batch.bootstrap_value[cols],
        )
        p1 = {k: v[j : j + 1].clone() for k, v in params.items()}
        solo = NetworkPopulationLearner(one, lpg, p1, adam_state(p1))
        new1, _, m1 = solo.train_step(solo.params, solo.opt_state, mine, {k: v[j : j + 1] for k, v in hp.items()}, {"lpg": w})
        for k in new:
            torch.testing.assert_close(new[k][j], new1[k][0])
        for k in ("policy", "prediction", "entropy", "pi_hat_sq"):
            torch.testing.assert_close(metrics[k][j], m1[k][0])
    assert state["step"].tolist() == [1, 1, 1] and not new["dense.w"].grad_fn


def _config(**kw) -> MetaTrainConfig:
    base = dict(
        envs=("chain_short", "chain_distractor", "lpg_random_small"),
        lifetimes=6,
        envs_per_lifetime=2,
        num_steps=5,
        unroll=2,
        lifetime_updates=6,
        lpg=TINY,
        dtype="float64",
        seed=5,
        meta_lr=1e-2,
    )
    return MetaTrainConfig(**{**base, **kw})


def test_meta_gradient_through_two_network_updates_matches_central_differences():
    trainer = MetaTrainer(_config(envs=("chain_distractor",), lifetimes=2))
    (cohort,) = trainer.cohorts
    assert cohort.kind == "network"
    hp = trainer.hparams()
    zero = {k: v.detach() for k, v in cohort.params.items()}
    batches = [trainer.collect(cohort, zero) for _ in range(3)]

    def loss(weights):
        learner = NetworkPopulationLearner(cohort.agent, trainer.network, zero, adam_state(zero))
        out = unroll(learner, batches[:2], hp, {"lpg": weights}, steps=2)
        return trainer.meta_loss(cohort, out, batches[2])[0].mean()

    assert_matches_central_differences(loss, trainer.weights, ("phi0.w", "lstm.w", "pi.b", "y.w"))


def test_mixed_meta_training_has_a_cohort_per_agent_kind_and_resumes_bit_for_bit(tmp_path):
    a = MetaTrainer(_config())
    assert [(c.kind, c.slots.tolist()) for c in a.cohorts] == [("tabular", [0, 3]), ("network", [1, 4]), ("network", [2, 5])]
    # network lifetimes choose among their own Adam step sizes (Table 3), tables among the SGD ones
    lrs = a.hparams()["lr"].tolist()
    assert lrs[0] in (20.0, 40.0, 80.0) and lrs[1] in (2e-3, 5e-3, 1e-2) and lrs[2] in (5e-4, 1e-3, 2e-3, 5e-3)
    for _ in range(4):
        metrics = a.step()
    assert set(metrics["envs"]) == {"chain_short", "chain_distractor", "lpg_random_small"}
    b = MetaTrainer(_config())
    for _ in range(2):
        b.step()
    torch.save(b.state_dict(), tmp_path / "ckpt.pt")
    c = MetaTrainer(_config())
    c.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    for _ in range(2):
        c.step()
    for k in a.weights:
        torch.testing.assert_close(c.weights[k], a.weights[k], rtol=0, atol=0)
    for ca, cc in zip(a.cohorts, c.cohorts):
        for k in ca.params:
            torch.testing.assert_close(cc.params[k], ca.params[k], rtol=0, atol=0)
    assert a.births.sum() > a.config.lifetimes  # lifetimes ended and restarted, network ones re-drawn


def test_a_new_network_lifetime_gets_fresh_weights_and_a_fresh_adam():
    trainer = MetaTrainer(_config(envs=("lpg_random_small",), lifetimes=2))
    (cohort,) = trainer.cohorts
    trainer.step()
    before = {k: v.clone() for k, v in cohort.params.items()}
    assert cohort.opt_state["step"].tolist() == [2, 2]
    trainer.age[0] = trainer.length[0]
    trainer._end_lifetimes(torch.ones(2, dtype=torch.float64))
    assert cohort.opt_state["step"].tolist() == [0, 2]
    assert float(cohort.opt_state["exp_avg"]["dense.w"][0].abs().sum()) == 0.0
    assert not torch.equal(cohort.params["dense.w"][0], before["dense.w"][0])
    assert torch.equal(cohort.params["dense.w"][1], before["dense.w"][1])


def test_the_network_meta_critic_learns():
    def losses(train: bool) -> list[float]:
        t = MetaTrainer(_config(envs=("chain_distractor",), lifetimes=2, envs_per_lifetime=8, num_steps=20,
                                lifetime_updates=200, train_critic=train, critic_adam_lr=1e-2))  # fmt: skip
        return [t.step()["critic_loss_last"] for _ in range(12)]

    trained, frozen = losses(True), losses(False)
    assert sum(trained[-4:]) < 0.5 * sum(frozen[-4:])


def test_bandit_arms_may_differ_by_environment():
    bandit = HyperBandit.grid(["tab", "net"], {"tab": (20.0, 40.0), "net": (1e-3,)}, (0.5,), seed=0)
    assert bandit.arms("tab") == [(20.0, 0.5), (40.0, 0.5)] and bandit.arms("net") == [(1e-3, 0.5)]
    assert bandit.probabilities("net").tolist() == [1.0]
    with pytest.raises(ValueError, match=r"arm must lie in \[0, 1\), got 1"):
        bandit.update("net", 1, 0.0)
    with pytest.raises(ValueError, match="for each, at least one arm"):
        HyperBandit(["a", "b"], {"a": [(1.0,)]})


def test_a_network_cohorts_batch_holds_each_steps_own_observation_in_float32():
    trainer = MetaTrainer(_config(envs=("chain_distractor",), lifetimes=2, dtype="float32", num_steps=6))
    (cohort,) = trainer.cohorts
    first = cohort.policy_obs()
    batch = trainer.collect(cohort, cohort.params)
    assert batch.obs.dtype == torch.float32 and torch.equal(batch.obs[0], first)
    assert not all(torch.equal(batch.obs[t], batch.obs[-1]) for t in range(5))  # not one buffer seen six times
    assert torch.equal(batch.bootstrap_obs, cohort.policy_obs())
    trainer.collect(cohort, cohort.params)
    assert not torch.equal(batch.bootstrap_obs, cohort.policy_obs())  # the next rollout did not overwrite it


def test_fresh_network_a2c_lifetimes_learn_the_distractor_chain_and_a_frozen_lpg_trains_them():
    from solvers.lpg.evaluate import train_lifetimes

    out = train_lifetimes("chain_distractor", [0, 1, 2, 3], rule=None, lr=1e-2, updates=150)
    assert float(out.final.mean()) > 0.3  # a uniform policy scores about 0 (the first action decides +-1)
    assert out.curves.shape == (15, 4) and out.params["dense.w"].shape == (4, 22, 16)
    lpg = LPGNetwork(TINY)
    rule = (lpg, lpg.init(torch.Generator().manual_seed(0)))
    still = train_lifetimes("chain_distractor", [0, 1], rule=rule, lr=0.0, updates=10, log_every=5)
    moved = train_lifetimes("chain_distractor", [0, 1], rule=rule, lr=5e-3, updates=10, log_every=5)
    assert bool(torch.isfinite(moved.final_rate).all()) and not torch.equal(moved.params["dense.w"], still.params["dense.w"])
    torch.testing.assert_close(moved.params["dense.w"], still.params["dense.w"], atol=0.1, rtol=0)  # Adam: <= lr a step
