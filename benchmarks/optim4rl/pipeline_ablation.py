"""Optim4RL's pipeline ablation (paper Table 1): fresh A2C agents on a gridworld with learned optimizers frozen.

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/pipeline_ablation.py --task small_dense_long \
        --arm pipeline=runs/pipe_s0/optimizer.pt,runs/pipe_s1/optimizer.pt --arm no_pipeline=... \
        --adam --eval-seeds 3 --steps 200000 --out results/pipeline_eval.json

Each optimizer file of an arm is evaluated on ``--eval-seeds`` fresh agents; the arm's IQM and 95% bootstrap
CI are over all (optimizer x evaluation seed) runs.  The agent is Optim4RL's for the task (``TASK_SETTINGS``:
Dense32 on the small grids) with its A2C (``A2C_HPARAMS``) at ``--lr`` (default: the task's meta-training lr),
``--num-envs`` x 20-step rollouts.  Score per run: the mean episode return over the last 20 iterations.
``--adam`` adds Adam at the same lr, on ``--adam-seeds`` seeds (default: as many runs as an arm has).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run(rule: str, seed: int, *, task: str, steps: int, lr: float, num_envs: int) -> dict:
    """One fresh A2C agent on ``task`` trained with ``rule`` for ``steps`` env steps: its final score and curve."""
    from agents.a2c import A2CHyperparams
    from agents.task_learners import TaskA2CConfig, TaskA2CLearner
    from benchmarks.optim4rl.catch import train_curve
    from hyperenvs.tasks.registration import GYM_IDS
    from solvers.optim4rl.config import A2C_HPARAMS, TASK_SETTINGS

    setting = TASK_SETTINGS[task]
    task_id = next(k for k, (name, options) in GYM_IDS.items() if name == task and not options)
    shape = {"hidden": (setting.hidden,), "conv_channels": setting.conv_channels}
    config = TaskA2CConfig(task=task_id, num_envs=num_envs, num_steps=20, update_rule=rule, **shape)
    return train_curve(TaskA2CLearner(config, seed=seed, hparams=A2CHyperparams(**A2C_HPARAMS, lr=lr)), steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="small_dense_long")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=FILE,FILE", help="an arm and its optimizer files")
    parser.add_argument("--adam", action="store_true", help="add Adam at the same lr as a reference")
    parser.add_argument("--adam-seeds", type=int, help="Adam's seeds (default: an arm's run count)")
    parser.add_argument("--eval-seeds", type=int, default=3, help="fresh agents per optimizer file")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--lr", type=float, help="agent lr (default: the task's meta-training lr)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import numpy as np

    from solvers.aggregate import iqm_ci
    from solvers.optim4rl.config import TASK_SETTINGS

    lr = args.lr or TASK_SETTINGS[args.task].lr
    arms = {name: files.split(",") for name, files in (item.split("=", 1) for item in args.arm)}
    jobs = {name: [(f"optim4rl:{f}", f, s) for f in files for s in range(args.eval_seeds)] for name, files in arms.items()}
    if args.adam:
        n = args.adam_seeds or max((len(j) for j in jobs.values()), default=args.eval_seeds)
        jobs["adam"] = [("adam", None, s) for s in range(n)]
    options = {"task": args.task, "steps": args.steps, "lr": lr, "num_envs": args.num_envs}
    results, summary = {}, {}
    for name, todo in jobs.items():
        results[name] = []
        for rule, file, seed in todo:
            results[name].append({"optimizer": file, "seed": seed, **run(rule, seed, **options)})
            r = results[name][-1]
            print(f"{name:12s} {file or '-'} seed {seed}: final {r['final']:+.2f} ({r['seconds']:.0f} s)", flush=True)
        finals = np.array([r["final"] for r in results[name]])
        iqm, low, high = iqm_ci(finals)
        summary[name] = {"iqm": iqm, "ci95": [low, high], "mean": float(np.nanmean(finals)), "runs": len(finals)}
        print(f"{name:12s} IQM {iqm:+.2f} [{low:+.2f}, {high:+.2f}] over {len(finals)} runs", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": options | {"arms": arms}, "summary": summary, "results": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
