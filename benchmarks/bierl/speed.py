"""ES throughput (HyperRL's ESLearner vs a plain numpy OpenAI-ES, both on a 2-process pool) and BO cost.

    python benchmarks/bierl/speed.py --iterations 5 --population 20 --episode-steps 200

Prints env-steps/s of each, measured in the same run on the same task and
population, and the wall time of one NPM proposal (GP fit + log-EI
maximisation) on a 2-d space with 30 observed points.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import gymnasium as gym
import numpy as np

_ENV = None


def _plain_worker(args: tuple) -> list[tuple[float, int]]:
    """A textbook OpenAI-ES worker: regenerate the noise from its seed, roll out a numpy tanh MLP."""
    global _ENV
    task, steps, theta, sigma, shapes, seeds = args
    if _ENV is None:
        _ENV = gym.make(task, max_episode_steps=steps)
    out = []
    for seed, sign in seeds:
        eps = np.random.default_rng(seed).standard_normal(theta.size)
        w = theta + sign * sigma * eps
        mats, i = [], 0
        for shape in shapes:
            n = int(np.prod(shape))
            mats.append(w[i : i + n].reshape(shape))
            i += n
        obs, _ = _ENV.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            x = np.tanh(mats[0] @ obs + mats[1])
            x = np.tanh(mats[2] @ x + mats[3])
            obs, r, term, trunc, _ = _ENV.step(np.clip(mats[4] @ x + mats[5], -1, 1))
            total, length, done = total + r, length + 1, term or trunc
        out.append((total, length))
    return out


def plain_es(task: str, population: int, steps: int, iterations: int, workers: int) -> float:
    env = gym.make(task)
    o, a = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    shapes = [(64, o), (64,), (64, 64), (64,), (a, 64), (a,)]
    theta = np.random.default_rng(0).standard_normal(sum(int(np.prod(s)) for s in shapes)) * 0.1
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_plain_worker, [(task, steps, theta, 0.05, shapes, [(0, 1)])] * workers)  # warm the envs
        total_steps, start = 0, time.perf_counter()
        for it in range(iterations):
            seeds = [(it * population + p, s) for p in range(population // 2) for s in (1, -1)]
            chunks = np.array_split(np.arange(len(seeds)), workers)
            res = pool.map(_plain_worker, [(task, steps, theta, 0.05, shapes, [seeds[i] for i in c]) for c in chunks])
            flat = [r for chunk in res for r in chunk]
            total_steps += sum(r[1] for r in flat)
            returns = np.array([r[0] for r in flat])
            ranks = returns.argsort().argsort() / (len(returns) - 1) - 0.5
            noise = [sign * np.random.default_rng(seed).standard_normal(theta.size) for seed, sign in seeds]
            grad = sum(r * eps for r, eps in zip(ranks, noise))
            theta = theta + 0.01 * grad / (len(seeds) * 0.05)
        return total_steps / (time.perf_counter() - start)


def hyperrl_es(task: str, population: int, steps: int, iterations: int, workers: int) -> float:
    from agents.es import ESConfig, ESLearner

    learner = ESLearner(
        ESConfig(task=task, population=population, max_episode_steps=steps, backend="process", workers=workers), seed=0
    )
    try:
        learner.iterate()  # warm the workers' envs
        before, start = learner.timesteps, time.perf_counter()
        for _ in range(iterations):
            learner.iterate()
        return (learner.timesteps - before) / (time.perf_counter() - start)
    finally:
        learner.close()


def bo_time(points: int = 30, dims: int = 2, repeats: int = 3) -> list[float]:
    from solvers.bierl import bo_propose

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(points, dims))
    y = -((x - 0.3) ** 2).sum(axis=1) + 0.01 * rng.standard_normal(points)
    bo_propose(x, y, seed=0)  # imports and first-call compilation
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        bo_propose(x, y, seed=r)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()
    args = (opts.task, opts.population, opts.episode_steps, opts.iterations, opts.workers)
    ours, plain = hyperrl_es(*args), plain_es(*args)
    ours2 = hyperrl_es(*args)  # again, so drifting machine load shows
    print(f"{opts.task}: population {opts.population}, {opts.episode_steps}-step episodes, {opts.workers} workers")
    print(f"  HyperRL ESLearner : {ours:8.0f} env-steps/s (repeat {ours2:.0f})")
    print(f"  plain numpy ES    : {plain:8.0f} env-steps/s")
    times = bo_time()
    each = ", ".join(f"{t:.2f}" for t in times)
    print(f"NPM proposal (2-d, 30 points): {np.median(times):.2f} s median of {len(times)} ({each})")


if __name__ == "__main__":
    main()
