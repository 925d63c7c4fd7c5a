"""BiERL-PM and -NPM against vanilla ES with fixed sigma, at a small CPU budget.

    python benchmarks/bierl/reproduce.py --task HalfCheetah --seeds 3 --iterations 30

Scores are the unperturbed policy's mean return over the last 5 iterations
(one deterministic episode each); rliable's IQM with 95% stratified
bootstrap CIs over seeds.  Look-ahead env steps of PM/NPM are *not* charged
to the lifetime budget (as in the paper's iteration-based plots) and are
reported separately.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

METHODS = ("es-0.02", "es-0.05", "es-0.08", "bierl-npm", "bierl-pm")


def run_one(args: tuple) -> dict:
    method, seed, opts = args
    import gymnasium as gym

    import hyperenvs
    from solvers import make_solver

    gym.register_envs(hyperenvs)
    config = {"population": opts["population"], "max_episode_steps": opts["episode_steps"], "backend": "serial"}
    budget = opts["iterations"] * (opts["population"] + 1) * opts["episode_steps"]
    env = gym.make(f"HyperRL/ES-{opts['task']}-v0", config=config, total_timesteps=budget)
    if method.startswith("es-"):
        solver = _Fixed(float(method[3:]))
    elif method == "bierl-npm":
        solver = make_solver("bierl-npm", interval=opts["interval"], init_points=3, bo_points=3)
    else:
        solver = make_solver("bierl-pm", interval=opts["interval"], meta_pairs=opts["meta_pairs"], pretrained=opts["pretrained"])
    start = time.perf_counter()
    log = solver.run(env, seed=seed)
    wall = time.perf_counter() - start
    env.close()
    return {
        "method": method,
        "seed": seed,
        "score": log.final_return(window=5),
        "curve": log.returns(window=5).tolist(),
        "timesteps": log.timesteps.tolist(),
        "sigma": log.schedule()["sigma"].tolist(),
        "lookahead_env_steps": int(getattr(solver, "lookahead_env_steps", 0)),
        "wall_time": wall,
    }


class _Fixed:
    """Vanilla ES: the same sigma every hyper-step."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def run(self, env, *, seed):
        from solvers.base import EpisodeSolver

        sigma = self.sigma

        class Fixed(EpisodeSolver):
            name = f"es-{sigma}"

            def begin(self, env, obs, info, seed):
                self.action = env.unwrapped.hparam_space.encode({"sigma": sigma})

            def act(self, obs):
                return self.action

        return Fixed().run(env, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="HalfCheetah")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--meta-pairs", type=int, default=2)
    parser.add_argument("--pretrained", default="auto")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default="benchmarks/bierl/results")
    opts = vars(parser.parse_args())
    if opts["pretrained"] == "none":
        opts["pretrained"] = None
    jobs = [(m, s, opts) for s in range(opts["seeds"]) for m in opts["methods"]]
    start = time.perf_counter()
    with mp.get_context("fork").Pool(opts["processes"]) as pool:
        rows = pool.map(run_one, jobs, chunksize=1)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{opts['task']}.json"
    path.write_text(json.dumps({"options": opts, "runs": rows, "wall_time": time.perf_counter() - start}))
    summarise(rows)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")


def iqm_ci(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """rliable's IQM and a 95% percentile-bootstrap CI over runs.

    ``rliable.library`` needs ``arch``, which does not import in this venv, so the
    (single-task, hence unstratified) bootstrap is drawn here with rliable's IQM.
    """
    from rliable import metrics

    scores = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(reps, len(scores)))
    stats = np.array([metrics.aggregate_iqm(scores[d]) for d in draws])
    return float(metrics.aggregate_iqm(scores)), float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def summarise(rows: list[dict]) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"{'method':<11} {'IQM':>9}  {'95% CI':>21}  {'mean':>9}  seeds  look-ahead steps  wall s")
    for m in methods:
        runs = [r for r in rows if r["method"] == m]
        scores = np.array([r["score"] for r in runs])
        point, lo, hi = iqm_ci(np.nan_to_num(scores, nan=-1e9))
        look = np.mean([r["lookahead_env_steps"] for r in runs])
        wall = np.mean([r["wall_time"] for r in runs])
        print(f"{m:<11} {point:9.1f}  [{lo:9.1f}, {hi:9.1f}]  {scores.mean():9.1f}  {len(runs):5d}  {look:16.0f}  {wall:6.0f}")


if __name__ == "__main__":
    main()
