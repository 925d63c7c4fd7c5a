"""The fused update path (agents/fused.py): the eager numbers by a hand-derived gradient, and the NumPy policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from _helpers import assert_close, count_constructions, learner_pair, ten_updates

import hyperenvs
from agents import compiled, fused
from agents import learner as learner_module
from agents.a2c import A2CConfig, A2CLearner
from agents.networks import ActorCritic, log_prob
from agents.optim import SGD
from agents.ppo import PPOConfig, PPOLearner

gym.register_envs(hyperenvs)

CARTPOLE, PENDULUM = "HyperRLTasks/CartPole-v0", "HyperRLTasks/Pendulum-v0"
PPO_HP = {"epochs": 2, "minibatch_size": 16}


def _pair(cls, config_cls, task, **config):
    """An eager and a fused learner with one seed, sharing one collected batch and generator state."""
    return learner_pair(cls, config_cls, "fused", task=task, num_envs=4, num_steps=16, **config)


def _ppo_schedule(k):  # every update moves lr, clip, lambda and the loss weights
    hp = {"lr": 1e-3 * (1 + k / 10), "clip": 0.1 + 0.02 * k, "gae_lambda": 0.9 + 0.005 * k}
    return {**PPO_HP, **hp, "ent_coef": 0.01 * (k % 3), "vf_coef": 0.25 + 0.05 * k, "max_grad_norm": 0.5 + k / 10}


def _a2c_schedule(k):
    return {"lr": 7e-4 * (1 + k / 10), "ent_coef": 0.01 * k, "vf_coef": 0.25 + 0.05 * k, "gae_lambda": 0.95 - 0.01 * k}


CASES = {
    "ppo-categorical-tanh": (PPOLearner, PPOConfig, CARTPOLE, {}, _ppo_schedule),
    "ppo-gaussian-relu": (PPOLearner, PPOConfig, PENDULUM, {"activation": "relu", "hidden": (16, 8)}, _ppo_schedule),
    "ppo-sgd-unnormalised": (
        PPOLearner,
        PPOConfig,
        CARTPOLE,
        {"update_rule": "sgd", "normalize_advantages": False},
        _ppo_schedule,
    ),
    "ppo-categorical-three-layers": (PPOLearner, PPOConfig, CARTPOLE, {"hidden": (8, 6, 4)}, _ppo_schedule),
    "ppo-gaussian-linear": (PPOLearner, PPOConfig, PENDULUM, {"hidden": ()}, _ppo_schedule),
    "a2c-categorical-rmsprop": (A2CLearner, A2CConfig, CARTPOLE, {}, _a2c_schedule),
    "a2c-gaussian-adam": (A2CLearner, A2CConfig, PENDULUM, {"update_rule": "adam", "hidden": (32,)}, _a2c_schedule),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_train_step_equals_eager_overten_updates(case):
    cls, config_cls, task, config, schedule = CASES[case]
    eager, fast, batch = _pair(cls, config_cls, task, **config)
    p_eager, s_eager, m_eager = ten_updates(eager, batch, schedule)
    p_fast, s_fast, m_fast = ten_updates(fast, batch, schedule)
    assert_close(p_eager, p_fast)
    assert list(p_fast) == list(p_eager)  # the network's order, not the fused steps' flat layout
    for key, value in s_eager.items():
        if isinstance(value, dict):  # Adam's or RMSProp's moments
            assert_close(value, s_fast[key])
    assert s_eager["step"] == s_fast["step"] == (10 * (s_eager["step"] // 10))
    assert_close(m_eager, m_fast, tol=1e-4, rtol=1e-5)  # Pendulum's value loss is in the thousands
    assert all(p.requires_grad and p.is_leaf for p in p_fast.values())
    # Not vacuous: the updates moved the parameters well beyond the tolerance.
    assert max((p_eager[k] - eager.params[k]).abs().max().item() for k in p_eager) > 1e-3


def test_fused_iterations_equal_eager_ones_with_their_gradient_history():
    # On a Gaussian policy the NumPy collector draws what the torch one draws, so whole iterations agree.
    small = {"task": PENDULUM, "num_envs": 4, "num_steps": 16}
    eager, fast = (PPOLearner(PPOConfig(**small, compile=c), seed=4) for c in (False, "fused"))
    for k in range(3):
        reports = [learner.iterate(_ppo_schedule(k)) for learner in (eager, fast)]
        assert reports[0].losses == pytest.approx(reports[1].losses, rel=1e-4, abs=1e-5)
    assert_close(eager.params, fast.params)
    history = eager.gradient_history(), fast.gradient_history()
    assert len(history[0]) == len(history[1]) == eager.config.grad_history
    for a, b in zip(*history, strict=True):
        assert_close(a, b)


def test_hyperparameter_changes_compile_nothing():
    env = gym.make("HyperRL/PPO-CartPole-v1", hyperparameters=["lr", "clip", "gae_lambda"], iterations_per_step=1,
                   config={"num_envs": 4, "num_steps": 16}, defaults=PPO_HP)  # fmt: skip
    env.reset(seed=0)
    assert env.unwrapped.learner.config.compile == "auto"  # the -v1 ids' default
    graphs = compiled.COMPILES.graphs
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        assert not (terminated or truncated) and info["compile_seconds"] == 0.0
        seen.add(tuple(info["hyperparameters"].values()))
    assert len(seen) == 20 and compiled.COMPILES.graphs == graphs


def test_auto_takes_the_fused_path_on_cpu(monkeypatch):
    import agents.learner

    built = count_constructions(monkeypatch, agents.learner, "FusedSteps")
    learner = PPOLearner(PPOConfig(task=CARTPOLE, num_envs=4, num_steps=16, compile="auto"), seed=0)
    assert learner.collector.fused_policy
    learner.iterate(PPO_HP)
    assert built == [1]
    big = PPOLearner(PPOConfig(task=CARTPOLE, num_envs=4, num_steps=16, hidden=(512, 512), compile="auto"), seed=0)
    big.iterate({"epochs": 1, "minibatch_size": 64})
    assert built == [1] and not big.collector.fused_policy  # over AUTO_MAX_PARAMS: eager
    plain = PPOLearner(PPOConfig(task=CARTPOLE, num_envs=4, num_steps=16), seed=0)
    assert not plain.collector.fused_policy  # compile=False keeps the torch collector


def test_fused_setting_errors():
    class OwnSGD(SGD):
        pass

    with pytest.raises(ValueError, match="compile='fused', but update rule OwnSGD has no in-place form"):
        PPOLearner(PPOConfig(task=CARTPOLE, num_envs=2, num_steps=8, update_rule=OwnSGD(), compile="fused"), seed=0)
    with pytest.raises(ValueError, match="compile='fused' needs PPO's own objective"):
        PPOLearner(PPOConfig(task=CARTPOLE, num_envs=2, num_steps=8, objective="lpg", compile="fused"), seed=0)
    net = ActorCritic(obs_dim=4, action_dim=2, discrete=True)
    params = {k: v.double() for k, v in net.init(torch.Generator().manual_seed(0)).items()}
    assert "CPU float32" in fused.fusable(net, SGD(), params)


def _collect_both(task, steps=64):
    """One collection with the torch policy and one with the NumPy policy, from the same seeds."""
    out = []
    for fused_policy in (False, True):
        learner = PPOLearner(PPOConfig(task=task, num_envs=4, num_steps=steps, normalize_obs=True), seed=5)
        learner.collector.fused_policy = fused_policy
        out.append(learner.collector.collect(learner.params, steps, 0.99))
    return out


def test_numpy_policy_collects_the_torch_batch_for_gaussian_policies():
    # Gaussian actions come from the same torch.randn draw: the whole batch and its episodes agree.
    (torch_batch, torch_episodes), (np_batch, np_episodes) = _collect_both(PENDULUM, steps=220)  # past a time limit
    for name in ("obs", "actions", "log_probs", "values", "rewards", "discounts", "bootstrap_value"):
        torch.testing.assert_close(getattr(np_batch, name), getattr(torch_batch, name), atol=1e-5, rtol=1e-5, msg=name)
    assert len(np_episodes) == len(torch_episodes) == 4
    assert [e.length for e in np_episodes] == [e.length for e in torch_episodes]
    np.testing.assert_allclose([e.ret for e in np_episodes], [e.ret for e in torch_episodes], rtol=1e-5)


def test_numpy_policy_draws_from_the_softmax():
    net = ActorCritic(obs_dim=3, action_dim=4, discrete=True)
    g = torch.Generator().manual_seed(0)
    params = {k: v * 400 if k.startswith("actor.2") else v for k, v in net.init(g).items()}  # far from uniform
    obs = torch.randn(1, 3, generator=g).expand(20_000, 3).contiguous()
    policy = fused.FusedPolicy(net, params, torch.Generator().manual_seed(1))
    out = (torch.empty(20_000, 3), torch.empty(20_000, dtype=torch.long), torch.empty(20_000), torch.empty(20_000))
    actions = torch.from_numpy(policy.act(obs.numpy(), *(t.numpy() for t in out)))
    logits, value = net.forward(params, obs[:1])
    probs = torch.softmax(logits[0], -1)
    freq = torch.bincount(actions, minlength=4).double() / 20_000
    assert probs.min() < 0.1 and probs.max() > 0.4
    torch.testing.assert_close(freq, probs.double(), atol=0.015, rtol=0)  # about 4 standard errors
    torch.testing.assert_close(out[3], log_prob(logits.expand(20_000, 4), params, actions, True), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], value.expand(20_000), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0], obs)


@pytest.mark.parametrize("kind", ["a2c", "ppo"])
def test_iterations_step_on_in_the_same_buffers_and_see_in_place_changes(monkeypatch, kind):
    # Repacking every iteration (holds() always False) is the reference; reusing the buffers must give the same
    # parameters bit for bit, and an in-place change of the learner's parameters must reach the next update.
    cls, config_cls = (A2CLearner, A2CConfig) if kind == "a2c" else (PPOLearner, PPOConfig)
    config = config_cls(task=CARTPOLE, num_envs=4, num_steps=8, compile="fused")
    reused, repacked = cls(config, seed=2), cls(config, seed=2)
    built = count_constructions(monkeypatch, learner_module, "FusedSteps")
    hp = _a2c_schedule(1) if kind == "a2c" else _ppo_schedule(1)
    for k in range(6):
        if k == 3:
            for learner in (reused, repacked):
                with torch.no_grad():
                    learner.params["critic.0.weight"].mul_(0.5)
        reused.iterate(hp)
        n = len(built)
        with monkeypatch.context() as m:
            m.setattr(fused.FusedSteps, "holds", lambda self, params, state: False)
            repacked.iterate(hp)
        assert len(built) == n + 1  # the reference packed afresh
        assert_close(reused.params, repacked.params, tol=0.0)
        for key, value in reused.opt_state.items():
            if isinstance(value, dict):
                assert_close(value, repacked.opt_state[key], tol=0.0)
            else:
                assert value == repacked.opt_state[key]
    # one pack for the reused learner at the start and one after the in-place change, against six
    assert len(built) == 6 + 2
