"""Return curves of ``catch.py``'s agents (learned optimizer vs sign-SGD, Adam, RMSProp) and their final IQM.

python benchmarks/optim4rl/plot_catch.py benchmarks/optim4rl/results/catch_eval.json
python benchmarks/optim4rl/plot_catch.py a.json b.json:optim4rl=b_rule,signsgd=-   # rename rows of b; '-' drops one
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEPS_PER_POINT = 5 * 64 * 20  # catch.py keeps every 5th iteration of 64 envs x 20 steps


def write_table(data: dict, path: Path) -> None:
    """Per rule: seeds, IQM [95% CI] of the final return and of the mean return over the whole run (the area
    under the curve: how fast it learns), as a CSV next to the plot."""
    import csv

    import numpy as np

    from solvers.aggregate import iqm_ci

    rows = []
    for name, runs in data["results"].items():
        finals = np.array([r["final"] for r in runs])
        areas = np.array([np.nanmean(r["curve"]) for r in runs])
        row = {"rule": name, "seeds": len(runs)}
        for key, scores in (("final", finals), ("auc", areas)):
            iqm, low, high = iqm_ci(scores)
            row |= {f"{key}_iqm": round(iqm, 4), f"{key}_ci_low": round(low, 4), f"{key}_ci_high": round(high, 4)}
        rows.append(row)
        print(", ".join(f"{k} {v}" for k, v in row.items()))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results",
        nargs="+",
        help="catch.py's JSON files (rows of later files are added); FILE:ROW=NAME,... renames rows, NAME - drops",
    )
    parser.add_argument("--out", help="the PNG (default: the first file's, .png)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = {"results": {}, "summary": {}}
    for spec in args.results:
        path, _, renames = spec.partition(":")
        part = json.loads(Path(path).read_text())
        names = {row: row for row in part["results"]} | dict(item.split("=", 1) for item in renames.split(",") if item)
        for row, name in names.items():
            if name != "-":
                data["results"][name], data["summary"][name] = part["results"][row], part["summary"][row]
    names = list(data["results"])
    wide = len(names) > 5  # many rows: a taller figure, the legend beside the curves
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8) if wide else (10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    for name in names:
        curves = np.array([r["curve"] for r in data["results"][name]], dtype=float)
        mean, sem = np.nanmean(curves, 0), np.nanstd(curves, 0) / np.sqrt(len(curves))
        x = np.arange(curves.shape[1]) * STEPS_PER_POINT
        a.plot(x, mean, label=name)
        a.fill_between(x, mean - 1.96 * sem, mean + 1.96 * sem, alpha=0.2)
    a.set_xlabel("env steps")
    a.set_ylabel("episode return (mean over seeds, 95% CI)")
    a.set_title("A2C on Catch, lr 1e-3")
    a.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5)) if wide else a.legend()
    for i, name in enumerate(names):
        s = data["summary"][name]
        b.errorbar([i], [s["iqm"]], yerr=[[s["iqm"] - s["ci95"][0]], [s["ci95"][1] - s["iqm"]]], fmt="o", capsize=4)
        b.scatter(np.full(len(s["finals"]), i + 0.15), s["finals"], s=8, alpha=0.5)
        b.annotate(f"n={len(s['finals'])}", (i, s["ci95"][0]), textcoords="offset points", xytext=(-8, -12), fontsize=7)
    b.set_xticks(range(len(names)), names, rotation=45 if wide else 20, ha="right" if wide else "center", fontsize=8)
    b.set_ylabel("final return: IQM, 95% bootstrap CI")
    fig.tight_layout()
    out = Path(args.out or Path(args.results[0]).with_suffix(".png"))
    write_table(data, out.with_suffix(".csv"))
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
