"""A BiERL reproduction's scores on two axes and the claim the issue tests, as Markdown beside its JSON.

- **Iteration axis** (the paper's): a run's score is its return over the last 5
  iterations; the env steps spent scoring meta-candidates are not charged.
- **Env-step axis, scoring charged**: each run is scored at one budget, the
  median env steps of the fixed-sigma lifetimes of its inner learner (ES or
  NSR-ES), counting a meta-level's scoring steps as spent; a meta-level that
  scores expensively is scored earlier in its lifetime.  Episodes end early on
  some tasks, so fixed-sigma lifetimes differ in length: about half of them are
  scored a little before their last iteration, and no run past it (every
  lifetime is ``iterations`` long).  ``reproduce.py`` leaves ``charge_budget``
  off, so the lifetimes themselves are the same on both axes.
- **The claim**: an adaptive arm's IQM is at least the median fixed sigma's IQM and
  inside (or above) the best fixed sigma's 95 % CI, without knowing that sigma;
  each arm is compared with the fixed sigmas of its own inner learner.

    python benchmarks/bierl/summary.py benchmarks/bierl/results/LunarLanderContinuous.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.aggregate import iqm_ci  # noqa: E402


def charged_steps(run: dict) -> np.ndarray:
    """The env steps of each iteration with the meta-level's scoring counted (when the lifetime did not already)."""
    steps = np.asarray(run["timesteps"], dtype=float)
    if run.get("solver_options", {}).get("charge_budget") or "meta_env_steps_curve" not in run:
        return steps  # results written before the scoring steps were recorded per iteration: uncharged
    return steps + np.asarray(run["meta_env_steps_curve"], dtype=float)


def scoring_steps(run: dict) -> int:
    """The lifetime's scoring env steps (``lookahead_env_steps`` in results written before the scorers had names)."""
    return int(run.get("meta_env_steps", run.get("lookahead_env_steps", 0)))


def score_at(run: dict, budget: float) -> float:
    """The (5-iteration mean) return at the last iteration whose charged env steps fit in ``budget``."""
    fits = np.flatnonzero(charged_steps(run) <= budget)
    return float(run["curve"][fits[-1]]) if fits.size else float("nan")


def is_fixed(method: str) -> bool:
    return method.startswith(("es-", "nsres-"))


def learner(method: str) -> str:
    """The inner learner of an arm: ``nsres`` for ``nsres-0.05`` and ``nsres+bierl-pm``, else ``es``."""
    return "nsres" if method.startswith("nsres") else "es"


def budgets(runs: list[dict]) -> dict[str, float]:
    """Per inner learner, the charged axis's budget: the median env steps of its fixed-sigma lifetimes."""
    fixed: dict[str, list[float]] = {}
    for r in runs:
        if is_fixed(r["method"]):
            fixed.setdefault(learner(r["method"]), []).append(float(r["timesteps"][-1]))
    return {k: float(np.median(v)) for k, v in fixed.items()}


def table(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Method -> axis -> {iqm, low, high, seeds}; arms without fixed-sigma runs of their learner get no charged axis."""
    budget = budgets(runs)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        group = [r for r in runs if r["method"] == method]
        b = budget.get(learner(method), float("nan"))
        for axis, scores in (("iterations", [r["score"] for r in group]), ("charged", [score_at(r, b) for r in group])):
            values = np.asarray(scores, dtype=float)  # NaN (no iteration within the budget) counts as worst
            iqm, low, high = iqm_ci(values)
            out.setdefault(method, {})[axis] = {"iqm": iqm, "low": low, "high": high, "seeds": int(values.size)}
    return out


def claims(scores: dict, axis: str) -> dict[str, dict[str, bool]]:
    """Per adaptive arm: at least the median fixed sigma's IQM; inside or above the best fixed sigma's CI
    (the fixed sigmas of the arm's own inner learner; arms whose learner has none are left out)."""
    out = {}
    for m, s in scores.items():
        fixed = {f: t[axis] for f, t in scores.items() if is_fixed(f) and learner(f) == learner(m)}
        if is_fixed(m) or not fixed:
            continue
        median = float(np.median([t["iqm"] for t in fixed.values()]))
        best = max(fixed, key=lambda f: fixed[f]["iqm"])
        out[m] = {"above_median": s[axis]["iqm"] >= median, "within_best_ci": s[axis]["iqm"] >= fixed[best]["low"],
                  "median": median, "best": best}  # fmt: skip
    return out


def write_markdown(path: str | Path) -> Path:
    path = Path(path)
    data = json.loads(path.read_text())
    runs, opts = data["runs"], data["options"]
    scores = table(runs)
    charged = ", ".join(f"{b:,.0f} ({k})" for k, b in budgets(runs).items())
    lines = [f"# BiERL on {opts['task']}: n = {opts['population']}, {opts['iterations']} iterations, "
             f"episodes of {opts['episode_steps'] or 'full-length'} steps, inner ES step "
             f"{opts.get('optimizer', 'sgd')} lr {opts.get('lr') or 0.05}", "",
             f"Charged axis: every run scored at {charged} env steps (the median fixed-sigma lifetime of its inner "
             "learner), scoring steps counted"
             + ("." if all("meta_env_steps_curve" in r for r in runs) else
                " (none here: these results predate the per-iteration record of scoring steps)."), "",
             "| method | seeds | iteration axis IQM [95% CI] | charged env-step axis IQM [95% CI] "
             "| scoring env steps (mean) | wall s (mean) |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for method, s in scores.items():
        group = [r for r in runs if r["method"] == method]
        cells = [f"{s[a]['iqm']:.1f} [{s[a]['low']:.1f}, {s[a]['high']:.1f}]" for a in ("iterations", "charged")]
        look = np.mean([scoring_steps(r) for r in group])
        wall = np.mean([r["wall_time"] for r in group])
        lines.append(f"| {method} | {s['iterations']['seeds']} | {cells[0]} | {cells[1]} | {look:,.0f} | {wall:.0f} |")
    for axis in ("iterations", "charged"):
        result = claims(scores, axis)
        if not result:
            continue
        lines += ["", f"## The claim on the {axis} axis", "",
                  "| adaptive arm | median fixed IQM | best fixed | >= median fixed sigma | within the best fixed sigma's CI |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        yes = {True: "yes", False: "no"}
        lines += [f"| {m} | {c['median']:.1f} | {c['best']} | {yes[c['above_median']]} | {yes[c['within_best_ci']]} |"
                  for m, c in result.items()]  # fmt: skip
    settings = {r["method"]: r.get("solver_options", {}) for r in runs if not is_fixed(r["method"])}
    lines += ["", "Solver options per arm: " + "; ".join(f"`{m}` {json.dumps(o, sort_keys=True)}" for m, o in settings.items()),
              "", f"![curves]({path.with_suffix('.png').name})", ""]  # fmt: skip
    out = path.with_suffix(".md")
    out.write_text("\n".join(lines))
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(write_markdown(arg).read_text())
