"""Optim4RL's Catch reproduction (paper Fig. 3): fresh A2C agents with a learned optimizer frozen vs Adam
and RMSProp, IQM and 95% bootstrap CI of the final online return.

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/catch.py --optimizer runs/catch_m64/optimizer.pt --seeds 10

The paper's test-time agent: Catch, 64 envs x 20-step rollouts, Dense256 torso, A2C with TD(lambda)
0.95, gamma 0.995, value weight 0.5, entropy 0.01, no gradient clipping (the authors' Catch setting),
lr 1e-3 for every rule, 5e5 env steps (390 updates).  ``signsgd`` is an Optim4RL before any
meta-training (zero heads: exactly sign-SGD), the start every learned optimizer grows from.  Score
per seed: the mean episode return over the last 20 iterations (the paper's "last 20 logged
iterations").  Writes per-seed finals, curves (every 5th iteration) and the aggregate to ``--out``.
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

HPARAMS = {"lr": 1e-3, "gamma": 0.995, "gae_lambda": 0.95, "vf_coef": 0.5, "ent_coef": 0.01, "max_grad_norm": float("inf")}


def run(rule, seed: int, steps: int, task: str = "HyperRLTasks/Catch-v0", num_envs: int = 64) -> dict:
    from agents.a2c import A2CHyperparams
    from agents.task_learners import TaskA2CConfig, TaskA2CLearner

    config = TaskA2CConfig(task=task, num_envs=num_envs, num_steps=20, hidden=(256,), update_rule=rule)
    return train_curve(TaskA2CLearner(config, seed=seed, hparams=A2CHyperparams(**HPARAMS)), steps)


def train_curve(learner, steps: int) -> dict:
    """Train ``learner`` for ``steps`` env steps (or until it diverges), then close it.

    Returns the score (mean episode return over the last 20 iterations), the curve of per-iteration
    mean episode returns (every 5th), whether it diverged, and the wall time.
    """
    import numpy as np

    curve: list[float] = []
    start = time.perf_counter()
    while learner.timesteps < steps and not learner.diverged:
        report = learner.iterate()
        curve.append(float(np.mean(report.episode_returns)) if report.episode_returns else float("nan"))
    learner.close()
    final = float(np.nanmean(curve[-20:])) if np.isfinite(curve[-20:]).any() else float("nan")
    return {"final": final, "curve": curve[::5], "diverged": learner.diverged, "seconds": time.perf_counter() - start}


def scaled_signsgd(k: float):
    """sign-SGD with k x the step: a fresh Optim4RL (zero heads: o1 = o2 = 0) with o1's bias set to ln k."""
    import math

    from solvers.optim4rl import Optim4RL

    rule = Optim4RL()
    rule.weights["head1.0.bias"].fill_(math.log(k))
    return rule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--optimizer", help="the learned optimizer file (default: the shipped one)")
    parser.add_argument("--rules", default="optim4rl,signsgd,adam,rmsprop")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=FILE", help="another learned optimizer as a row")
    parser.add_argument(
        "--signsgd-times",
        action="append",
        type=float,
        default=[],
        metavar="K",
        help="a row 'signsgd_xK': sign-SGD with K x the step (an untrained Optim4RL whose first head's bias is ln K)",
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "catch_eval.json"))
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from solvers.aggregate import iqm_ci
    from solvers.optim4rl import Optim4RL

    learned = f"optim4rl:{args.optimizer}" if args.optimizer else "optim4rl"
    rules = {"optim4rl": learned, "signsgd": Optim4RL, "adam": "adam", "rmsprop": "rmsprop"}
    extra = dict(item.split("=", 1) for item in args.also)
    rules |= {name: f"optim4rl:{path}" for name, path in extra.items()}
    for k in args.signsgd_times:
        extra[f"signsgd_x{k:g}"] = f"sign-SGD x {k:g}"
        rules[f"signsgd_x{k:g}"] = lambda k=k: scaled_signsgd(k)
    hparams = {k: str(v) for k, v in HPARAMS.items()}
    setup = {"task": "Catch", "steps": args.steps, "hparams": hparams, "optimizer": learned, "also": extra}
    results, summary = {}, {}
    for name in [*args.rules.split(","), *extra]:
        rule = rules[name]
        results[name] = []
        for seed in range(args.seeds):
            results[name].append(run(rule() if callable(rule) else rule, seed, args.steps))
            print(
                f"{name:9s} seed {seed}: final {results[name][-1]['final']:+.3f} ({results[name][-1]['seconds']:.0f} s)",
                flush=True,
            )
        finals = np.array([r["final"] for r in results[name]])
        iqm, low, high = iqm_ci(finals[:, None])
        summary[name] = {"iqm": iqm, "ci95": [low, high], "mean": float(finals.mean()), "finals": finals.tolist()}
    print(f"Catch A2C 64x20, lr 1e-3, {args.steps} steps, {args.seeds} seeds, torch threads {torch.get_num_threads()}")
    for name, s in summary.items():
        print(f"{name:9s} IQM {s['iqm']:+.3f} [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}]  mean {s['mean']:+.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "summary": summary, "results": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
