"""Meta-training throughput: the vectorised population vs a Python loop over the same units, side by side.

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/throughput.py --units 64 --repeats 3

Both populations hold ``--units`` Optim4RL training units on Catch (one env each, 20-step rollouts,
Dense256 agents, the same learned optimizer) and run whole meta-iterations: 4 inner A2C updates
per unit, the meta-loss on a fifth rollout and its gradient in the optimizer's weights.  They
alternate, one meta-iteration each per repeat, after one warm-up each, so machine noise hits both.
Unit-updates/s = units x 4 / seconds per meta-iteration.  Writes a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from solvers.optim4rl.config import A2C_HPARAMS, Optim4RLConfig
from solvers.optim4rl.optimizer import Optim4RL, weight_shapes
from solvers.optim4rl.vectorised import VectorPopulation


def meta_iteration(population, rule: Optim4RL, hparams: dict) -> tuple[float, float]:
    """Seconds of the meta-loss (collection and the 4 updates) and of its gradient."""
    start = time.perf_counter()
    out = population.meta_loss(hparams, 4)
    middle = time.perf_counter()
    torch.autograd.grad(out.loss, list(rule.weights.values()), allow_unused=True)
    return middle - start, time.perf_counter() - middle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    config = Optim4RLConfig()
    # Non-zero heads: a fresh optimizer's GRU weights get no meta-gradient, which would skip work.
    rule = Optim4RL(config=config, weights={k: (torch.rand(s) - 0.5) * 0.2 for k, s in weight_shapes(config).items()})
    for w in rule.weights.values():
        w.requires_grad_()
    hparams = {**A2C_HPARAMS, "lr": 1e-3}
    vectorised = VectorPopulation(rule, "catch", units=args.units, seed=0)
    loop = vectorised.loop_twin()
    times: dict[str, list[float]] = {"vectorised": [], "loop": []}
    parts: dict[str, list[tuple[float, float]]] = {"vectorised": [], "loop": []}
    for population in (vectorised, loop):
        meta_iteration(population, rule, hparams)  # warm-up
    for r in range(args.repeats):
        for name, population in (("vectorised", vectorised), ("loop", loop)):
            parts[name].append(meta_iteration(population, rule, hparams))
            times[name].append(sum(parts[name][-1]))
            loss_s, grad_s = parts[name][-1]
            print(f"repeat {r}: {name:10s} {times[name][-1]:.2f} s (loss {loss_s:.2f}, gradient {grad_s:.2f})", flush=True)
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    summary = {
        "units": args.units,
        "task": "catch",
        "repeats": args.repeats,
        "seconds_per_meta_iteration": times,
        "seconds_meta_loss_and_gradient": parts,
        "median_seconds": median,
        "unit_updates_per_s": {k: args.units * 4 / v for k, v in median.items()},
        "speedup": median["loop"] / median["vectorised"],
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("unit_updates_per_s", "speedup")}, indent=2))
    loop.close()


if __name__ == "__main__":
    main()
