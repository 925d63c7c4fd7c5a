"""Meta-training curves per environment from ``hyperrl lpg-train``'s ``log.jsonl``: the mean return of the
episodes the lifetimes finished, smoothed over ``--window`` meta-iterations, plus the meta-critic's loss and
the mean pi_hat^2 (how far the rule's policy target is from doing nothing).

    python benchmarks/lpg/plot_meta.py RUN/log.jsonl [MORE/log.jsonl --labels a,b] --out FIG.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def curves(path: str) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    envs = list(rows[0]["envs"])
    ret = {e: np.array([r["envs"][e]["return"] for r in rows], dtype=float) for e in envs}
    return envs, ret, np.array([r["critic_loss_last"] for r in rows]), np.array([r["l2_pi_hat"] for r in rows])


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    for i in range(len(x)):
        part = x[max(0, i - window + 1) : i + 1]
        out[i] = np.nanmean(part) if np.isfinite(part).any() else np.nan
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("logs", nargs="+")
    p.add_argument("--labels", default="")
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels.split(",") if args.labels else [Path(x).parent.name for x in args.logs]
    runs = [curves(x) for x in args.logs]
    envs = list(dict.fromkeys(e for run in runs for e in run[0]))  # every run's environments, in order
    cols = 4
    rows = math.ceil((len(envs) + 2) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for k, env in enumerate(envs):
        ax = axes[k // cols][k % cols]
        for i, (label, (_, ret, _, _)) in enumerate(zip(labels, runs)):
            if env in ret:
                ax.plot(smooth(ret[env], args.window), f"C{i}", label=label)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("meta-iteration", fontsize=8)
    ax = axes[len(envs) // cols][len(envs) % cols]
    for i, (label, (_, _, critic, _)) in enumerate(zip(labels, runs)):
        ax.semilogy(smooth(critic, args.window), f"C{i}", label=label)
    ax.set_title("meta-critic loss", fontsize=9)
    # the size of the LPG's policy target: a rule that stays near 0 here moves no agent
    ax = axes[(len(envs) + 1) // cols][(len(envs) + 1) % cols]
    for i, (label, (_, _, _, pi_sq)) in enumerate(zip(labels, runs)):
        ax.semilogy(smooth(pi_sq, args.window), f"C{i}", label=label)
    ax.set_title("mean pi_hat^2", fontsize=9)
    ax.set_xlabel("meta-iteration", fontsize=8)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=len(runs), fontsize=8)
    for k in range(len(envs) + 2, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
