"""Sweep wall time: Ray with 2 workers vs one run after another, side by side in one process.

2 solvers x 2 ids x 4 seeds on tiny budgets.  Ray's start-up (``ray.init`` plus each
worker's first import of torch and the library) is timed apart from the sweep, so the
ratio is what a long sweep gets.  Both sweeps give the same report (checked here).

    OMP_NUM_THREADS=1 python benchmarks/sweep_speed.py --out benchmarks/results/sweep_speed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvers import sweep  # noqa: E402
from solvers.cli import build_parser  # noqa: E402

SOLVERS = "static,random"
IDS = "HyperRL/A2C-CartPole-v0,HyperRL/PPO-CartPole-v0"
BUDGET = ["--total-timesteps", "4096", "--iterations-per-step", "4", "--num-envs", "4", "--config", "num_steps=32"]


def config(out: Path, backend: str, seeds: int) -> sweep.SweepConfig:
    argv = ["sweep", SOLVERS, IDS, "--seeds", str(seeds), "--out", str(out), "--backend", backend, "--workers", "2", *BUDGET]
    return sweep.config_from(build_parser().parse_args(argv))


def _warm() -> str:
    import torch  # noqa: F401

    import solvers.cli  # noqa: F401

    return str(os.getpid())


def start_ray(workers: int) -> float:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    warm = ray.remote(num_cpus=1)(_warm)
    pids = set()
    while len(pids) < workers:  # until every worker has imported torch and the library once
        pids |= set(ray.get([warm.remote() for _ in range(4 * workers)]))
    return time.perf_counter() - start


def timed(cfg: sweep.SweepConfig) -> float:
    shutil.rmtree(cfg.out, ignore_errors=True)
    start = time.perf_counter()
    sweep.run_sweep(cfg)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sweep_speed")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="times each sweep is run (the best time counts)")
    args = parser.parse_args()
    out, runs = Path(args.out), Path(tempfile.mkdtemp(prefix="sweep-speed-"))
    startup = start_ray(2)
    ray_s, serial_s = [], []
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both
        ray_s.append(timed(config(runs / "ray", "ray", args.seeds)))
        serial_s.append(timed(config(runs / "serial", "serial", args.seeds)))
    same = (runs / "ray" / "report.json").read_text() == (runs / "serial" / "report.json").read_text()
    result = {
        "runs": 2 * 2 * args.seeds,
        "budget": BUDGET,
        "ray_startup_s": round(startup, 2),
        "ray_2_workers_s": [round(t, 2) for t in ray_s],
        "sequential_s": [round(t, 2) for t in serial_s],
        "speedup_of_best_times": round(min(serial_s) / min(ray_s), 2),
        "same_report": same,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(runs)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
