"""A2C and PPO on the batched torch tasks: the on-device collector, Optim4RL's networks, snapshots, learning."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import hyperenvs
from agents.a2c import A2CHyperparams
from agents.returns import rollout_return
from agents.task_learners import TaskA2CConfig, TaskA2CLearner, TaskPPOConfig
from agents.task_networks import TaskActorCritic
from agents.task_rollout import TaskCollector, make_task_envs
from hyperenvs.checks import tiny_kwargs
from hyperenvs.tasks import make_task

TASK_IDS = sorted(k for k, e in hyperenvs.REGISTRY.items() if e.algorithm.learner.startswith("agents.task_learners:"))
GRIDS = ("SmallDenseShort", "SmallDenseLong", "BigSparseShort", "BigSparseLong", "BigDenseShort", "BigDenseLong")


def test_every_task_id_is_registered():
    expected = {f"HyperRL/{a}-{t}-v0" for a in ("A2C", "PPO") for t in ("Catch", *GRIDS)}
    assert set(TASK_IDS) == expected


@pytest.mark.parametrize(
    ("task", "config", "shapes"),
    [
        ("HyperRLTasks/Catch-v0", {}, {"torso.dense.weight": (256, 50), "actor.weight": (3, 256), "critic.weight": (1, 256)}),
        ("HyperRLTasks/SmallDenseShort-v0", {"hidden": (32,)}, {"torso.dense.weight": (32, 3 * 6 * 8), "actor.weight": (9, 32)}),
        (
            "HyperRLTasks/BigDenseLong-v0",
            {"hidden": (32,), "conv_channels": 16},
            # a 2x2 valid conv over the 15 x 11 board of 5 planes: 16 x 14 x 10 features
            {"torso.conv.weight": (16, 5, 2, 2), "torso.dense.weight": (32, 16 * 14 * 10), "actor.weight": (9, 32)},
        ),
    ],
)
def test_optim4rl_agent_networks(task, config, shapes):
    got = TaskA2CLearner.param_shapes(TaskA2CConfig(task=task, **config))
    assert {k: got[k] for k in shapes} == shapes


def test_conv_is_spatial_over_height_and_width():
    # Moving the agent one cell changes the conv features only near the two cells: a spatial conv, not one over the width.
    net = TaskActorCritic(obs_shape=(1, 6, 6), action_dim=2, hidden=4, conv_channels=1)
    params = net.init(torch.Generator().manual_seed(0))
    params["torso.conv.bias"] = torch.zeros(1)
    a, b = torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    a[0, 0, 1, 1], b[0, 0, 1, 2] = 1, 1
    conv = torch.nn.functional.conv2d
    diff = (conv(a, params["torso.conv.weight"]) - conv(b, params["torso.conv.weight"])).abs()[0, 0] > 0
    assert diff.nonzero().tolist() and all(r <= 1 and c <= 2 for r, c in diff.nonzero().tolist())
    logits, value = net.forward(params, torch.zeros(7, 1, 6, 6))
    assert logits.shape == (7, 2) and value.shape == (7,)


def _collector(task: str, num_envs: int, seed: int = 3):
    envs = make_task_envs(task, num_envs, "cpu")
    net = TaskActorCritic(obs_shape=envs.single_observation_space.shape, action_dim=int(envs.single_action_space.n), hidden=8)
    params = net.init(torch.Generator().manual_seed(0))
    collector = TaskCollector(envs, net, torch.Generator().manual_seed(1), device="cpu")
    collector.reset(seed=seed)
    return collector, net, params


def test_collector_batch_is_the_task_replayed_with_its_actions():
    collector, net, params = _collector("HyperRLTasks/Catch-v0", 4)
    batch, episodes = collector.collect(params, 20, gamma=0.9)
    task = make_task("catch", 4, seed=None)
    obs = task.reset(3)
    returns = torch.zeros(4)
    expected = []
    for t in range(20):
        assert torch.equal(batch.obs[t], obs)
        obs, reward, terminated, truncated = task.step(batch.actions[t])
        assert torch.equal(batch.rewards[t], reward)  # Catch never truncates: nothing is bootstrapped
        assert torch.equal(batch.discounts[t], (~terminated).float())
        returns += reward
        expected += returns[terminated].tolist()
        returns[terminated] = 0
    assert [e.ret for e in episodes] == expected and len(expected) == 8  # two 9-step episodes per env in 20 steps
    assert all(e.length == 9 for e in episodes)
    assert torch.equal(batch.bootstrap_value, net.value(params, obs))
    logits, values = net.forward(params, batch.obs.flatten(0, 1))
    assert torch.allclose(batch.values.flatten(), values)
    assert torch.allclose(batch.log_probs.flatten(), torch.log_softmax(logits, -1).gather(1, batch.actions.view(-1, 1)).flatten())


def test_collector_bootstraps_truncated_episodes_from_their_last_observation():
    # SmallDenseShort ends every episode at step 50 (truncation), object 1 never terminates it.
    collector, net, params = _collector("HyperRLTasks/SmallDenseShort-v0", 3)
    batch, episodes = collector.collect(params, 60, gamma=0.9)
    task = make_task("small_dense_short", 3, record_final=True)
    task.reset(3)
    for t in range(60):
        _, reward, terminated, truncated = task.step(batch.actions[t])
        cut = truncated & ~terminated
        bootstrap = torch.where(cut, 0.9 * net.value(params, task.final_obs), 0.0)
        torch.testing.assert_close(batch.rewards[t], reward + bootstrap, rtol=0, atol=1e-6)
        assert torch.equal(collector.last_raw_rewards[t], reward)
    assert bool((batch.rewards != collector.last_raw_rewards).any())  # some truncation happened and was bootstrapped
    assert all(e.length <= 50 for e in episodes) and any(e.length == 50 for e in episodes)


def test_rollout_return_is_the_discounted_raw_return_of_the_rollout():
    learner = TaskA2CLearner(TaskA2CConfig(num_envs=4), seed=0)
    report = learner.iterate({"gamma": 0.9})
    raw = learner.collector.last_raw_rewards
    manual = float(sum(0.9**t * raw[t].double() for t in range(raw.shape[0])).mean())
    assert report.rollout_return == pytest.approx(manual, abs=1e-9) == rollout_return(raw, 0.9)
    assert np.isfinite(report.rollout_return)
    assert report.env_steps == 4 * 20 and len(report.episode_returns) == 8


def test_a2c_defaults_are_optim4rls():
    entry = hyperenvs.registry.get("A2C-Catch-v0")
    defaults = {h.name: h.default for h in entry.hyperparameters()}
    assert {k: defaults[k] for k in ("gamma", "gae_lambda", "vf_coef", "ent_coef")} == {
        "gamma": 0.995,
        "gae_lambda": 0.95,
        "vf_coef": 0.5,
        "ent_coef": 0.01,
    }


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_snapshot_restores_bit_for_bit(env_id):
    env = gym.make(env_id, **tiny_kwargs(env_id, hyper_steps=6), timing=False)
    env.reset(seed=5)
    env.step(env.unwrapped.hparam_space.encode(env.unwrapped.hparam_space.defaults()))
    buf = io.BytesIO()
    torch.save(env.unwrapped.snapshot(), buf)
    action = env.action_space.sample()

    def run():
        return [env.step(action)[:2] for _ in range(2)]

    first = run()
    buf.seek(0)
    env.unwrapped.restore(torch.load(buf, weights_only=True))
    second = run()
    for (o1, r1), (o2, r2) in zip(first, second):
        assert r1 == r2
        for k in o1:
            np.testing.assert_array_equal(o1[k], o2[k])


def test_a2c_learns_catch_with_the_ids_defaults():
    # Catch is solved (mean return near 1) in about 40k steps with the row's 16 envs x 20 steps.
    torch.manual_seed(0)
    env = gym.make("HyperRL/A2C-Catch-v0", total_timesteps=64_000, timing=False)
    env.reset(seed=0)
    default = env.unwrapped.hparam_space.encode(env.unwrapped.hparam_space.defaults())
    returns: list[float] = []
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(default)
        returns += list(info["episode_returns"])
    assert np.mean(returns[-200:]) >= 0.8


def test_ppo_runs_on_a_big_grid_and_reports():
    learner_cls = hyperenvs.registry.load(hyperenvs.registry.get("PPO-BigSparseShort-v0").algorithm.learner)
    config = TaskPPOConfig(task="HyperRLTasks/BigSparseShort-v0", num_envs=4, hidden=(32,), conv_channels=16)
    learner = learner_cls(config, seed=0)
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    report = learner.iterate({"minibatch_size": 16, "epochs": 2})
    assert report.env_steps == 80 and np.isfinite(report.rollout_return)
    assert all(not torch.equal(before[k], learner.params[k]) for k in before)
    assert len(learner.evaluate(3)) == 3


def test_a2c_evaluate_is_greedy_and_leaves_training_alone():
    learner = TaskA2CLearner(TaskA2CConfig(num_envs=2), seed=0, hparams=A2CHyperparams())
    state = learner.state_dict()
    returns = learner.evaluate(5)
    assert len(returns) == 5 and set(returns) <= {-1.0, 1.0}
    assert all(torch.equal(state["params"][k], v.detach()) for k, v in learner.params.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_batch_never_leaves_the_device():
    learner = TaskA2CLearner(TaskA2CConfig(num_envs=8), seed=0, device="cuda")
    batch, _ = learner.collector.collect(learner.params, 5, gamma=0.99)
    assert {t.device.type for t in (batch.obs, batch.actions, batch.rewards, batch.values, batch.bootstrap_value)} == {"cuda"}
    assert np.isfinite(learner.iterate().rollout_return)


def test_categorical_from_uniforms_is_the_inverse_cdf():
    from agents.task_networks import categorical_from_uniforms

    logits = torch.log(torch.tensor([0.2, 0.3, 0.5])).expand(6, 3)
    u = torch.tensor([0.0, 0.1, 0.19, 0.21, 0.51, 0.999999])
    assert categorical_from_uniforms(logits, u).tolist() == [0, 0, 0, 1, 2, 2]
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    draws = categorical_from_uniforms(logits[:1].expand(200_000, 3), u)
    freq = torch.bincount(draws, minlength=3).double() / 200_000
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), rtol=0, atol=0.005)


def test_the_collector_draws_a_rollouts_uniforms_in_one_block():
    from agents.task_networks import categorical_from_uniforms

    learner = TaskA2CLearner(TaskA2CConfig(num_envs=4), seed=3)
    state = learner.generator.get_state()
    batch, _ = learner.collector.collect(learner.params, 6, 0.995)
    u = torch.rand((6, 4), generator=torch.Generator().set_state(state))
    logits, _ = learner.network.forward(learner.params, batch.obs.flatten(0, 1))
    assert torch.equal(batch.actions, categorical_from_uniforms(logits, u.flatten()).view(6, 4))


def test_the_vector_env_returns_buffers_valid_until_the_next_step():
    envs = make_task_envs("HyperRLTasks/BigDenseShort-v0", 8, "cpu")
    fresh = make_task_envs("HyperRLTasks/BigDenseShort-v0", 8, "cpu", reuse_obs=False)
    first, _ = envs.reset(seed=1)
    kept = first.clone()
    assert torch.equal(fresh.reset(seed=1)[0], first)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        action = torch.randint(9, (8,), generator=gen)
        obs, *_, info = envs.step(action)
        want, *_, want_info = fresh.step(action)
        assert obs.data_ptr() == first.data_ptr() and torch.equal(obs, want)
        assert torch.equal(info["final_obs"][info["_final_obs"]], want_info["final_obs"][want_info["_final_obs"]])
    assert not torch.equal(first, kept)  # the buffer was overwritten: callers clone what they keep


def test_collector_carries_on_from_running_episodes_set_elsewhere():
    a, _, params = _collector("HyperRLTasks/Catch-v0", 4, seed=3)
    b, _, _ = _collector("HyperRLTasks/Catch-v0", 4, seed=3)
    a.collect(params, 3, gamma=0.9)
    b.collect(params, 3, gamma=0.9)
    obs, ret, length = a.running
    assert obs.shape == (4, 10, 5) and length.tolist() == [3, 3, 3, 3]
    b.set_running(torch.zeros_like(obs), torch.full_like(ret, 7.0), torch.zeros_like(length))
    assert b.running[1].tolist() == [7.0] * 4 and torch.equal(b.running[0], torch.zeros_like(obs))
    with pytest.raises(ValueError, match="running episodes must hold 4 instances"):
        b.set_running(obs[:2], ret[:2], length[:2])
