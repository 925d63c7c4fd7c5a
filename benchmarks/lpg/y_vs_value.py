"""Does the discovered prediction y mean value?  (paper Fig. 4-5, at a CPU budget)

Trains fresh tabular lifetimes on one grid with a frozen LPG, then runs the final policy for a long rollout
and computes each visited state's Monte-Carlo discounted return-to-go (the policy's true value, gamma given).
A ridge regression from y(s) (m numbers) to that value is fitted on half the states and scored (R^2) on the
other half, per lifetime; the control regresses on a fixed random y-sized vector per state instead.  The
figure shows, for one lifetime, the value over agent cells (all objects present) next to the value read
from y, and the scatter of held-out states.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/y_vs_value.py --rule solvers/lpg/default.pt \\
        --env lpg_dense --out benchmarks/lpg/results/y_vs_value
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from solvers.lpg.evaluate import train_lifetimes
from solvers.lpg.files import load_rule


@torch.no_grad()
def mc_values(out, gamma: float, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per lifetime and state: mean discounted return-to-go over the first half of a ``steps`` rollout, and visits."""
    agent, envs, params = out.agent, out.envs, out.params
    n, e = envs.obs.shape
    lifetime = torch.arange(n).view(n, 1).expand(n, e)
    obs_t, rew_t, end_t = [], [], []
    for _ in range(steps):
        obs = agent.global_obs(envs.obs, lifetime)
        logits, _ = agent.forward(params, obs.reshape(-1))
        action = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=generator).view(n, e)
        reward, ended, _ = envs.step(action)
        obs_t.append(obs), rew_t.append(reward), end_t.append(ended)
    g = torch.zeros(n, e, dtype=torch.float64)
    returns = [None] * steps
    for t in range(steps - 1, -1, -1):
        g = rew_t[t] + gamma * torch.where(end_t[t], 0.0, g)
        returns[t] = g
    half = steps // 2  # later steps' returns are cut by the rollout's end
    obs = torch.stack(obs_t[:half]).reshape(-1)
    ret = torch.stack(returns[:half]).reshape(-1)
    size = agent.num_rows
    total = torch.zeros(size, dtype=torch.float64).index_add_(0, obs, ret)
    visits = torch.zeros(size, dtype=torch.float64).index_add_(0, obs, torch.ones_like(ret))
    return (total / visits.clamp(min=1)).view(agent.n, -1), visits.view(agent.n, -1)


def _ridge(x: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
    design = np.hstack([x, np.ones((len(v), 1))])
    penalty = lam * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(design.T @ design + penalty, design.T @ v)


def r2_split(x: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    """Ridge ``v ~ [x, 1]`` fitted on a random half (its penalty by 5-fold CV inside that half), R^2 on the other
    half; also every state's prediction.  (Plain least squares with m = 30 features on a few dozen states overfits.)"""
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    idx = rng.permutation(len(v))
    fit, test = idx[: len(v) // 2], idx[len(v) // 2 :]
    folds = np.array_split(fit, 5)

    def cv_error(lam: float) -> float:
        err = 0.0
        for k, hold in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != k])
            coef = _ridge(x[train], v[train], lam)
            err += float(((np.hstack([x[hold], np.ones((len(hold), 1))]) @ coef - v[hold]) ** 2).sum())
        return err

    lam = min(LAMBDAS, key=cv_error)
    coef = _ridge(x[fit], v[fit], lam)
    pred = np.hstack([x, np.ones((len(v), 1))]) @ coef
    resid = ((v[test] - pred[test]) ** 2).sum()
    total = ((v[test] - v[test].mean()) ** 2).sum()
    return float(1 - resid / total), pred, test


LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rule", required=True)
    p.add_argument("--env", default="lpg_dense")
    p.add_argument("--lr", type=float, default=40.0)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--rollout", type=int, default=1200)
    p.add_argument("--min-visits", type=int, default=10)
    p.add_argument("--out", default="benchmarks/lpg/results/y_vs_value")
    args = p.parse_args()
    torch.set_num_threads(1)
    network, weights, hparams = load_rule(args.rule)
    out = train_lifetimes(
        args.env,
        list(range(200, 200 + args.seeds)),
        rule=(network, weights),
        lr=args.lr,
        kl_coef=float(hparams.get("kl_coef", 0.5)),
        gamma=args.gamma,
        updates=args.updates,
    )
    values, visits = mc_values(out, args.gamma, args.rollout, torch.Generator().manual_seed(0))
    y = torch.softmax(out.params["y"], -1).view(out.agent.n, -1, out.agent.m).numpy()
    rng = np.random.default_rng(0)
    rows = []
    for j in range(args.seeds):
        seen = (visits[j] >= args.min_visits).numpy()
        v = values[j].numpy()[seen]
        r2_y, pred, test = r2_split(y[j][seen], v, np.random.default_rng(j))
        r2_rand, _, _ = r2_split(rng.random(y[j][seen].shape), v, np.random.default_rng(j))
        rows.append(
            {"lifetime": j, "states": int(seen.sum()), "r2_y": r2_y, "r2_random": r2_rand, "final_return": float(out.final[j])}
        )
        print(rows[-1], flush=True)
        if j == 0:
            first = (seen, v, pred, test)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    summary = {
        "env": args.env,
        "args": vars(args),
        "lifetimes": rows,
        "mean_r2_y": float(np.mean([r["r2_y"] for r in rows])),
        "mean_r2_random": float(np.mean([r["r2_random"] for r in rows])),
    }
    (dest / "y_vs_value.json").write_text(json.dumps(summary, indent=1))
    _plot(out, first, y[0], dest / "y_vs_value.png", args)


def _plot(out, first, y0, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen, v, pred, test = first
    task = out.envs.task(0)
    k = task.num_objects
    h, w = task.spec.height, task.spec.width
    states = np.flatnonzero(seen)
    full = (states % (2**k)) == 2**k - 1  # all objects present
    true_map = np.full((h, w), np.nan)
    y_map = np.full((h, w), np.nan)
    for s, tv, pv, keep in zip(states, v, pred, full):
        if keep:
            cell = s // (2**k)
            true_map[cell // w, cell % w], y_map[cell // w, cell % w] = tv, pv
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    lo, hi = np.nanmin(true_map), np.nanmax(true_map)
    for ax, img, title in ((axes[0], true_map, "value (MC, final policy)"), (axes[1], y_map, "value read from y (linear)")):
        im = ax.imshow(img, vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[:2], shrink=0.8)
    layout = task.layout[0].numpy()
    for cell in layout:
        r, c = divmod(int(cell), w + 2)
        for ax in axes[:2]:
            ax.plot(c - 1, r - 1, "rx")
    axes[2].scatter(v[test], pred[test], s=6)
    axes[2].plot([v.min(), v.max()], [v.min(), v.max()], "k--", lw=0.8)
    axes[2].set_xlabel("MC value (held-out states)")
    axes[2].set_ylabel("linear read-out of y")
    axes[2].set_title(f"{args.env}, lifetime 0", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
