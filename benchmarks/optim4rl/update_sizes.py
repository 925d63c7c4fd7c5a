"""The update sizes a learned optimizer makes vs Adam on the SAME gradients (the paper's analysis, section 4).

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/update_sizes.py --optimizer runs/catch_m64/optimizer.pt

One fresh A2C agent trains on Catch with Adam (the catch.py setting, lr 1e-3).  After each update its
gradient also goes to the learned optimizer, which keeps its own recurrent state on that gradient
stream ("shadow" updates: the agent follows Adam, so both rules see identical gradients).  At the
chosen iterations, the per-element |update| / lr of both is histogrammed (log10).  Writes the
histograms to ``results/update_sizes.json`` and a plot next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", help="the learned optimizer file (default: the shipped one)")
    parser.add_argument("--at", default="1,10,100,390", help="iterations to histogram")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "update_sizes.json"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from agents.a2c import A2CHyperparams
    from agents.task_learners import TaskA2CConfig, TaskA2CLearner
    from benchmarks.optim4rl.catch import HPARAMS
    from solvers.optim4rl.files import DEFAULT_WEIGHTS, load

    learned = load(args.optimizer or DEFAULT_WEIGHTS)
    at = sorted(int(x) for x in args.at.split(","))
    config = TaskA2CConfig(task="HyperRLTasks/Catch-v0", num_envs=64, num_steps=20, hidden=(256,), update_rule="adam")
    learner = TaskA2CLearner(config, seed=args.seed, hparams=A2CHyperparams(**HPARAMS))
    shadow = learned.init(learner.params)
    lr, edges = HPARAMS["lr"], np.linspace(-9, 1, 81)
    out: dict[str, dict] = {}
    for it in range(1, at[-1] + 1):
        before = {k: v.detach().clone() for k, v in learner.params.items()}
        learner.iterate()
        grads = learner.gradient_history()[0]
        with torch.no_grad():
            shadow_new, shadow = learned.update(grads, shadow, before, {"lr": lr})
        if it in at:
            sizes = {
                "adam": torch.cat([(learner.params[k].detach() - before[k]).reshape(-1) for k in before]),
                "optim4rl": torch.cat([(shadow_new[k] - before[k]).reshape(-1) for k in before]),
                "gradient": torch.cat([grads[k].reshape(-1) for k in before]),
            }
            row = {}
            for name, v in sizes.items():
                mag = v.abs().double() / (1.0 if name == "gradient" else lr)
                row[name] = {
                    "hist": np.histogram(np.log10(mag.clamp_min(1e-12).numpy()), bins=edges)[0].tolist(),
                    "median": float(mag.median()),
                    "p90": float(mag.quantile(0.9)),
                }
            out[str(it)] = row
            print(f"iteration {it}: median |update|/lr adam {row['adam']['median']:.3g}, optim4rl "
                  f"{row['optim4rl']['median']:.3g}; median |g| {row['gradient']['median']:.3g}", flush=True)  # fmt: skip
    learner.close()
    result = {"edges_log10": edges.tolist(), "optimizer": str(args.optimizer or DEFAULT_WEIGHTS), "at": out}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    fig, axes = plt.subplots(1, len(at), figsize=(3.2 * len(at), 3), sharey=True)
    centres = (edges[1:] + edges[:-1]) / 2
    for ax, it in zip(np.atleast_1d(axes), at):
        for name, style in (("adam", "-"), ("optim4rl", "-"), ("gradient", ":")):
            label = "|g|" if name == "gradient" else f"{name} |update|/lr"
            ax.plot(centres, out[str(it)][name]["hist"], style, label=label)
        ax.set_title(f"iteration {it}")
        ax.set_xlabel("log10 magnitude")
    np.atleast_1d(axes)[0].set_ylabel("parameter elements")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
