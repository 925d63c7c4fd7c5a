"""BiERL-PM and -NPM against vanilla ES with fixed sigma, and NSR-ES with and without them, at a small CPU budget.

    python benchmarks/bierl/reproduce.py --task HalfCheetah --seeds 3 --iterations 30
    python benchmarks/bierl/reproduce.py --task Hopper --methods nsres-0.05 nsres+bierl-pm   # adds to Hopper.json

A method is ``[nsres+]es-SIGMA`` / ``nsres-SIGMA`` (fixed sigma) or
``[nsres+]bierl-{pm,npm}[:SCORER][@SIGMA]``; the ``nsres`` prefix runs the inner
NSR-ES learner (``HyperRL/NSRES-*``) instead of OpenAI-ES, ``:perturbed`` picks the
authors' cheap scorer (default ``:lookahead``, Eq. 4-5) and ``@0.08`` starts the
lifetime at that sigma (the first meta-update waits ``--interval`` iterations).
Runs of other methods and seeds are kept from an existing results file, so methods can
be added without re-running the rest (each run records its own solver options),
and every finished run is written at once, so a stopped reproduction keeps its runs.

Scores are the unperturbed policy's mean return over the last 5 iterations
(one deterministic episode each); rliable's IQM with 95% stratified
bootstrap CIs over seeds.  Two axes (``summary.py``): the iteration axis (the
paper's: scoring env steps not charged) and the env-step axis with them charged,
where each run is scored at the env steps a fixed-sigma lifetime spends.

Writes ``OUT/TASK.json`` (options and every run's curves, what ``plot.py`` and a
rerun of added methods read), ``OUT/TASK-runs.csv`` (the per-run summary: final
score, AUC, scoring steps) and ``OUT/TASK.md`` (both axes and the claim test).
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
from benchmarks.bierl.summary import scoring_steps, write_markdown  # noqa: E402

METHODS = ("es-0.02", "es-0.05", "es-0.08", "bierl-npm", "bierl-pm", "nsres-0.05", "nsres+bierl-npm", "nsres+bierl-pm")
ISSUE16 = (
    *(f"es-{s}" for s in ("0.02", "0.035", "0.05", "0.065", "0.08")),
    *(f"bierl-{m}:{scorer}" for m in ("pm", "npm") for scorer in ("lookahead", "perturbed")),
    "bierl-npm:perturbed@0.08",
)
"""issue 16's reproduction: the whole fixed-sigma grid against both meta-levels with both scorers, and a bad start"""


def parse_method(method: str) -> tuple[str, str]:
    """``"nsres+bierl-pm"`` -> ``("NSRES", "bierl-pm")``; ``"nsres-0.05"`` -> ``("NSRES", "fixed-0.05")``.

    A meta-level may name its scorer and starting sigma: ``bierl-pm:perturbed@0.08`` (see ``meta_options``).
    """
    if method.startswith(("es-", "nsres-")) and (":" in method or "@" in method):
        raise ValueError(f"{method!r}: a fixed-sigma arm takes no scorer (':') or starting sigma ('@')")
    meta_options(method)
    method = method.split(":")[0].split("@")[0]
    algorithm, _, meta = method.rpartition("+")
    if method.startswith("nsres-") or method.startswith("es-"):
        algorithm, meta = method.split("-")[0], "fixed-" + method.split("-", 1)[1]
    if algorithm not in ("", "es", "nsres") or not (meta in ("bierl-pm", "bierl-npm") or meta.startswith("fixed-")):
        raise ValueError(f"unknown method {method!r}; e.g. {', '.join(METHODS)}")
    return (algorithm or "es").upper(), meta


def meta_options(method: str) -> dict:
    """``"bierl-npm:perturbed@0.08"`` -> ``{"scorer": "perturbed", "init": {"sigma": 0.08}}``."""
    method, _, start = method.partition("@")
    scorer = method.partition(":")[2] or "lookahead"
    if scorer not in ("lookahead", "perturbed"):
        raise ValueError(f"unknown scorer {scorer!r} in {method!r}; lookahead or perturbed")
    try:
        init = {"sigma": float(start)} if start else {}
    except ValueError:
        raise ValueError(f"the starting sigma after '@' must be a number, got {start!r}") from None
    return {"scorer": scorer, "init": init}


def run_one(args: tuple) -> dict:
    method, seed, opts = args
    import gymnasium as gym

    import hyperenvs
    from hyperenvs import registry
    from solvers import make_solver

    gym.register_envs(hyperenvs)
    episode_steps = opts["episode_steps"] or None  # 0: the task's own limit (full episodes)
    config = {"population": opts["population"], "max_episode_steps": episode_steps, "backend": "serial"}
    config["optimizer"] = opts.get("optimizer", "sgd")  # results files from before the option ran sgd
    defaults = {"lr": opts["lr"]} if opts.get("lr") is not None else {}
    limit = episode_steps or gym.spec(registry.get(f"ES-{opts['task']}-v0").task).max_episode_steps
    budget = opts["iterations"] * (opts["population"] + 1) * limit  # an upper bound: iterations end the run
    algorithm, meta = parse_method(method)
    env = gym.make(f"HyperRL/{algorithm}-{opts['task']}-v0", config=config, defaults=defaults, total_timesteps=budget)
    chosen = meta_options(method)
    scoring = {
        "scorer": chosen["scorer"],
        "lookahead_repeats": opts["lookahead_repeats"],
        "perturbed_samples": opts["perturbed_samples"],
        "init": chosen["init"],
        "interval": opts["interval"],
    }
    if meta.startswith("fixed-"):
        solver, settings = _Fixed(float(meta.removeprefix("fixed-"))), {}
    elif meta == "bierl-npm":
        settings = {"init_points": opts["init_points"], "bo_points": opts["bo_points"], **scoring}
        solver = make_solver("bierl-npm", **settings)
    else:
        settings = {"meta_pairs": opts["meta_pairs"], "pretrained": opts["pretrained"], **scoring}
        solver = make_solver("bierl-pm", **settings)
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
        "solver_options": settings,
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
    parser.add_argument("--seed-start", type=int, default=0, help="run seeds seed-start .. seed-start + seeds - 1")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--meta-pairs", type=int, default=2)
    parser.add_argument("--init-points", type=int, default=3, help="NPM's random points per meta-update")
    parser.add_argument("--bo-points", type=int, default=3, help="NPM's BO points per meta-update")
    parser.add_argument("--lookahead-repeats", type=int, default=1, help="the paper's l")
    parser.add_argument("--perturbed-samples", type=int, default=10, help="copies scored by the perturbed scorer")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="the inner ES step (paper Eq. 3: sgd)")
    parser.add_argument("--lr", type=float, default=None, help="the inner ES step size (default: the id's, 0.05)")
    parser.add_argument("--pretrained", default="auto")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="or 'issue16' for that reproduction's arms")
    parser.add_argument("--out", default="benchmarks/bierl/results")
    parser.add_argument("--analyse", action="store_true", help="no runs: summarise OUT/TASK.json (and rewrite its CSV)")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="with --analyse: first add to OUT/TASK.json the runs (method and seed) of these results files it lacks "
        "(arms run as separate commands, e.g. on two cores at once)",
    )
    opts = vars(parser.parse_args())
    merge = opts.pop("merge")
    if merge and not opts["analyse"]:
        parser.error("--merge goes with --analyse")
    if opts.pop("analyse"):
        path = Path(opts["out"]) / f"{opts['task']}.json"
        if merge:
            merge_results(path, merge)
        rows = json.loads(path.read_text())["runs"]
        print(write_run_summary(rows, path.with_name(f"{opts['task']}-runs.csv")))
        summarise(rows)
        print(write_markdown(path))
        return
    if opts["methods"] == ["issue16"]:
        opts["methods"] = list(ISSUE16)
    for method in opts["methods"]:
        parse_method(method)  # fail before any run
    if opts["pretrained"] == "none":
        opts["pretrained"] = None
    seeds = range(opts["seed_start"], opts["seed_start"] + opts["seeds"])
    jobs = [(m, s, opts) for s in seeds for m in opts["methods"]]
    start = time.perf_counter()
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{opts['task']}.json"
    planned = {(m, s) for m, s, _ in jobs}
    kept = [r for r in json.loads(path.read_text())["runs"] if (r["method"], r["seed"]) not in planned] if path.exists() else []
    rows: list[dict] = []
    with mp.get_context("fork").Pool(opts["processes"]) as pool:
        for row in pool.imap_unordered(run_one, jobs, chunksize=1):
            rows.append(row)
            print(f"{row['method']} seed {row['seed']}: score {row['score']:.1f}, {row['wall_time']:.0f} s", flush=True)
            _write(path, opts, kept + rows, time.perf_counter() - start)
    rows = kept + rows
    write_run_summary(rows, out / f"{opts['task']}-runs.csv")
    summarise(rows)
    print(f"wrote {path} and {write_markdown(path)} in {time.perf_counter() - start:.0f} s")


def _write(path: Path, opts: dict, rows: list[dict], wall: float) -> None:
    """The results file after every finished run (written whole, then renamed: never half a file)."""
    rows = sorted(rows, key=lambda r: (r["method"], r["seed"]))
    opts = {**opts, "methods": list(dict.fromkeys(r["method"] for r in rows))}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"options": opts, "runs": rows, "wall_time": wall}))
    tmp.replace(path)


def merge_results(path: Path, others: list[Path]) -> None:
    """Add to ``path`` the runs of ``others`` (a method and seed) it lacks; each run keeps its own options.

    Files whose shared options (task, population, iterations, episode length, interval, inner step)
    differ are refused: their runs are not comparable."""
    data = json.loads(path.read_text())
    shared = ("task", "population", "iterations", "episode_steps", "interval", "optimizer", "lr")
    for other in others:
        more = json.loads(other.read_text())
        differ = [k for k in shared if data["options"].get(k) != more["options"].get(k)]
        if differ:
            raise SystemExit(f"{other} differs from {path} in {differ}: its runs are not comparable")
        have = {(r["method"], r["seed"]) for r in data["runs"]}
        data["runs"] += [r for r in more["runs"] if (r["method"], r["seed"]) not in have]
        data["wall_time"] = data.get("wall_time", 0.0) + more.get("wall_time", 0.0)
    _write(path, data["options"], data["runs"], data["wall_time"])


def write_run_summary(rows: list[dict], path: Path) -> Path:
    """One CSV row a run: its final score and the mean of its return curve (AUC), sorted by method and seed."""
    table = [{**r, "auc": float(np.nanmean(r["curve"])) if np.isfinite(r["curve"]).any() else float("nan"),
              "meta_env_steps": scoring_steps(r)} for r in rows]  # fmt: skip
    table.sort(key=lambda r: (r["method"], r["seed"]))
    return write_csv(table, path, ("method", "seed", "score", "auc", "meta_env_steps", "wall_time"))


def summarise(rows: list[dict]) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"{'method':<16} {'IQM':>9}  {'95% CI':>21}  {'mean':>9}  seeds  look-ahead steps  wall s")
    for m in methods:
        runs = [r for r in rows if r["method"] == m]
        scores = np.array([r["score"] for r in runs])
        point, lo, hi = iqm_ci(scores)
        look = np.mean([scoring_steps(r) for r in runs])
        wall = np.mean([r["wall_time"] for r in runs])
        print(f"{m:<16} {point:9.1f}  [{lo:9.1f}, {hi:9.1f}]  {scores.mean():9.1f}  {len(runs):5d}  {look:16.0f}  {wall:6.0f}")


if __name__ == "__main__":
    main()
