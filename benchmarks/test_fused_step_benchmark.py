"""pytest-benchmark: one PPO minibatch step, eager autograd (``FlatSteps``) against fused (``agents.fused``), in NumPy
and with the compiled gradient (``agents.native``; skipped where it cannot be built).

    pytest benchmarks/test_fused_step_benchmark.py --benchmark-only

The two share the group ``ppo-minibatch-step`` so pytest-benchmark prints them in one table, side by
side in one run: CartPole's 64-64 tanh actor-critic, a minibatch of 64 from a real collection, Adam,
clipping at 0.5.  The ratio of their means is the fused path's speed-up per step (3-4x on two
shared cores, 2026-12-03: 325 us against 1,057 us at best; benchmarks/compiled/README.md); a lone
``step`` also pays the per-call work an epoch shares among its steps (metrics, advantage
standardisation), and the learner's other per-iteration work is not in it.
"""

from __future__ import annotations

import pytest
import torch

from agents.fused import FusedSteps
from agents.optim import FlatSteps
from agents.ppo import PPOConfig, PPOLearner


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    learner = PPOLearner(PPOConfig(task="HyperRLTasks/CartPole-v0", num_envs=8, num_steps=128), seed=0)
    batch, _ = learner.collector.collect(learner.params, 128, 0.99)
    hp = learner.hparam_values(None)
    minibatch = learner.objective.targets(batch, hp).flat().rows(slice(0, 64))
    yield learner, minibatch, hp
    torch.set_num_threads(threads)


@pytest.mark.benchmark(group="ppo-minibatch-step")
def test_eager_step(benchmark, setup):
    learner, minibatch, hp = setup
    steps = FlatSteps(learner.update_rule, learner.params, learner.opt_state)

    def step():
        loss, _ = learner.objective(steps.params, minibatch, hp)
        return steps.step(torch.autograd.grad(loss, steps.leaves), hp, max_norm=float(hp["max_grad_norm"]))

    assert torch.isfinite(benchmark(step))


@pytest.mark.benchmark(group="ppo-minibatch-step")
@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled-gradient"])
def test_fused_step(benchmark, setup, compiled):
    learner, minibatch, hp = setup
    args = ("ppo", learner.objective, learner.update_rule, learner.params, learner.opt_state, 2)
    steps = FusedSteps(*args, native=compiled)
    if compiled and steps._native is None:
        pytest.skip("the native kernel cannot be built here")
    metrics, norm = benchmark(steps.step, minibatch, hp)
    assert torch.isfinite(norm) and metrics.shape == (5,)
