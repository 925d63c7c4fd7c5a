"""LPG meta-training: the population update, Eq. 4's meta-gradient, the meta-critic, the bandit, resets, resume."""

from __future__ import annotations

import pytest
import torch
from _helpers import assert_matches_central_differences

from agents.base import Batch
from agents.unroll import unroll
from hyperenvs.tasks.registration import make_task
from solvers.lpg.bandit import HyperBandit
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.files import load_rule, save_rule
from solvers.lpg.lifetimes import expand_envs, share_lifetime
from solvers.lpg.meta import LPGAgentLearner
from solvers.lpg.network import LPGConfig, LPGNetwork
from solvers.lpg.objective import LPGObjective, TabularAgent
from solvers.lpg.population import PopulationAgent, PopulationLearner
from solvers.lpg.train import MetaTrainer

TINY = LPGConfig(hidden=4, embed=3, m=5)


def _config(**kw) -> MetaTrainConfig:
    base = dict(
        envs=("chain_short", "lpg_sparse"),
        lifetimes=4,
        envs_per_lifetime=3,
        num_steps=6,
        unroll=2,
        lifetime_updates=6,
        lpg=TINY,
        dtype="float64",
        seed=3,
        meta_lr=1e-2,
    )
    return MetaTrainConfig(**{**base, **kw})


def test_population_step_equals_one_lifetime_at_a_time():
    n, sizes, a, m, t, e = 3, (5, 3, 7), 4, 5, 6, 2
    g = torch.Generator().manual_seed(0)
    net = LPGNetwork(LPGConfig(hidden=6, embed=3, m=m))
    w = net.init(g, torch.float64)
    pop = PopulationAgent(n, sizes, a, m)  # tables of different sizes, stacked row-wise
    params = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in pop.init().items()}
    local = (torch.rand(t, n, e, generator=g) * torch.tensor(sizes).view(1, n, 1)).long()
    lifetime = torch.arange(n).view(1, n, 1).expand(t, n, e)
    batch = Batch(
        obs=pop.global_obs(local, lifetime).reshape(t, n * e),
        actions=torch.randint(a, (t, n * e), generator=g),
        log_probs=torch.zeros(t, n * e, dtype=torch.float64),
        values=torch.zeros(t, n * e, dtype=torch.float64),
        rewards=torch.randn(t, n * e, generator=g, dtype=torch.float64),
        discounts=(torch.rand(t, n * e, generator=g) > 0.2).double(),
        bootstrap_value=torch.zeros(n * e, dtype=torch.float64),
        bootstrap_obs=pop.global_obs(torch.zeros(n, e, dtype=torch.long), torch.arange(n).view(n, 1)).reshape(-1),
    )
    hp = {
        "lr": torch.tensor([20.0, 40.0, 80.0]),
        "kl_coef": torch.tensor([0.1, 0.5, 1.0]),
        "gamma": torch.tensor([0.99, 0.995, 0.9]),
    }
    new, _, metrics = PopulationLearner(pop, net, params).train_step(params, {}, batch, hp, {"lpg": w})
    for j in range(n):
        cols = slice(j * e, (j + 1) * e)
        own = Batch(
            obs=local[:, j],
            actions=batch.actions[:, cols],
            log_probs=batch.log_probs[:, cols],
            values=batch.values[:, cols],
            rewards=batch.rewards[:, cols],
            discounts=batch.discounts[:, cols],
            bootstrap_value=batch.bootstrap_value[cols],
            bootstrap_obs=batch.bootstrap_obs[cols] - int(pop.offsets[j]),
        )
        single = {k: v[pop.block(j)].clone() for k, v in params.items()}
        learner = LPGAgentLearner(LPGObjective(TabularAgent(sizes[j], a, m), net), single, "sgd")
        hj = {k: float(v[j]) for k, v in hp.items()}
        ref, _, ref_metrics = learner.train_step(single, learner.opt_state, own, hj, {"lpg": w})
        for k in params:
            torch.testing.assert_close(new[k][pop.block(j)], ref[k].detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(metrics["prediction"][j], ref_metrics["prediction"], rtol=1e-10, atol=1e-12)


def test_masked_actions_are_never_taken_and_get_no_gradient():
    pop = PopulationAgent(2, 3, 4, 5)
    pop.action_mask[1, 2:] = False
    params = pop.init()
    logits, _ = pop.forward(params, torch.tensor([0, 4]))  # lifetime 0's state 0, lifetime 1's state 1
    probs = torch.softmax(logits, -1)
    assert probs[1, 2:].sum() == 0 and torch.allclose(probs[1, :2], torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.allclose(probs[0], torch.full((4,), 0.25, dtype=torch.float64))


def test_tables_stack_row_wise_with_each_lifetimes_own_size():
    pop = PopulationAgent(3, [4, 2, 3], 2, 5)
    assert pop.num_rows == 9 and pop.offsets.tolist() == [0, 4, 6] and pop.block(2) == slice(6, 9)
    assert pop.global_obs(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 2])).tolist() == [1, 5, 8]
    assert pop.row_lifetime.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match=r"one size per lifetime \(3\), got 2"):
        PopulationAgent(3, [4, 2], 2, 5)
    with pytest.raises(ValueError, match="num_states must be >= 1, got 0"):
        PopulationAgent(2, [4, 0], 2, 5)


def test_meta_gradient_of_eq4_through_two_updates_matches_central_differences():
    trainer = MetaTrainer(_config())
    (cohort,) = trainer.cohorts
    hp = trainer.hparams()
    zero = {k: v.detach() for k, v in cohort.params.items()}
    batches = [trainer.collect(cohort, zero) for _ in range(3)]
    assert any(bool((b.discounts == 0).any()) for b in batches)

    def loss(weights):
        learner = PopulationLearner(cohort.agent, trainer.network, zero)
        out = unroll(learner, batches[:2], hp, {"lpg": weights}, steps=2)
        return trainer.meta_loss(cohort, out, batches[2])[0].mean()

    assert_matches_central_differences(loss, trainer.weights, ("phi0.w", "lstm.w", "pi.b", "y.w", "y.b"))


def test_the_meta_critic_is_trained_and_its_loss_falls():
    def critic_losses(train: bool) -> list[float]:
        trainer = MetaTrainer(_config(envs=("chain_short",), lifetime_updates=100, train_critic=train))
        return [trainer.step()["critic_loss_last"] for _ in range(6)], trainer

    trained, t1 = critic_losses(True)
    frozen, t2 = critic_losses(False)
    assert bool((t2.cohorts[0].critic == 0).all()) and bool((t1.cohorts[0].critic != 0).any())
    assert sum(trained[-3:]) < 0.5 * sum(frozen[-3:])
    assert sum(trained[-3:]) / 3 < trained[0]  # falls from its first value


def test_bandit_moves_to_the_better_arm_on_a_rigged_two_arm_case():
    bandit = HyperBandit(["e"], [(20.0, 0.5), (80.0, 0.5)], tau=0.1, rho=0.2, seed=0)
    assert torch.allclose(bandit.probabilities("e"), torch.tensor([0.5, 0.5], dtype=torch.float64))
    picks = []
    for _ in range(40):
        arm = bandit.sample("e")
        picks.append(arm)
        bandit.update("e", arm, 1.0 if arm == 1 else 0.0)  # arm 1 always ends its lifetime better
    p = bandit.probabilities("e")
    assert p[1] > 0.99 and sum(picks[-10:]) >= 9
    # Eq. 6 by hand: R = mean of the last 10 returns, bonus rho / sqrt(N).
    n0, n1 = bandit.counts["e"]
    logits = torch.tensor([0.0 + 0.2 / n0**0.5, 1.0 + 0.2 / n1**0.5], dtype=torch.float64) / 0.1
    torch.testing.assert_close(p, torch.softmax(logits, 0))
    with pytest.raises(ValueError, match="not one of the bandit"):
        bandit.probabilities("other")


def test_lifetimes_share_their_draws_and_envs_expand():
    task = make_task("lpg_sparse", 5, seed=1)
    assert not bool((task.layout == task.layout[:1]).all())  # make_task draws one layout per instance
    share_lifetime(task, torch.arange(5))
    assert bool((task.layout == task.layout[:1]).all())
    chain = make_task("chain_long", 3, seed=[2, 3], lifetimes=2)
    before = chain.length[:3].clone()
    share_lifetime(chain, torch.arange(3, 6))
    assert bool((chain.length[3:] == chain.length[3]).all()) and torch.equal(chain.length[:3], before)
    assert expand_envs("tabular,chain_short")[-1] == "chain_short" and len(expand_envs("tabular,chains")) == 9
    assert expand_envs("random,chain_distractor")[-2:] == ("lpg_random_very_dense", "chain_distractor")
    with pytest.raises(ValueError, match="envs: 'cartpole' is not an LPG training environment"):
        expand_envs("cartpole")


def test_lifetime_end_updates_the_bandit_and_entropy_collapse_resets_without_it():
    trainer = MetaTrainer(_config())
    (cohort,) = trainer.cohorts
    cohort.params["pi"][cohort.agent.block(1)] += 3.0
    trainer.age[0] = trainer.length[0]
    ended = trainer._end_lifetimes(torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    assert ended == {"ended": 1, "collapsed": 1}
    assert trainer.births.tolist() == [2, 2, 1, 1] and trainer.age.tolist()[:2] == [0, 0]
    assert bool((cohort.params["pi"][cohort.agent.block(1)] == 0).all())
    assert sum(trainer.bandit.counts[trainer.slot_env[0]]) == 1 and sum(trainer.bandit.counts[trainer.slot_env[1]]) == 0


def test_meta_training_is_deterministic_and_resume_equals_uninterrupted(tmp_path):
    a = MetaTrainer(_config())
    for _ in range(3):
        a.step()
    b = MetaTrainer(_config())
    b.step()
    torch.save(b.state_dict(), tmp_path / "ckpt.pt")
    c = MetaTrainer(_config())
    c.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    c.step()
    last = c.step()
    for k in a.weights:
        torch.testing.assert_close(c.weights[k], a.weights[k], rtol=0, atol=0)
    for k in a.cohorts[0].params:
        torch.testing.assert_close(c.cohorts[0].params[k], a.cohorts[0].params[k], rtol=0, atol=0)
    assert last["iteration"] == 3 and a.iteration == 3 == c.iteration
    assert a.births.sum() > a.config.lifetimes  # lifetimes ended and restarted on the way
    with pytest.raises(ValueError, match="other options"):
        MetaTrainer(_config(seed=4)).load_state_dict(b.state_dict())
    old = {k: v for k, v in b.state_dict().items() if k != "format"}  # written before the row-wise tables
    with pytest.raises(ValueError, match="state is of format 1, this MetaTrainer reads format 4"):
        MetaTrainer(_config()).load_state_dict(old)


def test_rule_files_round_trip_and_mismatches_name_the_file(tmp_path):
    net = LPGNetwork(TINY)
    w = net.init(torch.Generator().manual_seed(0))
    path = save_rule(tmp_path / "rule.pt", TINY, w, {"kl_coef": 0.5})
    loaded, weights, hparams = load_rule(path)
    assert loaded.config == TINY and hparams == {"kl_coef": 0.5}
    torch.testing.assert_close(weights["lstm.w"], w["lstm.w"])
    state = torch.load(path, weights_only=True)
    state["config"]["hidden"] = 8
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt.*lstm\.w has shape"):
        load_rule(tmp_path / "bad.pt")
    torch.save({"format": "optim4rl-v1"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt is not an LPG rule"):
        load_rule(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not exist"):
        load_rule(tmp_path / "missing.pt")


def test_fresh_tabular_a2c_lifetimes_learn_the_short_chain():
    from solvers.lpg.evaluate import train_lifetimes

    out = train_lifetimes("chain_short", [0, 1, 2], rule=None, lr=40.0, updates=60, envs_per_lifetime=4)
    assert tuple(out.curves.shape) == (6, 3) and float(out.final.median()) > 0.8  # most lifetimes solve it
    lpg = LPGNetwork(TINY)
    rand = train_lifetimes(
        "chain_short", [0, 1, 2], rule=(lpg, lpg.init(torch.Generator().manual_seed(0))), lr=40.0, updates=10, envs_per_lifetime=4
    )
    assert tuple(rand.params["y"].shape) == (3 * (2 + 4 * 30), TINY.m)
