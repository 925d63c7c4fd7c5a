"""A sweep's report: final return and AUC per solver and id (IQM, 95% bootstrap CI), probability of improvement, plots.

Everything in it follows from the RunLogs (no wall times, no dates), so the same runs give the same report.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from solvers.aggregate import CI_METHOD, auc, iqm_ci, probability_of_improvement
from solvers.base import RunLog
from solvers.plots import plot_returns, plot_schedule


def _scores(logs: dict[Any, RunLog], solvers: Sequence[str], env_ids: Sequence[str], seeds: int, kind: str) -> np.ndarray:
    """``[solver, seed, id]`` final returns (``final``) or AUCs (``auc``)."""
    score = (lambda log: log.final_return()) if kind == "final" else auc
    return np.array([[[score(logs[s, i, n]) for i in env_ids] for n in range(seeds)] for s in solvers], dtype=np.float64)


def summarise(logs: dict[Any, RunLog], solvers: Sequence[str], env_ids: Sequence[str], seeds: int) -> dict[str, Any]:
    """The report's numbers: per id and solver IQM [CI] of final return and AUC; P(X > Y) over all ids."""
    final, area = _scores(logs, solvers, env_ids, seeds, "final"), _scores(logs, solvers, env_ids, seeds, "auc")
    rows = []
    for j, env_id in enumerate(env_ids):
        for k, solver in enumerate(solvers):
            rows.append(
                {
                    "env_id": env_id,
                    "solver": solver,
                    "seeds": seeds,
                    "final_return": iqm_ci(final[k, :, j]),
                    "auc": iqm_ci(area[k, :, j]),
                }
            )
    pairs = []
    for (a, x), (b, y) in itertools.combinations(enumerate(solvers), 2):
        pairs.append({"x": x, "y": y, "p_final_return": probability_of_improvement(final[a], final[b])})
    return {"method": CI_METHOD, "solvers": list(solvers), "env_ids": list(env_ids), "rows": rows, "improvement": pairs}


def _cell(triple: Sequence[float]) -> str:
    point, low, high = triple
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def markdown(summary: dict[str, Any], plots: Sequence[Path]) -> str:
    lines = [
        "# Sweep report",
        "",
        f"Solvers {', '.join(summary['solvers'])} on {', '.join(summary['env_ids'])}; {CI_METHOD}.",
        "Final return: mean of the last 10 inner episodes; AUC: mean of that curve over the hyper-steps.",
        "",
        "| id | solver | seeds | final return IQM [95% CI] | AUC IQM [95% CI] |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r['env_id']} | {r['solver']} | {r['seeds']} | {_cell(r['final_return'])} | {_cell(r['auc'])} |"
            for r in summary["rows"]
        ),
        "",
        "Probability of improvement P(X > Y) of final return, averaged over the ids (rliable):",
        "",
        "| X | Y | P(X > Y) [95% CI] |",
        "| --- | --- | --- |",
        *(f"| {p['x']} | {p['y']} | {_cell(p['p_final_return'])} |" for p in summary["improvement"]),
        "",
        *(f"![{p.stem}](plots/{p.name})" for p in plots),
        "",
    ]
    return "\n".join(lines)


def write_report(jobs: Sequence[Any], out: Path, *, seeds: int) -> list[Path]:
    """``report.md``, ``report.json`` and per-id return and schedule plots under ``out``; returns the paths."""
    logs = {(job.solver, job.env_id, job.seed): RunLog.load(job.path(out)) for job in jobs}
    solvers = list(dict.fromkeys(job.solver for job in jobs))
    env_ids = list(dict.fromkeys(job.env_id for job in jobs))
    summary = summarise(logs, solvers, env_ids, seeds)
    plots = []
    for env_id in env_ids:
        mine = [log for (s, i, n), log in logs.items() if i == env_id]
        stem = env_id.split(":")[-1].replace("/", "_")
        plots.append(plot_returns(mine, out / "plots" / f"{stem}-returns.png"))
        plots.append(plot_schedule(mine, out / "plots" / f"{stem}-schedule.png"))
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.md").write_text(markdown(summary, plots))
    return [out / "report.md", out / "report.json", *plots]
