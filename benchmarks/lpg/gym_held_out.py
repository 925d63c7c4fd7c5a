"""The shipped LPG on Gymnasium and batched ids it never saw, through the plug-in, vs the id's own A2C.

Both runs are the id's static default hyperparameters (A2C's own lr, RMSProp or Adam as the id sets); the
LPG run swaps only the objective (``config={"objective": "lpg"}``, Eq. 7, kl_coef from the rule file).
Score: the mean return of the episodes that finished in the last 20% of the lifetime; IQM + 95% CI over seeds.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/gym_held_out.py --out benchmarks/lpg/results/gym
    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/gym_held_out.py --ids "" \
        --random-grids LPGRandomDense --timesteps 300000 --out benchmarks/lpg/results/gym_random_grid
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import hyperenvs
from solvers import make_solver
from solvers.aggregate import CI_METHOD, iqm_ci


def final_return(log, fraction: float = 0.2) -> float:
    start = (1 - fraction) * log.records[-1].timesteps
    returns = [r for rec in log.records if rec.timesteps > start for r in rec.episode_returns]
    return float(np.mean(returns)) if returns else float("nan")


def random_grid_id(name: str) -> str:
    """Register ``HyperRL/A2C-{name}-v0`` for one of LPG's random grids (``HyperRLTasks/{name}-v0``, positions
    redrawn each episode, so a table cannot represent the agent) with the batched-task A2C of the Optim4RL
    grids: Conv16 -> Dense32, Adam, 64 envs x 20 steps (the paper's random-grid agents are this small)."""
    from dataclasses import replace

    from hyperenvs import registry

    env_id = f"HyperRL/A2C-{name}-v0"
    if env_id not in registry.REGISTRY:
        big = next(f for f in registry.FAMILIES if f.algorithm is registry.TASK_A2C and f.tasks == registry.BIG_GRIDS)
        registry.add_family(replace(big, tasks=((name, f"HyperRLTasks/{name}-v0"),)))
    return env_id


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ids", default="HyperRL/A2C-CartPole-v0,HyperRL/A2C-Catch-v0")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--timesteps", type=int, default=40_000)
    p.add_argument("--rule", default="", help="a rule file (default: the shipped one)")
    p.add_argument("--random-grids", default="", help="LPG random grids to add as A2C ids, comma-separated, e.g. LPGRandomDense")
    p.add_argument("--out", default="benchmarks/lpg/results/gym")
    args = p.parse_args()
    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    objective = f"lpg:{args.rule}" if args.rule else "lpg"
    results = {"ci": CI_METHOD, "args": vars(args), "ids": {}}
    ids = [i for i in args.ids.split(",") if i] + [random_grid_id(n) for n in args.random_grids.split(",") if n]
    for env_id in ids:
        row = {}
        for name, config in (("a2c", {}), ("lpg", {"objective": objective})):
            scores = []
            for seed in range(args.seeds):
                env = gym.make(env_id, config=config, total_timesteps=args.timesteps, timing=False)
                scores.append(final_return(make_solver("static").run(env, seed=seed)))
                env.close()
            iqm, low, high = iqm_ci(np.array(scores), seed=0)
            row[name] = {"final": scores, "iqm": iqm, "ci": [low, high]}
            print(f"{env_id} {name}: IQM {iqm:.3f} [{low:.3f}, {high:.3f}] {np.round(scores, 2).tolist()}", flush=True)
        results["ids"][env_id] = row
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gym_held_out.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
