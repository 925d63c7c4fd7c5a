"""BiERL-PM and -NPM against vanilla ES with fixed sigma, and NSR-ES with and without them, at a small CPU budget.

    python benchmarks/bierl/reproduce.py --task HalfCheetah --seeds 3 --iterations 30
    python benchmarks/bierl/reproduce.py --task Hopper --methods nsres-0.05 nsres+bierl-pm   # adds to Hopper.json

A method is ``[nsres+]es-SIGMA`` / ``nsres-SIGMA`` (fixed sigma) or
``[nsres+]bierl-{pm,npm}``; the ``nsres`` prefix runs the inner NSR-ES learner
(``HyperRL/NSRES-*``) instead of OpenAI-ES.  Runs of methods not named are kept
from an existing results file, so methods can be added without re-running the rest.

Scores are the unperturbed policy's mean return over the last 5 iterations
(one deterministic episode each); rliable's IQM with 95% stratified
bootstrap CIs over seeds.  Look-ahead env steps of PM/NPM are *not* charged
to the lifetime budget (as in the paper's iteration-based plots) and are
reported separately.

Writes ``OUT/TASK.json`` (options and every run's curves, what ``plot.py`` and a
rerun of added methods read) and ``OUT/TASK-runs.csv``, the per-run summary
(final score, AUC, look-ahead steps).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.aggregate import iqm_ci, write_csv  # noqa: E402

METHODS = ("es-0.02", "es-0.05", "es-0.08", "bierl-npm", "bierl-pm", "nsres-0.05", "nsres+bierl-npm", "nsres+bierl-pm")
ISSUE16 = (
    *(f"es-{s}" for s in ("0.02", "0.035", "0.05", "0.065", "0.08")),
    *(f"bierl-{m}:{scorer}" for m in ("pm", "npm") for scorer in ("lookahead", "perturbed")),
)
"""issue 16's reproduction: the whole fixed-sigma grid against both meta-levels with both scorers"""


def parse_method(method: str) -> tuple[str, str]:
    """``"nsres+bierl-pm"`` -> ``("NSRES", "bierl-pm")``; ``"nsres-0.05"`` -> ``("NSRES", "fixed-0.05")``.

    A meta-level may name its scorer: ``bierl-pm:perturbed`` (default ``lookahead``).
    """
    method = method.split(":")[0]
    algorithm, _, meta = method.rpartition("+")
    if method.startswith("nsres-") or method.startswith("es-"):
        algorithm, meta = method.split("-")[0], "fixed-" + method.split("-", 1)[1]
    if algorithm not in ("", "es", "nsres") or not (meta in ("bierl-pm", "bierl-npm") or meta.startswith("fixed-")):
        raise ValueError(f"unknown method {method!r}; e.g. {', '.join(METHODS)}")
    return (algorithm or "es").upper(), meta


def run_one(args: tuple) -> dict:
    method, seed, opts = args
    import gymnasium as gym

    import hyperenvs
    from hyperenvs import registry
    from solvers import make_solver

    gym.register_envs(hyperenvs)
    episode_steps = opts["episode_steps"] or None  # 0: the task's own limit (full episodes)
    config = {"population": opts["population"], "max_episode_steps": episode_steps, "backend": "serial"}
    limit = episode_steps or gym.spec(registry.get(f"ES-{opts['task']}-v0").task).max_episode_steps
    budget = opts["iterations"] * (opts["population"] + 1) * limit  # an upper bound: iterations end the run
    algorithm, meta = parse_method(method)
    env = gym.make(f"HyperRL/{algorithm}-{opts['task']}-v0", config=config, total_timesteps=budget)
    scoring = {
        "scorer": method.partition(":")[2] or "lookahead",
        "lookahead_repeats": opts["lookahead_repeats"],
        "perturbed_samples": opts["perturbed_samples"],
    }
    if meta.startswith("fixed-"):
        solver = _Fixed(float(meta.removeprefix("fixed-")))
    elif meta == "bierl-npm":
        points = {"init_points": opts["init_points"], "bo_points": opts["bo_points"]}
        solver = make_solver("bierl-npm", interval=opts["interval"], **points, **scoring)
    else:
        pm = {"meta_pairs": opts["meta_pairs"], "pretrained": opts["pretrained"]}
        solver = make_solver("bierl-pm", interval=opts["interval"], **pm, **scoring)
    start = time.perf_counter()
    log = _run_iterations(solver, env, seed, opts["iterations"])
    wall = time.perf_counter() - start
    env.close()
    return {
        "method": method,
        "seed": seed,
        "score": log.final_return(window=5),
        "curve": log.returns(window=5).tolist(),
        "timesteps": log.timesteps.tolist(),
        "sigma": log.schedule()["sigma"].tolist(),
        "meta_env_steps_curve": [r.meta_env_steps for r in log.records],  # timesteps + this: the charged axis
        "meta_env_steps": int(getattr(solver, "meta_env_steps", 0)),
        "wall_time": wall,
    }


def _run_iterations(solver, env, seed: int, iterations: int):
    """One lifetime of ``iterations`` hyper-steps (= ES iterations on ES ids), or fewer if the budget ends it."""
    from solvers.base import StopRun

    def stop(record) -> None:
        if record.step + 1 >= iterations:
            raise StopRun

    try:
        return solver.run(env, seed=seed, callback=stop)
    except StopRun as stopped:
        return stopped.log


class _Fixed:
    """Vanilla ES: the same sigma every hyper-step."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def run(self, env, *, seed, callback=None):
        from solvers.base import EpisodeSolver

        sigma = self.sigma

        class Fixed(EpisodeSolver):
            name = f"es-{sigma}"

            def begin(self, env, obs, info, seed):
                self.action = env.unwrapped.hparam_space.encode({"sigma": sigma})

            def act(self, obs):
                return self.action

        return Fixed().run(env, seed=seed, callback=callback)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="HalfCheetah")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--meta-pairs", type=int, default=2)
    parser.add_argument("--init-points", type=int, default=3, help="NPM's random points per meta-update")
    parser.add_argument("--bo-points", type=int, default=3, help="NPM's BO points per meta-update")
    parser.add_argument("--lookahead-repeats", type=int, default=1, help="the paper's l")
    parser.add_argument("--perturbed-samples", type=int, default=10, help="copies scored by the perturbed scorer")
    parser.add_argument("--pretrained", default="auto")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="or 'issue16' for that reproduction's arms")
    parser.add_argument("--out", default="benchmarks/bierl/results")
    parser.add_argument("--analyse", action="store_true", help="no runs: summarise OUT/TASK.json (and rewrite its CSV)")
    opts = vars(parser.parse_args())
    if opts.pop("analyse"):
        path = Path(opts["out"]) / f"{opts['task']}.json"
        rows = json.loads(path.read_text())["runs"]
        print(write_run_summary(rows, path.with_name(f"{opts['task']}-runs.csv")))
        summarise(rows)
        return
    if opts["methods"] == ["issue16"]:
        opts["methods"] = list(ISSUE16)
    for method in opts["methods"]:
        parse_method(method)  # fail before any run
    if opts["pretrained"] == "none":
        opts["pretrained"] = None
    jobs = [(m, s, opts) for s in range(opts["seeds"]) for m in opts["methods"]]
    start = time.perf_counter()
    with mp.get_context("fork").Pool(opts["processes"]) as pool:
        rows = pool.map(run_one, jobs, chunksize=1)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{opts['task']}.json"
    if path.exists():  # keep the other methods' runs
        kept = [r for r in json.loads(path.read_text())["runs"] if r["method"] not in opts["methods"]]
        rows = kept + rows
        opts = {**opts, "methods": list(dict.fromkeys(r["method"] for r in rows))}
    path.write_text(json.dumps({"options": opts, "runs": rows, "wall_time": time.perf_counter() - start}))
    write_run_summary(rows, out / f"{opts['task']}-runs.csv")
    summarise(rows)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")


def write_run_summary(rows: list[dict], path: Path) -> Path:
    """One CSV row a run: its final score and the mean of its return curve (AUC), sorted by method and seed."""
    table = [{**r, "auc": float(np.nanmean(r["curve"])) if np.isfinite(r["curve"]).any() else float("nan")} for r in rows]
    table.sort(key=lambda r: (r["method"], r["seed"]))
    return write_csv(table, path, ("method", "seed", "score", "auc", "lookahead_env_steps", "wall_time"))


def summarise(rows: list[dict]) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"{'method':<16} {'IQM':>9}  {'95% CI':>21}  {'mean':>9}  seeds  look-ahead steps  wall s")
    for m in methods:
        runs = [r for r in rows if r["method"] == m]
        scores = np.array([r["score"] for r in runs])
        point, lo, hi = iqm_ci(scores)
        look = np.mean([r["meta_env_steps"] for r in runs])
        wall = np.mean([r["wall_time"] for r in runs])
        print(f"{m:<16} {point:9.1f}  [{lo:9.1f}, {hi:9.1f}]  {scores.mean():9.1f}  {len(runs):5d}  {look:16.0f}  {wall:6.0f}")


if __name__ == "__main__":
    main()
