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
RAW = RESULTS / "raw"
"""RunLogs and per-step solver diagnostics: git-ignored, only the summaries and plots are committed"""


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
    """One lifetime; a solver name ``fixed:<label>`` holds ``solver_kwargs`` (hyperparameter values) fixed.

    ``<solver>@<label>`` runs ``solver`` and names the log (and its file) ``<solver>@<label>``, so several
    configurations of one solver are separate arms.  A solver with ``diagnostics`` gets them saved next to its log.
    """
    solver_name, seed, env_id, env_kwargs, solver_kwargs, out = args
    label = solver_name
    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers import make_solver
    from solvers.base import describe_space

    if solver_name.startswith("fixed:"):
        solver_name = label = solver_name.removeprefix("fixed:")
        make_solver = lambda _name, **kw: _fixed_solver(solver_name, kw)  # noqa: E731
    solver_name = solver_name.split("@")[0]

    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    env = gym.make(env_id, **env_kwargs)
    start = time.perf_counter()
    solver = make_solver(solver_name, **solver_kwargs)
    try:
        log = solver.run(env, seed=seed)
        log.space = describe_space(env)
    finally:
        env.close()
    log.solver = label
    path = log.save(Path(out) / run_file_name(label, seed))
    if getattr(solver, "diagnostics", None):
        path.with_suffix(".diag.json").write_text(json.dumps(solver.diagnostics))
    took = time.perf_counter() - start
    print(f"{label} seed {seed}: {len(log)} hyper-steps, final {log.final_return():.1f}, {took:.0f} s", flush=True)
    return str(path)


def run_file_name(solver_name: str, seed: int) -> str:
    """``fixed:default lr 7e-4``, 3 -> ``default_lr_7e-4-seed3.jsonl`` (no spaces in file names)."""
    return f"{solver_name.removeprefix('fixed:').replace(' ', '_').replace('@', '_')}-seed{seed}.jsonl"


def run_jobs(jobs: Sequence[tuple[str, int, str, dict, dict, str]], workers: int, *, skip_existing: bool = False) -> list[str]:
    """Run jobs in ``workers`` processes (spawned: no torch state shared), in order of submission.

    ``skip_existing``: a job whose RunLog is already on disk is not run again (a resumed or extended sweep).
    """
    paths = [str(Path(j[5]) / run_file_name(j[0], j[1])) for j in jobs]
    todo = [j for j, path in zip(jobs, paths) if not (skip_existing and Path(path).exists())]
    if workers <= 1:
        for j in todo:
            _job(j)
    else:
        with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
            pool.map(_job, todo, chunksize=1)
    return paths


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


def diagnostics_summary(run_paths: Sequence[str], points: int = 20) -> dict:
    """Per arm with diagnostics: median neighbour distance, kernel epsilon, per-action read values over time.

    Each series is averaged over seeds at ``points`` evenly spaced hyper-steps; ``greedy_share`` is the share of
    greedy (not exploring) choices that went to each action.
    """
    by_arm: dict[str, list[list[dict]]] = {}
    for path in run_paths:
        diag = Path(path).with_suffix(".diag.json")
        if diag.exists():
            arm = json.loads(Path(path).read_text().splitlines()[0])["header"]["solver"]
            by_arm.setdefault(arm, []).append(json.loads(diag.read_text()))
    out = {}
    for arm, runs in by_arm.items():
        n = min(len(r) for r in runs)
        at = np.linspace(0, n - 1, min(points, n)).round().astype(int)
        with np.errstate(all="ignore"):
            q = np.nanmean([[r[i]["q"] for i in at] for r in runs], axis=0)
            greedy = [d["choice"] for r in runs for d in r if not d["explored"]]
            actions = len(runs[0][0]["q"])
            out[arm] = {
                "hyper_step": at.tolist(),
                "median_nn": np.nanmean([[r[i]["median_nn"] for i in at] for r in runs], axis=0).tolist(),
                "kernel_eps": np.nanmean([[r[i]["kernel_eps"] for i in at] for r in runs], axis=0).tolist(),
                "q_per_action": q.T.tolist(),
                "greedy_share": (np.bincount(greedy, minlength=actions) / max(1, len(greedy))).tolist(),
            }
    return out


def plot_diagnostics(summary: dict, path: Path) -> Path:
    """Median neighbour distance vs kernel epsilon, and read values per action, for each EPGT arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, axes = plt.subplots(2, len(arms), figsize=(4 * len(arms), 6), squeeze=False)
    for col, arm in enumerate(arms):
        d = summary[arm]
        ax = axes[0][col]
        ax.plot(d["hyper_step"], d["median_nn"], label="median neighbour d^2")
        ax.plot(d["hyper_step"], d["kernel_eps"], label="kernel epsilon")
        ax.set_yscale("log")
        ax.set_title(arm, fontsize="small")
        ax.legend(fontsize="x-small")
        ax = axes[1][col]
        for a, series in enumerate(d["q_per_action"]):
            ax.plot(d["hyper_step"], series, label=f"action {a}")
        ax.set_xlabel("hyper-step")
        ax.set_ylabel("read value (mean over seeds)")
        ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_csv(path: Path, summary: dict) -> Path:
    """``arm,metric,iqm,ci_low,ci_high,n`` rows from a ``summarise`` result."""
    lines = ["arm,metric,iqm,ci_low,ci_high,n"]
    for arm, by_metric in summary.items():
        for metric, v in by_metric.items():
            lines.append(f"{arm},{metric},{v['iqm']:.6g},{v['ci_low']:.6g},{v['ci_high']:.6g},{len(v['per_seed'])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
