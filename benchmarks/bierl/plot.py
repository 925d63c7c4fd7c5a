"""Draw a BiERL reproduction's JSON: return curves per method and sigma over training (paper Fig. 7c-d).

python benchmarks/bierl/plot.py benchmarks/bierl/results/HalfCheetah.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def draw(path: Path) -> Path:
    data = json.loads(path.read_text())
    curves: dict[str, list[np.ndarray]] = defaultdict(list)
    sigmas: dict[str, list[np.ndarray]] = defaultdict(list)
    for run in data["runs"]:
        curves[run["method"]].append(np.asarray(run["curve"], dtype=float))
        if run.get("sigma") is not None:
            sigmas[run["method"]].append(np.asarray(run["sigma"], dtype=float))
    fig, (ax_ret, ax_sig) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (method, runs) in enumerate(curves.items()):
        stack = np.vstack([r[: min(map(len, runs))] for r in runs])
        x = np.arange(stack.shape[1])
        ax_ret.plot(x, stack.mean(0), color=f"C{i}", label=f"{method} ({len(runs)} seeds)")
        ax_ret.fill_between(x, stack.min(0), stack.max(0), color=f"C{i}", alpha=0.15)
        for s in sigmas.get(method, []):
            ax_sig.plot(np.arange(len(s)), s, color=f"C{i}", alpha=0.7, lw=1)
    task = data["options"]["task"]
    ax_ret.set(title=f"{task}: unperturbed policy return", xlabel="ES iteration", ylabel="return")
    ax_sig.set(title=f"{task}: sigma over training (each seed)", xlabel="ES iteration", ylabel="sigma", ylim=(0.015, 0.085))
    ax_ret.legend(fontsize="small")
    for ax in (ax_ret, ax_sig):
        ax.grid(alpha=0.3)
    out = path.with_suffix(".png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by reproduce.py")
    for path in parser.parse_args().results:
        print(draw(path))


if __name__ == "__main__":
    main()
