"""The meta-training curve of an ``hyperrl optim4rl-train --log`` file: unit return and meta-gradient norm.

python benchmarks/optim4rl/plot_meta.py benchmarks/optim4rl/results/meta_train_cartpole.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a --log JSON-lines file")
    parser.add_argument("--window", type=int, default=20, help="meta-iterations per moving average")
    parser.add_argument("--mark", type=int, help="draw a line at this meta-iteration (e.g. where the shipped optimizer stopped)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [json.loads(line) for line in Path(args.log).read_text().splitlines()]
    t = np.array([r["iteration"] for r in rows])
    ret = np.array([np.mean(r["returns"]) if r["returns"] else np.nan for r in rows])
    kernel = np.ones(args.window) / args.window
    smooth = np.convolve(np.nan_to_num(ret, nan=np.nanmean(ret)), kernel, mode="valid")
    fig, (a, b) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    a.plot(t, ret, alpha=0.3, label="per meta-iteration")
    a.plot(t[args.window - 1 :], smooth, label=f"moving mean ({args.window})")
    a.set_ylabel("unit episode return")
    a.legend()
    b.semilogy(t, [r["grad_norm"] for r in rows])
    b.set_ylabel("meta-gradient norm\n(before clip 0.5)")
    b.set_xlabel("meta-iteration")
    for ax in (a, b):
        if args.mark:
            ax.axvline(args.mark, color="k", linestyle=":")
    fig.tight_layout()
    out = Path(args.log).with_suffix(".png")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
