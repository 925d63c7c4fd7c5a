"""HyperEnv through gym.make: spaces, info, budget, rewards, observation parts, wrappers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _helpers import CARTPOLE, make_tiny

import hyperenvs
from hyperenvs.observers import STAT_KEYS


def test_spaces_of_the_default_id(tiny_env):
    env = tiny_env
    space = env.unwrapped.hparam_space
    assert space.names == ("lr", "clip", "gae_lambda", "minibatch_size")
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert set(env.observation_space.spaces) == {"projection", "statistics"}
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["timesteps"] == 0
    assert info["hyperparameters"] == pytest.approx({"lr": 1e-3, "clip": 0.2, "gae_lambda": 0.8, "minibatch_size": 256})
    assert space.decode(info["default_action"]) == pytest.approx(info["hyperparameters"], rel=1e-5)


def test_step_info_and_budget(tiny_env):
    env = tiny_env
    env.reset(seed=0)
    action = np.zeros(4, np.float32)
    seen = []
    for k in range(1, 5):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and np.isfinite(reward)
        assert info["timesteps"] == 16 * k  # num_envs 2 x num_steps 8 x 1 iteration
        assert info["hyperparameters"] == env.unwrapped.hparam_space.decode(action)
        assert info["diverged"] is False and terminated is False
        assert set(info["losses"]) == {"policy", "value", "entropy"}
        assert {"approx_kl", "clip_fraction", "explained_variance", "grad_norm"} <= set(info["stats"])
        assert "wall_time" not in info  # timing=False
        seen.append(truncated)
    assert seen == [False, False, False, True]
    assert obs["statistics"][-1] == 1.0  # budget fraction


def test_wall_time_when_timing_on():
    env = make_tiny(timing=True)
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[-1]
    assert info["wall_time"] > 0
    env.close()


def test_iterations_per_step_and_budget_not_multiple():
    env = make_tiny(iterations_per_step=3, total_timesteps=40)
    env.reset(seed=0)
    *_, truncated, info = env.step(np.zeros(4, np.float32))
    assert info["timesteps"] == 40 + 8 and truncated  # stops at the first iteration past the budget
    env.close()


def test_statistics_layout():
    env = make_tiny(observe=["statistics"])
    assert set(env.observation_space.spaces) == {"statistics"}
    obs, _ = env.reset(seed=0)
    labels = env.unwrapped.observers["statistics"].labels
    assert len(labels) == obs["statistics"].shape[0]
    names = sorted(env.unwrapped.learner.parameters())
    n = len(names)
    assert labels[:n] == [f"weight_norm/{k}" for k in names]
    assert labels[2 * n : 2 * n + len(STAT_KEYS)] == list(STAT_KEYS)
    assert not obs["statistics"][n : 2 * n].any()  # no gradients before the first update
    obs, _, _, _, info = env.step(np.zeros(4, np.float32))
    stats = dict(zip(labels, obs["statistics"]))
    assert stats["policy"] == pytest.approx(info["losses"]["policy"], rel=1e-5, abs=1e-6)
    assert stats["clip_fraction"] == pytest.approx(info["stats"]["clip_fraction"], rel=1e-5, abs=1e-6)
    assert stats["budget_fraction"] == pytest.approx(0.25)
    assert obs["statistics"][n : 2 * n].all()
    env.close()


def test_projection_changes_with_training():
    env = make_tiny(observe=["projection"])
    obs, _ = env.reset(seed=0)
    proj = obs["projection"]
    params = env.unwrapped.learner.parameters()
    dim, orders = 4, 3  # each tensor's rows x dim, for its weights and its last 2 gradients
    blocks = {k: (v.shape[0] if v.dim() > 1 else 1) * dim for k, v in sorted(params.items())}
    assert proj.shape == (orders * sum(blocks.values()),) and proj.dtype == np.float32

    def gradient_parts(x):
        out, at = [], 0
        for size in blocks.values():
            out.append(x[at + size : at + orders * size])
            at += orders * size
        return np.concatenate(out)

    assert np.any(proj != 0) and not gradient_parts(proj).any()  # no gradients before the first update
    obs2, _, _, _, _ = env.step(np.zeros(4, np.float32))
    assert not np.array_equal(proj, obs2["projection"])
    assert gradient_parts(obs2["projection"]).any()
    env.close()


def test_discrete_action_type():
    env = make_tiny(action_type="discrete", bins={"lr": [1e-4, 1e-3, 1e-2], "clip": 2}, hyperparameters=["lr", "clip"])
    assert env.action_space == gym.spaces.MultiDiscrete([3, 2])
    env.reset(seed=0)
    info = env.step(np.array([2, 0]))[-1]
    assert info["hyperparameters"] == pytest.approx({"lr": 1e-2, "clip": 0.05})
    env.close()


def test_hyperparameter_selection_and_ranges():
    env = make_tiny(hyperparameters={"lr": (1e-4, 1e-3), "epochs": None})
    assert env.unwrapped.hparam_space.names == ("lr", "epochs")
    env.reset(seed=0)
    info = env.step(np.array([1.0, -1.0], np.float32))[-1]
    assert info["hyperparameters"] == pytest.approx({"lr": 1e-3, "epochs": 1.0})
    env.close()


def test_uncontrolled_hyperparameters_use_defaults():
    env = make_tiny(hyperparameters=["lr"], defaults={"gamma": 0.5})
    env.reset(seed=0)
    assert env.unwrapped.learner.default_hparams.gamma == 0.5
    assert env.unwrapped.learner.default_hparams.epochs == 1  # from tiny_kwargs
    env.close()


def test_config_overrides_reach_the_learner():
    env = make_tiny(config={"hidden": [8], "activation": "relu"}, num_envs=3)
    env.reset(seed=0)
    learner = env.unwrapped.learner
    assert learner.config.hidden == (8,) and learner.config.activation == "relu" and learner.config.num_envs == 3
    assert learner.parameters()["actor.0.weight"].shape == (8, 4)
    info = env.step(np.zeros(4, np.float32))[-1]
    assert info["timesteps"] == 3 * 8
    env.close()


def test_improvement_reward_sums_to_the_last_mean():
    env = make_tiny(reward="improvement", hyper_steps=6)
    env.reset(seed=0)
    total, done, finished, current = 0.0, False, [], 0.0
    while not done:
        _, r, term, trunc, info = env.step(np.zeros(4, np.float32))
        total += r
        done = term or trunc
        finished.extend(info["episode_returns"])
        # what mean_return would pay: this step's episodes, else the mean of the last 10
        if info["episode_returns"]:
            current = float(np.mean(info["episode_returns"]))
        elif finished:
            current = float(np.mean(finished[-10:]))
    assert finished, "no inner episode ended"
    # the improvements telescope: they add up to the last step's mean return minus 0
    assert total == pytest.approx(current, rel=1e-9)
    env.close()


def test_final_return_reward_is_sparse():
    env = make_tiny(reward="final_return", hyper_steps=4)
    env.reset(seed=0)
    rewards = [env.step(np.zeros(4, np.float32))[1] for _ in range(4)]
    assert rewards[:3] == [0.0, 0.0, 0.0]
    assert rewards[3] == pytest.approx(env.unwrapped._recent_mean()) and rewards[3] > 0
    env.close()


def test_mean_return_reward_is_mean_of_finished_episodes(tiny_env):
    tiny_env.reset(seed=0)
    for _ in range(4):
        _, r, _, _, info = tiny_env.step(np.zeros(4, np.float32))
        if info["episode_returns"]:
            assert r == pytest.approx(np.mean(info["episode_returns"]))


def test_record_schedule_wrapper():
    env = hyperenvs.RecordSchedule(make_tiny(hyperparameters=["lr"]))
    env.reset(seed=0)
    for u in (-1.0, 0.0, 1.0):
        env.step(np.array([u], np.float32))
    assert [row["timesteps"] for row in env.schedule] == [16, 32, 48]
    assert [row["lr"] for row in env.schedule] == pytest.approx([1e-5, 10**-3.5, 1e-2])
    first = env.schedule
    env.reset(seed=1)
    assert env.schedule == [] and env.schedules == [first]
    env.close()


def test_flatten_wrapper():
    env = hyperenvs.flatten(make_tiny())
    inner = env.unwrapped.observation_space
    size = sum(s.shape[0] for s in inner.spaces.values())
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == (size,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (size,) and obs.dtype == np.float32
    env.close()


def test_joint_discrete_action_wrapper():
    env = hyperenvs.JointDiscreteAction(
        make_tiny(action_type="discrete", hyperparameters=["lr", "clip"], bins={"lr": 3, "clip": 5})
    )
    assert env.action_space == gym.spaces.Discrete(15)
    assert env.action(7).tolist() == [1, 2]  # row-major: 7 = 1 * 5 + 2
    assert all(env.joint_index(env.action(i)) == i for i in range(15))
    env.reset(seed=0)
    info = env.step(14)[-1]
    assert info["hyperparameters"] == pytest.approx({"lr": 1e-2, "clip": 0.5})
    with pytest.raises(ValueError, match=r"joint action 15 outside \[0, 14\]"):
        env.step(15)
    env.close()
    with pytest.raises(ValueError, match="JointDiscreteAction needs a MultiDiscrete action space"):
        hyperenvs.JointDiscreteAction(make_tiny())


def test_make_with_and_without_namespace_prefix():
    env = gym.make(f"hyperenvs:{CARTPOLE}", total_timesteps=16, num_envs=2, config={"num_steps": 8})
    assert env.unwrapped.entry.id == CARTPOLE
    env.close()
    assert hyperenvs.get("PPO-CartPole-v0") is hyperenvs.REGISTRY[CARTPOLE]
