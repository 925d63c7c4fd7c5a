"""EPGT paper, Fig. 2a ("why episodic control?"): scheduling A2C's learning rate on MountainCarContinuous.

A2C on ``HyperRL/A2C-MountainCarContinuous-v0`` with lr in [4e-5, 1e-2],
20,000 env steps, 10 seeds.  EPGT, RND and DQN choose lr at every A2C update
(``iterations_per_step=1``) among 7 log-spaced bins
{4e-5, 1.0e-4, 2.5e-4, 6.3e-4, 1.6e-3, 4.0e-3, 1e-2} (the reference code's
classic-control A2C also used 7 choices); the fixed baselines hold lr at the
id's default 7e-4, the minimum 4e-5 and the maximum 1e-2 (continuous env, exact
values).  4 inner envs x 5 steps per update: 1,000 hyper-steps a lifetime
(the paper: 4,000 with 1 env; 4 envs keep 60 lifetimes within minutes here).

    python benchmarks/epgt/fig2a_mountaincar.py             # 10 seeds
    python benchmarks/epgt/fig2a_mountaincar.py --quick     # seconds: pipeline check only
    python benchmarks/epgt/fig2a_mountaincar.py --analyse   # summaries and plots from the saved runs only

The raw RunLogs go to ``results/fig2a_mountaincar/runs/`` (not in git); the
committed summary is ``results.json``, ``table.md``, ``runs.csv`` (per run:
final return, AUC) and the plots.

"Faster" is measured two ways: the area under the return curve (mean of the
curve over the lifetime) and the env steps until the curve (mean return of the
last 10 episodes) first reaches THRESHOLD (a run that never does counts as the
whole budget).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, run_file_name, run_jobs, summarise, write_json  # noqa: E402

from benchmarks.aggregate import CI_METHOD, auc, write_run_summary  # noqa: E402

ENV_ID = "HyperRL/A2C-MountainCarContinuous-v0"
LR_RANGE = (4e-5, 1e-2)
LR_BINS = 7
DEFAULT_LR = 7e-4
THRESHOLD = 50.0
"""a mean return MountainCarContinuous reaches only when most episodes get to the flag"""
FIXED = {"default lr 7e-4": DEFAULT_LR, "min lr 4e-5": LR_RANGE[0], "max lr 1e-2": LR_RANGE[1]}


def steps_to_threshold(log) -> float:
    """Env steps until the return curve first reaches THRESHOLD; the whole lifetime when it never does."""
    import numpy as np

    hit = np.flatnonzero(np.nan_to_num(log.returns(), nan=-np.inf) >= THRESHOLD)
    return float(log.timesteps[hit[0]]) if len(hit) else float(log.timesteps[-1])


def plot_smoothed_schedules(logs, path: Path, window: int = 100) -> Path:
    """The paper's Fig. 2a right panel: lr of the first 3 seeds, averaged over a sliding window of hyper-steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    solvers = [s for s in ("epgt", "rnd", "dqn") if any(log.solver == s for log in logs)]
    fig, axes = plt.subplots(1, len(solvers), figsize=(4 * len(solvers), 3), sharey=True, squeeze=False)
    for ax, solver in zip(axes[0], solvers):
        for log in sorted((x for x in logs if x.solver == solver and x.seed < 3), key=lambda x: x.seed):
            lr = log.schedule()["lr"]
            smooth = np.convolve(lr, np.ones(window) / window, mode="valid")
            ax.plot(log.timesteps[window - 1 :], smooth, label=f"seed {log.seed}")
        ax.set_yscale("log")
        ax.set_title(f"{solver}: lr, mean over {window} hyper-steps")
        ax.set_xlabel("inner environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--solvers", nargs="+", default=["epgt", "rnd", "dqn", *(f"fixed:{k}" for k in FIXED)])
    p.add_argument("--quick", action="store_true", help="tiny budget, 2 seeds: checks the pipeline, not the claim")
    p.add_argument("--out", type=Path, default=RESULTS / "fig2a_mountaincar")
    p.add_argument("--analyse", action="store_true", help="skip the runs: summarise those saved under --out")
    args = p.parse_args(argv)
    base = {
        "hyperparameters": {"lr": LR_RANGE},
        "total_timesteps": args.steps,
        "num_envs": args.num_envs,
        "iterations_per_step": 1,
    }
    if args.quick:
        args.seeds, base["total_timesteps"] = 2, 400
    discrete = {**base, "action_type": "discrete", "bins": LR_BINS}
    runs = args.out / "runs"
    jobs = []
    for seed in range(args.seeds):
        for s in args.solvers:
            if s.startswith("fixed:"):
                jobs.append((s, seed, ENV_ID, base, {"lr": FIXED[s.removeprefix("fixed:")]}, str(runs)))
            else:
                jobs.append((s, seed, ENV_ID, discrete, {}, str(runs)))
    if args.analyse:
        paths = [str(runs / run_file_name(j[0], j[1])) for j in jobs]
    else:
        paths = run_jobs(jobs, args.workers)

    from solvers.base import RunLog
    from solvers.plots import plot_returns, plot_schedule

    logs = [RunLog.load(path) for path in paths]
    names = list(dict.fromkeys(log.solver for log in logs))
    by_solver = {s: [log for log in logs if log.solver == s] for s in names}
    metrics = {"final": lambda log: log.final_return(), "auc": auc, "steps_to_threshold": steps_to_threshold}
    summary = summarise(by_solver, metrics)
    table = markdown_table(summary, list(metrics))
    plots = [
        str(plot_returns(logs, args.out / "returns.png", title=f"A2C MountainCarContinuous, {args.steps:,} env steps")),
        str(
            plot_schedule(
                [log for log in logs if log.solver in ("epgt", "rnd", "dqn") and log.seed < 3],
                args.out / "schedule_first3.png",
                title="lr schedules, first 3 seeds",
            )
        ),
        str(plot_smoothed_schedules(logs, args.out / "schedule_first3_smoothed.png")),
    ]
    write_json(
        args.out / "results.json",
        {
            "env_id": ENV_ID,
            "discrete_env_kwargs": discrete,
            "fixed_env_kwargs": base,
            "lr_bins": LR_BINS,
            "seeds": args.seeds,
            "summary": summary,
            "ci_method": CI_METHOD,
            "runs": str(write_run_summary(logs, args.out / "runs.csv").relative_to(args.out)),
            "plots": [Path(p).name for p in plots],  # beside this JSON; no machine paths in git
            "quick": args.quick,
        },
    )
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
