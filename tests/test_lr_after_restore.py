"""A learning rate chosen by a hyper-agent acts on the very next update, also right after a restore.

Ray Tune's PBT once restored a trial's optimizer together with its old learning
rate, so the perturbed value was silently ignored.  Here the update rule takes
hyperparameters per call, so two learners forked from one state and stepped
with ``lr`` and ``2 lr`` must move their parameters by exactly a factor 2 when a
single plain-SGD or Adam step is taken on the same batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import make_tiny, params_of

from agents.ppo import PPOConfig, PPOLearner

# One minibatch, one epoch and no gradient clipping: each iteration is one update-rule step.
ONE_STEP = {"epochs": 1, "minibatch_size": 16, "max_grad_norm": 0.0}


def delta(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([(after[k] - before[k]).flatten() for k in before])


def snapshot_params(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.parameters().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_forked_learners_apply_their_own_lr(optimizer):
    config = PPOConfig(num_envs=2, num_steps=8, update_rule=optimizer)
    a = PPOLearner(config, seed=3)
    a.iterate({**ONE_STEP, "lr": 1e-2})  # history: optimizer moments built with lr 1e-2
    state = a.state_dict()
    b = PPOLearner(config, seed=99)  # a fresh learner: everything must come from the state
    b.load_state_dict(state)
    start = snapshot_params(a)
    torch.testing.assert_close(snapshot_params(b), start, rtol=0, atol=0)
    a.iterate({**ONE_STEP, "lr": 1e-3})
    b.iterate({**ONE_STEP, "lr": 2e-3})
    d_a, d_b = delta(start, snapshot_params(a)), delta(start, snapshot_params(b))
    assert d_a.abs().max() > 1e-6
    assert not torch.allclose(d_a, d_b)
    torch.testing.assert_close(d_b, 2 * d_a, rtol=1e-3, atol=1e-6)
    a.close(), b.close()


def test_same_lr_after_restore_gives_same_update():
    config = PPOConfig(num_envs=2, num_steps=8)
    a = PPOLearner(config, seed=5)
    a.iterate(ONE_STEP)
    b = PPOLearner(config, seed=5)
    b.load_state_dict(a.state_dict())
    a.iterate({**ONE_STEP, "lr": 5e-4})
    b.iterate({**ONE_STEP, "lr": 5e-4})
    for k, v in a.parameters().items():
        assert torch.equal(v, b.parameters()[k])
    a.close(), b.close()


@pytest.mark.parametrize(
    ("env_id", "defaults"),
    [("HyperRL/PPO-CartPole-v0", ONE_STEP), ("HyperRL/A2C-CartPole-v0", {"max_grad_norm": 0.0})],
)
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_hyperenv_restore_then_new_lr_takes_effect_next_step(env_id, defaults, optimizer):
    env = make_tiny(
        env_id,
        hyper_steps=8,
        hyperparameters={"lr": (1e-3, 2e-3)},
        config={"update_rule": optimizer},
        defaults=defaults,
    )
    low, high = np.array([-1.0], np.float32), np.array([1.0], np.float32)
    env.reset(seed=0)
    env.step(high)
    snap = env.unwrapped.snapshot()
    start = params_of(env)
    *_, info_low = env.step(low)
    d_low = delta(start, params_of(env))
    env.unwrapped.restore(snap)
    torch.testing.assert_close(params_of(env), start, rtol=0, atol=0)
    *_, info_high = env.step(high)
    d_high = delta(start, params_of(env))
    assert info_low["hyperparameters"]["lr"] == pytest.approx(1e-3)
    assert info_high["hyperparameters"]["lr"] == pytest.approx(2e-3)
    assert not torch.allclose(d_low, d_high)
    # one update-rule step on the same batch and the same optimizer state: the step is linear in lr
    torch.testing.assert_close(d_high, 2 * d_low, rtol=1e-3, atol=1e-6)
    env.close()
