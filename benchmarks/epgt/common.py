"""Shared parts of the EPGT reproductions: run (solver, seed) jobs in worker processes, aggregate with rliable.

Each job builds its env in its own process (one torch thread), runs one
lifetime and saves the RunLog; the summary is the IQM over seeds with a 95%
bootstrap confidence interval (``benchmarks/aggregate.py``, rliable).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.aggregate import iqm_ci

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _fixed_solver(label: str, values: dict[str, float]) -> Any:
    """Holds the given hyperparameter values for the whole lifetime (the paper's fixed-lr A2C baselines)."""
    from solvers.base import EpisodeSolver

    class Fixed(EpisodeSolver):
        name = label

        def begin(self, env, obs, info, seed):
            self._action = env.get_wrapper_attr("hparam_space").encode(values)

        def act(self, obs):
            return self._action

    return Fixed()


def _job(args: tuple[str, int, str, dict[str, Any], dict[str, Any], str]) -> str:
    """One lifetime; a solver name ``fixed:<label>`` holds ``solver_kwargs`` (hyperparameter values) fixed."""
    solver_name, seed, env_id, env_kwargs, solver_kwargs, out = args
    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers import make_solver
    from solvers.base import describe_space

    if solver_name.startswith("fixed:"):
        solver_name = solver_name.removeprefix("fixed:")
        make_solver = lambda _name, **kw: _fixed_solver(solver_name, kw)  # noqa: E731

    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    env = gym.make(env_id, **env_kwargs)
    start = time.perf_counter()
    try:
        log = make_solver(solver_name, **solver_kwargs).run(env, seed=seed)
        log.space = describe_space(env)
    finally:
        env.close()
    path = log.save(Path(out) / run_file_name(solver_name, seed))
    took = time.perf_counter() - start
    print(f"{solver_name} seed {seed}: {len(log)} hyper-steps, final {log.final_return():.1f}, {took:.0f} s", flush=True)
    return str(path)


def run_file_name(solver_name: str, seed: int) -> str:
    """``fixed:default lr 7e-4``, 3 -> ``default_lr_7e-4-seed3.jsonl`` (no spaces in file names)."""
    return f"{solver_name.removeprefix('fixed:').replace(' ', '_')}-seed{seed}.jsonl"


def run_jobs(jobs: Sequence[tuple[str, int, str, dict, dict, str]], workers: int) -> list[str]:
    """Run jobs in ``workers`` processes (spawned: no torch state shared), in order of submission."""
    if workers <= 1:
        return [_job(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        return pool.map(_job, jobs, chunksize=1)


def summarise(logs_by_solver: dict[str, list[Any]], metrics: dict[str, Callable[[Any], float]], reps: int = 2000) -> dict:
    """``{solver: {metric: {iqm, ci_low, ci_high, per_seed}}}``."""
    out: dict[str, dict] = {}
    for solver, logs in logs_by_solver.items():
        out[solver] = {}
        for name, fn in metrics.items():
            values = np.array([fn(log) for log in logs], dtype=np.float64)
            iqm, low, high = iqm_ci(values, reps=reps)
            out[solver][name] = {"iqm": iqm, "ci_low": low, "ci_high": high, "per_seed": values.tolist()}
    return out


def markdown_table(summary: dict, metric_names: Sequence[str]) -> str:
    head = "| solver | " + " | ".join(f"{m} IQM [95% CI]" for m in metric_names) + " |"
    rows = [head, "|" + " --- |" * (len(metric_names) + 1)]
    for solver, by_metric in summary.items():
        cells = [f"{by_metric[m]['iqm']:.1f} [{by_metric[m]['ci_low']:.1f}, {by_metric[m]['ci_high']:.1f}]" for m in metric_names]
        rows.append(f"| {solver} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path
