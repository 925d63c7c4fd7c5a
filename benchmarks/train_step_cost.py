"""Cost of a differentiable update: ``train_step(differentiable=True)`` vs the plain ``train_step``, side by side.

On the 64-64 A2C CartPole learner (16 envs x 5 steps, RMSProp), the same K
collected batches are trained on three ways, interleaved in each repetition
so that a shared machine's slow spells hit all alike:

- ``plain``: K ``train_step`` calls (no graph kept: the black-box path);
- ``differentiable``: ``agents.unroll`` over the same K batches with ``lr`` and
  ``gamma`` as tensors (the graph is built and kept);
- ``+ metagradient``: the same, plus the backward pass of a meta-loss (the A2C
  loss on a held-out batch at the final parameters) to ``lr`` and ``gamma``.

Printed: the median seconds per update of each and their ratios to ``plain``.

    python benchmarks/train_step_cost.py            # ~30 s
    python benchmarks/train_step_cost.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(k: int, reps: int, device: str = "cpu") -> dict[str, float]:
    import torch

    from agents.a2c import A2CConfig, A2CLearner
    from agents.unroll import unroll

    learner = A2CLearner(A2CConfig(task="CartPole-v1"), seed=0, device=device)
    batches = [learner.collector.collect(learner.params, learner.config.num_steps, 0.99)[0] for _ in range(k + 1)]
    held_out = batches.pop()
    fixed = learner.hparam_values(None)

    def plain() -> None:
        params, state = learner.params, learner.opt_state
        for batch in batches:
            params, state, _ = learner.train_step(params, state, batch, fixed)

    def differentiable(backward: bool) -> None:
        lr = torch.tensor(fixed["lr"], device=learner.device, requires_grad=True)
        gamma = torch.tensor(fixed["gamma"], device=learner.device, requires_grad=True)
        out = unroll(learner, batches, {"lr": lr, "gamma": gamma})
        if backward:
            loss = learner.objective(out.params, held_out, fixed)[0]
            torch.autograd.grad(loss, [lr, gamma])

    runs = {"plain": plain, "differentiable": lambda: differentiable(False), "+ metagradient": lambda: differentiable(True)}
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / k)
    learner.close()
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--k", type=int, default=4, help="updates per unroll")
    args = parser.parse_args(argv)
    import torch

    reps = 10 if args.quick else 100
    result = measure(args.k, reps)
    print(f"A2C CartPole 64-64, 16 envs x 5 steps, RMSProp; K = {args.k}; torch threads {torch.get_num_threads()}; {reps} reps")
    print(f"{'path':<18} {'ms / update':>12} {'x plain':>8}")
    for name, seconds in result.items():
        print(f"{name:<18} {1e3 * seconds:>12.3f} {seconds / result['plain']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
