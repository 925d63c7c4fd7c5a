"""EPGT's reproductions after issue 14, each with the earlier EPGT as a labelled arm (``epgt@legacy``).

Experiments (``--experiment``):

- ``demo``: the ``make demo`` comparison on ``HyperRL/A2C-CartPole-v0`` (lr only, 100k env
  steps, 3 seeds) with the reference code's classic-control lr multipliers
  {0.4, 0.6, 0.8, 1, 1.25, 1.65, 2.5} x 7e-4 as bins: static, rnd (uniform over the same
  bins), EPGT, EPGT with the earlier hyper-return (``epgt@finished-G``) and the earlier EPGT.
- ``fig2a``: the paper's Fig. 2a, A2C on MountainCarContinuous, lr scheduled at every
  update among 7 log-spaced bins in [4e-5, 1e-2], 20k env steps, 10 seeds: EPGT, the
  earlier EPGT, RND, DQN and fixed lr (default 7e-4, min, max).
- ``ablations``: the paper's Fig. 4 ablations on Fig. 2a's task: random encoder, max
  writing, no memory (one slot: an epsilon-greedy bandit on the same bins).

Arms are ``solver@label`` with the EPGT settings in ``ARMS``.  Outputs, per experiment,
under ``results/issue14/<experiment>/``: ``summary.json`` (IQM + 95% bootstrap CI of the
final return and the AUC per arm, rliable; EPGT diagnostics: median neighbour distance vs
the kernel epsilon and per-action read values over time, greedy choice shares),
``summary.csv``, ``table.md`` and PNGs; the RunLogs and per-step diagnostics go to the
git-ignored ``results/raw/issue14/<experiment>/``.

    python benchmarks/epgt/reproduce.py --experiment demo --workers 2
    python benchmarks/epgt/reproduce.py --experiment fig2a --analyse   # from the saved runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RAW,
    RESULTS,
    diagnostics_summary,
    markdown_table,
    plot_diagnostics,
    run_file_name,
    run_jobs,
    summarise,
    write_csv,
    write_json,
)

from benchmarks.aggregate import CI_METHOD, auc  # noqa: E402
from solvers.epgt.solver import LEGACY  # noqa: E402

CARTPOLE_LRS = [m * 7e-4 for m in (0.4, 0.6, 0.8, 1.0, 1.25, 1.65, 2.5)]
MCC_LRS = [4e-5, 1.0e-4, 2.5e-4, 6.3e-4, 1.6e-3, 4.0e-3, 1e-2]
FIXED = {"default lr 7e-4": 7e-4, "min lr 4e-5": 4e-5, "max lr 1e-2": 1e-2}

ARMS: dict[str, dict] = {
    "epgt": {},
    "epgt@legacy": dict(LEGACY),
    "epgt@finished-G": {"hyper_return": "finished_episodes"},
    "epgt@random-encoder": {"encoder": "random"},
    "epgt@max-write": {"write_rule": "max"},
    "epgt@no-memory": {"encoder": "none"},
}
"""EPGT settings of each labelled arm (the rest are EPGTConfig's defaults)"""

EXPERIMENTS = {
    "demo": {
        "env_id": "HyperRL/A2C-CartPole-v0",
        "env": {"hyperparameters": ["lr"], "bins": {"lr": CARTPOLE_LRS}},
        "seeds": 3,
        "arms": ["static", "rnd", "epgt", "epgt@finished-G", "epgt@legacy"],
    },
    "fig2a": {
        "env_id": "HyperRL/A2C-MountainCarContinuous-v0",
        "env": {
            "hyperparameters": {"lr": (4e-5, 1e-2)},
            "bins": {"lr": MCC_LRS},
            "total_timesteps": 20_000,
            "num_envs": 4,
            "iterations_per_step": 1,
        },
        "seeds": 10,
        "arms": ["epgt", "epgt@legacy", "rnd", "dqn", *(f"fixed:{k}" for k in FIXED)],
    },
    "ablations": {
        "env_id": "HyperRL/A2C-MountainCarContinuous-v0",
        "env": None,  # Fig. 2a's
        "seeds": 5,
        "arms": ["epgt@random-encoder", "epgt@max-write", "epgt@no-memory"],
        "reference": ("fig2a", ["epgt", "rnd"]),  # the full EPGT and RND on the same seeds, from Fig. 2a's runs
    },
}
EXPERIMENTS["ablations"]["env"] = EXPERIMENTS["fig2a"]["env"]  # fmt: skip


def jobs_for(name: str, seeds: int, runs: Path) -> list[tuple]:
    exp = EXPERIMENTS[name]
    continuous = {k: v for k, v in exp["env"].items() if k != "bins"}
    discrete = {**exp["env"], "action_type": "discrete"}
    jobs = []
    for seed in range(seeds):
        for arm in exp["arms"]:
            if arm.startswith("fixed:"):
                jobs.append((arm, seed, exp["env_id"], continuous, {"lr": FIXED[arm.removeprefix("fixed:")]}, str(runs)))
            else:
                jobs.append((arm, seed, exp["env_id"], discrete, ARMS.get(arm, {}), str(runs)))
    return jobs


def analyse(name: str, paths: list[str], out: Path, seeds: int) -> dict:
    from solvers.base import RunLog
    from solvers.plots import plot_returns, plot_schedule

    logs = [RunLog.load(p) for p in paths]
    arms = list(dict.fromkeys(log.solver for log in logs))
    by_arm = {a: [log for log in logs if log.solver == a] for a in arms}
    summary = summarise(by_arm, {"final": lambda log: log.final_return(), "auc": auc})
    diagnostics = diagnostics_summary(paths)
    out.mkdir(parents=True, exist_ok=True)
    exp = EXPERIMENTS[name]
    plots = [
        str(plot_returns(logs, out / "returns.png", title=f"{exp['env_id']}: {name}")),
        str(
            plot_schedule(
                [log for log in logs if not log.solver.startswith(("fixed", "default", "min", "max")) and log.seed == 0],
                out / "schedule_seed0.png",
                title="lr schedule, seed 0",
            )
        ),
    ]
    if diagnostics:
        plots.append(str(plot_diagnostics(diagnostics, out / "diagnostics.png")))
    table = markdown_table(summary, ["final", "auc"])
    write_json(
        out / "summary.json",
        {
            "experiment": name,
            "env_id": exp["env_id"],
            "env_kwargs": exp["env"],
            "arms": {a: ARMS.get(a, {}) for a in arms},
            "seeds": seeds,
            "summary": summary,
            "ci_method": CI_METHOD,
            "diagnostics": diagnostics,
            "plots": [Path(p).name for p in plots],  # beside this JSON; no machine paths in git
        },
    )
    write_csv(out / "summary.csv", summary)
    (out / "table.md").write_text(table + "\n")
    print(table, flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", choices=list(EXPERIMENTS), required=True)
    p.add_argument("--seeds", type=int, default=None, help="default: the experiment's")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--analyse", action="store_true", help="skip the runs: summarise those saved")
    p.add_argument("--skip-existing", action="store_true", help="run only the lifetimes whose RunLog is not on disk yet")
    p.add_argument("--quick", action="store_true", help="2,000 env steps, 2 seeds, to scratch folders: the pipeline only")
    args = p.parse_args(argv)
    name = args.experiment
    if args.quick:
        for exp in EXPERIMENTS.values():
            exp["env"] = {**exp["env"], "total_timesteps": 2_000}
        args.seeds, raw_dir, out_dir = 2, RAW / "quick", RAW / "quick" / "out"
    else:
        raw_dir, out_dir = RAW / "issue14", RESULTS / "issue14"
    seeds = args.seeds or EXPERIMENTS[name]["seeds"]
    runs = raw_dir / name
    jobs = jobs_for(name, seeds, runs)
    if args.analyse:
        paths = [str(runs / run_file_name(j[0], j[1])) for j in jobs]
    else:
        paths = run_jobs(jobs, args.workers, skip_existing=args.skip_existing)
    if "reference" in EXPERIMENTS[name]:
        other, arms = EXPERIMENTS[name]["reference"]
        paths = [str(raw_dir / other / run_file_name(a, seed)) for seed in range(seeds) for a in arms] + paths
    analyse(name, paths, out_dir / name, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
