"""One vmapped A2C update of N stacked lifetimes equals N calls of the learner's own train_step."""

from __future__ import annotations

import pytest
import torch

from agents.ppo import PPOLearner
from agents.stacked import StackedA2C, StackedTaskA2C, stack_batches, unstack_state
from agents.task_learners import TaskA2CConfig, TaskA2CLearner, TaskPPOConfig, TaskPPOLearner

HP = {"gamma": 0.995, "gae_lambda": 0.95, "ent_coef": 0.01, "lr": 3e-3}


def _learners(n: int, task: str = "HyperRLTasks/Catch-v0", **config) -> list[TaskA2CLearner]:
    return [TaskA2CLearner(TaskA2CConfig(task=task, num_envs=3, **config), seed=j) for j in range(n)]


# The batched kernels sum in another order (gradients agree to about 1e-8).  Adam divides by sqrt(v), so
# a rounding difference in a near-zero gradient grows over updates: a few 1e-6 after three on Catch, and
# on the big grids, whose conv sees planes that are mostly zero, up to 1e-4 (measured), so they run SGD here.
@pytest.mark.parametrize(
    ("task", "config", "atol"),
    [
        ("HyperRLTasks/Catch-v0", {}, 1e-5),
        ("HyperRLTasks/BigDenseShort-v0", {"hidden": (32,), "conv_channels": 16, "update_rule": "sgd"}, 1e-6),
    ],
)
def test_vmapped_updates_equal_each_lifetimes_train_step(task, config, atol):
    learners = _learners(4, task, **config)
    stacked = StackedA2C(learners[0])
    params, state = stacked.stack(learners)
    # a stagger: lifetime 3 has taken one update more than the others, so its bias correction differs
    b = learners[3].collector.collect(learners[3].params, 20, 0.995)[0]
    learners[3].params, learners[3].opt_state, _ = learners[3].train_step(learners[3].params, learners[3].opt_state, b, HP)
    params, state = stacked.stack(learners)
    assert state["step"].tolist() == [0, 0, 0, 1]
    for _ in range(3):
        batches = [lr.collector.collect(lr.params, 20, 0.995)[0] for lr in learners]
        params, state, metrics = stacked.train_step(params, state, stack_batches(batches), HP)
        for j, lr in enumerate(learners):
            lr.params, lr.opt_state, m = lr.train_step(lr.params, lr.opt_state, batches[j], HP)
            torch.testing.assert_close(metrics["policy"][j], m["policy"], rtol=0, atol=1e-6)
    for j, lr in enumerate(learners):
        for k, v in lr.params.items():
            torch.testing.assert_close(params[k][j], v.detach(), rtol=0, atol=atol)
        mine = unstack_state(state, j)
        assert int(mine["step"]) == lr.opt_state["step"]
        for k, v in lr.opt_state.get("exp_avg_sq", {}).items():
            torch.testing.assert_close(mine["exp_avg_sq"][k], v, rtol=0, atol=1e-6)
    assert not torch.equal(params["actor.weight"][0], params["actor.weight"][1])


def test_per_lifetime_hyperparameters():
    learners = _learners(3)
    stacked = StackedA2C(learners[0])
    params, state = stacked.stack(learners)
    batches = [lr.collector.collect(lr.params, 20, 0.995)[0] for lr in learners]
    lrs = torch.tensor([1e-3, 3e-3, 1e-2])
    params, _, _ = stacked.train_step(params, state, stack_batches(batches), {**HP, "lr": lrs})
    for j, lr in enumerate(learners):
        own, _, _ = lr.train_step(lr.params, lr.opt_state, batches[j], {**HP, "lr": float(lrs[j])})
        for k, v in own.items():
            torch.testing.assert_close(params[k][j], v.detach(), rtol=0, atol=1e-6)


def test_only_a2c_learners_stack():
    learner = TaskPPOLearner(TaskPPOConfig(num_envs=2), seed=0)
    assert isinstance(learner, PPOLearner)
    with pytest.raises(ValueError, match="learner must be an A2C learner"):
        StackedA2C(learner)


def test_a_stacked_population_lives_the_lone_learners_lifetimes():
    config = TaskA2CConfig(num_envs=3)
    population = StackedTaskA2C([TaskA2CLearner(config, seed=j) for j in range(4)])
    alone = [TaskA2CLearner(config, seed=j) for j in range(4)]
    for _ in range(4):
        returns = population.iterate(HP)
        assert returns == [list(lr.iterate(HP).episode_returns) for lr in alone]
    for j, lr in enumerate(alone):
        assert population.learners[j].timesteps == lr.timesteps == 4 * 60
        torch.testing.assert_close(population.learners[j].collector._obs, lr.collector._obs, rtol=0, atol=0)
        for k, v in lr.params.items():
            torch.testing.assert_close(population.params[k][j], v.detach(), rtol=0, atol=1e-5)  # Adam: see above
    assert sum(map(len, returns)) > 0
