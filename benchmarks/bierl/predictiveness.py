"""Does a BiERL scorer predict which sigma trains better?  The mechanism check of issue 16.

At a few checkpoints of one fixed-sigma (0.05) lifetime, every sigma of a grid
is scored from the same snapshot by

  (a) the one-step look-ahead (paper Eq. 4-5) with ``l`` repeats,
  (b) the authors' ``perturbed`` scorer (mean return of theta +- sigma eps copies),
  (c) the truth it should predict: the return after ``horizon`` iterations with that
      sigma fixed (mean-action evaluation episodes), averaged over ``repeats``
      independent continuations,

and the Spearman rank correlation of (a) and (b) with (c) is reported per
checkpoint.  All three read the same snapshot; the lifetime itself is untouched.

    python benchmarks/bierl/predictiveness.py --task Swimmer --out benchmarks/bierl/results/predictiveness.json
    python benchmarks/bierl/predictiveness.py --task LunarLanderContinuous --population 50 --episode-steps 0 \
        --optimizer adam --lr 0.01 --checkpoints 25 75 125 175 --eval-episodes 5 \
        --out benchmarks/bierl/results/predictiveness_llc_adam.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

GRID = (0.02, 0.035, 0.05, 0.065, 0.08)


def truth(env, sigma: float, *, horizon: int, repeats: int, episodes: int) -> list[float]:
    """(c): mean-action return after ``horizon`` iterations at ``sigma``, one value per independent continuation."""
    snap, learner, scores = env.snapshot(), env.learner, []
    for repeat in range(repeats):
        env.restore(snap)
        with learner.noise_stream(100 + repeat):  # streams no scorer uses: continuations independent of (a) and (b)
            for _ in range(horizon):
                learner.iterate({**env.defaults, "sigma": sigma})
            scores.append(np.mean(learner.evaluate(episodes)))
    env.restore(snap)
    return [float(x) for x in scores]


def check(args: argparse.Namespace) -> dict:
    import gymnasium as gym
    from scipy.stats import spearmanr

    import hyperenvs
    from solvers.bierl.scorers import LookAhead, Perturbed

    gym.register_envs(hyperenvs)
    config = {"population": args.population, "max_episode_steps": args.episode_steps or None, "backend": args.backend}
    config["optimizer"] = args.optimizer
    defaults = {} if args.lr is None else {"lr": args.lr}
    env = gym.make(f"HyperRL/ES-{args.task}-v0", config=config, defaults=defaults, total_timesteps=10**12).unwrapped
    env.reset(seed=args.seed)
    lookahead, perturbed = LookAhead(args.lookahead_repeats), Perturbed(args.perturbed_samples)
    rows, start = [], time.perf_counter()
    for checkpoint in args.checkpoints:
        while env.learner.iterations < checkpoint:
            env.learner.iterate({**env.defaults, "sigma": 0.05})
        a = [lookahead(env, {**env.defaults, "sigma": s})[0] for s in GRID]
        b = [perturbed(env, {**env.defaults, "sigma": s})[0] for s in GRID]
        repeats = [truth(env, s, horizon=args.horizon, repeats=args.repeats, episodes=args.eval_episodes) for s in GRID]
        c = [float(np.mean(r)) for r in repeats]
        row = {
            "iteration": checkpoint,
            "lookahead": a,
            "perturbed": b,
            "truth": c,
            "truth_repeats": repeats,
            "truth_se": [float(np.std(r, ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan") for r in repeats],
            "spearman_lookahead": float(spearmanr(a, c).statistic),
            "spearman_perturbed": float(spearmanr(b, c).statistic),
            "elapsed_s": time.perf_counter() - start,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    env.close()
    return {"settings": vars(args), "grid": GRID, "checkpoints": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="Swimmer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--episode-steps", type=int, default=200, help="0: the task's own limit (full episodes)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="the inner ES step (paper Eq. 3: sgd)")
    p.add_argument("--lr", type=float, default=None, help="the inner ES step size (default: the id's, 0.05)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[5, 15, 30, 50], help="iterations of the sigma=0.05 run")
    p.add_argument("--lookahead-repeats", type=int, default=8, help="(a)'s l")
    p.add_argument("--perturbed-samples", type=int, default=10, help="(b)'s perturbed copies")
    p.add_argument("--horizon", type=int, default=10, help="(c)'s iterations with sigma fixed")
    p.add_argument("--repeats", type=int, default=3, help="(c)'s independent continuations")
    p.add_argument("--eval-episodes", type=int, default=3, help="(c)'s mean-action episodes at the end")
    p.add_argument("--backend", default="serial")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    result = check(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
