"""Which torch thread count is fastest for the small nets of the classic-control ids (``hyperrl --threads``).

One lifetime of the ``static`` solver per (id, thread count), the thread counts
interleaved and repeated in one run so machine load hits both alike; reports
env steps/s and the ratio to one thread.

    python benchmarks/threads.py                       # A2C and PPO CartPole, threads 1 and 2, 3 repeats
    python benchmarks/threads.py --threads 1 2 4 --repeats 5
    python benchmarks/threads.py --quick               # one repeat of a tenth of the steps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IDS = {"HyperRL/A2C-CartPole-v0": 50_000, "HyperRL/PPO-CartPole-v0": 20_480}
"""id -> env steps of one timed lifetime"""


def lifetime_seconds(env_id: str, steps: int, threads: int) -> float:
    """Wall time of one ``static`` lifetime of ``steps`` env steps with ``threads`` torch threads."""
    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers import make_solver

    torch.set_num_threads(threads)
    gym.register_envs(hyperenvs)
    env = gym.make(env_id, total_timesteps=steps)
    start = time.perf_counter()
    make_solver("static").run(env, seed=0)
    took = time.perf_counter() - start
    env.close()
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    p.add_argument("--quick", action="store_true", help="one repeat of a tenth of the steps: a smoke run")
    args = p.parse_args(argv)
    ids = {env_id: steps // 10 for env_id, steps in IDS.items()} if args.quick else IDS
    args.repeats = 1 if args.quick else args.repeats
    seconds = {env_id: {n: [] for n in args.threads} for env_id in ids}
    for _ in range(args.repeats):
        for env_id, steps in ids.items():
            for n in args.threads:
                seconds[env_id][n].append(lifetime_seconds(env_id, steps, n))
    report = {}
    for env_id, by_threads in seconds.items():
        base = float(np.median(by_threads[args.threads[0]]))
        report[env_id] = {
            n: {
                "median_s": float(np.median(s)),
                "env_steps_per_s": ids[env_id] / float(np.median(s)),
                "vs_first": base / float(np.median(s)),
            }
            for n, s in by_threads.items()
        }
        for n, row in report[env_id].items():
            ratio = f"{row['vs_first']:.2f}x threads {args.threads[0]}"
            print(f"{env_id} threads {n}: {row['env_steps_per_s']:8.0f} env steps/s  ({ratio})")
    if args.out:
        args.out.write_text(json.dumps({"repeats": args.repeats, "env_steps": ids, "report": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
