"""Meta-training throughput: the vectorised population vs a Python loop over the same units, side by side.

    python benchmarks/optim4rl/throughput.py --units 64 --repeats 3 --threads 2

Both populations hold ``--units`` Optim4RL training units on Catch (one env each, 20-step rollouts,
Dense256 agents, the same learned optimizer) and run whole meta-iterations: 4 inner A2C updates
per unit, the meta-loss on a fifth rollout and its gradient in the optimizer's weights.  They
alternate, one meta-iteration each per repeat, after one warm-up each, so machine noise hits both.
Unit-updates/s = units x 4 / seconds per meta-iteration.  Writes a JSON summary.

``--threads N`` times each population at 1 and at N threads (``torch.set_num_threads``, which the
optimizer's kernel follows).  A loop of small ops gains nothing from threads and can lose (their start-up
on every op), so the headline ``speedup`` is best against best: the loop's fastest setting against the
vectorised population's; ``speedup_at_threads`` gives the same-setting ratios.

``--torch-too`` also times both populations with the optimizer's compiled kernel off (the torch maths,
``solvers.optim4rl.kernel``), interleaved with the rest: what the kernel buys each of them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from solvers.optim4rl import kernel
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


def use(library, threads: int) -> None:
    """Run what follows with this kernel loader (``lambda: None``: the torch maths) on this many threads."""
    kernel.library = library
    torch.set_num_threads(threads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="also time both at this many threads (1: only 1)")
    p.add_argument("--torch-too", action="store_true", help="also time both with the compiled kernel off")
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
    populations = {"vectorised": vectorised, "loop": vectorised.loop_twin()}
    library = kernel.library  # the kernel on; a stand-in returning None turns it off
    settings = sorted({1, args.threads})
    cases = [(f"{name}@{t}", population, library, t) for t in settings for name, population in populations.items()]
    if args.torch_too:
        cases += [(f"{name}_torch@1", population, lambda: None, 1) for name, population in populations.items()]
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    parts: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in cases}
    for _, population, lib, threads in cases:
        use(lib, threads)
        meta_iteration(population, rule, hparams)  # warm-up
    for r in range(args.repeats):
        for name, population, lib, threads in cases:
            use(lib, threads)
            parts[name].append(meta_iteration(population, rule, hparams))
            times[name].append(sum(parts[name][-1]))
            loss_s, grad_s = parts[name][-1]
            print(f"repeat {r}: {name:18s} {times[name][-1]:.2f} s (loss {loss_s:.2f}, gradient {grad_s:.2f})", flush=True)
    use(library, args.threads)
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    best = {name: min((k for k in median if k.startswith(f"{name}@")), key=median.get) for name in populations}
    summary = {
        "units": args.units,
        "task": "catch",
        "repeats": args.repeats,
        "seconds_per_meta_iteration": times,
        "seconds_meta_loss_and_gradient": parts,
        "median_seconds": median,
        "unit_updates_per_s": {k: args.units * 4 / v for k, v in median.items()},
        "best_setting": best,
        "speedup": median[best["loop"]] / median[best["vectorised"]],
        "speedup_at_threads": {t: median[f"loop@{t}"] / median[f"vectorised@{t}"] for t in settings},
        "speedup_per_repeat": [a / b for a, b in zip(times[best["loop"]], times[best["vectorised"]])],
        "compiled_kernel": library() is not None,
    }
    if args.torch_too:
        summary["speedup_torch_maths"] = median["loop_torch@1"] / median["vectorised_torch@1"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k.startswith(("unit_updates", "speedup", "best"))}, indent=2))
    populations["loop"].close()


if __name__ == "__main__":
    main()
