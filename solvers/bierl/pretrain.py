"""Warm start for BiERL-PM: meta-train the meta-network on a simple task and save its state_dict.

    hyperrl bierl-pretrain --out solvers/bierl/pretrained_pm.pt
    python -m solvers.bierl.pretrain --lifetimes 2 --iterations 40

The paper pre-trains once on a simple task and reuses the network on any
target task: the population representation does not depend on the task.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def pretrain(
    env_id: str = "HyperRL/ES-InvertedPendulum-v0",
    *,
    out: str | Path,
    lifetimes: int = 1,
    seed: int = 0,
    iterations: int = 40,
    population: int = 20,
    episode_steps: int = 200,
    interval: int = 5,
    meta_pairs: int = 4,
) -> Path:
    """Meta-train a fresh ``BiERLPM`` over ``lifetimes`` lifetimes of ``env_id`` and save its network."""
    import gymnasium as gym

    import hyperenvs
    from solvers.bierl.pm import BiERLPM

    gym.register_envs(hyperenvs)
    config = {"population": population, "max_episode_steps": episode_steps, "backend": "serial"}
    solver = BiERLPM(interval=interval, meta_pairs=meta_pairs, pretrained=None)
    for i in range(lifetimes):
        env = gym.make(env_id, config=config, total_timesteps=iterations * (population + 1) * episode_steps)
        log = solver.run(env, seed=seed + i)
        env.close()
        print(
            f"lifetime {i}: {len(log)} iterations, final return {log.final_return(5):.1f}, "
            f"sigma {log.schedule()['sigma'][-1]:.4f}"
        )
    return solver.save(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-id", default="HyperRL/ES-InvertedPendulum-v0")
    p.add_argument("--out", default="bierl_pm.pt", help="where to write the state_dict")
    p.add_argument("--lifetimes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=40, help="ES iterations per lifetime")
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--episode-steps", type=int, default=200)
    p.add_argument("--interval", type=int, default=5, help="hyper-steps (= inner iterations on ES ids) between meta-updates")
    p.add_argument("--meta-pairs", type=int, default=4, help="mirrored meta-ES pairs per meta-update")


def command(args: argparse.Namespace) -> int:
    path = pretrain(
        args.env_id,
        out=args.out,
        lifetimes=args.lifetimes,
        seed=args.seed,
        iterations=args.iterations,
        population=args.population,
        episode_steps=args.episode_steps,
        interval=args.interval,
        meta_pairs=args.meta_pairs,
    )
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solvers.bierl.pretrain", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
