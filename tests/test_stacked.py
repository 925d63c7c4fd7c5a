"""One vmapped A2C update of N stacked lifetimes equals N calls of the learner's own train_step."""

from __future__ import annotations

import pytest
import torch

from agents.ppo import PPOLearner
from agents.stacked import StackedA2C, stack_batches, unstack_state
from agents.stacked_tasks import StackedTaskA2C
from agents.task_learners import TaskA2CConfig, TaskA2CLearner, TaskPPOConfig, TaskPPOLearner

HP = {"gamma": 0.995, "gae_lambda": 0.95, "ent_coef": 0.01, "lr": 3e-3}


def _learners(n: int, task: str = "HyperRLTasks/Catch-v0", **config) -> list[TaskA2CLearner]:
    return [TaskA2CLearner(TaskA2CConfig(task=task, num_envs=3, **config), seed=j) for j in range(n)]


# The stock rules step the stacked tensors exactly as a lone learner does and the network's kernels give
# the same bits under vmap, so Catch agrees exactly even through Adam's staggered bias corrections; the big
# grids' batched kernels round differently (~1e-9 in a gradient), which Adam amplifies, so they run SGD here.
@pytest.mark.parametrize(
    ("task", "config", "atol"),
    [
        ("HyperRLTasks/Catch-v0", {}, 0.0),
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


@pytest.mark.parametrize(
    ("task", "config", "atol"),
    [
        ("HyperRLTasks/Catch-v0", {}, 0.0),
        # the big grids' batched kernels round differently by ~1e-9 in a gradient after an episode ends; Adam
        # amplifies that where a gradient is near zero (measured: 2e-6 after 6 updates), so they run SGD here
        ("HyperRLTasks/BigDenseShort-v0", {"hidden": (32,), "conv_channels": 16, "update_rule": "sgd"}, 1e-6),
        ("HyperRLTasks/SmallDenseShort-v0", {"hidden": (32,), "update_rule": "rmsprop"}, 1e-6),
    ],
)
def test_a_stacked_population_lives_the_lone_learners_lifetimes(task, config, atol):
    config = TaskA2CConfig(task=task, num_envs=3, **config)
    population = StackedTaskA2C([TaskA2CLearner(config, seed=j) for j in range(4)])
    alone = [TaskA2CLearner(config, seed=j) for j in range(4)]
    hps = [{**HP, "lr": 1e-3 * (j + 1)} for j in range(4)]  # each lifetime its own learning rate
    for _ in range(6):
        reports = population.iterate(hps)
        for report, lr, hp in zip(reports, alone, hps):
            own = lr.iterate(hp)
            assert report.episode_returns == own.episode_returns and report.episode_lengths == own.episode_lengths
            assert report.timesteps == own.timesteps and report.rollout_return == pytest.approx(own.rollout_return, abs=1e-9)
            assert report.losses == pytest.approx(own.losses, abs=1e-5) and report.stats.keys() == own.stats.keys()
    for j, lr in enumerate(alone):
        mine = population.learners[j]
        assert mine.timesteps == lr.timesteps == 6 * 60 and mine.iterations == lr.iterations == 6
        torch.testing.assert_close(population.obs[j], lr.collector._obs, rtol=0, atol=0)
        for k, v in lr.params.items():
            torch.testing.assert_close(population.params[k][j], v.detach(), rtol=0, atol=atol)
            torch.testing.assert_close(mine.params[k], v.detach(), rtol=0, atol=atol)  # the learner's views
            torch.testing.assert_close(mine.gradient_history()[0][k], lr.gradient_history()[0][k], rtol=0, atol=1e-6)
            # the last update's inputs: the parameters before it, as the lone learner records them
            torch.testing.assert_close(mine.last_update.params[k], lr.last_update.params[k].detach(), rtol=0, atol=atol)
        assert int(mine.last_update.opt_state["step"]) == int(lr.last_update.opt_state["step"]) == 5
    assert sum(len(r.episode_returns) for r in reports) > 0 or task != "HyperRLTasks/Catch-v0"


def test_a_replaced_lifetime_goes_on_as_its_new_learner_and_sync_writes_back():
    config = TaskA2CConfig(num_envs=2)
    population = StackedTaskA2C([TaskA2CLearner(config, seed=j) for j in range(3)])
    population.iterate(HP)
    fresh, twin = TaskA2CLearner(config, seed=10), TaskA2CLearner(config, seed=10)
    population.replace({1: fresh})
    reports = [population.iterate(HP) for _ in range(3)]
    for r in reports:
        assert r[1].episode_returns == twin.iterate(HP).episode_returns
    assert population.learners[1].timesteps == twin.timesteps and population.learners[0].timesteps == 4 * 40
    for k, v in twin.params.items():
        torch.testing.assert_close(population.params[k][1], v.detach(), rtol=0, atol=0)
        torch.testing.assert_close(
            population.learners[1].last_update.params[k], twin.last_update.params[k].detach(), rtol=0, atol=0
        )
    population.sync(1)
    torch.testing.assert_close(fresh.collector._obs, twin.collector._obs, rtol=0, atol=0)
    assert fresh.envs.unwrapped.task.generator.get_state().equal(twin.envs.unwrapped.task.generator.get_state())


def test_inactive_lifetimes_keep_their_parameters():
    population = StackedTaskA2C([TaskA2CLearner(TaskA2CConfig(num_envs=2), seed=j) for j in range(2)])
    before = {k: v.clone() for k, v in population.params.items()}
    reports = population.iterate(HP, active=[True, False])
    assert reports[1].env_steps == 0 and population.learners[1].timesteps == 0 and reports[0].env_steps == 40
    for k, v in before.items():
        assert torch.equal(population.params[k][1], v[1]) and not torch.equal(population.params[k][0], v[0])


def test_stacked_runner_bad_input():
    with pytest.raises(ValueError, match="learners must hold at least one"):
        StackedTaskA2C([])
    mixed = [TaskA2CLearner(TaskA2CConfig(num_envs=2), seed=0), TaskA2CLearner(TaskA2CConfig(num_envs=3), seed=1)]
    with pytest.raises(ValueError, match="learners must be task A2C learners of one config"):
        StackedTaskA2C(mixed)
    population = StackedTaskA2C(mixed[:1])
    with pytest.raises(ValueError, match=r"hparams must be one mapping or one per lifetime \(1\)"):
        population.iterate([HP, HP])
    with pytest.raises(ValueError, match=r"active must hold one flag per lifetime \(1\)"):
        population.iterate(HP, active=[True, True])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the population's CUDA path is not exercised here")
def test_a_stacked_population_on_cuda_lives_the_lone_cuda_lifetimes():
    config = TaskA2CConfig(num_envs=8)
    population = StackedTaskA2C([TaskA2CLearner(config, seed=j, device="cuda") for j in range(3)])
    alone = [TaskA2CLearner(config, seed=j, device="cuda") for j in range(3)]
    for _ in range(3):
        for report, lr in zip(population.iterate(HP), alone):
            assert report.episode_returns == lr.iterate(HP).episode_returns
    assert population.params["actor.weight"].device.type == population.task.ball_row.device.type == "cuda"
    for j, lr in enumerate(alone):
        for k, v in lr.params.items():
            torch.testing.assert_close(population.params[k][j], v.detach(), rtol=0, atol=1e-5)


def test_a_stacked_ppo_population_lives_the_lone_learners_lifetimes():
    from agents.stacked_tasks import StackedTaskPPO

    config = TaskPPOConfig(num_envs=3)
    population = StackedTaskPPO([TaskPPOLearner(config, seed=j) for j in range(4)])
    alone = [TaskPPOLearner(config, seed=j) for j in range(4)]
    # each lifetime its own lr and clip; two minibatch sizes, so two schedules (3 minibatches of 16 or of 20 a epoch)
    hps = [
        {**HP, "lr": 1e-3 * (j + 1), "clip": 0.1 + 0.05 * j, "epochs": 2, "minibatch_size": 16 if j < 2 else 20} for j in range(4)
    ]
    for _ in range(4):
        for report, lr, hp in zip(population.iterate(hps), alone, hps):
            own = lr.iterate(hp)
            assert report.episode_returns == own.episode_returns and report.timesteps == own.timesteps
            assert report.losses == pytest.approx(own.losses, abs=1e-5) and report.stats.keys() == own.stats.keys()
            assert report.stats == pytest.approx(own.stats, abs=1e-5)
    for j, lr in enumerate(alone):
        mine = population.learners[j]
        assert int(population.opt_state["step"][j]) == int(lr.opt_state["step"]) == 4 * 2 * 3
        for k, v in lr.params.items():
            torch.testing.assert_close(population.params[k][j], v.detach(), rtol=0, atol=1e-6)
            for i in range(2):  # the last two minibatch steps' clipped gradients, newest first
                torch.testing.assert_close(mine.gradient_history()[i][k], lr.gradient_history()[i][k], rtol=0, atol=1e-6)
        assert lr.generator.get_state().equal(mine.generator.get_state())  # the same draws, permutations included
    assert not torch.equal(population.params["actor.weight"][0], population.params["actor.weight"][1])


def test_stacked_ppo_needs_a_ppo_learner_with_a_stock_rule():
    from agents.stacked import StackedPPO

    with pytest.raises(ValueError, match="learner must be a PPO learner"):
        StackedPPO(TaskA2CLearner(TaskA2CConfig(num_envs=2), seed=0))


def test_an_idle_ppo_lifetime_keeps_its_parameters_while_the_others_train_as_alone():
    from agents.stacked_tasks import StackedTaskPPO

    config = TaskPPOConfig(num_envs=2)
    population = StackedTaskPPO([TaskPPOLearner(config, seed=j) for j in range(3)])
    alone = [TaskPPOLearner(config, seed=j) for j in (0, 2)]
    hp = {**HP, "epochs": 2, "minibatch_size": 20}
    before = {k: v[1].clone() for k, v in population.params.items()}
    reports = population.iterate(hp, active=[True, False, True])
    assert reports[1].env_steps == 0 and population.learners[1].timesteps == 0 and int(population.opt_state["step"][1]) == 0
    for j, lr in zip((0, 2), alone):
        assert reports[j].episode_returns == lr.iterate(hp).episode_returns
        assert int(population.opt_state["step"][j]) == int(lr.opt_state["step"]) == 2 * 2
        for k, v in lr.params.items():
            torch.testing.assert_close(population.params[k][j], v.detach(), rtol=0, atol=1e-6)
    for k, v in before.items():
        assert torch.equal(population.params[k][1], v)
