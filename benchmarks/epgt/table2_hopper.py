"""EPGT paper, Table 2 at a reduced budget: PPO on Hopper, controlling {lr, clip, GAE lambda, minibatch size}.

Bins are the reference code's: clip {0.1, ..., 0.5}, lambda {0.9, 0.925, 0.95,
0.975, 0.99}, lr and minibatch size as multipliers {0.5, 1, 2} of the base
value (lr 3e-4, minibatch 64): 225 joint hyper-actions.  EPGT vs default PPO
(``static``: the base values, which are bins) vs RND (uniform over the bins).

    python benchmarks/epgt/table2_hopper.py                 # 200k env steps, 3 seeds
    python benchmarks/epgt/table2_hopper.py --steps 100000 --workers 2
    python benchmarks/epgt/table2_hopper.py --quick         # seconds: pipeline check only
    python benchmarks/epgt/table2_hopper.py --analyse       # summaries and plots from the saved runs only

The raw RunLogs go to ``results/table2_hopper/runs/`` (not in git); the committed
summary is ``results.json``, ``table.md``, ``runs.csv`` (per run: final return,
AUC) and the plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, run_file_name, run_jobs, summarise, write_json  # noqa: E402

from benchmarks.aggregate import CI_METHOD, auc, write_run_summary  # noqa: E402

ENV_ID = "HyperRL/PPO-Hopper-v0"
BASE_LR, BASE_MINIBATCH = 3e-4, 64
BINS = {
    "lr": [0.5 * BASE_LR, BASE_LR, 2 * BASE_LR],
    "clip": [0.1, 0.2, 0.3, 0.4, 0.5],
    "gae_lambda": [0.9, 0.925, 0.95, 0.975, 0.99],
    "minibatch_size": [BASE_MINIBATCH // 2, BASE_MINIBATCH, 2 * BASE_MINIBATCH],
}
RANGES = {"lr": (1e-5, 1e-2), "clip": (0.05, 0.5), "gae_lambda": (0.8, 1.0), "minibatch_size": (16, 1024)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200_000, help="env steps per lifetime (paper: 1M)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--solvers", nargs="+", default=["epgt", "static", "rnd"])
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.add_argument("--quick", action="store_true", help="tiny budget, 2 seeds: checks the pipeline, not the claim")
    p.add_argument("--out", type=Path, default=RESULTS / "table2_hopper")
    p.add_argument("--analyse", action="store_true", help="skip the runs: summarise those saved under --out")
    args = p.parse_args(argv)
    env_kwargs = {"hyperparameters": RANGES, "action_type": "discrete", "bins": BINS, "total_timesteps": args.steps}
    if args.quick:
        args.seeds = 2
        env_kwargs.update(total_timesteps=256, num_envs=1, config={"num_steps": 64}, defaults={"epochs": 1})
    runs = args.out / "runs"
    jobs = [(s, seed, ENV_ID, env_kwargs, {}, str(runs)) for seed in range(args.seeds) for s in args.solvers]
    paths = [str(runs / run_file_name(j[0], j[1])) for j in jobs] if args.analyse else run_jobs(jobs, args.workers)

    from solvers.base import RunLog
    from solvers.plots import plot_returns, plot_schedule

    logs = [RunLog.load(path) for path in paths]
    made_with = {int(log.timesteps[-1]) for log in logs if len(log)}
    # a lifetime ends within one hyper-step (one 2048-step rollout here) past its budget
    if args.analyse and made_with and not args.steps <= max(made_with) < args.steps + 2048:
        p.error(f"the runs under {args.out} were made with --steps {max(made_with)}, not {args.steps}")
    by_solver = {s: [log for log in logs if log.solver == s] for s in args.solvers}
    metrics = {
        "final": lambda log: log.final_return(),
        "auc": auc,
        "best": lambda log: float(np.nanmax(log.returns())) if np.isfinite(log.returns()).any() else float("nan"),
    }
    summary = summarise(by_solver, metrics)
    table = markdown_table(summary, list(metrics))
    plots = [
        str(plot_returns(logs, args.out / "returns.png", title=f"PPO Hopper, {args.steps:,} env steps")),
        str(plot_schedule([log for log in logs if log.solver != "static" and log.seed < 3], args.out / "schedule.png")),
    ]
    write_json(
        args.out / "results.json",
        {
            "env_id": ENV_ID,
            "env_kwargs": env_kwargs,
            "seeds": args.seeds,
            "hyper_steps": {s: [len(log) for log in ls] for s, ls in by_solver.items()},
            "summary": summary,
            "ci_method": CI_METHOD,
            "plots": [Path(p).name for p in plots],  # beside this JSON; no machine paths in git
            "runs": str(write_run_summary(logs, args.out / "runs.csv").relative_to(args.out)),
            "quick": args.quick,
        },
    )
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
