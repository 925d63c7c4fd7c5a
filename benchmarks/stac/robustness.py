"""STAC/STACX robustness to the outer loss and to eta's initialisation (Zahavy et al., 2020, Section 4.3) at CPU scale.

The paper's protocol (Fig. 6-7): perturb one hyperparameter -- gamma or g_v --
for IMPALA, and the same one in STAC's *outer* loss (eta starts there, the
rule of thumb); STACX beat IMPALA in 72 % (gamma) and 80 % (g_v) of the
configurations, by mean over seeds.  Fig. 8: STACX with gamma's initial value
in {0.99, 0.992, 0.995, 0.997, 0.999} and the outer values fixed.  Here, on
``HyperRL/IMPALA-{CartPole,Acrobot}-v0`` (``--task``) with one IMPALA update per
hyper-step, arms:

- ``impala``: eta fixed at the id's defaults, the perturbed one replaced;
- ``stac``: metagradients at the paper's meta_lr 1e-3;
- ``stac_hi``: STAC at ``--meta-lr-hi`` (see the README for why that value);
- ``stacx``: STACX (two auxiliary heads) at ``--meta-lr-hi``;
- ``impala_mlp``, ``stacx_mlp`` (the default and perturbed cells): IMPALA and STACX with the
  paper's heads, a hidden layer of ``HEAD_HIDDEN`` units before each head's
  output, so that the head architecture is compared on equal networks.

Cells (``CELLS``): ``default``; ``gamma=x`` and ``g_v=x`` (the perturbations; the
id's defaults gamma 0.99 and g_v 0.5 are the ``default`` cell); ``init_gamma=x``
(Fig. 8: only the initial gamma moves); ``g_outer=1`` (the paper's literal
g_v = g_e = 1 in IMPALA and the outer loss, the question of the paper's Section 4).

Score per run: the lifetime AUC (the mean of the return curve) and the final
return; per cell and arm, the mean over seeds and the IQM with a 95 %
percentile-bootstrap CI (rliable).  With ``--check``: only the mechanism test,
which also records the sign of each metagradient step for gamma and g_v.

    python benchmarks/stac/robustness.py --check          # a minute or two: do the signs point the right way?
    python benchmarks/stac/robustness.py --task Acrobot --seeds 5 --budget 50000

RunLogs and per-run diagnostics go to ``OUT/runs/`` (ignored by git); the summary
(``robustness.json``, ``robustness.md``, ``robustness_runs.csv``) and the plots to
``OUT/robustness-TASK-BUDGETk/``; ``--combine DIR ...`` pools the share of cells
won over those tasks' summaries into ``OUT/robustness.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.aggregate import auc  # noqa: E402

HERE = Path(__file__).resolve().parent
TASKS = ("CartPole", "Acrobot")
CONTROLLED = ("gamma", "lambda_", "g_v", "g_p", "g_e", "alpha", "lr")
"""what the IMPALA ids control"""
GAMMAS = (0.9, 0.95, 0.99, 0.995, 0.999)
G_VS = (0.05, 0.15, 0.5, 1.0, 2.0)
INIT_GAMMAS = (0.99, 0.992, 0.995, 0.997, 0.999)
DEFAULTS = {"gamma": 0.99, "g_v": 0.5}
ARMS = ("impala", "stac", "stac_hi", "stacx")
HEAD_ARMS = ("impala_mlp", "stacx_mlp")
HEAD_HIDDEN = (64,)
"""the hidden layer of each head in the ``*_mlp`` arms: the torso's width, as the paper's heads are its torso's"""


def env_id(task: str) -> str:
    return f"HyperRL/IMPALA-{task}-v0"


def results_dir(out: str | Path, task: str, budget: int) -> Path:
    return Path(out) / f"robustness-{task}-{budget // 1000}k"


def cell_name(key: str, value: float) -> str:
    return "default" if DEFAULTS.get(key) == value else f"{key}={value:g}"


def cells() -> dict[str, dict[str, Any]]:
    """Cell name -> {"outer": perturbed outer/IMPALA values, "init": STAC's initial eta, "arms": arms}."""
    out: dict[str, dict[str, Any]] = {"default": {"outer": {}, "init": {}, "arms": ARMS + HEAD_ARMS}}
    for key, values in (("gamma", GAMMAS), ("g_v", G_VS)):
        for v in values:
            if cell_name(key, v) != "default":
                out[cell_name(key, v)] = {"outer": {key: v}, "init": {}, "arms": ARMS + HEAD_ARMS}
    for v in INIT_GAMMAS[1:]:
        out[f"init_gamma={v:g}"] = {"outer": {}, "init": {"gamma": v}, "arms": ("stac_hi", "stacx")}
    out["g_outer=1"] = {"outer": {"g_v": 1.0, "g_p": 1.0, "g_e": 1.0}, "init": {}, "arms": ("impala", "stac_hi")}
    return out


def _path(out: str, cell: str, arm: str, seed: int, suffix: str = "jsonl") -> Path:
    return Path(out) / f"{cell}-{arm}-seed{seed}.{suffix}"


def _job(job: tuple) -> str:
    cell, spec, arm, seed, budget, out, meta_lrs, outer_batch, task = job
    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers import make_solver
    from solvers.base import describe_space

    torch.set_num_threads(1)
    gym.register_envs(hyperenvs)
    make: dict[str, Any] = {"total_timesteps": budget, "iterations_per_step": 1, "config": {}}
    if arm.endswith("_mlp"):
        make["config"]["head_hidden"] = HEAD_HIDDEN
    if arm.startswith("impala"):  # the perturbed values become the fixed defaults of hyperparameters it does not control
        make["hyperparameters"] = [n for n in CONTROLLED if n not in spec["outer"]]
        make["defaults"] = dict(spec["outer"])
        solver = make_solver("static")
    else:
        if arm.startswith("stacx"):
            make["config"]["aux_heads"] = 2
        kwargs = {"outer": dict(spec["outer"]), "init": dict(spec["init"]), "outer_batch": outer_batch}
        solver = make_solver("stacx" if arm.startswith("stacx") else "stac", meta_lr=meta_lrs[arm], **kwargs)
    env = gym.make(env_id(task), **make)
    grads: list[list[float]] = []

    def record(_record: Any) -> None:
        g = getattr(solver, "last_metagradient", None)
        grads.append([] if g is None else g[0].tolist())
        if g is not None:
            solver.last_metagradient = None

    start = time.perf_counter()
    try:
        log = solver.run(env, seed=seed, callback=record)
    finally:
        env.close()
    log.solver = arm
    log.space = describe_space(env)
    log.save(_path(out, cell, arm, seed))
    _path(out, cell, arm, seed, "grads.json").write_text(json.dumps(grads))
    wall = time.perf_counter() - start
    print(f"{task} {cell} {arm} seed {seed}: AUC {auc(log):.1f}, final {log.final_return():.1f}, {wall:.0f} s", flush=True)
    return str(_path(out, cell, arm, seed))


def gradient_signs(path: Path) -> dict[str, float]:
    """Fraction of metagradient steps whose descent direction lowers gamma / g_v (d L / d logit > 0)."""
    from agents.impala import META_KEYS

    rows = [g for g in json.loads(path.read_text()) if g]
    if not rows:
        return {}
    arr = np.array(rows)
    return {k: float((arr[:, META_KEYS.index(k)] > 0).mean()) for k in ("gamma", "g_v")}


def _run(jobs: list[tuple], workers: int) -> None:
    if workers <= 1:
        [_job(j) for j in jobs]
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_job, jobs, chunksize=1)


def check(args: argparse.Namespace) -> int:
    """The mechanism: perturbed cells, both outer-loss forms; where do the metagradients push gamma and g_v?"""
    runs = Path(args.out) / "runs" / "check"
    runs.mkdir(parents=True, exist_ok=True)
    table = cells()
    jobs = [
        (cell, table[cell], "stac_hi", seed, args.check_budget, str(runs / form), {"stac_hi": args.meta_lr_hi}, form, args.task)
        for form in ("next", "same")
        for cell in ("gamma=0.999", "g_v=2", "default")
        for seed in range(2)
    ]
    for form in ("next", "same"):
        (runs / form).mkdir(exist_ok=True)
    _run(jobs, args.workers)
    from solvers.base import RunLog

    result: dict[str, Any] = {}
    for cell, _, arm, seed, _, out, _, form, _ in jobs:
        log = RunLog.load(_path(out, cell, arm, seed))
        sched = log.schedule()
        row = result.setdefault(form, {}).setdefault(cell, [])
        row.append(
            {
                "seed": seed,
                "share_of_steps_lowering": gradient_signs(_path(out, cell, arm, seed, "grads.json")),
                "gamma": [float(sched["gamma"][0]), float(sched["gamma"][-1])],
                "g_v": [float(sched["g_v"][0]), float(sched["g_v"][-1])],
                "auc": auc(log),
            }
        )
    payload = {"budget": args.check_budget, "meta_lr": args.meta_lr_hi, "result": result}
    (Path(args.out) / "robustness_check.json").write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="CartPole", choices=TASKS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100_000, help="env steps per lifetime")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--meta-lr-hi", type=float, default=1e-2, help="the larger meta_lr of stac_hi and stacx")
    parser.add_argument("--cells", nargs="+", default=None, help="run only these cells (names as in CELLS)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS + HEAD_ARMS), choices=ARMS + HEAD_ARMS, help="run only these arms")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--check", action="store_true", help="only the mechanism check")
    parser.add_argument("--check-budget", type=int, default=20_000)
    parser.add_argument("--skip-existing", action="store_true", help="reuse RunLogs already under OUT/runs")
    parser.add_argument("--summarise-only", action="store_true", help="run nothing; summarise what is under OUT/runs")
    parser.add_argument("--combine", nargs="+", metavar="DIR", help="run nothing; pool these tasks' summaries into OUT")
    args = parser.parse_args(argv)
    if args.check:
        return check(args)
    if args.combine:
        from benchmarks.stac.summarise_robustness import combine

        combine([Path(d) for d in args.combine], Path(args.out))
        return 0
    out = results_dir(args.out, args.task, args.budget)
    runs = Path(args.out) / "runs" / "robustness" / out.name
    runs.mkdir(parents=True, exist_ok=True)
    table = cells()
    chosen = args.cells or list(table)
    lrs = {"stac": 1e-3, "stac_hi": args.meta_lr_hi, "stacx": args.meta_lr_hi, "stacx_mlp": args.meta_lr_hi}
    # seeds outermost: a partial run still has every cell
    jobs = [(c, table[c], arm, seed, args.budget, str(runs), lrs, "next", args.task)
            for seed in range(args.seeds) for c in chosen for arm in table[c]["arms"] if arm in args.arms]  # fmt: skip
    start = time.perf_counter()
    if not args.summarise_only:
        todo = [j for j in jobs if not (args.skip_existing and _path(j[5], j[0], j[2], j[3]).exists())]
        _run(todo, args.workers)
    wall = time.perf_counter() - start
    jobs = [j for j in jobs if _path(j[5], j[0], j[2], j[3]).exists()]
    from benchmarks.stac.summarise_robustness import summarise

    summarise(jobs, out, {"seeds": args.seeds, "budget": args.budget, "meta_lr": lrs, "wall_time_s": wall,
                          "platform": platform.platform(), "env_id": env_id(args.task), "task": args.task})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
