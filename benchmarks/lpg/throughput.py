"""Lifetime-updates/s of 64 tabular LPG lifetimes: one vectorised update vs a Python loop over them, side by side.

Both update the same 64 agents (tables of ``lpg_dense``'s 1936 states x 9 actions, y of width 30) on the same
rollouts (``--envs`` envs x 20 steps per lifetime): the vectorised path is ``PopulationLearner.train_step``
(one LPG pass over all 64 x envs columns, one gather/scatter into the stacked tables), the loop is 64 calls
of the single-lifetime ``LPGAgentLearner.train_step``.  Measured plainly (the Eq. 2 step) and as the
meta-gradient's step (differentiable, K = 5 unrolled, then backpropagated to the LPG).  Then whole
meta-iterations (``MetaTrainer.step``: 6 collections, K = 5 updates, the meta-gradient and its Adam step) of 64
lifetimes on the 9 tabular environments as one trainer, vs a loop of 64 one-lifetime trainers on the same
environments.  Rounds alternate the paths so machine noise hits both; the median of the rounds is reported.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/throughput.py --out benchmarks/lpg/results/throughput.json

``--network lpg_random_small,chain_distractor`` times only the whole meta-iterations, of network lifetimes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from agents.base import Batch
from agents.unroll import unroll
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.lifetimes import LifetimeEnvs
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


@contextlib.contextmanager
def _env_clock():
    """Time spent in ``LifetimeEnvs.step`` while inside, summed into the yielded list's one entry."""
    spent, step = [0.0], LifetimeEnvs.step

    def timed(self, actions):
        start = time.perf_counter()
        out = step(self, actions)
        spent[0] += time.perf_counter() - start
        return out

    LifetimeEnvs.step = timed
    try:
        yield spent
    finally:
        LifetimeEnvs.step = step


def _meta_iterations(n: int, envs: int, hidden: int, rounds: int, training: tuple[str, ...] = ("tabular", "chains")) -> dict:
    """Whole meta-iterations (``MetaTrainer.step``: collection, K updates, meta-gradient, Adam), n lifetimes as
    one trainer vs a loop of n one-lifetime trainers, lifetime ``j`` of the loop on slot ``j``'s environment."""
    config = MetaTrainConfig(envs=training, lifetimes=n, envs_per_lifetime=envs, lpg=LPGConfig(hidden=hidden))
    trainer = MetaTrainer(config)
    singles = [
        MetaTrainer(dataclasses.replace(config, envs=(name,), lifetimes=1, seed=j)) for j, name in enumerate(trainer.slot_env)
    ]

    def loop() -> None:
        for single in singles:
            single.step()

    trainer.step()  # warm-up
    loop()
    vec, looped, envs_s = [], [], {"vectorised": [], "loop": []}
    with _env_clock() as clock:  # the part spent stepping environments (LifetimeEnvs.step), per path
        for _ in range(rounds):
            for name, fn, out in (("vectorised", trainer.step, vec), ("loop", loop, looped)):
                clock[0] = 0.0
                out.append(_timed(fn))
                envs_s[name].append(clock[0])
    updates, t_vec, t_loop = n * config.unroll, statistics.median(vec), statistics.median(looped)
    return {
        "meta_iteration_s": t_vec,
        "meta_iteration_loop_s": t_loop,
        "meta_iteration_updates_per_s": {"vectorised": updates / t_vec, "loop": updates / t_loop},
        "speedup_meta_iteration": t_loop / t_vec,
        "meta_iteration_seconds": {"vectorised": vec, "loop": looped},
        "env_step_seconds": envs_s,
        "meta_iteration_setup": {
            "lifetimes": n,
            "envs_per_lifetime": envs,
            "steps": config.num_steps,
            "K": config.unroll,
            "collections": config.unroll + 1,
            "envs": list(trainer.env_names),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lifetimes", type=int, default=64)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--meta-envs", type=int, default=16, help="environments per lifetime in the full meta-iteration")
    p.add_argument("--device-note", default="2 shared CPU cores, 1 thread")
    p.add_argument(
        "--network",
        default="",
        help="instead: whole meta-iterations of --lifetimes network lifetimes on these environments (comma-separated)",
    )
    p.add_argument("--out", default="benchmarks/lpg/results/throughput.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.network:
        training = tuple(args.network.split(","))
        result = {
            "machine": args.device_note,
            **_meta_iterations(args.lifetimes, args.meta_envs, args.hidden, args.rounds, training),
        }
        print(json.dumps({k_: v for k_, v in result.items() if "seconds" not in k_}, indent=1))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        return
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
    result.update(_meta_iterations(n, args.meta_envs, args.hidden, args.rounds))
    print(json.dumps({k_: v for k_, v in result.items() if "seconds" not in k_}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
