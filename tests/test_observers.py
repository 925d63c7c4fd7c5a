"""Observers over many lifetimes at once: ``batch`` equals one call per lifetime, the deferred stand-in, the population."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperenvs.observers import (
    Context,
    DeferredObserver,
    FitnessObserver,
    ProjectionObserver,
    StatisticsObserver,
    _base_of,
    _stacked,
    observe_batch,
)

SHAPES = {"conv.weight": (4, 2, 2, 2), "dense.weight": (6, 5), "dense.bias": (6,), "out.bias": (1,)}


class _Learner:
    """What an observer reads of a learner: parameters and the newest-first gradient history."""

    def __init__(self, seed: int, history: int, scale: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.params = {k: torch.randn(s, generator=gen) * scale for k, s in SHAPES.items()}
        self.grads = [{k: torch.randn(s, generator=gen) for k, s in SHAPES.items()} for _ in range(history)]

    def parameters(self):
        return self.params

    def gradient_history(self):
        return list(self.grads)


def _population() -> tuple[list[_Learner], list[Context]]:
    # histories of 0, 1, 2 and 3 gradients (the projection reads 2), one run diverged to inf and NaN
    learners = [_Learner(j, history=j % 4) for j in range(7)]
    learners[5].params["dense.weight"][0, 0] = float("inf")
    learners[6].params["dense.bias"][2] = float("nan")
    contexts = [
        Context(
            losses={"policy": 0.1 * j, "value": float("nan") if j == 3 else 1.0 + j},
            stats={"grad_norm": 2.0 * j} if j % 2 else {},
            recent_return=-0.5 * j,
            budget_fraction=j / 7,
        )
        for j in range(7)
    ]
    return learners, contexts


@pytest.mark.parametrize("observer", [ProjectionObserver(SHAPES), ProjectionObserver(SHAPES, dim=3, orders=2, seed=5)])
def test_projection_batch_equals_one_call_per_lifetime(observer):
    learners, contexts = _population()
    got = observer.batch(learners, contexts)
    want = np.stack([observer(lr, c) for lr, c in zip(learners, contexts)])
    assert got.shape == (7, observer.space.shape[0]) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # the same matmul kernel per lifetime: the same bits
    # the comparison is not vacuous: lifetime 0 has no gradients yet (zeros), lifetime 2 has both
    size = 4 * observer.dim  # conv.weight's 4 rows, first in sorted order
    assert not got[0, size : size * observer.orders].any() and got[2, size : size * observer.orders].all()
    assert np.isfinite(got).all() and (np.abs(got) <= 1e6).all()


@pytest.mark.parametrize("observer", [ProjectionObserver(SHAPES), StatisticsObserver(SHAPES)])
def test_rows_of_one_stacked_tensor_are_read_in_place(observer):
    # as in a vectorised population: each lifetime's tensors are views of row j of stacked tensors
    gen = torch.Generator().manual_seed(3)
    stacked = {k: torch.randn((5, *s), generator=gen) for k, s in SHAPES.items()}
    grads = {k: torch.randn((5, *s), generator=gen) for k, s in SHAPES.items()}
    learners = [_Learner(0, history=0) for _ in range(5)]
    rows, grad_rows = {k: v.unbind(0) for k, v in stacked.items()}, {k: v.unbind(0) for k, v in grads.items()}
    for j, lr in enumerate(learners):
        lr.params = {k: rows[k][j] for k in SHAPES}
        lr.grads = [{k: grad_rows[k][j] for k in SHAPES}]
    contexts = _population()[1][:5]
    want = np.stack([observer(lr, c) for lr, c in zip(learners, contexts)])
    np.testing.assert_allclose(observer.batch(learners, contexts), want, rtol=0, atol=1e-6)
    weight = stacked["dense.weight"]
    assert _base_of([lr.params["dense.weight"] for lr in learners]) is not None  # the in-place path is taken
    assert _stacked([lr.params["dense.weight"] for lr in learners]).data_ptr() == weight.data_ptr()  # no copy
    assert _base_of(list(weight.unbind(0))[::-1]) is None and _base_of(list(weight.unbind(0))[:4]) is None
    # rows out of order, or one lifetime with tensors of its own (restarted), take the copying path: same result
    learners[1], learners[3] = learners[3], learners[1]
    learners[2].params = {k: v.clone() for k, v in learners[2].params.items()}
    want = np.stack([observer(lr, c) for lr, c in zip(learners, contexts)])
    np.testing.assert_array_equal(observer.batch(learners, contexts), want)
    assert not np.array_equal(want[1], want[3])


def test_statistics_batch_equals_one_call_per_lifetime():
    observer = StatisticsObserver(SHAPES)
    learners, contexts = _population()
    got = observer.batch(learners, contexts)
    want = np.stack([observer(lr, c) for lr, c in zip(learners, contexts)])
    assert got.shape == (7, len(observer.labels)) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    labels = observer.labels
    assert got[1, labels.index("grad_norm")] == 2.0 and got[2, labels.index("grad_norm")] == 0.0
    assert got[3, labels.index("value")] == 0.0 and got[4, labels.index("recent_return")] == -2.0
    assert not got[0, labels.index("grad_norm/conv.weight")]  # no gradient yet
    np.testing.assert_allclose(got[1, 0], torch.linalg.vector_norm(learners[1].params["conv.weight"]).item(), rtol=1e-6)


def test_observe_batch_loops_over_an_observer_without_batch_and_checks_pairs():
    class _ES:
        centre_return, centre_rank = 3.0, 0.5

        def __init__(self, seed):
            self.fitness = [np.random.default_rng(seed).normal(size=8)]

        def fitness_history(self):
            return self.fitness

    observer = FitnessObserver({}, k=2, quantiles=4)
    learners, contexts = [_ES(0), _ES(1)], _population()[1][:2]
    got = observe_batch(observer, learners, contexts)
    np.testing.assert_array_equal(got, np.stack([observer(lr, c) for lr, c in zip(learners, contexts)]))
    assert not np.array_equal(got[0], got[1])
    with pytest.raises(ValueError, match="learners and contexts must pair up, got 2 learners and 1 contexts"):
        observe_batch(observer, learners, contexts[:1])


def test_a_deferred_observer_records_calls_and_flushes_them_together():
    observer = ProjectionObserver(SHAPES)
    deferred = DeferredObserver(observer)
    learners, contexts = _population()
    assert deferred.space is observer.space and deferred.flush().shape == (0, observer.space.shape[0])
    placeholders = [deferred(lr, c) for lr, c in zip(learners, contexts)]
    assert all(p.shape == observer.space.shape and p.dtype == np.float32 and not p.any() for p in placeholders)
    assert len(deferred.calls) == 7
    np.testing.assert_array_equal(deferred.flush(), observer.batch(learners, contexts))
    assert deferred.calls == []  # a flush forgets the calls it answered


def test_the_vectorised_population_observes_all_lifetimes_in_one_batch(monkeypatch):
    from hyperenvs.checks import tiny_kwargs
    from hyperenvs.population import parallel_env

    env = parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=3, **tiny_kwargs("HyperRL/A2C-Catch-v0"), timing=False)
    env.reset(seed=0)
    calls = {"one": 0, "batch": []}
    for cls in (ProjectionObserver, StatisticsObserver):
        one, batch = cls.__call__, cls.batch

        def counted_one(self, *a, one=one):
            calls["one"] += 1
            return one(self, *a)

        def counted_batch(self, learners, contexts, batch=batch):
            calls["batch"].append(len(learners))
            return batch(self, learners, contexts)

        monkeypatch.setattr(cls, "__call__", counted_one)
        monkeypatch.setattr(cls, "batch", counted_batch)
    obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert calls == {"one": 0, "batch": [3, 3]}  # projection and statistics, each once for the 3 lifetimes
    for j, agent in enumerate(env.possible_agents):  # and each agent's row is its own HyperEnv's observation
        own = env.lifetimes[j].unwrapped._observe()
        for k in own:
            np.testing.assert_allclose(obs[agent][k], own[k], rtol=0, atol=1e-6)
    assert not np.array_equal(obs["lifetime_0"]["projection"], obs["lifetime_1"]["projection"])
