"""Today's path (Gymnasium envs, eager updates) against the batched twin with fused (the ``-v1`` default) or compiled updates.

One 100k-step lifetime per (case, path), each in a fresh process; the cold path starts from an
empty inductor cache, so every compile the twin path needs is paid inside its lifetime, and the
warm paths from the cache that run left (as any later run on the same machine would); the hyperparameters change
every hyper-step (``CONTROLLED``: a fixed random sequence of actions in the middle half of their
ranges, the same for every path).  The paths run
interleaved, side by side in one run, each repeat in the order old, new, so machine load hits
both alike; the load average is recorded with each lifetime.  Reports env-steps/s (compile time
included), the ratio, and where the time goes (collection, updates, compiling).

    python benchmarks/compiled_speed.py --out benchmarks/compiled/results --repeats 1
    python benchmarks/compiled_speed.py --quick                                # 10k steps, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_PPO_CP = {"config": {"num_envs": 8, "num_steps": 128, "hidden": [64, 64]}, "defaults": {"epochs": 10, "minibatch_size": 64}}
CASES = {
    # the setting: 8 envs x 128 steps, 10 epochs of minibatches of 64, 64-64 tanh, one iteration a hyper-step
    "PPO-CartPole": {"ids": ("HyperRL/PPO-CartPole-v0", "HyperRL/PPO-CartPole-v1"), "iterations_per_step": 1, **_PPO_CP},
    "A2C-CartPole": {"ids": ("HyperRL/A2C-CartPole-v0", "HyperRL/A2C-CartPole-v1")},
    "PPO-Pendulum": {"ids": ("HyperRL/PPO-Pendulum-v0", "HyperRL/PPO-Pendulum-v1")},
}
CONTROLLED = {"PPO": ["lr", "clip", "gae_lambda"], "A2C": ["lr", "gae_lambda", "ent_coef", "vf_coef"]}
"""what changes every hyper-step (PPO's minibatch size stays: each distinct size compiles once)"""
"""case -> the two ids (today's, the new default) and the settings both run with (else the ids' own)"""

PATHS = {
    "gymnasium+eager": {"index": 0, "compile": False, "threads": 1},
    "twin+fused": {"index": 1, "compile": "auto", "threads": 1},  # the -v1 ids' own default: fused on CPU
    "twin+eager": {"index": 1, "compile": False, "threads": 1},
    "twin+compiled": {"index": 1, "compile": True, "threads": 1},
    "twin+compiled, warm cache": {"index": 1, "compile": True, "threads": 1, "warm": True},
    "twin+compiled, warm cache, 2 threads": {
        "index": 1,
        "compile": True,
        "threads": 2,
        "warm": True,
        "cases": ("PPO-CartPole",),
    },
}
"""how a lifetime runs: which of the case's ids, the compile setting, torch threads, whether inductor's disk
cache holds the graphs already (left by the cold run of the same case before it: what any later run on
the machine sees), and for which cases"""


def lifetime(case: str, path: str, steps: int) -> dict:
    """One lifetime in this process; returns seconds in total, collecting and compiling."""
    import gymnasium as gym
    import torch

    import hyperenvs

    spec, how = CASES[case], PATHS[path]
    torch.set_num_threads(how["threads"])
    gym.register_envs(hyperenvs)
    config = dict(spec.get("config", {}))
    if how["compile"] is not None:
        config["compile"] = how["compile"]
    kwargs = {k: spec[k] for k in ("iterations_per_step", "defaults") if k in spec}
    controlled = CONTROLLED[case.split("-")[0]]
    env = gym.make(spec["ids"][how["index"]], total_timesteps=steps, config=config, hyperparameters=controlled, **kwargs)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    env.reset(seed=0)
    collector = env.unwrapped.learner.collector
    collect, spent = collector.collect, [0.0]

    def timed(*args, **kw):
        t = time.perf_counter()
        out = collect(*args, **kw)
        spent[0] += time.perf_counter() - t
        return out

    collector.collect = timed
    done, hyper_steps, compiling, returns = False, 0, 0.0, []
    while not done:
        _, _, terminated, truncated, info = env.step(rng.uniform(-0.5, 0.5, env.action_space.shape).astype(np.float32))
        done, hyper_steps = terminated or truncated, hyper_steps + 1
        compiling += info["compile_seconds"]
        returns.extend(info["episode_returns"])
    total = time.perf_counter() - start
    timesteps = env.unwrapped.learner.timesteps
    env.close()
    return {
        "seconds": total,
        "collect_s": spent[0],
        "compile_s": compiling,
        "update_s": total - spent[0] - compiling,
        "timesteps": timesteps,
        "hyper_steps": hyper_steps,
        "env_steps_per_s": timesteps / total,
        "last_returns_mean": float(np.mean(returns[-10:])) if returns else float("nan"),
    }


def run_fresh(case: str, path: str, steps: int, cache: str) -> dict:
    """``lifetime`` in a new interpreter, its inductor cache in ``cache`` (empty unless the path is warm)."""
    how = PATHS[path]
    with tempfile.TemporaryDirectory() as empty:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache if how.get("warm") else empty}
        env["OMP_NUM_THREADS"] = str(how["threads"])
        if not how.get("warm") and how["compile"] is True:
            env["TORCHINDUCTOR_CACHE_DIR"] = cache  # the cold run fills the case's cache for the warm ones
            shutil.rmtree(cache, ignore_errors=True)
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--one", case, path, str(steps)]
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "load_before": load, "load_after": os.getloadavg()[0]}


def _paths(case: str, chosen: list[str] | None = None) -> list[str]:
    return [name for name, how in PATHS.items() if case in how.get("cases", (case,)) and name in (chosen or PATHS)]


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(report)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = [n for n in PATHS if any(n in report[c] for c in cases)]  # a path no case finished is left out
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [report[c][name]["env_steps_per_s"] if name in report[c] else np.nan for c in cases]
        bars = ax.bar(np.arange(len(cases)) + k * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(np.arange(len(cases)) + width * (len(names) - 1) / 2, cases)
    ax.set_ylabel("env steps / s (100k-step lifetime,\ncompile included)")
    ax.legend(fontsize=7)
    ax.set_title("Gymnasium + eager vs the batched twin with fused, eager or compiled updates (2 shared CPU cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS), help="which paths to run (default all)")
    p.add_argument("--out", type=Path, help="write summary.json and speed.png here")
    p.add_argument("--quick", action="store_true", help="10k steps, one repeat: a smoke run")
    p.add_argument("--one", nargs=3, metavar=("CASE", "PATH", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(lifetime(args.one[0], args.one[1], int(args.one[2]))))
        return 0
    steps, repeats = (10_000, 1) if args.quick else (args.steps, args.repeats)
    args.paths = ["gymnasium+eager", *(p for p in args.paths if p != "gymnasium+eager")]  # the ratios' base
    runs = {c: {name: [] for name in _paths(c, args.paths)} for c in args.cases}
    caches = tempfile.TemporaryDirectory()
    for _ in range(repeats):
        for case in args.cases:
            for name in _paths(case, args.paths):
                runs[case][name].append(row := run_fresh(case, name, steps, os.path.join(caches.name, case)))
                print(
                    f"{case:13s} {name:25s} {row['env_steps_per_s']:8.0f} steps/s  {row['seconds']:6.1f} s "
                    f"(collect {row['collect_s']:.1f}, update {row['update_s']:.1f}, compile {row['compile_s']:.1f})  "
                    f"load {row['load_before']:.2f}",
                    flush=True,
                )
    report = {}
    for case, by_path in runs.items():
        report[case] = {}
        for name, rows in by_path.items():
            median = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}
            # the rate once compiled: what every later lifetime of the same process (or a warm cache) sees
            after = float(np.median([r["timesteps"] / (r["seconds"] - r["compile_s"]) for r in rows]))
            report[case][name] = {**median, "env_steps_per_s_without_compile": after, "runs": rows}
        base = report[case]["gymnasium+eager"]["env_steps_per_s"]
        for name in by_path:
            report[case][name]["ratio_vs_gymnasium_eager"] = report[case][name]["env_steps_per_s"] / base
        for name in by_path:
            print(f"{case}: {name} / gymnasium+eager = {report[case][name]['ratio_vs_gymnasium_eager']:.2f}x")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {"steps": steps, "repeats": repeats, "cases": {c: CASES[c] for c in args.cases}, "report": report}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot(report, args.out / "speed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
