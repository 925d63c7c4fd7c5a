"""Lifetime-updates per second of a population of A2C (or PPO) lifetimes on Catch: vectorised vs a Python loop.

Side by side in one run, alternating the order each round (medians over rounds):

* ``vectorised``: ``agents.stacked_tasks.StackedTaskA2C`` over N learners: one task of N x B
  instances stepped by one call, one batched-matmul network evaluation per step, one vmapped
  update per iteration (every lifetime still the one its lone learner lives, bit for bit);
* ``loop``: ``learner.iterate()`` of each of the N ``TaskA2CLearner``\\ s in turn;
* ``env_vectorised`` / ``env_loop``: the whole PettingZoo population,
  ``hyperenvs.population.parallel_env("HyperRL/A2C-Catch-v0", num_lifetimes=N)`` with one
  iteration per hyper-step, one program vs ``vectorise=False``. Both compute every HyperEnv's
  reward and info and every lifetime's projection and statistics observations. The loop does
  it one HyperEnv at a time; the program computes the observations of all lifetimes together
  (``hyperenvs.observers.observe_batch``).

The JSON also holds ``paired_median_ratios``, the median over rounds of each round's ratio.
Both configurations of a pair run back to back, so this ratio is less exposed to the load
on a shared machine.

One lifetime-update is one collection of ``num_steps`` steps plus one A2C update of one lifetime.
Optim4RL's meta-training units each run ONE env; ``--num-envs`` changes that.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/tasks/population_speed.py [--quick] [--algorithm ppo]

Writes ``results/population_speed_cpu.json`` (``population_speed_ppo_cpu.json`` for PPO: the
registry's Optim4RL values, 4 epochs of minibatches of 80, clamped to the batch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from agents.stacked_tasks import StackedTaskA2C, StackedTaskPPO
from agents.task_learners import TaskA2CConfig, TaskA2CLearner, TaskPPOConfig, TaskPPOLearner
from hyperenvs.population import parallel_env

HP = {"gamma": 0.995, "gae_lambda": 0.95, "ent_coef": 0.01, "lr": 3e-3}
ALGORITHMS = {
    # (runner, config, learner, id, hyperparameters): PPO with the registry's Optim4RL values (4 epochs of 80)
    "a2c": (StackedTaskA2C, TaskA2CConfig, TaskA2CLearner, "HyperRL/A2C-Catch-v0", HP),
    "ppo": (StackedTaskPPO, TaskPPOConfig, TaskPPOLearner, "HyperRL/PPO-Catch-v0", {**HP, "epochs": 4, "minibatch_size": 80}),
}


def _timed(fn, iterations: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lifetimes", type=int, default=64)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="a2c")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 iterations")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.iterations = 2, 3
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    runner, config_cls, learner_cls, env_id, hp = ALGORITHMS[args.algorithm]
    config = config_cls(num_envs=args.num_envs)
    n = args.lifetimes
    stacked = runner([learner_cls(config, seed=j, device=args.device) for j in range(n)])
    loop = [learner_cls(config, seed=j, device=args.device) for j in range(n)]
    runs = {"vectorised": lambda: stacked.iterate(hp), "loop": lambda: [lr.iterate(hp) for lr in loop]}
    kwargs = {"num_envs": args.num_envs, "iterations_per_step": 1, "timing": False, "device": args.device}
    for name, vectorise in (("env_vectorised", None), ("env_loop", False)):
        env = parallel_env(env_id, num_lifetimes=n, vectorise=vectorise, **kwargs)
        env.reset(seed=0)
        actions = {a: env.action_space(a).sample() * 0 for a in env.agents}
        runs[name] = lambda env=env, actions=actions: env.step(actions)
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name in list(runs)[:: 1 if r % 2 == 0 else -1]:
            samples[name].append(n * args.iterations / _timed(runs[name], args.iterations))
            print(f"round {r} {name:15s} {samples[name][-1]:10.1f} lifetime-updates/s", flush=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratio = medians["vectorised"] / medians["loop"]
    env_ratio = medians["env_vectorised"] / medians["env_loop"]
    # each round measures a pair back to back: the median of those ratios is less exposed to load swings
    paired = {
        "ratio": statistics.median(v / lo for v, lo in zip(samples["vectorised"], samples["loop"])),
        "env_ratio": statistics.median(v / lo for v, lo in zip(samples["env_vectorised"], samples["env_loop"])),
    }
    result = {
        "algorithm": args.algorithm,
        "hyperparameters": hp,
        "lifetimes": n,
        "num_envs": args.num_envs,
        "num_steps": config.num_steps,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "threads": args.threads,
        "device": args.device,
        "lifetime_updates_per_s": samples,
        "median": medians,
        "ratio": ratio,
        "env_ratio": env_ratio,
        "paired_median_ratios": paired,
        "load_average_at_start": load_start,
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
    }
    print(json.dumps({"median": medians, "ratio": ratio, "env_ratio": env_ratio, "paired": paired}, indent=1))
    suffix = "" if args.algorithm == "a2c" else f"_{args.algorithm}"
    out = Path(__file__).parent / "results" / f"population_speed{suffix}_{args.device}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    """Bars of the medians (log scale), one per configuration, with every round's sample as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["median"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(names)), [result["median"][k] for k in names], color=["tab:blue", "tab:grey"] * 2)
    for i, k in enumerate(names):
        ax.plot([i] * len(result["lifetime_updates_per_s"][k]), result["lifetime_updates_per_s"][k], "k.", ms=3)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("lifetime-updates / s")
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    ax.set_title(
        f"{result['lifetimes']} {result['algorithm'].upper()} Catch lifetimes, B={result['num_envs']}: "
        f"one program {result['ratio']:.1f}x the loop "
        f"(env {result['env_ratio']:.1f}x)\nload average {load}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
