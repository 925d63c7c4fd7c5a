"""The two plots people look for: return over env steps, and the hyperparameter schedule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solvers.base import RunLog  # noqa: E402


def _grid(logs: Sequence[RunLog], points: int = 100) -> np.ndarray:
    end = max(int(log.timesteps[-1]) for log in logs if len(log))
    return np.linspace(0, end, points)


def _interp(log: RunLog, grid: np.ndarray) -> np.ndarray:
    curve = log.returns()
    ok = ~np.isnan(curve)
    if not ok.any():
        return np.full_like(grid, np.nan)
    out = np.interp(grid, log.timesteps[ok], curve[ok])
    out[grid < log.timesteps[ok][0]] = np.nan
    out[grid > log.timesteps[-1]] = np.nan
    return out


def plot_returns(logs: Sequence[RunLog], path: str | Path, title: str | None = None) -> Path:
    """Mean return of recent inner episodes vs env steps; one line per solver, band = min..max over seeds."""
    logs = [log for log in logs if len(log)]
    if not logs:
        raise ValueError("plot_returns needs at least one non-empty RunLog")
    grid = _grid(logs)
    by_solver: dict[str, list[np.ndarray]] = defaultdict(list)
    for log in logs:
        by_solver[log.solver].append(_interp(log, grid))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for solver, curves in sorted(by_solver.items()):
        stack = np.vstack(curves)
        with warnings.catch_warnings():  # all-NaN columns before the first episode are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)
        line = ax.plot(grid, mean, label=f"{solver} ({len(curves)} seed{'s' * (len(curves) > 1)})")[0]
        if len(curves) > 1:
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("inner environment steps")
    ax.set_ylabel("mean return (last 10 episodes)")
    ax.set_title(title or logs[0].env_id)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_schedule(logs: Sequence[RunLog], path: str | Path, title: str | None = None) -> Path:
    """Each controlled hyperparameter over env steps, one panel each, one line per run."""
    logs = [log for log in logs if len(log)]
    if not logs:
        raise ValueError("plot_schedule needs at least one non-empty RunLog")
    names = list(logs[0].records[0].hyperparameters)
    info = {s["name"]: s for s in logs[0].space}
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(sorted({log.solver for log in logs}))}
    for ax, name in zip(axes[:, 0], names):
        for log in logs:
            ax.step(log.timesteps, log.schedule()[name], where="pre", color=colors[log.solver], alpha=0.7, lw=1.2)
        if name in info:  # the full range, padded so values at its ends stay visible
            low, high = info[name]["low"], info[name]["high"]
            if info[name]["log"]:
                ax.set_yscale("log")
                pad = (high / low) ** 0.04
                ax.set_ylim(low / pad, high * pad)
            else:
                pad = 0.04 * (high - low)
                ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, label=s) for s, c in colors.items()]
    axes[0, 0].legend(handles=handles, loc="upper right", fontsize="small")
    axes[0, 0].set_title(title or f"hyperparameter schedule, {logs[0].env_id}")
    axes[-1, 0].set_xlabel("inner environment steps")
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
