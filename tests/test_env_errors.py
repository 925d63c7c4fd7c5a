"""Bad construction arguments and bad actions: clear errors, and an unharmed lifetime afterwards."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from _helpers import CARTPOLE, assert_params_equal, make_tiny, params_of

import hyperenvs


def test_unknown_id_is_gymnasiums_error():
    with pytest.raises(gym.error.NameNotFound, match=r"Environment `PPO-NoSuchTask` doesn't exist in namespace HyperRL"):
        gym.make("HyperRL/PPO-NoSuchTask-v0")
    with pytest.raises(KeyError, match=r"no HyperRL id 'PPO-NoSuchTask-v0'; `hyperrl list` shows the \d+ registered ids"):
        hyperenvs.get("PPO-NoSuchTask-v0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hyperparameters": {"momentum": None}}, r"unknown hyperparameter 'momentum'; this id can control \[.*'lr'"),
        ({"hyperparameters": ["lr", "momentum"]}, r"unknown hyperparameter 'momentum'"),
        ({"hyperparameters": "lr"}, r"hyperparameters must be a list of names or a mapping, got the string 'lr'"),
        ({"hyperparameters": []}, r"hyperparameters must name at least one of"),
        ({"hyperparameters": {"lr": (1e-2, 1e-4)}}, r"hyperparameter 'lr': low \(0.01\) must be < high \(0.0001\)"),
        ({"hyperparameters": {"clip": (0.3, 0.3)}}, r"hyperparameter 'clip': low \(0.3\) must be < high \(0.3\)"),
        ({"hyperparameters": {"lr": (0.0, 1e-3)}}, r"'lr': a log-scale range needs low > 0"),
        ({"defaults": {"momentum": 0.9}}, r"unknown hyperparameter 'momentum' in defaults; PPOHyperparams has \["),
        ({"total_timesteps": 0}, r"total_timesteps must be a positive integer, got 0"),
        ({"total_timesteps": -100}, r"total_timesteps must be a positive integer, got -100"),
        ({"total_timesteps": 1.5}, r"total_timesteps must be a positive integer, got 1.5"),
        ({"iterations_per_step": 0}, r"iterations_per_step must be a positive integer, got 0"),
        ({"num_envs": 0}, r"num_envs must be a positive integer, got 0"),
        ({"observe": ["projection", "histogram"]}, r"observe must name one or more of \['fitness', 'projection', 'statistics'\]"),
        ({"observe": []}, r"observe must name one or more of"),
        (
            {"observe": ["fitness"]},
            r"observe parts \['fitness'\] do not fit a PPOLearner; it can give \['projection', 'statistics'\]",
        ),
        ({"defaults": {"lr": -1.0}}, r"defaults\['lr'\] must be finite and >= 0, got -1.0"),
        ({"defaults": {"gamma": float("nan")}}, r"defaults\['gamma'\] must be finite and >= 0, got nan"),
        ({"defaults": {"ent_coef": "much"}}, r"defaults\['ent_coef'\] must be a number, got 'much'"),
        ({"device": "tpu:x"}, r"device must be a torch device such as 'cpu' or 'cuda', got 'tpu:x'"),
        ({"reward": "sharpe"}, r"reward must be one of \['final_return', 'improvement', 'mean_return'\], got 'sharpe'"),
        ({"config": {"num_layers": 3}}, r"unknown config fields \['num_layers'\]; PPOConfig has \["),
        ({"config": {"update_rule": "lamb"}}, r"update_rule must be one of \['adam', 'rmsprop', 'sgd'\] or an Upd.*, got 'lamb'"),
        ({"config": {"num_steps": 0}}, r"num_steps must be >= 1, got 0"),
        ({"action_type": "box"}, r"action_type must be 'continuous' or 'discrete', got 'box'"),
        ({"action_type": "discrete", "bins": {"gamma": 3}}, r"bins given for unknown hyperparameters \['gamma'\]"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(CARTPOLE, **kwargs)


def test_observe_may_be_one_name():
    env = make_tiny(observe="statistics")
    assert list(env.observation_space.spaces) == ["statistics"]
    env.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_fails_at_make():
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but torch sees no CUDA device here; use device='cpu'"):
        gym.make(CARTPOLE, device="cuda")


def test_step_before_reset():
    env = hyperenvs.HyperEnv(CARTPOLE, total_timesteps=16, num_envs=2, config={"num_steps": 8})
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\): call env.reset\(seed=...\)"):
        env.step(np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match=r"snapshot\(\) called before reset\(\)"):
        env.snapshot()
    env.close()
    # Through gym.make, Gymnasium's order enforcing answers first, also naming reset.
    wrapped = make_tiny()
    with pytest.raises(gym.error.ResetNeeded, match=r"Cannot call env.step\(\) before calling env.reset\(\)"):
        wrapped.step(np.zeros(4, np.float32))
    wrapped.close()


def test_step_after_the_lifetime_ended(tiny_env):
    tiny_env.reset(seed=0)
    truncated = False
    while not truncated:
        truncated = tiny_env.step(np.zeros(4, np.float32))[3]
    with pytest.raises(
        RuntimeError, match=r"step\(\) called after the lifetime ended \(terminated or truncated\): call env.reset\(\)"
    ):
        tiny_env.step(np.zeros(4, np.float32))
    tiny_env.reset(seed=0)
    assert tiny_env.step(np.zeros(4, np.float32))[-1]["timesteps"] == 16


def test_step_after_close():
    env = make_tiny()
    env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match=r"before reset\(\)"):
        env.unwrapped.step(np.zeros(4, np.float32))


BAD_CONTINUOUS = [
    (
        np.zeros(3, np.float32),
        r"action has shape \(3,\); expected \(4,\), one entry for each of \['lr', 'clip', 'gae_lambda', 'minibatch_size'\]",
    ),
    (np.zeros((1, 4), np.float32), r"action has shape \(1, 4\); expected \(4,\)"),
    (np.float32(0.0), r"action has shape \(\); expected \(4,\)"),
    (["a", "b", "c", "d"], r"action has dtype <U1; expected real numbers for \['lr', 'clip', 'gae_lambda', 'minibatch_size'\]"),
    (np.array([0, 0, np.nan, 0], np.float32), r"action for hyperparameter 'gae_lambda' is nan; it must be finite"),
    (np.array([np.inf, 0, 0, 0], np.float32), r"action for hyperparameter 'lr' is inf; it must be finite"),
    (np.array([0, 1.5, 0, 0], np.float32), r"action for hyperparameter 'clip' is 1.5; it must lie in \[-1, 1\]"),
    (np.array([0, 0, 0, -2], np.float32), r"action for hyperparameter 'minibatch_size' is -2.0; it must lie in \[-1, 1\]"),
]


@pytest.mark.parametrize(
    ("action", "match"), BAD_CONTINUOUS, ids=["short", "2d", "scalar", "strings", "nan", "inf", "above", "below"]
)
def test_bad_action_leaves_the_lifetime_untouched(tiny_env, action, match):
    tiny_env.reset(seed=0)
    tiny_env.step(np.zeros(4, np.float32))
    before_params = params_of(tiny_env)
    before_t = tiny_env.unwrapped.learner.timesteps
    before_gen = tiny_env.unwrapped.learner.generator.get_state()
    with pytest.raises(ValueError, match=match):
        tiny_env.step(action)
    assert tiny_env.unwrapped.learner.timesteps == before_t == 16
    assert torch.equal(tiny_env.unwrapped.learner.generator.get_state(), before_gen)
    assert_params_equal(params_of(tiny_env), before_params)
    *_, info = tiny_env.step(np.zeros(4, np.float32))
    assert info["timesteps"] == 32


def test_bad_action_does_not_change_the_future():
    """A rejected action is as if it was never sent: the trajectory matches one without it."""
    clean, noisy = make_tiny(), make_tiny()
    clean.reset(seed=4), noisy.reset(seed=4)
    with pytest.raises(ValueError):
        noisy.step(np.full(4, np.nan, np.float32))
    for _ in range(2):
        a = clean.step(np.full(4, 0.3, np.float32))
        b = noisy.step(np.full(4, 0.3, np.float32))
        assert a[1] == b[1] and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    clean.close(), noisy.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([3, 0]), r"action for hyperparameter 'lr' is 3.0; it must be an integer bin in \[0, 2\]"),
        (np.array([0, -1]), r"action for hyperparameter 'clip' is -1.0; it must be an integer bin in \[0, 1\]"),
        (np.array([0.5, 0.0]), r"action for hyperparameter 'lr' is 0.5; it must be an integer bin"),
        (np.array([0]), r"action has shape \(1,\); expected \(2,\)"),
    ],
)
def test_bad_discrete_bin(action, match):
    env = make_tiny(action_type="discrete", hyperparameters=["lr", "clip"], bins={"lr": 3, "clip": 2})
    env.reset(seed=0)
    before = params_of(env)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    assert env.unwrapped.learner.timesteps == 0
    assert_params_equal(params_of(env), before)
    assert env.step(np.array([2, 1]))[-1]["timesteps"] == 16
    env.close()
