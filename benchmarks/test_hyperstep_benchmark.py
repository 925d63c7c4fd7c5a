"""pytest-benchmark: one hyper-step of a tiny id against the learner iteration inside it.

    pytest benchmarks/test_hyperstep_benchmark.py --benchmark-only

Both benchmarks share the group ``hyperstep`` so pytest-benchmark prints them
in one table: the difference is the HyperEnv's own cost (action decoding, the
projection and statistics observers, the reward, Gymnasium's wrappers).  On a
tiny id the learner does little (16 env steps, one minibatch of 16), so the
observers are a visible share; on a real id (``benchmarks/overhead.py``) they
are well under 1 %.

This file is not part of the test suite (``make test`` collects ``tests/``
only); ``--benchmark-only`` skips everything that is not a benchmark.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import hyperenvs
from hyperenvs.checks import tiny_kwargs

gym.register_envs(hyperenvs)

ENV_ID = "HyperRL/PPO-CartPole-v0"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls run fastest on one thread (and the test suite uses one too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def env():
    # A budget no benchmark run can spend, so no step ever truncates the lifetime.
    env = gym.make(ENV_ID, **tiny_kwargs(ENV_ID, hyper_steps=10**9))
    env.reset(seed=0)
    yield env
    env.close()


def _default_action(env):
    he = env.unwrapped
    return he.hparam_space.encode({name: he.defaults[name] for name in he.hparam_space.names})


@pytest.mark.benchmark(group="hyperstep", min_rounds=30)
def test_hyperenv_step(benchmark, env):
    action = _default_action(env)
    env.step(action)  # past Gymnasium's first-step checks
    _, _, terminated, truncated, _ = benchmark(env.step, action)
    assert not (terminated or truncated)


@pytest.mark.benchmark(group="hyperstep", min_rounds=30)
def test_learner_iterate(benchmark, env):
    he = env.unwrapped
    hparams = {**he.defaults, **he.hparam_space.decode(_default_action(env))}  # what step() passes
    learner = he.learner
    learner.iterate(hparams)
    report = benchmark(learner.iterate, hparams)
    assert report.env_steps == he.config.num_envs * he.config.num_steps
