"""PBT and PB2 against static, random and EPGT at equal *total* env steps (a reduced EPGT Table 2).

A population of P members of T env steps each spends P x T env steps; the single-lifetime
solvers get one lifetime of P x T.  Scores: the final return (mean of the last 10 inner
episodes) of the population's best member, and of each single lifetime; IQM with a 95%
bootstrap CI over seeds, and probability of improvement (solvers/aggregate.py).

The paper's Table 2 (PB2 at 1M steps on Hopper: 2156) needs MuJoCo-scale compute; the
default here is the cheap A2C CartPole id, as the README's closing note says.

    OMP_NUM_THREADS=1 python benchmarks/pbt/reproduce.py --out benchmarks/pbt/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gymnasium as gym  # noqa: E402

import hyperenvs  # noqa: E402
from solvers import sweep  # noqa: E402
from solvers.aggregate import CI_METHOD, iqm_ci, probability_of_improvement  # noqa: E402
from solvers.base import RunLog  # noqa: E402
from solvers.cli import build_parser  # noqa: E402
from solvers.pbt import PB2Solver, PBTSolver  # noqa: E402
from solvers.plots import plot_returns  # noqa: E402

gym.register_envs(hyperenvs)
BASELINES = "static,random,epgt"


def run_baselines(args: argparse.Namespace, out: Path) -> dict[str, list[RunLog]]:
    """One lifetime of population x member-steps per seed, through the (resumable) sweep."""
    argv = ["sweep", BASELINES, args.env_id, "--seeds", str(args.seeds), "--out", str(out / "baselines")]
    argv += ["--total-timesteps", str(args.population * args.member_steps), "--iterations-per-step", str(args.iterations)]
    cfg = sweep.config_from(build_parser().parse_args(argv))
    sweep.run_sweep(cfg)
    return {s: [RunLog.load(j.path(Path(cfg.out))) for j in sweep.jobs_of(cfg) if j.solver == s] for s in cfg.solvers}


def run_population(args: argparse.Namespace, out: Path, cls: type) -> list[RunLog]:
    """The best member's lineage per seed (members of member-steps each); finished seeds are read back."""
    logs = []
    for seed in range(args.seeds):
        path = out / cls.name / f"{cls.name}-seed{seed}.jsonl"
        if not path.exists():
            solver = cls(population=args.population, perturbation_interval=args.interval, out=str(out / cls.name), num_cpus=2)
            env = gym.make(args.env_id, total_timesteps=args.member_steps, iterations_per_step=args.iterations)
            solver.run(env, seed=seed).save(path)
            env.close()
        logs.append(RunLog.load(path))
    return logs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="HyperRL/A2C-CartPole-v0")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--member-steps", type=int, default=8000, help="env steps of one population member")
    parser.add_argument("--iterations", type=int, default=5, help="learner iterations per hyper-step")
    parser.add_argument("--interval", type=int, default=4, help="PBT/PB2 perturbation interval in hyper-steps")
    parser.add_argument("--out", default="benchmarks/pbt/results")
    args = parser.parse_args()
    out = Path(args.out)
    logs = run_baselines(args, out)
    for cls in (PBTSolver, PB2Solver):
        logs[cls.name] = run_population(args, out, cls)
    finals = {name: np.array([log.final_return() for log in runs]) for name, runs in logs.items()}
    table = {name: iqm_ci(scores) for name, scores in finals.items()}
    pairs = {
        f"{x}>{y}": probability_of_improvement(finals[x][:, None], finals[y][:, None])
        for x in ("pbt", "pb2")
        for y in finals
        if y != x
    }
    result = {
        "env_id": args.env_id,
        "population": args.population,
        "member_steps": args.member_steps,
        "total_env_steps_per_run": args.population * args.member_steps,
        "seeds": args.seeds,
        "method": CI_METHOD,
        "final_return_iqm_ci": table,
        "final_returns": {k: v.tolist() for k, v in finals.items()},
        "probability_of_improvement": pairs,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| solver | final return IQM [95% CI] |", "| --- | --- |"]
    lines += [f"| {k} | {v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}] |" for k, v in table.items()]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_returns(
        [log for runs in logs.values() for log in runs], out / "returns.png", title=f"{args.env_id}: equal total env steps"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
