"""The compiled gradient of the fused steps (agents/native/fused_step.c): the NumPy step's numbers, and a clean
fall-back to that step where it cannot be built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import assert_close, learner_pair, ten_updates

from agents import fused, native
from agents.a2c import A2CConfig, A2CLearner
from agents.ppo import PPOConfig, PPOLearner

CARTPOLE = "HyperRLTasks/CartPole-v0"
needs_native = pytest.mark.skipif(native.fused_step() is None, reason="no C compiler or no 64-bit OpenBLAS in NumPy")


def _schedule(k, ppo=True):  # every update moves the step size, the clip and the loss weights; the entropy on and off
    hp = {
        "lr": 1e-3 * (1 + k / 10),
        "clip": 0.1 + 0.02 * k,
        "gae_lambda": 0.95,
        "ent_coef": 0.01 * (k % 3),
        "vf_coef": 0.25 + 0.05 * k,
        "max_grad_norm": 0.5 + k / 10,
        "epochs": 2,
        "minibatch_size": 16,
    }
    return hp if ppo else {k: v for k, v in hp.items() if k not in ("clip", "epochs", "minibatch_size")}


CASES = {
    "ppo-tanh-64-64": (PPOLearner, PPOConfig, {}),
    "ppo-relu-three-layers": (PPOLearner, PPOConfig, {"activation": "relu", "hidden": (8, 6, 4)}),
    "ppo-linear": (PPOLearner, PPOConfig, {"hidden": ()}),
    "a2c-rmsprop": (A2CLearner, A2CConfig, {}),
}


@needs_native
@pytest.mark.parametrize("case", list(CASES))
def test_the_compiled_gradient_gives_the_numpy_steps_numbers(case, monkeypatch):
    cls, config_cls, config = CASES[case]
    _, compiled, batch = learner_pair(cls, config_cls, "fused", task=CARTPOLE, num_envs=4, num_steps=16, **config)
    _, plain, _ = learner_pair(cls, config_cls, "fused", task=CARTPOLE, num_envs=4, num_steps=16, **config)
    schedule = _schedule if cls is PPOLearner else lambda k: _schedule(k, ppo=False)
    p_compiled, s_compiled, m_compiled = ten_updates(compiled, batch, schedule)
    assert compiled._fused._native is not None  # the compiled gradient did the steps
    monkeypatch.setattr(fused.NativeGradient, "build", classmethod(lambda cls, steps: None))
    p_plain, s_plain, m_plain = ten_updates(plain, batch, schedule)
    assert plain._fused._native is None
    assert_close(p_compiled, p_plain)
    for key, value in s_plain.items():
        if isinstance(value, dict):  # Adam's or RMSProp's moments
            assert_close(s_compiled[key], value)
    assert_close(m_compiled, m_plain, tol=1e-5, rtol=1e-5)
    assert max((p_plain[k] - plain.params[k]).abs().max().item() for k in p_plain) > 1e-3  # the steps moved things


@needs_native
def test_an_epoch_of_uneven_minibatches_is_laid_out_step_by_step():
    learner = PPOLearner(PPOConfig(task=CARTPOLE, num_envs=4, num_steps=16, compile="fused"), seed=0)
    steps = fused.FusedSteps("ppo", learner.objective, learner.update_rule, learner.params, learner.opt_state, 0)
    rng = np.random.default_rng(0)

    def rows(m):
        return {
            "obs": rng.standard_normal((m, 4)).astype(np.float32),
            "actions": rng.integers(0, 2, m),  # separate arrays: no common stride between the minibatches
            "log_probs": np.full(m, -0.7, np.float32),
            "advantages": rng.standard_normal(m).astype(np.float32),
            "returns": rng.standard_normal(m).astype(np.float32),
        }

    minibatches = [rows(8) for _ in range(3)]
    for mb in minibatches:
        mb["index"] = (mb["actions"] + np.arange(8) * 2).astype(np.intp)
    hp = {"lr": 1e-3, "clip": 0.2, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5}
    compiled_metrics, compiled_norms = steps._steps(minibatches, hp)
    again = fused.FusedSteps("ppo", learner.objective, learner.update_rule, learner.params, learner.opt_state, 0, native=False)
    plain_metrics, plain_norms = again._steps(minibatches, hp)
    torch.testing.assert_close(compiled_norms, plain_norms, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled_metrics, plain_metrics, atol=1e-5, rtol=1e-5)


def test_no_compiler_or_asked_off_means_the_numpy_step(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERRL_CACHE", str(tmp_path))
    native.fused_step.cache_clear()
    try:
        monkeypatch.setenv("HYPERRL_NATIVE", "0")
        assert native.fused_step() is None
        native.fused_step.cache_clear()
        monkeypatch.setenv("HYPERRL_NATIVE", "1")
        monkeypatch.setenv("CC", "no-such-compiler-here")
        assert native.fused_step() is None
        learner = PPOLearner(PPOConfig(task=CARTPOLE, num_envs=4, num_steps=16, compile="fused"), seed=0)
        batch, _ = learner.collector.collect(learner.params, 16, 0.99)
        learner.train_step(learner.params, learner.opt_state, batch, _schedule(0))
        assert learner._fused._native is None  # and the step ran in NumPy
    finally:
        native.fused_step.cache_clear()


@needs_native
@pytest.mark.parametrize("hidden, activation", [((64, 64), "tanh"), ((8, 6, 4), "relu"), ((), "tanh")])
def test_the_compiled_policy_step_draws_what_the_numpy_one_draws(hidden, activation):
    from agents.networks import ActorCritic

    net = ActorCritic(obs_dim=4, action_dim=3, discrete=True, hidden=hidden, activation=activation)
    params = {k: v * 3 for k, v in net.init(torch.Generator().manual_seed(0)).items()}  # sharper than at init
    obs = np.random.default_rng(1).standard_normal((64, 4)).astype(np.float32)
    outs = []
    for compiled in (True, False):
        policy = fused.FusedPolicy(net, params, torch.Generator().manual_seed(5))
        assert policy._native is not None  # the compiled step is there to compare
        if not compiled:
            policy._native = None
        rows = (np.empty_like(obs), np.empty(64, np.int64), np.empty(64, np.float32), np.empty(64, np.float32))
        policy.act(obs, *rows)
        outs.append(rows)
    (o1, a1, v1, l1), (o2, a2, v2, l2) = outs
    assert np.array_equal(o1, o2) and np.array_equal(a1, a2) and len(set(a1.tolist())) == 3
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    np.testing.assert_allclose(l1, l2, atol=1e-5)
