"""STAC and STACX against IMPALA with fixed eta (Zahavy et al., 2020), at a CPU budget.

The paper's claim (Fig. 2, Fig. 4): STACX >= STAC >= IMPALA, on Atari at 200M
frames.  Here: the same three agents on small Gymnasium tasks, every lifetime
an ``HyperRL/IMPALA-<Task>-v0`` env with one IMPALA update per hyper-step:

- ``impala``: the static solver, eta held at the id's defaults (IMPALA's);
- ``stac``: eta = {gamma, lambda, g_v, g_p, g_e, alpha} by metagradients;
- ``stacx``: STAC plus two auxiliary heads with their own eta (18 metaparameters).

Scores per run: final return (mean of the last 10 episodes) and the mean of the
return curve over the lifetime (area under the curve); aggregated over seeds
with the IQM and a 95% percentile-bootstrap CI (rliable).  Writes
``results/stac_reproduction.json``, ``results/summary.md``, the return curves
and the metaparameter schedules (paper Fig. 9) under ``results/``.

    python benchmarks/stac/reproduce.py              # CartPole + Acrobot, 5 seeds, 100k steps
    python benchmarks/stac/reproduce.py --quick      # a minute: 2 seeds, 8k steps, CartPole

The raw RunLogs go to ``OUT/runs/`` (not in git; ``--skip-existing`` summarises
them again without rerunning); the committed summary is the JSON, ``summary.md``,
``runs.csv`` (per run: final return, AUC) and the plots.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.aggregate import auc, iqm_ci, write_run_summary  # noqa: E402

HERE = Path(__file__).resolve().parent
SOLVER_ENV = {"impala": {}, "stac": {}, "stacx": {"config": {"aux_heads": 2}}}
"""solver -> extra gym.make kwargs (STACX needs the auxiliary heads in the network)"""


def _path(out: str, env_id: str, solver: str, seed: int) -> Path:
    return Path(out) / f"{env_id.split('/')[1]}-{solver}-seed{seed}.jsonl"


def _job(job: tuple[str, str, int, int, str, str, float]) -> str:
    solver, env_id, seed, budget, _, out, meta_lr = job
    path = _path(out, env_id, solver, seed)
    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers import make_solver
    from solvers.base import describe_space

    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    env = gym.make(env_id, total_timesteps=budget, iterations_per_step=1, **SOLVER_ENV[solver])
    kwargs = {} if solver == "impala" else {"meta_lr": meta_lr}
    start = time.perf_counter()
    try:
        log = make_solver("static" if solver == "impala" else solver, **kwargs).run(env, seed=seed)
    finally:
        env.close()
    log.solver = solver
    log.space = describe_space(env)
    log.save(path)
    print(f"{env_id} {solver} seed {seed}: final {log.final_return():.1f}, {time.perf_counter() - start:.0f} s", flush=True)
    return str(path)


def plot_metaparameters(logs: list, path: Path, title: str) -> Path:
    """Paper Fig. 9: each metaparameter over training; main head solid, auxiliary heads dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["gamma", "lambda_", "g_v", "g_p", "g_e", "alpha"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
    colors = {"stac": "C2", "stacx": "C0"}
    head_colors = {"": None, "/aux1": "C1", "/aux2": "C6"}
    for ax, name in zip(axes.flat, names):
        for log in logs:
            sched = log.schedule()
            for suffix, color in head_colors.items():
                key = name + suffix
                if key not in sched:
                    continue
                c = color or colors.get(log.solver, "C3")
                label = f"{log.solver}{suffix or ' main'}" if log.seed == logs[0].seed else None
                ax.plot(log.timesteps, sched[key], color=c, alpha=0.6, lw=1, ls="-" if not suffix else "--", label=label)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="x-small")
    for ax in axes[1]:
        ax.set_xlabel("inner environment steps")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["CartPole", "Acrobot"], help="IMPALA id task names")
    parser.add_argument("--solvers", nargs="+", default=["impala", "stac", "stacx"], choices=sorted(SOLVER_ENV))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100_000, help="env steps per lifetime")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--meta-lr", type=float, default=1e-3, help="STAC's Adam step on the metaparameter logits")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="2 seeds, 8k steps, CartPole only: a smoke run")
    parser.add_argument("--skip-existing", action="store_true", help="reuse RunLogs already under OUT/runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.tasks = 2, 8_000, ["CartPole"]
        args.out = str(Path(args.out) / "quick")
    out = Path(args.out)
    runs = out / "runs"
    # Interleave solvers so a partial run still compares like with like.
    jobs = [(s, f"HyperRL/IMPALA-{t}-v0", seed, args.budget, None, str(runs), args.meta_lr)
            for t in args.tasks for seed in range(args.seeds) for s in args.solvers]  # fmt: skip
    start = time.perf_counter()
    todo = [j for j in jobs if not (args.skip_existing and _path(j[5], j[1], j[0], j[2]).exists())]
    if args.workers <= 1:
        [_job(j) for j in todo]
    else:
        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            pool.map(_job, todo, chunksize=1)
    paths = [_path(j[5], j[1], j[0], j[2]) for j in jobs]
    wall = time.perf_counter() - start

    from solvers.base import RunLog
    from solvers.plots import plot_returns

    logs = [RunLog.load(p) for p in paths]
    summary: dict[str, Any] = {}
    plots = []
    for task in args.tasks:
        env_id = f"HyperRL/IMPALA-{task}-v0"
        mine = [log for log in logs if log.env_id == env_id]
        summary[task] = {}
        for solver in args.solvers:
            runs_ = [log for log in mine if log.solver == solver]
            finals = np.array([log.final_return() for log in runs_])
            aucs = np.array([auc(log) for log in runs_])
            row = {}
            for metric, values in (("final_return", finals), ("mean_return_over_lifetime", aucs)):
                iqm, low, high = iqm_ci(values)
                row[metric] = {"iqm": iqm, "ci_low": low, "ci_high": high, "per_seed": values.tolist()}
            row["wall_time_per_run_s"] = float(np.mean([sum(r.wall_time for r in log.records) for log in runs_]))
            summary[task][solver] = row
        plots.append(plot_returns(mine, out / f"returns_{task}.png", title=f"{env_id}: IMPALA vs STAC vs STACX"))
        tuned = [log for log in mine if log.solver in ("stac", "stacx")]
        if tuned:
            plots.append(plot_metaparameters(tuned, out / f"metaparameters_{task}.png", f"{env_id}: metaparameters (Fig. 9)"))
    payload = {
        "jobs_run_now": len(todo),
        "claim": "STACX >= STAC >= IMPALA (Zahavy et al., 2020, Fig. 2 and 4, Atari 200M frames)",
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "iterations_per_step": 1},
        "wall_time_s": wall,
        "platform": platform.platform(),
        "summary": summary,
        "plots": [str(p.relative_to(out)) for p in plots],
        "runs": str(write_run_summary(logs, out / "runs.csv").relative_to(out)),
    }
    (out / "stac_reproduction.json").write_text(json.dumps(payload, indent=2))
    lines = [f"# STAC reproduction ({args.seeds} seeds, {args.budget:,} env steps per lifetime)", ""]
    for task, rows in summary.items():
        lines += [f"## {task}", "", "| agent | final return IQM [95% CI] | mean return over lifetime IQM [95% CI] | s per run |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for solver, row in rows.items():
            f, a = row["final_return"], row["mean_return_over_lifetime"]
            cells = [f"{m['iqm']:.1f} [{m['ci_low']:.1f}, {m['ci_high']:.1f}]" for m in (f, a)]
            lines.append(f"| {solver} | {cells[0]} | {cells[1]} | {row['wall_time_per_run_s']:.0f} |")
        lines.append("")
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wall time {wall:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
