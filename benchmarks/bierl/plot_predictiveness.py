"""Draw a ``predictiveness.py`` result: per checkpoint, what each scorer says of every sigma next to the truth.

    python benchmarks/bierl/plot_predictiveness.py benchmarks/bierl/results/predictiveness_llc_adam.json

One panel per checkpoint; x is sigma; the truth (return after ``horizon`` iterations with that
sigma fixed, mean +- s.e. over continuations where they were recorded) on the left axis, the two
scorers' values on the right one (their scales differ from the truth's: only their order matters),
with the Spearman correlation of each scorer with the truth in the title.  Writes ``FILE.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def plot(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(path.read_text())
    grid, rows = np.array(result["grid"]), result["checkpoints"]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0), squeeze=False)
    for ax, row in zip(axes[0], rows):
        se = row.get("truth_se", [0.0] * len(grid))
        ax.errorbar(grid, row["truth"], yerr=se, color="black", marker="o", capsize=3, label="truth (10 its fixed)")
        ax.set_xlabel("sigma")
        twin = ax.twinx()
        twin.plot(grid, row["lookahead"], color="tab:blue", marker="s", ls="--", label="look-ahead (Eq. 4-5)")
        twin.plot(grid, row["perturbed"], color="tab:orange", marker="^", ls=":", label="perturbed")
        rho = f"rho look-ahead {row['spearman_lookahead']:+.1f}, perturbed {row['spearman_perturbed']:+.1f}"
        ax.set_title(f"iteration {row['iteration']}\n{rho}", fontsize=8)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
    axes[0][0].set_ylabel("truth: return")
    handles = [h for a in fig.axes[: len(rows) + 1 : len(rows)] for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=3, fontsize=7, frameon=False)
    settings = result["settings"]
    fig.suptitle(
        f"do the scorers rank sigma as {settings.get('horizon', 10)} iterations of training do? "
        f"{settings['task']}, n={settings['population']}, inner {settings.get('optimizer', 'sgd')}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=90)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path)
    for path in parser.parse_args(argv).results:
        print(f"wrote {plot(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
