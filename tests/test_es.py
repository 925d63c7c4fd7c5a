"""ES learners: the maths (golden values, invariances), snapshots, and backend-independent results."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from agents.es import ESConfig, ESLearner, mirrored_gradient, rank_utilities
from agents.es_workers import pair_noise, split

TINY = dict(task="InvertedPendulum-v5", population=6, max_episode_steps=20, backend="serial")


def test_rank_utilities_golden_values():
    # n = 4: log2(3) - log2(rank) for ranks 1..4 -> [1.585, 0.585, 0, 0] (clipped), normalised, minus 1/4.
    f = rank_utilities(np.array([10.0, -1.0, 3.0, 0.0]))
    u = np.array([math.log2(3), 0.0, math.log2(3) - 1, 0.0])
    np.testing.assert_allclose(f, u / u.sum() - 0.25, atol=1e-12)
    np.testing.assert_allclose(f, [0.480423, -0.25, 0.019577, -0.25], atol=1e-5)
    assert abs(f.sum()) < 1e-12


def test_rank_utilities_invariant_to_monotone_transforms():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50)
    np.testing.assert_array_equal(rank_utilities(x), rank_utilities(np.exp(3 * x) + 7))


def _quadratic_gradient(pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    dim, sigma = 20, 0.01
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(dim)
    theta = np.zeros(dim)
    noise = rng.standard_normal((pairs, dim))
    fitness = np.stack([-((theta + s * sigma * noise - target) ** 2).sum(axis=1) for s in (1, -1)], axis=1)
    return mirrored_gradient(fitness, noise, sigma), 2 * (target - theta)


def test_es_gradient_points_along_true_gradient_on_a_quadratic():
    estimate, true = _quadratic_gradient(pairs=500)
    cosine = estimate @ true / (np.linalg.norm(estimate) * np.linalg.norm(true))
    assert cosine > 0.9


def test_mirrored_sampling_is_unbiased():
    # With raw (unshaped) fitness E[g] is the gradient of the Gaussian-smoothed quadratic, which equals
    # the true gradient; the mean estimate over many independent populations converges to it.
    dim, sigma, pairs = 5, 0.1, 20
    target = np.arange(dim, dtype=float)
    true = 2 * target
    mean = np.zeros(dim)
    for s in range(400):
        noise = np.random.default_rng(s).standard_normal((pairs, dim))
        fitness = np.stack([-((s_ * sigma * noise - target) ** 2).sum(axis=1) for s_ in (1, -1)], axis=1)
        mean += mirrored_gradient(fitness, noise, sigma) / 400
    assert np.linalg.norm(mean - true) / np.linalg.norm(true) < 0.05
    # Mirroring cancels the even part of f exactly: a constant fitness gives a zero estimate.
    noise = np.random.default_rng(0).standard_normal((pairs, dim))
    assert np.allclose(mirrored_gradient(np.full((pairs, 2), 3.0), noise, sigma), 0.0)


def test_noise_is_a_pure_function_of_its_key_and_chunks_cover_jobs():
    np.testing.assert_array_equal(pair_noise(3, 4, 5, 10), pair_noise(3, 4, 5, 10))
    assert not np.array_equal(pair_noise(3, 4, 5, 10), pair_noise(3, 4, 6, 10))
    jobs = list(range(11))
    assert [j for c in split(jobs, 3) for j in c] == jobs


LEARNERS = {"ES": "agents.es:ESLearner", "NSRES": "agents.nsres:NSRESLearner", "CMAES": "agents.cmaes:CMAESLearner"}


def _learner_cls(name: str) -> type:
    import importlib

    module, _, attr = LEARNERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _run(backend: str, iterations: int = 2, algorithm: str = "ES", **kw) -> tuple[np.ndarray, list]:
    learner = _learner_cls(algorithm)(ESConfig(**{**TINY, "backend": backend, **kw}), seed=5)
    hparams = {"sigma": 0.05} if algorithm == "CMAES" else {"sigma": 0.05, "lr": 0.05}  # CMA-ES has no lr
    try:
        reports = [learner.iterate(hparams) for _ in range(iterations)]
        return learner.theta.copy(), [(r.timesteps, r.episode_returns, dict(r.stats)) for r in reports]
    finally:
        learner.close()


@pytest.mark.parametrize(
    "algorithm, task",
    [
        ("ES", "InvertedPendulum-v5"),
        ("ES", "LunarLanderContinuous-v3"),  # MuJoCo and Box2D
        ("NSRES", "InvertedPendulum-v5"),
        ("CMAES", "InvertedPendulum-v5"),
    ],
)
def test_same_seed_same_result_serial_vs_processes(algorithm, task):
    serial = _run("serial", algorithm=algorithm, task=task)
    procs = _run("process", algorithm=algorithm, workers=2, task=task)
    np.testing.assert_array_equal(serial[0], procs[0])
    assert serial[1] == procs[1]


@pytest.mark.parametrize("algorithm", sorted(LEARNERS))
def test_same_seed_same_result_with_ray(algorithm, ray_local):
    serial = _run("serial", algorithm=algorithm)
    ray_run = _run("ray", algorithm=algorithm, workers=2)
    np.testing.assert_array_equal(serial[0], ray_run[0])
    assert serial[1] == ray_run[1]


def test_process_workers_shut_down_on_close():
    learner = ESLearner(ESConfig(**{**TINY, "backend": "process", "workers": 2}), seed=0)
    procs = list(learner.backend.pool._pool)
    learner.iterate()
    learner.close()
    for p in procs:
        p.join(timeout=10)
        assert not p.is_alive()


def test_look_ahead_leaves_no_trace_and_state_loads_weights_only():
    learner = ESLearner(ESConfig(**{**TINY, "optimizer": "adam"}), seed=1)
    learner.iterate()
    snap = learner.state_dict()
    buf = io.BytesIO()
    torch.save(snap, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    reference = learner.iterate({"sigma": 0.03})
    after = learner.state_dict()
    for sigma in (0.02, 0.08):  # candidates of a look-ahead
        learner.load_state_dict(loaded)
        learner.iterate({"sigma": sigma})
    learner.load_state_dict(loaded)
    for key in ("theta", "adam_m", "adam_v"):
        assert torch.equal(learner.state_dict()[key], snap[key])
    assert (learner.timesteps, learner.iterations, learner._t) == (snap["timesteps"], snap["iterations"], snap["adam_t"])
    again = learner.iterate({"sigma": 0.03})
    assert again.episode_returns == reference.episode_returns and again.timesteps == reference.timesteps
    assert again.stats == reference.stats
    assert torch.equal(learner.state_dict()["theta"], after["theta"])
    learner.close()


def test_gradient_history_and_parameters_are_per_tensor():
    learner = ESLearner(ESConfig(**TINY), seed=2)
    assert torch.all(learner.parameters()["log_std"] == -3.5)
    learner.iterate()
    params, grads = learner.parameters(), learner.gradient_history()
    assert set(params) == set(ESLearner.param_shapes(learner.config)) == set(grads[0])
    assert all(tuple(params[k].shape) == s for k, s in ESLearner.param_shapes(learner.config).items())
    assert len(learner.fitness_history()) == 1 and learner.fitness_history()[0].shape == (6,)
    assert len(learner.evaluate(2)) == 2
    learner.close()


def test_knn_novelty_golden_values():
    from agents.nsres import knn_novelty

    archive = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    # (0,0): nearest two are itself (0) and (3,4) (5) -> 2.5; (10,0) with k=1: nearest is (3,4) at sqrt(65).
    np.testing.assert_allclose(knn_novelty(archive, np.array([[0.0, 0.0]]), 2), [2.5], rtol=1e-6)
    np.testing.assert_allclose(knn_novelty(archive, np.array([[10.0, 0.0]]), 1), [math.sqrt(65)], rtol=1e-6)
    assert knn_novelty(archive, np.zeros((1, 2)), 10).shape == (1,)  # k larger than the archive


@pytest.mark.parametrize("cls_path", ["agents.nsres:NSRESLearner", "agents.cmaes:CMAESLearner"])
def test_variants_snapshot_exactly_through_a_weights_only_file(cls_path):
    import importlib

    module, _, name = cls_path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    learner = cls(ESConfig(**TINY), seed=4)
    learner.iterate({"sigma": 0.05})
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    first = learner.iterate({"sigma": 0.03})
    theta = learner.theta.copy()
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = cls(ESConfig(**TINY), seed=4)  # a new learner: CMA-ES must replay, not use the cache
    fresh.load_state_dict(state)
    again = fresh.iterate({"sigma": 0.03})
    assert (again.episode_returns, again.stats) == (first.episode_returns, first.stats)
    np.testing.assert_array_equal(fresh.theta, theta)
    learner.close()
    fresh.close()


def test_es_hyper_env_builds_no_inner_vector_env():
    import gymnasium as gym

    import hyperenvs

    gym.register_envs(hyperenvs)
    env = gym.make("HyperRL/ES-InvertedPendulum-v0", config={"population": 4, "max_episode_steps": 10}, total_timesteps=200)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.unwrapped._inner_envs is None  # the population runs in the backend's own envs
    env.close()
    ppo = gym.make("HyperRL/PPO-CartPole-v0", num_envs=1, total_timesteps=256)
    ppo.reset(seed=0)
    assert ppo.unwrapped._inner_envs is not None
    ppo.close()


def test_config_records_are_keyword_only():
    from agents.es_workers import Job, PolicySpec

    with pytest.raises(TypeError):
        Job(0, 1)
    with pytest.raises(TypeError):
        PolicySpec(3, 1, (4,), (-1.0,), (1.0,))
    assert Job(pair=0, sign=1).sign == 1


def test_noise_stream_zero_is_the_lifetime_and_others_are_independent():
    def first_iteration(stream: int | None) -> tuple:
        learner = ESLearner(ESConfig(**TINY), seed=3)
        if stream is None:
            report = learner.iterate()
        else:
            with learner.noise_stream(stream):
                report = learner.iterate()
        assert learner._stream == 0  # the context restores the lifetime's stream
        return report.stats, learner.theta.copy(), learner.evaluate_episodes(1)

    plain, zero, one = first_iteration(None), first_iteration(0), first_iteration(1)
    assert plain[0] == zero[0] and np.array_equal(plain[1], zero[1]) and plain[2] == zero[2]
    assert not np.array_equal(plain[1], one[1])


def test_nsres_scores_its_members_in_one_call_and_reuses_the_chosen_centre():
    from agents.es_workers import CENTRE, Job, evaluate_jobs, process_cache
    from agents.nsres import NSRESLearner

    learner = NSRESLearner(ESConfig(**TINY), seed=6)
    calls = []
    backend_map = learner.backend.map

    def counting_map(fn, chunks):
        calls.append(sum(len(c[-1]) for c in chunks))  # jobs or (env, action) seeds in this call
        return backend_map(fn, chunks)

    learner.backend.map = counting_map
    thetas = learner.thetas.copy()
    report = learner.iterate({"sigma": 0.05})
    assert calls == [3, 6]  # the three members in one call, then the six candidates: no centre rerun
    chosen = learner._centres[learner.current]
    jobs = [Job(pair=p, sign=s) for p in range(3) for s in (1, -1)] + [CENTRE]
    direct = evaluate_jobs(process_cache(), TINY["task"], 20, learner.spec, thetas[learner.current], 0.05, 6, 0, jobs)
    assert report.episode_returns == (chosen[0],) == (direct[-1][0],) and report.episode_lengths == (direct[-1][1],)
    np.testing.assert_array_equal(learner.fitness_history()[0], [r[0] for r in direct[:-1]])
    steps = sum(r[1] for r in learner._centres) + sum(r[1] for r in direct[:-1])
    assert report.env_steps == learner.timesteps == steps  # every member's rollout counted once, in this iteration
    learner.close()


def test_cmaes_cache_entry_under_a_colliding_token_is_not_trusted():
    from agents.cmaes import CMAESLearner

    learner = CMAESLearner(ESConfig(**TINY), seed=4)
    learner.iterate({"sigma": 0.05})
    state = learner.state_dict()
    learner._new_es = lambda: pytest.fail("its own cached state should load without a replay")
    learner.load_state_dict(state)
    expected = learner.iterate({"sigma": 0.03})
    # A fresh learner (another process, say) whose cache holds a different lifetime at the
    # same iteration count under the very token the state carries.
    other = CMAESLearner(ESConfig(**TINY), seed=4)
    other.iterate({"sigma": 0.07})
    other.state_dict()
    (stale,) = other._cache.values()
    other._cache.clear()
    other._cache[state["cma_token"]] = stale
    other.load_state_dict(state)
    again = other.iterate({"sigma": 0.03})
    assert (again.episode_returns, again.stats) == (expected.episode_returns, expected.stats)
    np.testing.assert_array_equal(other.theta, learner.theta)
    learner.close()
    other.close()


def test_cmaes_refuses_a_learning_rate():
    from agents.cmaes import CMAESLearner
    from agents.es import ESHyperparams

    with pytest.raises(ValueError, match="lr=0.1 was given to CMA-ES"):
        CMAESLearner(ESConfig(**TINY), seed=0, hparams=ESHyperparams(lr=0.1))
    learner = CMAESLearner(ESConfig(**TINY), seed=0)
    with pytest.raises(ValueError, match="no learning rate"):
        learner.iterate({"sigma": 0.05, "lr": 0.05})
    assert learner.timesteps == 0  # refused before any rollout
    assert learner.iterate({"sigma": 0.05}).env_steps > 0
    learner.close()
