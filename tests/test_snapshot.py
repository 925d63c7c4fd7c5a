"""Forking a lifetime: snapshot/restore and state_dict round trips continue bit-for-bit on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import assert_params_equal, make_tiny, obs_equal, params_of, strip_timing
from gymnasium.utils.env_checker import data_equivalence

from agents.a2c import A2CConfig, A2CLearner
from agents.ppo import PPOConfig, PPOLearner

SNAPSHOT_IDS = [
    "HyperRL/PPO-CartPole-v0",
    "HyperRL/PPO-HalfCheetah-v0",
    "HyperRL/A2C-Hopper-v0",
    "HyperRL/PPO-CartPole-v1",
    "HyperRL/A2C-Pendulum-v1",
]


def actions(env, k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for _ in range(k)]


def play(env, acts) -> list:
    out = []
    for a in acts:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, strip_timing(info)))
    return out


@pytest.mark.parametrize("env_id", SNAPSHOT_IDS)
def test_restore_replays_the_same_steps(env_id):
    env = make_tiny(env_id, hyper_steps=8)
    env.reset(seed=0)
    play(env, actions(env, 2))
    snap = env.unwrapped.snapshot()
    obs_at_snapshot = env.unwrapped._observe()
    acts = actions(env, 3)
    first = play(env, acts)
    restored_obs = env.unwrapped.restore(snap)
    assert obs_equal(restored_obs, obs_at_snapshot)
    second = play(env, acts)
    assert data_equivalence(first, second, exact=True)
    # a snapshot can be restored any number of times
    env.unwrapped.restore(snap)
    assert data_equivalence(first, play(env, acts), exact=True)
    env.close()


def test_restore_into_another_env_instance():
    source, target = make_tiny(hyper_steps=8), make_tiny(hyper_steps=8)
    source.reset(seed=0)
    target.reset(seed=99)  # a different lifetime: everything must come from the snapshot
    play(source, actions(source, 2))
    snap = source.unwrapped.snapshot()
    assert obs_equal(target.unwrapped.restore(snap), source.unwrapped._observe())
    acts = actions(source, 3)
    assert data_equivalence(play(source, acts), play(target, acts), exact=True)
    source.close(), target.close()


def test_snapshot_is_independent_of_later_training():
    env = make_tiny(hyper_steps=8)
    env.reset(seed=0)
    env.step(np.zeros(4, np.float32))
    before = params_of(env)
    snap = env.unwrapped.snapshot()
    play(env, actions(env, 2))
    for k, v in before.items():
        assert torch.equal(snap["learner"]["params"][k], v)  # not aliased to live tensors
    env.unwrapped.restore(snap)
    assert_params_equal(params_of(env), before)
    assert env.unwrapped.learner.timesteps == 16


def test_restore_an_ended_lifetime_and_a_live_one():
    env = make_tiny(hyper_steps=2)
    env.reset(seed=0)
    live = env.unwrapped.snapshot()
    play(env, actions(env, 2))
    ended = env.unwrapped.snapshot()
    with pytest.raises(RuntimeError, match="after the lifetime ended"):
        env.step(np.zeros(4, np.float32))
    env.unwrapped.restore(live)
    assert env.step(np.zeros(4, np.float32))[-1]["timesteps"] == 16
    env.unwrapped.restore(ended)
    with pytest.raises(RuntimeError, match="after the lifetime ended"):
        env.step(np.zeros(4, np.float32))
    env.close()


LEARNERS = [
    (PPOLearner, PPOConfig(num_envs=2, num_steps=8), {"epochs": 2, "minibatch_size": 8}),
    (A2CLearner, A2CConfig(num_envs=2, num_steps=8), {}),
    (
        PPOLearner,
        PPOConfig(task="HalfCheetah-v5", num_envs=1, num_steps=16, normalize_obs=True, normalize_reward=True),
        {"epochs": 1, "minibatch_size": 8},
    ),
]


@pytest.mark.parametrize(("cls", "config", "hp"), LEARNERS, ids=["ppo-cartpole", "a2c-cartpole", "ppo-halfcheetah"])
def test_state_dict_through_torch_save_weights_only(tmp_path, cls, config, hp):
    original = cls(config, seed=1)
    for _ in range(2):
        original.iterate(hp)
    path = tmp_path / "learner.pt"
    torch.save(original.state_dict(), path)
    fresh = cls(config, seed=2)  # different seed: nothing may leak from construction
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.timesteps == original.timesteps and fresh.iterations == original.iterations
    for _ in range(2):
        a, b = original.iterate(hp), fresh.iterate(hp)
        assert a.episode_returns == b.episode_returns
        assert a.losses == b.losses and a.stats == b.stats
        for k, v in original.parameters().items():
            assert torch.equal(v, fresh.parameters()[k]), k
    for ga, gb in zip(original.gradient_history(), fresh.gradient_history()):
        for k in ga:
            assert torch.equal(ga[k], gb[k])
    original.close(), fresh.close()


def test_load_state_dict_rejects_other_shapes():
    small = PPOLearner(PPOConfig(num_envs=2, num_steps=8, hidden=(8,)), seed=0)
    big = PPOLearner(PPOConfig(num_envs=2, num_steps=8), seed=0)
    with pytest.raises(ValueError, match=r"state has parameters \[.*\], this learner has \["):
        big.load_state_dict({"params": {"x": torch.zeros(1)}})
    small.close(), big.close()


def test_evaluate_leaves_training_untouched():
    config = PPOConfig(num_envs=2, num_steps=8)
    a, b = PPOLearner(config, seed=4), PPOLearner(config, seed=4)
    a.iterate({"epochs": 1})
    b.iterate({"epochs": 1})
    returns = a.evaluate(2)
    assert len(returns) == 2 and all(r >= 1 for r in returns)
    assert a.iterate({"epochs": 1}).losses == b.iterate({"epochs": 1}).losses
    for k, v in a.parameters().items():
        assert torch.equal(v, b.parameters()[k])
    with pytest.raises(ValueError, match="episodes must be >= 1, got 0"):
        a.evaluate(0)
    a.close(), b.close()


def test_restore_without_engine_state_starts_fresh_episodes():
    """Box2D cannot save its state: a restore resets the inner envs and drops the old episodes' bookkeeping."""
    env = make_tiny("HyperRL/PPO-LunarLander-v0", hyper_steps=8)
    env.reset(seed=0)
    play(env, actions(env, 2))
    snap = env.unwrapped.snapshot()
    assert "envs" not in snap["learner"]
    learner = env.unwrapped.learner
    env.unwrapped.restore(snap)
    collector = learner.collector
    fresh_obs, _ = learner.envs.reset(seed=learner.fresh_episode_seed())
    np.testing.assert_array_equal(collector._obs, fresh_obs)  # the first action sees the envs' real observation
    assert not collector._ep_return.any() and not collector._ep_length.any()
    # normalisation statistics still come from the snapshot
    saved = snap["learner"]["collector"]
    if collector.obs_rms is not None:
        np.testing.assert_array_equal(collector.obs_rms.mean, saved["obs_rms"]["mean"].numpy())
    # and the fork is still deterministic
    acts = actions(env, 2)
    env.unwrapped.restore(snap)
    first = play(env, acts)
    env.unwrapped.restore(snap)
    assert data_equivalence(first, play(env, acts), exact=True)
    env.close()


@pytest.mark.parametrize(
    ("env_id", "reward"),
    [
        ("HyperRL/PPO-CartPole-v0", "improvement"),
        ("HyperRL/A2C-HalfCheetah-v0", "mean_return"),
        ("HyperRL/ES-Swimmer-v0", "final_return"),
    ],
)
def test_a_snapshot_saved_to_a_file_resumes_the_lifetime_in_a_new_env(tmp_path, env_id, reward):
    source = make_tiny(env_id, hyper_steps=6, reward=reward)
    source.reset(seed=0)
    play(source, actions(source, 2))
    path = tmp_path / "lifetime.pt"
    torch.save(source.unwrapped.snapshot(), path)
    target = make_tiny(env_id, hyper_steps=6, reward=reward)
    target.reset(seed=5)
    restored = target.unwrapped.restore(torch.load(path, weights_only=True))
    assert obs_equal(restored, source.unwrapped._observe())
    acts = actions(source, 3)
    assert data_equivalence(play(source, acts), play(target, acts), exact=True)
    source.close(), target.close()
