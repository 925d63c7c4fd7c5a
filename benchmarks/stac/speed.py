"""STAC's overhead and IMPALA's throughput, side by side in one run.

1. Wall time per inner env step of a whole lifetime slice (``env.step`` plus the
   solver's own work) for IMPALA with fixed eta (the static solver), STAC and
   STACX, at the same settings: ``HyperRL/IMPALA-<Task>-v0`` with one IMPALA
   update per hyper-step.  Repetitions are interleaved so a shared machine's
   load hits every agent alike; the median is reported.  The paper reports
   about 30% extra compute for STAC; the target here is <= 1.3x.
2. IMPALA on Atari Pong (Nature CNN, 16 envs, unrolls of 20): env steps/s in
   synchronous mode and with 2 asynchronous actors, against the raw
   ``AtariVectorEnv`` ceiling (random actions, no network) measured in the same run.

    python benchmarks/stac/speed.py            # ~5 minutes on 2 cores
    python benchmarks/stac/speed.py --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent

AGENTS = {
    "impala": ("static", {}, {}),
    "stac (torch.func)": ("stac", {"backend": "func"}, {}),
    "stac (autograd)": ("stac", {"backend": "autograd"}, {}),
    "stacx (torch.func)": ("stacx", {"backend": "func"}, {"config": {"aux_heads": 2}}),
    "stacx (autograd)": ("stacx", {"backend": "autograd"}, {"config": {"aux_heads": 2}}),
    "stac (autograd, meta_interval 2)": ("stac", {"backend": "autograd", "meta_interval": 2}, {}),
    "stac (torch.func, meta_interval 4)": ("stac", {"backend": "func", "meta_interval": 4}, {}),
}


def per_step_times(task: str, steps: int, reps: int) -> dict[str, dict[str, float]]:
    """Median seconds per env step of ``steps``-step lifetimes, per agent."""
    import gymnasium as gym

    import hyperenvs
    from solvers import make_solver

    gym.register_envs(hyperenvs)
    env_id = f"HyperRL/IMPALA-{task}-v0"
    times: dict[str, list[float]] = {name: [] for name in AGENTS}
    for rep in range(reps + 1):  # the first repetition warms up and is dropped
        for name, (solver, kwargs, make) in AGENTS.items():
            env = gym.make(env_id, total_timesteps=steps, iterations_per_step=1, **make)
            start = time.perf_counter()
            log = make_solver(solver, **kwargs).run(env, seed=rep)
            elapsed = time.perf_counter() - start
            env.close()
            if rep:
                times[name].append(elapsed / int(log.timesteps[-1]))
    base = statistics.median(times["impala"])
    return {
        name: {
            "us_per_env_step": 1e6 * statistics.median(t),
            "ratio_to_impala": statistics.median(t) / base,
            "all_us": [1e6 * x for x in t],
        }
        for name, t in times.items()
    }


def atari_ceiling(num_envs: int, steps: int) -> float:
    """Env steps/s of the raw AtariVectorEnv with random actions."""
    from agents.rollout import make_vector_env

    envs = make_vector_env("ALE/Pong-v5", num_envs)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    n = envs.single_action_space.n
    for _ in range(20):
        envs.step(rng.integers(0, n, num_envs))
    start = time.perf_counter()
    for _ in range(steps):
        envs.step(rng.integers(0, n, num_envs))
    elapsed = time.perf_counter() - start
    envs.close()
    return steps * num_envs / elapsed


def impala_atari(num_envs: int, iterations: int, asynchronous: bool) -> dict[str, float]:
    """Env steps/s of IMPALA iterations (collection + update) on Pong, after one warm-up iteration."""
    from agents.impala import IMPALAConfig, IMPALALearner

    config = IMPALAConfig(task="ALE/Pong-v5", num_envs=num_envs, sign_reward=True, asynchronous=asynchronous, num_actors=2)
    learner = IMPALALearner(config, seed=0)
    try:
        learner.iterate({"gamma": 0.995})
        start, steps, lags = time.perf_counter(), 0, []
        for _ in range(iterations):
            report = learner.iterate({"gamma": 0.995})
            steps += report.env_steps
            lags.append(report.stats["policy_lag"])
        elapsed = time.perf_counter() - start
    finally:
        learner.close()
    return {"env_steps_per_s": steps / elapsed, "mean_policy_lag": float(np.mean(lags)), "iterations": iterations}


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for task, rows in result["per_step"].items():
        names = list(rows)
        axes[0].barh([f"{task}: {n}" for n in names], [rows[n]["ratio_to_impala"] for n in names])
    axes[0].axvline(1.3, color="k", ls="--", lw=1, label="target 1.3x")
    axes[0].set_xlabel("wall time per env step / IMPALA's")
    axes[0].legend()
    atari = result["atari_pong"]
    labels = ["AtariVectorEnv ceiling", "IMPALA sync", "IMPALA 2 async actors"]
    values = [atari["ceiling_env_steps_per_s"], atari["sync"]["env_steps_per_s"], atari["async_2_actors"]["env_steps_per_s"]]
    axes[1].bar(labels, values, color=["0.6", "C0", "C1"])
    axes[1].set_ylabel("env steps / s")
    axes[1].set_title(f"Pong, {atari['num_envs']} envs per collector")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["CartPole", "Acrobot"])
    parser.add_argument("--steps", type=int, default=16_000, help="env steps per timed lifetime")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--atari-envs", type=int, default=16)
    parser.add_argument("--atari-iterations", type=int, default=6)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.tasks, args.atari_iterations = 4_000, 1, ["CartPole"], 2
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"settings": vars(args), "platform": platform.platform(), "torch_threads": 1, "per_step": {}}
    for task in args.tasks:
        result["per_step"][task] = per_step_times(task, args.steps, args.reps)
        print(task, json.dumps({k: round(v["us_per_env_step"], 1) for k, v in result["per_step"][task].items()}), flush=True)
    result["atari_pong"] = {
        "num_envs": args.atari_envs,
        "ceiling_env_steps_per_s": atari_ceiling(args.atari_envs, 200),
        "sync": impala_atari(args.atari_envs, args.atari_iterations, asynchronous=False),
        "async_2_actors": impala_atari(args.atari_envs, args.atari_iterations, asynchronous=True),
    }
    print(json.dumps(result["atari_pong"], indent=1), flush=True)
    suffix = "_quick" if args.quick else ""
    (out / f"speed{suffix}.json").write_text(json.dumps(result, indent=2))
    print(f"plot {plot(result, out / f'speed{suffix}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
