"""The summary of ``robustness.py``: per cell and arm IQM [95 % CI] of AUC and final return, the share of
cells where STAC(X) beats IMPALA by mean AUC (paper: 72 % gamma, 80 % g_v), and the plots (Fig. 6-9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.aggregate import auc, iqm_ci, probability_of_improvement, write_csv
from benchmarks.stac.reproduce import plot_metaparameters

BASELINE = {"stac": "impala", "stac_hi": "impala", "stacx": "impala", "stacx_mlp": "impala_mlp"}
"""each tuned arm against IMPALA on the same network"""
ARMS = ("impala", "stac", "stac_hi", "stacx", "impala_mlp", "stacx_mlp")
PAPER_SHARE = {"gamma": 0.72, "g_v": 0.80}
"""STACX beat IMPALA in this share of the configurations (Fig. 6, Fig. 7), by mean over seeds"""


TITLES = {"gamma": "perturbed gamma (Fig. 6)", "g_v": "perturbed g_v (Fig. 7)", "init_gamma": "gamma init (Fig. 8)"}


def _groups(cells: list[str]) -> dict[str, list[str]]:
    """The two perturbation sweeps, each with the default cell at the id's value."""
    from benchmarks.stac.robustness import G_VS, GAMMAS, INIT_GAMMAS, cell_name

    sweeps = {"gamma": [cell_name("gamma", v) for v in GAMMAS], "g_v": [cell_name("g_v", v) for v in G_VS]}
    sweeps["init_gamma"] = ["default" if v == 0.99 else f"init_gamma={v:g}" for v in INIT_GAMMAS]
    sweeps["other"] = [c for c in cells if c not in {x for v in sweeps.values() for x in v}]
    return {k: [c for c in v if c in cells] for k, v in sweeps.items()}


def _end(schedule: dict, name: str) -> float | str:
    """The last value of a controlled hyperparameter ("" where it was fixed: the IMPALA arm's perturbed one)."""
    return float(schedule[name][-1]) if name in schedule else ""


def summarise(jobs: list[tuple], out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.stac.robustness import _path, gradient_signs
    from solvers.base import RunLog

    logs: dict[tuple[str, str], list] = {}
    rows = []
    for cell, _, arm, seed, _, runs, _, _, _ in jobs:
        log = RunLog.load(_path(runs, cell, arm, seed))
        logs.setdefault((cell, arm), []).append(log)
        signs = gradient_signs(_path(runs, cell, arm, seed, "grads.json")) if not arm.startswith("impala") else {}
        sched = log.schedule()
        rows.append({"cell": cell, "arm": arm, "seed": seed, "auc": auc(log), "final_return": log.final_return(),
                     "gamma_end": _end(sched, "gamma"), "g_v_end": _end(sched, "g_v"),
                     "lowering_gamma": signs.get("gamma", ""), "lowering_g_v": signs.get("g_v", "")})  # fmt: skip
    table: dict[str, dict[str, Any]] = {}
    for (cell, arm), group in logs.items():
        aucs = np.array([auc(log) for log in group])
        finals = np.array([log.final_return() for log in group])
        entry = {"seeds": len(group), "auc_mean": float(aucs.mean()), "final_mean": float(finals.mean())}
        for metric, values in (("auc", aucs), ("final_return", finals)):
            iqm, low, high = iqm_ci(values)
            entry[metric] = {"iqm": iqm, "ci_low": low, "ci_high": high, "per_seed": values.tolist()}
        table.setdefault(cell, {})[arm] = entry
    sweeps = _groups(list(table))
    shares: dict[str, dict[str, Any]] = {}
    for sweep in ("gamma", "g_v"):
        for arm, base in BASELINE.items():
            pairs = [(c, table[c][arm]["auc_mean"], table[c][base]["auc_mean"])
                     for c in sweeps[sweep] if arm in table[c] and base in table[c]]  # fmt: skip
            if pairs:
                wins = [c for c, a, b in pairs if a > b]
                shares.setdefault(sweep, {})[arm] = {"share": len(wins) / len(pairs), "cells": len(pairs), "wins": wins,
                                                     "paper_stacx": PAPER_SHARE[sweep]}  # fmt: skip
    mechanism: dict[str, dict[str, Any]] = {}
    for r in rows:  # where the metagradients pushed gamma and g_v (head 0), averaged over seeds
        if not r["arm"].startswith("impala") and r["lowering_gamma"] != "":
            m = mechanism.setdefault(r["cell"], {}).setdefault(r["arm"], {"lowering_gamma": [], "lowering_g_v": [],
                                                                          "gamma_end": [], "g_v_end": []})  # fmt: skip
            for k in m:
                m[k].append(r[k])
    mechanism = {c: {a: {k: float(np.mean(v)) for k, v in m.items()} for a, m in arms.items()} for c, arms in mechanism.items()}
    payload = {"settings": settings, "cells": table, "share_beating_impala_by_mean_auc": shares, "metagradient_signs": mechanism}
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(payload, indent=2))
    write_csv(rows, out / "robustness_runs.csv", list(rows[0]))
    plots = [_bars(table, sweeps, out)]
    figs = out / "metaparameters"
    for cell in table:
        tuned = [log for (c, arm), group in logs.items() if c == cell and arm in BASELINE for log in group]
        if tuned:
            title = f"{settings['task']}, cell {cell}: every run's eta (Fig. 9)"
            plots.append(plot_metaparameters(tuned, figs / f"{cell}.png", title))
    (out / "robustness.md").write_text(_markdown(payload, sweeps, plots, out))
    print((out / "robustness.md").read_text())
    return payload


def _bars(table: dict, sweeps: dict[str, list[str]], out: Path) -> Path:
    """Fig. 6-8 at CPU scale: lifetime AUC per cell, IQM and 95 % CI, arms side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"impala": "C3", "stac": "C2", "stac_hi": "C1", "stacx": "C0", "impala_mlp": "C5", "stacx_mlp": "C9"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (sweep, cells) in zip(axes, sweeps.items()):
        arms = [a for a in colors if any(a in table[c] for c in cells)]
        width = 0.8 / max(len(arms), 1)
        for i, arm in enumerate(arms):
            xs, ys, err = [], [], [[], []]
            for j, c in enumerate(cells):
                if arm in table[c]:
                    m = table[c][arm]["auc"]
                    xs.append(j + i * width)
                    ys.append(m["iqm"])
                    err[0].append(m["iqm"] - m["ci_low"])
                    err[1].append(m["ci_high"] - m["iqm"])
            ax.bar(xs, ys, width, yerr=err, color=colors[arm], label=arm, capsize=2)
        ticks = [c.replace("default", "default (0.99/0.5)") for c in cells]
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cells))], ticks, rotation=30, fontsize="small")
        ax.set_title(TITLES[sweep])
        ax.set_ylabel("lifetime AUC, IQM [95% CI]")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    path = out / "robustness.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _markdown(payload: dict, sweeps: dict[str, list[str]], plots: list[Path], out: Path) -> str:
    s = payload["settings"]
    table = payload["cells"]
    lines = [f"# STAC robustness, {s['task']} ({s['budget']:,} env steps per lifetime; n = seeds per cell)", ""]
    arms = [a for a in ARMS if any(a in row for row in table.values())]
    for metric, name in (("auc", "lifetime AUC"), ("final_return", "final return")):
        for sweep, cells in sweeps.items():
            if not cells:
                continue
            lines += [f"## {sweep}: {name}, IQM [95% CI]", "", "| cell | n | " + " | ".join(arms) + " |",
                      "| --- | --- |" + " --- |" * len(arms)]  # fmt: skip
            for c in cells:
                parts = []
                for a in arms:
                    m = table[c].get(a, {}).get(metric)
                    parts.append(f"{m['iqm']:.1f} [{m['ci_low']:.1f}, {m['ci_high']:.1f}]" if m else "")
                n = max(r["seeds"] for r in table[c].values())
                lines.append(f"| {c} | {n} | " + " | ".join(parts) + " |")
            lines.append("")
    lines += ["`*_mlp`: every head with a hidden layer (the paper's heads); `stacx_mlp` is compared with `impala_mlp`.", "",
              "## Share of cells where the arm beats IMPALA by mean AUC", "", "| sweep | arm | share | wins | paper (STACX) |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for sweep, by_arm in payload["share_beating_impala_by_mean_auc"].items():
        for arm, r in by_arm.items():
            lines.append(f"| {sweep} | {arm} | {r['share']:.0%} ({len(r['wins'])}/{r['cells']}) | {', '.join(r['wins'])} | "
                         f"{r['paper_stacx']:.0%} |")  # fmt: skip
    lines += ["", "## Where the metagradients pushed (head 0; share of meta-steps whose descent lowers it; mean over seeds)", "",
              "| cell | arm | lowers gamma | lowers g_v | gamma at the end | g_v at the end |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for cell, arms_ in payload["metagradient_signs"].items():
        for arm, m in arms_.items():
            lines.append(f"| {cell} | {arm} | {m['lowering_gamma']:.0%} | {m['lowering_g_v']:.0%} | {m['gamma_end']:.4f} | "
                         f"{m['g_v_end']:.3f} |")  # fmt: skip
    lines += [""] + [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    return "\n".join(lines) + "\n"


def combine(dirs: list[Path], out: Path, *, reps: int = 2000) -> dict[str, Any]:
    """The share of cells where each arm beats IMPALA by mean AUC, pooled over the tasks in ``dirs``, and the
    probability of improvement over those cells (``reps`` bootstrap resamples)."""
    from benchmarks.stac.robustness import G_VS, GAMMAS, cell_name

    pooled: dict[str, dict[str, list[str]]] = {}
    scores: dict[str, dict[str, list[tuple[list[float], list[float]]]]] = {}  # per-seed AUCs of (arm, base) per cell
    per_task: dict[str, Any] = {}
    for d in dirs:
        payload = json.loads((d / "robustness.json").read_text())
        settings = payload["settings"]  # summaries from before --task name the task only in env_id
        task = settings.get("task") or settings["env_id"].split("-")[1]
        task, table = f"{task} {settings['budget'] // 1000}k", payload["cells"]
        per_task[task] = payload["share_beating_impala_by_mean_auc"]
        for sweep, values in (("gamma", GAMMAS), ("g_v", G_VS)):
            for arm, base in BASELINE.items():
                for cell in (cell_name(sweep, v) for v in values):
                    row = table.get(cell, {})
                    if arm in row and base in row:
                        won = row[arm]["auc_mean"] > row[base]["auc_mean"]
                        pooled.setdefault(sweep, {}).setdefault(arm, []).append(f"{task} {cell}" + (" won" if won else ""))
                        pair = (row[arm]["auc"]["per_seed"], row[base]["auc"]["per_seed"])
                        scores.setdefault(sweep, {}).setdefault(arm, []).append(pair)
    shares = {sweep: {arm: {"share": sum(c.endswith(" won") for c in cs) / len(cs), "cells": len(cs),
                            "wins": [c.removesuffix(" won") for c in cs if c.endswith(" won")],
                            "paper_stacx": PAPER_SHARE[sweep], "p_improvement": _improvement(scores[sweep][arm], reps)}
                      for arm, cs in arms.items()}
              for sweep, arms in pooled.items()}  # fmt: skip
    lines = [f"# STAC robustness over {', '.join(per_task)}: share of cells where the arm beats IMPALA by mean AUC", "",
             "| sweep | arm | " + " | ".join(per_task) + " | pooled | P(arm > IMPALA) [95% CI] | paper (STACX, Atari) |",
             "| --- | --- |" + " --- |" * (len(per_task) + 3)]  # fmt: skip
    for sweep, arms in shares.items():
        for arm, r in arms.items():
            cols = []
            for task in per_task:
                t = per_task[task].get(sweep, {}).get(arm)
                cols.append(f"{t['share']:.0%} ({len(t['wins'])}/{t['cells']})" if t else "")
            pooled_col = f"{r['share']:.0%} ({len(r['wins'])}/{r['cells']})"
            p, lo, hi = r["p_improvement"]
            lines.append(f"| {sweep} | {arm} | " + " | ".join(cols) + f" | {pooled_col} | {p:.2f} [{lo:.2f}, {hi:.2f}] | "
                         f"{r['paper_stacx']:.0%} |")  # fmt: skip
    lines += ["", "P(arm > IMPALA): the chance that a run of the arm has a higher lifetime AUC than a run of IMPALA "
              "(`impala_mlp` for `stacx_mlp`) in the same cell, averaged over the pooled cells (rliable; 0.5 = no "
              "difference; CI: stratified bootstrap over seeds).", "",
              "Per task: " + ", ".join(f"[{d.name}]({d.name}/robustness.md)" for d in dirs), ""]  # fmt: skip
    (out / "robustness.md").write_text("\n".join(lines))
    (out / "robustness.json").write_text(json.dumps({"tasks": list(per_task), "pooled": shares}, indent=2))
    print("\n".join(lines))
    return shares


def _improvement(pairs: list[tuple[list[float], list[float]]], reps: int) -> tuple[float, float, float]:
    """P(X > Y) over cells as rliable's tasks; ``pairs`` per cell (arm's per-seed scores, base's), cut to equal seeds."""
    n = min(min(len(x), len(y)) for x, y in pairs)
    x = np.array([a[:n] for a, _ in pairs]).T
    y = np.array([b[:n] for _, b in pairs]).T
    return probability_of_improvement(x, y, reps=reps)
