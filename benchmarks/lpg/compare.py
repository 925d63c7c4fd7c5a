"""Frozen LPG vs A2C on fresh lifetimes (paper Fig. 3 at a CPU budget), IQM + 95% bootstrap CI.

Per environment, each method's step size is chosen on ``--tune-seeds`` lifetimes (tables, SGD: LPG from
{20, 40, 80}, the bandit's grid, A2C from {10, 20, 40, 80}; networks, Adam: both from the environment's
Table 3 grid), then ``--seeds`` other lifetimes are trained with it.  Score: the mean return of the
episodes finished in the last 20% of a lifetime.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/compare.py --rule solvers/lpg/default.pt \\
        --envs lpg_dense,lpg_sparse,... --held-out lpg_long_dense --out benchmarks/lpg/results/compare
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from solvers.aggregate import CI_METHOD, iqm_ci, probability_of_improvement
from solvers.lpg.evaluate import train_lifetimes
from solvers.lpg.files import load_rule
from solvers.lpg.lifetimes import NETWORK_AGENTS

LPG_LRS = (20.0, 40.0, 80.0)
A2C_LRS = (10.0, 20.0, 40.0, 80.0)


def _run(env: str, seeds: list[int], rule, lr: float, kl: float, args) -> tuple[np.ndarray, np.ndarray]:
    out = train_lifetimes(
        env,
        seeds,
        rule=rule,
        lr=lr,
        kl_coef=kl,
        gamma=args.gamma,
        updates=args.updates,
        envs_per_lifetime=args.envs_per_lifetime,
        log_every=args.log_every,
    )
    if args.score == "rate":  # episodes that outlast the final window (long_dense: 2000 steps) leave no return
        return out.final_rate.numpy() * 1000, out.curves.numpy()
    return out.final.numpy(), out.curves.numpy()


def _tuned(env: str, rule, lrs, kl: float, args) -> tuple[float, dict]:
    tune = list(range(1000, 1000 + args.tune_seeds))
    scores = {lr: float(np.nan_to_num(np.nanmean(_run(env, tune, rule, lr, kl, args)[0]), nan=-1e9)) for lr in lrs}
    return max(scores, key=scores.get), scores


def compare_env(env: str, rule, kl: float, args) -> dict:
    seeds = list(range(args.seeds))
    row = {}
    # a network agent's Adam step sizes are its environment's Table 3 grid, for both methods
    net = NETWORK_AGENTS[env].lrs if env in NETWORK_AGENTS else None
    for method, r, lrs in (("lpg", rule, net or LPG_LRS), ("a2c", None, net or A2C_LRS)):
        lr, tuning = _tuned(env, r, lrs, kl, args)
        final, curves = _run(env, seeds, r, lr, kl, args)
        iqm, low, high = iqm_ci(final, seed=0)
        row[method] = {
            "lr": lr,
            "tuning": tuning,
            "final": final.tolist(),
            "iqm": iqm,
            "ci": [low, high],
            "curve_mean": np.nanmean(curves, 1).tolist(),
        }
    lpg, a2c = (np.asarray(row[m]["final"]) for m in ("lpg", "a2c"))
    row["p_lpg_better"] = list(probability_of_improvement(lpg.reshape(-1, 1), a2c.reshape(-1, 1), seed=0))
    return row


def plot(results: dict, path: Path, log_every: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a curve needs two logged points: an env whose episodes outlast the log window has none (its score is
    # the reward rate in compare.json), and is named under the figure instead of drawn as an empty panel
    def drawable(env: str) -> bool:
        return all(np.isfinite(results["envs"][env][m]["curve_mean"]).sum() >= 2 for m in ("lpg", "a2c"))

    envs = [e for e in results["envs"] if drawable(e)]
    left_out = [e for e in results["envs"] if not drawable(e)]
    if not envs:
        return  # nothing to draw: every env is scored by its reward rate (compare.json)
    cols = min(4, len(envs))
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[len(envs) :]:
        ax.axis("off")
    for ax, env in zip(axes.flat, envs):
        for method, colour in (("lpg", "C0"), ("a2c", "C1")):
            r = results["envs"][env][method]
            x = np.arange(1, len(r["curve_mean"]) + 1) * log_every
            ax.plot(x, r["curve_mean"], colour, label=f"{method.upper()} (lr {r['lr']:g})")
        held = " (held out)" if env in results["held_out"] else ""
        ax.set_title(env + held, fontsize=9)
        ax.set_xlabel("agent updates")
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel("episode return")
    fig.tight_layout()
    if left_out:
        fig.text(0.01, 0.005, f"not drawn (too few finished episodes per log window): {', '.join(left_out)}", fontsize=7)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rule", required=True)
    p.add_argument("--envs", required=True, help="training environments, comma-separated task names")
    p.add_argument("--held-out", default="", help="held-out environments, comma-separated")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--tune-seeds", type=int, default=4)
    p.add_argument("--updates", type=int, default=150)
    p.add_argument("--envs-per-lifetime", type=int, default=8)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument(
        "--score",
        choices=("return", "rate"),
        default="return",
        help="final-window episode return, or reward per 1000 steps per environment",
    )
    p.add_argument("--out", default="benchmarks/lpg/results/compare")
    args = p.parse_args()
    torch.set_num_threads(1)
    network, weights, hparams = load_rule(args.rule)
    kl = float(hparams.get("kl_coef", 0.5))
    train = [e for e in args.envs.split(",") if e]
    held = [e for e in args.held_out.split(",") if e]
    results = {"rule": args.rule, "kl_coef": kl, "ci": CI_METHOD, "args": vars(args), "held_out": held, "envs": {}}
    for env in train + held:
        results["envs"][env] = compare_env(env, (network, weights), kl, args)
        r = results["envs"][env]
        print(
            f"{env:18s} LPG IQM {r['lpg']['iqm']:7.3f} [{r['lpg']['ci'][0]:.3f}, {r['lpg']['ci'][1]:.3f}] lr {r['lpg']['lr']:g}"
            f"   A2C IQM {r['a2c']['iqm']:7.3f} [{r['a2c']['ci'][0]:.3f}, {r['a2c']['ci'][1]:.3f}] lr {r['a2c']['lr']:g}"
            f"   P(LPG > A2C) {r['p_lpg_better'][0]:.2f}",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "lpg_vs_a2c.png", args.log_every)


if __name__ == "__main__":
    main()
