"""STAC's overhead and IMPALA's throughput, side by side in one run.

1. Wall time (and CPU time) per inner env step of a whole lifetime (``env.step``
   plus the solver's own work) for IMPALA with fixed eta (the static solver),
   STAC and STACX, at the same settings: ``HyperRL/IMPALA-<Task>-v0`` with one
   IMPALA update per hyper-step.  STAC's default differentiates the learner's own
   update (``IMPALALearner.graph_meta``) and scores it on the next unroll; "replay"
   redoes that update through ``agents.unroll`` instead, "same batch" scores it on
   its own batch (the difference: one more no-grad forward of the old policy, on
   the next batch, and the graph held for one hyper-step).  In each repetition the
   agents' lifetimes run side by side, a hyper-step of each in turn, so that a
   shared machine's slow spells hit every agent alike; the median over
   repetitions is reported, and the median of the per-repetition ratios
   ("paired").  The paper reports about 30% extra compute for STAC; the target
   here is <= 1.3x.
2. IMPALA on Atari Pong (Nature CNN, 16 envs, unrolls of 20): env steps/s in
   synchronous mode and with 2 asynchronous actors, against the raw
   ``AtariVectorEnv`` ceiling (random actions, no network) measured in the same run.

    python benchmarks/stac/speed.py | tee benchmarks/stac/results/speed.log    # ~5 minutes on 2 cores
    python benchmarks/stac/speed.py --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
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
    "stac": ("stac", {}, {}),
    "stac (replay)": ("stac", {"replay": True}, {}),
    "stac (same batch)": ("stac", {"outer_batch": "same"}, {}),
    "stac (same batch, replay)": ("stac", {"outer_batch": "same", "replay": True}, {}),
    "stacx": ("stacx", {}, {"config": {"aux_heads": 2}}),
    "stac (meta_interval 2)": ("stac", {"meta_interval": 2}, {}),
}
"""label -> (solver, solver kwargs, gym.make kwargs)"""


def per_step_times(task: str, steps: int, reps: int) -> dict[str, dict[str, float]]:
    """Seconds per env step of ``steps``-step lifetimes, per agent: wall time, and this process's CPU time.

    Each repetition runs one lifetime of every agent side by side, a hyper-step of each in
    turn, so that a slow spell of the (shared, virtual) machine falls on all of them alike;
    what is timed is the solver's ``act``, ``env.step`` and ``observe``, the loop of
    ``EpisodeSolver.run``.  CPU time is ``time.process_time`` (every thread of this process).
    """
    import gymnasium as gym

    import hyperenvs
    from solvers import make_solver

    gym.register_envs(hyperenvs)
    env_id = f"HyperRL/IMPALA-{task}-v0"
    wall: dict[str, list[float]] = {name: [] for name in AGENTS}
    cpu: dict[str, list[float]] = {name: [] for name in AGENTS}
    for rep in range(reps + 1):  # the first repetition warms up and is dropped
        runs = {}
        for name, (solver_name, kwargs, make) in AGENTS.items():
            env = gym.make(env_id, total_timesteps=steps, iterations_per_step=1, **make)
            solver = make_solver(solver_name, **kwargs)
            obs, info = env.reset(seed=rep)
            solver.begin(env, obs, info, rep)
            runs[name] = {"env": env, "solver": solver, "obs": obs, "done": False, "wall": 0.0, "cpu": 0.0}
        while not all(r["done"] for r in runs.values()):
            for r in (r for r in runs.values() if not r["done"]):
                start, start_cpu = time.perf_counter(), time.process_time()
                action = r["solver"].act(r["obs"])
                r["obs"], reward, terminated, truncated, info = r["env"].step(action)
                r["done"] = terminated or truncated
                r["solver"].observe(action, r["obs"], float(reward), r["done"], info)
                r["wall"] += time.perf_counter() - start
                r["cpu"] += time.process_time() - start_cpu
                r["timesteps"] = int(info["timesteps"])
        for name, r in runs.items():
            r["env"].close()
            if rep:
                wall[name].append(r["wall"] / r["timesteps"])
                cpu[name].append(r["cpu"] / r["timesteps"])
    return {name: _summary(wall[name], wall["impala"]) | _summary(cpu[name], cpu["impala"], "cpu_") for name in AGENTS}


def _summary(times: list[float], impala: list[float], prefix: str = "") -> dict[str, object]:
    return {
        f"{prefix}us_per_env_step": 1e6 * statistics.median(times),
        f"{prefix}ratio_to_impala": statistics.median(times) / statistics.median(impala),
        # Each repetition against IMPALA's in the same round: less sensitive to load that drifts between rounds.
        f"{prefix}paired_ratio": statistics.median(x / y for x, y in zip(times, impala)),
        f"{prefix}all_us": [1e6 * x for x in times],
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

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    labels = [f"{task}: {name}" for task, rows in result["per_step"].items() for name in rows]
    rows = [row for task_rows in result["per_step"].values() for row in task_rows.values()]
    y = np.arange(len(rows))
    axes[0].barh(y - 0.2, [r["ratio_to_impala"] for r in rows], height=0.4, label="wall time")
    axes[0].barh(y + 0.2, [r["cpu_ratio_to_impala"] for r in rows], height=0.4, label="CPU time")
    axes[0].set_yticks(y, labels, fontsize="small")
    axes[0].invert_yaxis()
    axes[0].axvline(1.3, color="k", ls="--", lw=1, label="target 1.3x")
    axes[0].set_xlabel("time per env step / IMPALA's (median of repetitions)")
    axes[0].legend(fontsize="small")
    atari = result["atari_pong"]
    labels = ["AtariVectorEnv\nceiling", "IMPALA\nsynchronous", "IMPALA\n2 async actors"]
    values = [atari["ceiling_env_steps_per_s"], atari["sync"]["env_steps_per_s"], atari["async_2_actors"]["env_steps_per_s"]]
    axes[1].bar(labels, values, color=["0.6", "C0", "C1"])
    axes[1].set_ylabel("env steps / s")
    axes[1].set_title(f"Pong, {atari['num_envs']} envs per collector")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine() -> dict[str, object]:
    """What ran the benchmark, and how loaded it was (the cores are shared)."""
    import os

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "load_average": os.getloadavg()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["CartPole", "Acrobot"])
    parser.add_argument("--steps", type=int, default=16_000, help="env steps per timed lifetime")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per agent (after one warm-up)")
    parser.add_argument("--atari-envs", type=int, default=16)
    parser.add_argument("--atari-iterations", type=int, default=6)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--no-atari", action="store_true", help="skip the Pong throughput part")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.tasks, args.atari_iterations = 4_000, 1, ["CartPole"], 2
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "out": os.path.relpath(out, ROOT)}  # no machine paths in git
    result: dict = {"settings": settings, "machine_at_start": machine(), "torch_threads": 1, "per_step": {}}
    for task in args.tasks:
        result["per_step"][task] = per_step_times(task, args.steps, args.reps)
        rows = result["per_step"][task]
        for name, row in rows.items():
            print(f"{task:9s} {name:34s} wall {row['us_per_env_step']:6.1f} us/step x{row['ratio_to_impala']:.2f} "
                  f"(paired x{row['paired_ratio']:.2f})  cpu {row['cpu_us_per_env_step']:6.1f} us/step "
                  f"x{row['cpu_ratio_to_impala']:.2f} (paired x{row['cpu_paired_ratio']:.2f})", flush=True)  # fmt: skip
    if args.no_atari:
        result["load_average_at_end"] = machine()["load_average"]
        suffix = "_quick" if args.quick else ""
        (out / f"speed{suffix}_cartpole.json").write_text(json.dumps(result, indent=2))
        return 0
    result["atari_pong"] = {
        "num_envs": args.atari_envs,
        "ceiling_env_steps_per_s": atari_ceiling(args.atari_envs, 200),
        "sync": impala_atari(args.atari_envs, args.atari_iterations, asynchronous=False),
        "async_2_actors": impala_atari(args.atari_envs, args.atari_iterations, asynchronous=True),
    }
    print(json.dumps(result["atari_pong"], indent=1), flush=True)
    result["load_average_at_end"] = machine()["load_average"]
    suffix = "_quick" if args.quick else ""
    (out / f"speed{suffix}.json").write_text(json.dumps(result, indent=2))
    print(f"plot {plot(result, out / f'speed{suffix}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
