"""The table of ids: each row resolves against its learner's one declaration; default bins are sane."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from _helpers import make_tiny

import hyperenvs
from agents.hparams import declared
from hyperenvs import registry

ALL_IDS = sorted(hyperenvs.REGISTRY)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_ids_default_bins_contain_its_default(env_id):
    for h in hyperenvs.get(env_id).hyperparameters():
        grid = h.grid()
        assert np.isclose(grid, h.resolved_default, rtol=1e-12, atol=0).any(), f"{env_id} {h.name}: {grid} lacks {h.default}"
        assert np.all((grid >= h.low) & (grid <= h.high)) and np.all(np.diff(grid) > 0), f"{env_id} {h.name}: {grid}"


@pytest.mark.parametrize("env_id", [i for i in ALL_IDS if "ES-" not in i])
def test_learning_rate_bins_stay_within_0_4_to_2_5_of_the_default(env_id):
    # Bins reaching 1e-2 collapse RMSProp A2C on CartPole in one hyper-step (REFERENCE-NOTES, EPGT).
    lr = next(h for h in hyperenvs.get(env_id).hyperparameters() if h.name == "lr")
    ratio = lr.grid() / lr.default
    assert ratio.min() >= 0.4 - 1e-12 and ratio.max() <= 2.5 + 1e-12, f"{env_id}: {ratio}"


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_rows_only_override_what_the_learner_declares(env_id):
    entry = hyperenvs.get(env_id)
    own = {h.name: h for h in declared(registry.load(entry.algorithm.hparams))}
    for h in entry.hyperparameters():
        base = own[h.name]
        assert (h.log, h.integer, h.doc) == (base.log, base.integer, base.doc)
        assert h.default == entry.defaults.get(h.name, base.default)
        assert (h.low, h.high) == entry.ranges.get(h.name, (base.low, base.high))
    assert set(entry.algorithm.controlled) <= {h.name for h in entry.hyperparameters()}


def test_declared_defaults_are_the_dataclass_defaults():
    for algorithm in (registry.PPO, registry.A2C, registry.IMPALA, registry.ES):
        cls = registry.load(algorithm.hparams)
        assert {h.name: h.default for h in declared(cls)} == dataclasses.asdict(cls())


def test_a2c_cartpole_lr_bins_are_the_reference_multipliers():
    lr = hyperenvs.get("HyperRL/A2C-CartPole-v0").hyperparameters()[0]
    np.testing.assert_allclose(lr.grid(), [7e-4 * 2.5 ** (k / 3) for k in range(-3, 4)], rtol=1e-12)
    np.testing.assert_allclose(lr.grid()[[0, 3, 6]], [2.8e-4, 7e-4, 1.75e-3], rtol=1e-12)  # 0.4x, 1x, 2.5x


def test_discrete_make_gets_the_declared_bins_and_explicit_bins_override():
    env = make_tiny(action_type="discrete")  # PPO CartPole: its row's defaults and gae_lambda bins
    space = env.unwrapped.hparam_space
    assert env.action_space == gym.spaces.MultiDiscrete([3, 5, 5, 3])
    expected = [[5e-4, 1e-3, 2e-3], [0.1, 0.2, 0.3, 0.4, 0.5], [0.8, 0.85, 0.9, 0.95, 0.99], [128, 256, 512]]
    for grid, want in zip(space.grids, expected):
        np.testing.assert_allclose(grid, want, rtol=1e-12)
    env.close()
    env = make_tiny(action_type="discrete", bins={"lr": 4})
    assert env.action_space == gym.spaces.MultiDiscrete([4, 5, 5, 3])
    np.testing.assert_allclose(env.unwrapped.hparam_space.grids[0], [1e-5, 1e-4, 1e-3, 1e-2], rtol=1e-12)
    env.close()


def test_static_on_a_discrete_env_holds_exactly_the_default():
    env = make_tiny("HyperRL/A2C-CartPole-v0", action_type="discrete")
    _, info = env.reset(seed=0)
    assert env.unwrapped.hparam_space.decode(info["default_action"]) == {"lr": 7e-4}
    env.close()


def test_a_new_range_at_make_gets_evenly_spaced_bins_over_it():
    env = make_tiny(action_type="discrete", hyperparameters={"lr": (1e-4, 1e-2)})
    np.testing.assert_allclose(env.unwrapped.hparam_space.grids[0], np.geomspace(1e-4, 1e-2, 5), rtol=1e-12)
    env.close()


def test_atari_ppo_range_override_keeps_multiplier_bins_inside_it():
    mb = next(h for h in hyperenvs.get("HyperRL/PPO-Pong-v0").hyperparameters() if h.name == "minibatch_size")
    assert (mb.low, mb.high, mb.default) == (64, 2048, 256)
    assert mb.grid().tolist() == [128, 256, 512]


def test_a_default_moved_off_declared_bins_needs_the_row_to_give_bins():
    row = registry.FAMILIES[0]  # PPO CartPole: gae_lambda 0.8 with its own bins
    broken = dataclasses.replace(row, bins={})
    with pytest.raises(ValueError, match=r"PPO-CartPole-v0: hyperparameter 'gae_lambda': default 0.8 is not one of its bins"):
        broken.entries()[0].hyperparameters()


def test_one_build_loop_over_rows_gives_every_id_once():
    ids = [e.id for row in registry.FAMILIES for e in row.entries()]
    assert len(ids) == len(set(ids)) == len(hyperenvs.REGISTRY) == 103
    assert list(hyperenvs.REGISTRY)[:2] == ["HyperRL/PPO-CartPole-v0", "HyperRL/PPO-Acrobot-v0"]
    row = registry.FAMILIES[0]
    with pytest.raises(ValueError, match="is in two rows"):
        registry._build([row, row])
