"""The pipeline ablation's figure: meta-training curves of both arms and the frozen optimizers' evaluation.

    python benchmarks/optim4rl/plot_pipeline.py --arm pipeline=runs/pipe_s*/meta.jsonl \
        --arm no_pipeline=runs/nopipe_s*/meta.jsonl --eval results/pipeline_eval.json --out results/pipeline.png

Left: the units' mean episode return per ``--window`` meta-iterations (mean over an arm's seeds, +- 1 s.e.
over seeds).  Middle: the evaluation agents' return curves (mean over runs, 95% CI).  Right: the final
return's IQM and 95% bootstrap CI per arm, with every run.  The windowed curves per run are also written
next to the PNG (``.json``), since the ``meta.jsonl`` logs are not kept in git.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path


def windows(log: str, width: int) -> list[float]:
    """Mean unit return of each ``width`` meta-iterations of one ``optim4rl-train`` log."""
    import numpy as np

    entries = [json.loads(line) for line in Path(log).read_text().splitlines()]
    chunks = [entries[i : i + width] for i in range(0, len(entries), width)]
    return [float(np.mean([x for e in c for x in e["returns"]] or [np.nan])) for c in chunks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=GLOB", help="an arm's meta.jsonl logs")
    parser.add_argument(
        "--eval", required=True, action="append", help="pipeline_ablation.py's JSON (repeat: the arms of several runs together)"
    )
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = dict(a.split("=", 1) for a in args.arm)
    meta = {name: {log: windows(log, args.window) for log in sorted(glob.glob(pattern))} for name, pattern in arms.items()}
    evaluation = {"results": {}, "summary": {}}
    for path in args.eval:
        part = json.loads(Path(path).read_text())
        evaluation["setup"] = evaluation.get("setup", part["setup"])
        evaluation["results"] |= part["results"]
        evaluation["summary"] |= part["summary"]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 3, 2]})
    for name, runs in meta.items():
        curves = np.array(list(runs.values()))
        mean, se = curves.mean(0), curves.std(0, ddof=1) / np.sqrt(len(curves))
        x = (np.arange(curves.shape[1]) + 0.5) * args.window
        a.plot(x, mean, label=f"{name} ({len(curves)} seeds)")
        a.fill_between(x, mean - se, mean + se, alpha=0.2)
    a.set(xlabel="meta-iteration", ylabel=f"units' episode return (mean per {args.window})", title="meta-training")
    a.legend(fontsize=8)
    setup = evaluation["setup"]
    per_point = 5 * setup["num_envs"] * 20  # pipeline_ablation.py keeps every 5th iteration
    names = list(evaluation["results"])
    for name in names:
        curves = np.array([r["curve"] for r in evaluation["results"][name]], dtype=float)
        mean, sem = np.nanmean(curves, 0), np.nanstd(curves, 0) / np.sqrt(len(curves))
        x = np.arange(curves.shape[1]) * per_point
        b.plot(x, mean, label=name, lw=1)
        b.fill_between(x, mean - 1.96 * sem, mean + 1.96 * sem, alpha=0.2)
    b.set(xlabel="env steps", ylabel="episode return", title=f"frozen, fresh A2C agents, lr {setup['lr']:g}")
    b.legend(fontsize=8)
    for i, name in enumerate(names):
        s = evaluation["summary"][name]
        finals = [r["final"] for r in evaluation["results"][name]]
        c.errorbar([i], [s["iqm"]], yerr=[[s["iqm"] - s["ci95"][0]], [s["ci95"][1] - s["iqm"]]], fmt="o", capsize=4)
        c.scatter(np.full(len(finals), i + 0.15), finals, s=8, alpha=0.5)
    c.set_xticks(range(len(names)), names, rotation=15)
    c.set(ylabel="final return: IQM, 95% bootstrap CI", title=f"{setup['steps']:.0e} steps, {setup['num_envs']} envs")
    fig.tight_layout()
    out = Path(args.out)
    fig.savefig(out, dpi=120)
    out.with_suffix(".json").write_text(json.dumps({"window": args.window, "unit_return": meta}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
