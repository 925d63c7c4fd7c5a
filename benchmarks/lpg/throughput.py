"""Lifetime-updates/s of 64 tabular LPG lifetimes: one vectorised update vs a Python loop over them, side by side.

Both update the same 64 agents (tables of ``lpg_dense``'s 1936 states x 9 actions, y of width 30) on the same
rollouts (``--envs`` envs x 20 steps per lifetime): the vectorised path is ``PopulationLearner.train_step``
(one LPG pass over all 64 x envs columns, one gather/scatter into the stacked tables), the loop is 64 calls
of the single-lifetime ``LPGAgentLearner.train_step``.  Measured plainly (the Eq. 2 step) and as the
meta-gradient's step (differentiable, K = 5 unrolled, then backpropagated to the LPG).  Rounds alternate
the two paths so machine noise hits both; the median of the rounds is reported.  Then the wall time of one
full ``MetaTrainer.step`` (collection included) at 64 lifetimes.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/throughput.py --out benchmarks/lpg/results/throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from agents.base import Batch
from agents.unroll import unroll
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.meta import LPGAgentLearner
from solvers.lpg.network import LPGConfig, LPGNetwork
from solvers.lpg.objective import LPGObjective, TabularAgent
from solvers.lpg.population import PopulationAgent, PopulationLearner
from solvers.lpg.train import MetaTrainer

S, A = 1936, 9


def _batches(n: int, e: int, t: int, g: torch.Generator) -> tuple[Batch, list[Batch]]:
    local = torch.randint(S, (t, n, e), generator=g)
    boot = torch.randint(S, (n, e), generator=g)
    fields = {
        "actions": torch.randint(A, (t, n, e), generator=g),
        "rewards": (torch.rand(t, n, e, generator=g) < 0.05).float(),
        "discounts": (torch.rand(t, n, e, generator=g) > 0.01).float(),
    }
    zeros = torch.zeros(t, n * e)
    stacked = Batch(
        obs=(local + S * torch.arange(n).view(1, n, 1)).reshape(t, -1),
        log_probs=zeros,
        values=zeros,
        bootstrap_value=torch.zeros(n * e),
        bootstrap_obs=(boot + S * torch.arange(n).view(n, 1)).reshape(-1),
        **{k: v.reshape(t, -1) for k, v in fields.items()},
    )
    singles = [
        Batch(
            obs=local[:, j],
            log_probs=zeros[:, :e],
            values=zeros[:, :e],
            bootstrap_value=torch.zeros(e),
            bootstrap_obs=boot[j],
            **{k: v[:, j] for k, v in fields.items()},
        )
        for j in range(n)
    ]
    return stacked, singles


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lifetimes", type=int, default=64)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--meta-envs", type=int, default=16, help="environments per lifetime in the full meta-iteration")
    p.add_argument("--device-note", default="2 shared CPU cores, 1 thread")
    p.add_argument("--out", default="benchmarks/lpg/results/throughput.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    n, e, t, k = args.lifetimes, args.envs, 20, 5
    g = torch.Generator().manual_seed(0)
    net = LPGNetwork(LPGConfig(hidden=args.hidden))
    w = {key: v.requires_grad_() for key, v in net.init(g).items()}
    stacked, singles = _batches(n, e, t, g)
    pop = PopulationAgent(n, S, A, 30)
    params = pop.init(torch.float32)
    hp = {"lr": torch.full((n,), 40.0), "kl_coef": torch.full((n,), 0.5), "gamma": torch.full((n,), 0.99)}
    one = TabularAgent(S, A, 30)
    learners = [LPGAgentLearner(LPGObjective(one, net), one.init(), "sgd") for _ in range(n)]
    hp1 = {"lr": 40.0, "kl_coef": 0.5, "gamma": 0.99}

    def vec_plain():
        PopulationLearner(pop, net, params).train_step(params, {}, stacked, hp, {"lpg": w})

    def loop_plain():
        for lr, b in zip(learners, singles):
            lr.train_step(lr.params, lr.opt_state, b, hp1, {"lpg": w})

    def vec_meta():
        out = unroll(PopulationLearner(pop, net, params), [stacked] * k, hp, {"lpg": w})
        torch.autograd.grad(out.params["pi"].sum() + out.params["y"].square().sum(), list(w.values()))

    def loop_meta():
        for lr, b in zip(learners, singles):
            out = unroll(lr, [b] * k, hp1, {"lpg": w})
            torch.autograd.grad(out.params["pi"].sum() + out.params["y"].square().sum(), list(w.values()))

    times: dict[str, list[float]] = {name: [] for name in ("vec_plain", "loop_plain", "vec_meta", "loop_meta")}
    fns = {"vec_plain": vec_plain, "loop_plain": loop_plain, "vec_meta": vec_meta, "loop_meta": loop_meta}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    med = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "setup": {
            "lifetimes": n,
            "envs_per_lifetime": e,
            "steps": t,
            "K": k,
            "states": S,
            "actions": A,
            "m": 30,
            "lpg_hidden": args.hidden,
            "machine": args.device_note,
        },
        "updates_per_s": {
            "vectorised_plain": n / med["vec_plain"],
            "loop_plain": n / med["loop_plain"],
            "vectorised_meta": n * k / med["vec_meta"],
            "loop_meta": n * k / med["loop_meta"],
        },
        "speedup_plain": med["loop_plain"] / med["vec_plain"],
        "speedup_meta": med["loop_meta"] / med["vec_meta"],
        "seconds": times,
    }
    config = MetaTrainConfig(
        envs=("tabular", "chains"), lifetimes=n, envs_per_lifetime=args.meta_envs, lpg=LPGConfig(hidden=args.hidden)
    )
    trainer = MetaTrainer(config)
    trainer.step()
    result["meta_iteration_s"] = statistics.median(_timed(trainer.step) for _ in range(2))
    result["meta_iteration_setup"] = {
        "lifetimes": n,
        "envs_per_lifetime": args.meta_envs,
        "steps": t,
        "K": k,
        "collections": k + 1,
        "envs": list(trainer.env_names),
    }
    print(json.dumps({k_: v for k_, v in result.items() if k_ != "seconds"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
