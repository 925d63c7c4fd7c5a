"""Does the signal EPGT optimises predict what it should?  A check to run before any large reproduction.

From a few points early in a lifetime (snapshots after ``--warmup`` hyper-steps at
the default lr, several seeds), each lr bin is tried for one hyper-step from the
same snapshot; recorded per bin:

- ``rollout``: Eq. 1's G, the discounted return of the first rollout after the
  update with that bin (what ``EPGTConfig.hyper_return="rollout"`` writes),
- ``finished``: the mean return of the episodes finishing in that hyper-step and
  the next (roughly what ``hyper_return="finished_episodes"`` writes),
- ``later``: the mean return of the episodes finishing over ``--horizon`` further
  hyper-steps with the bin held: the outcome a good signal should rank like.

The summary gives, per bin, the mean of each over the snapshots and the Spearman
correlation across bins between each signal and ``later`` (per snapshot, then
averaged).  A signal whose per-bin means are flat, or whose correlation with
``later`` is near 0, cannot guide the choice however the memory works.

    python benchmarks/epgt/signal_check.py --env-id HyperRL/A2C-CartPole-v0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.epgt.common import RESULTS  # noqa: E402

CARTPOLE_MULTIPLIERS = (0.4, 0.6, 0.8, 1.0, 1.25, 1.65, 2.5)
"""the reference code's classic-control lr multipliers around the default (issue 14)"""


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation over the bins where both are measured; NaN when either is constant there."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def _episodes_mean(infos: list[dict]) -> float:
    returns = [r for info in infos for r in info["episode_returns"]]
    return float(np.mean(returns)) if returns else float("nan")


def check(env_id: str, env_kwargs: dict, seeds: int, warmups: list[int], horizon: int) -> dict:
    import gymnasium as gym
    import torch

    import hyperenvs

    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    env = gym.make(env_id, action_type="discrete", timing=False, **env_kwargs)
    space = env.unwrapped.hparam_space
    bins = env.action_space.nvec.tolist()
    assert len(bins) == 1, "one controlled hyperparameter"
    default = space.encode(space.defaults())
    rows = []
    for seed in range(seeds):
        env.reset(seed=seed)
        done_steps = 0
        for warm in warmups:
            for _ in range(warm - done_steps):
                env.step(default)
            done_steps = warm
            snap = env.unwrapped.snapshot()
            per_bin = {"rollout": [], "finished": [], "later": []}
            for b in range(bins[0]):
                env.unwrapped.restore(snap)
                action = np.array([b])
                _, _, _, _, first = env.step(action)
                _, _, _, _, second = env.step(action)
                rollouts = first["rollout_return"]
                per_bin["rollout"].append(rollouts[1] if len(rollouts) > 1 else second["rollout_return"][0])
                per_bin["finished"].append(_episodes_mean([first, second]))
                later = [env.step(action)[4] for _ in range(horizon)]
                per_bin["later"].append(_episodes_mean(later))
            env.unwrapped.restore(snap)
            rows.append({"seed": seed, "warmup": warm, **per_bin})
            print(json.dumps(rows[-1]), flush=True)
    values = [space.decode(np.array([b]))[space.names[0]] for b in range(bins[0])]
    env.close()
    summary = {"env_id": env_id, "env_kwargs": env_kwargs, "bin_values": values, "horizon": horizon, "warmups": warmups}
    return summarise(summary, rows)


def summarise(summary: dict, rows: list[dict]) -> dict:
    """Per-bin means and the signals' rank correlations with ``later``, added to ``summary``."""
    for name in ("rollout", "finished", "later"):
        with np.errstate(all="ignore"):
            summary[f"{name}_mean_per_bin"] = np.nanmean(np.array([r[name] for r in rows], float), axis=0).tolist()
    for name in ("rollout", "finished"):
        rhos = [_spearman(np.array(r[name]), np.array(r["later"])) for r in rows]
        summary[f"spearman_{name}_vs_later"] = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")
        summary[f"spearman_{name}_vs_later_measured"] = int(np.isfinite(rhos).sum())
    summary["rows"] = rows
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="HyperRL/A2C-CartPole-v0")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--warmups", type=int, nargs="+", default=[2, 6])
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--mountaincar", action="store_true", help="Fig. 2a's setting: 4 envs, one iteration a step")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--analyse", action="store_true", help="re-summarise the rows saved in --out")
    args = p.parse_args(argv)
    if args.analyse:
        saved = json.loads(args.out.read_text())
        summary = summarise(
            {k: v for k, v in saved.items() if k in ("env_id", "env_kwargs", "bin_values", "horizon", "warmups")}, saved["rows"]
        )
        args.out.write_text(json.dumps(summary, indent=2))
        print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
        return 0
    if args.mountaincar:
        args.env_id = "HyperRL/A2C-MountainCarContinuous-v0"
        lrs = [4e-5, 1.0e-4, 2.5e-4, 6.3e-4, 1.6e-3, 4.0e-3, 1e-2]
        kwargs = {"hyperparameters": {"lr": (4e-5, 1e-2)}, "bins": {"lr": lrs}, "num_envs": 4, "iterations_per_step": 1}
    else:
        kwargs = {"hyperparameters": ["lr"], "bins": {"lr": [m * 7e-4 for m in CARTPOLE_MULTIPLIERS]}}
    summary = check(args.env_id, kwargs, args.seeds, args.warmups, args.horizon)
    out = args.out or RESULTS / "signal_check" / (args.env_id.split("/")[-1] + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
