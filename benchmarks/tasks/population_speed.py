"""Lifetime-updates per second of a population of A2C lifetimes on Catch: vectorised vs a Python loop.

Side by side in one run, alternating the order each round (medians over rounds):

* ``vectorised``: ``agents.stacked.StackedTaskA2C`` over N learners: one vmapped network
  evaluation per step and one vmapped update per iteration; each lifetime's own task and
  generator are still stepped in turn (that keeps every lifetime the one a lone learner lives);
* ``loop``: ``learner.iterate()`` of each of the N ``TaskA2CLearner``\\ s in turn.

One lifetime-update is one collection of ``num_steps`` steps plus one A2C update of one lifetime.
Optim4RL's meta-training units each run ONE env; ``--num-envs`` changes that.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/tasks/population_speed.py [--quick]

Writes ``results/population_speed_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from agents.stacked_tasks import StackedTaskA2C
from agents.task_learners import TaskA2CConfig, TaskA2CLearner

HP = {"gamma": 0.995, "gae_lambda": 0.95, "ent_coef": 0.01, "lr": 3e-3}


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
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 iterations")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.iterations = 2, 3
    torch.set_num_threads(args.threads)
    config = TaskA2CConfig(num_envs=args.num_envs)
    n = args.lifetimes
    stacked = StackedTaskA2C([TaskA2CLearner(config, seed=j, device=args.device) for j in range(n)])
    loop = [TaskA2CLearner(config, seed=j, device=args.device) for j in range(n)]
    runs = {"vectorised": lambda: stacked.iterate(HP), "loop": lambda: [lr.iterate(HP) for lr in loop]}
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name in list(runs)[:: 1 if r % 2 == 0 else -1]:
            samples[name].append(n * args.iterations / _timed(runs[name], args.iterations))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratio = medians["vectorised"] / medians["loop"]
    result = {
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
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
    }
    print(json.dumps({"median": medians, "ratio": ratio}, indent=1))
    out = Path(__file__).parent / "results" / f"population_speed_{args.device}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
