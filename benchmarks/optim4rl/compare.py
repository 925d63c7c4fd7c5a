"""Agent return with the learned optimizer frozen vs Adam and RMSProp, on CartPole (issue 12, reproduction 3 in small).

Fresh A2C agents with the ``HyperRL/A2C-CartPole-v0`` structure (16 envs x 5 steps, 64-64 tanh)
and A2C's default hyperparameters, except one learning rate for all three rules (the paper's
protocol: 1e-3), trained for ``--steps`` env steps per seed.  Score: the online training return
of the last 20 finished episodes (the paper's measure), per seed and its mean.

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/compare.py                  # 3 seeds x 50k steps, a few minutes
    OMP_NUM_THREADS=1 python benchmarks/optim4rl/compare.py --optimizer FILE # another learned optimizer
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run(rule, seed: int, steps: int, lr: float) -> dict:
    import numpy as np

    from agents.a2c import A2CConfig, A2CHyperparams, A2CLearner

    learner = A2CLearner(A2CConfig(task="CartPole-v1", update_rule=rule), seed=seed, hparams=A2CHyperparams(lr=lr))
    returns: list[float] = []
    start = time.perf_counter()
    while learner.timesteps < steps and not learner.diverged:
        returns.extend(learner.iterate().episode_returns)
    learner.close()
    return {"final": float(np.mean(returns[-20:])), "episodes": len(returns), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", help="a learned optimizer file (default: the shipped one)")
    parser.add_argument("--rules", default="optim4rl,signsgd,adam,rmsprop", help="which rows to run (others kept from --out)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "compare.json"))
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from solvers.optim4rl import Optim4RL

    learned = f"optim4rl:{args.optimizer}" if args.optimizer else "optim4rl"
    # signsgd: an Optim4RL before any meta-training (zero heads: exactly sign-SGD), the start the learned one grew from
    rules = {"optim4rl": learned, "signsgd": Optim4RL, "adam": "adam", "rmsprop": "rmsprop"}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    meta = {"task": "CartPole-v1", "steps": args.steps, "lr": args.lr, "seeds": seeds, "optimizer": learned}
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.is_file() else {}
    results = old.get("results", {}) if old.get("setup") == meta else {}
    for name in args.rules.split(","):
        rule = rules[name]
        results[name] = [run(rule() if callable(rule) else rule, seed, args.steps, args.lr) for seed in meta["seeds"]]
    print(f"A2C CartPole-v1 16x5 64-64, lr {args.lr:g}, {args.steps} env steps, seeds {meta['seeds']}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'rule':<10} {'mean final':>10}  per seed (last 20 episodes)      s/run")
    for name, runs in results.items():
        finals = [r["final"] for r in runs]
        seconds = np.mean([r["seconds"] for r in runs])
        print(f"{name:<10} {np.mean(finals):>10.1f}  {' '.join(f'{f:7.1f}' for f in finals):<32} {seconds:6.1f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": meta, "results": results}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
