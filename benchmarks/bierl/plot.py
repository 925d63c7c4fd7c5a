"""Draw a BiERL reproduction's JSON: return per method on the iteration axis and on the env-step axis with
the meta-level's scoring charged, and sigma over training (paper Fig. 7c-d).

python benchmarks/bierl/plot.py benchmarks/bierl/results/HalfCheetah.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def draw(path: Path) -> Path:
    data = json.loads(path.read_text())
    from benchmarks.bierl.summary import charged_steps

    curves: dict[str, list[np.ndarray]] = defaultdict(list)
    steps: dict[str, list[np.ndarray]] = defaultdict(list)
    sigmas: dict[str, list[np.ndarray]] = defaultdict(list)
    for run in data["runs"]:
        curves[run["method"]].append(np.asarray(run["curve"], dtype=float))
        steps[run["method"]].append(charged_steps(run))
        if run.get("sigma") is not None:
            sigmas[run["method"]].append(np.asarray(run["sigma"], dtype=float))
    fig, (ax_ret, ax_env, ax_sig) = plt.subplots(1, 3, figsize=(16, 4.5))
    for i, (method, runs) in enumerate(curves.items()):
        n = min(map(len, runs))
        stack = np.vstack([r[:n] for r in runs])
        style = {"color": f"C{i % 10}", "ls": "-" if i < 10 else "--"}
        x = np.arange(n)
        ax_ret.plot(x, stack.mean(0), label=f"{method} ({len(runs)} seeds)", **style)
        ax_ret.fill_between(x, stack.min(0), stack.max(0), color=style["color"], alpha=0.1)
        ax_env.plot(np.vstack([s[:n] for s in steps[method]]).mean(0) / 1e6, stack.mean(0), **style)
        for s in sigmas.get(method, []):
            ax_sig.plot(np.arange(len(s)), s, alpha=0.6, lw=1, **style)
    task = data["options"]["task"]
    ax_ret.set(title=f"{task}: return (mean; band: min-max over seeds)", xlabel="ES iteration", ylabel="return")
    xlabel = "env steps incl. the meta-level's (millions; mean over seeds)"
    ax_env.set(title="the same, on env steps with scoring charged", xlabel=xlabel, ylabel="return")
    ax_sig.set(title="sigma over training (each seed)", xlabel="ES iteration", ylabel="sigma", ylim=(0.015, 0.085))
    ax_ret.legend(fontsize="x-small")
    for ax in (ax_ret, ax_env, ax_sig):
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
