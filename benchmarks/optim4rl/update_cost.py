"""Cost of one agent update with the learned optimizer vs Adam, on the same agent, side by side.

The ``HyperRL/A2C-CartPole-v0`` learner (64-64 tanh, 16 envs x 5 steps: 9k parameters); the same
collected batches are trained on with ``train_step`` under each rule, interleaved in every
repetition so that a shared machine's slow spells hit both alike.  Also timed: the rule's own
``update`` alone (no loss, no backward), on the same gradients; the learned rule both with its
compiled kernel (``solvers.optim4rl.kernel``, the default where it builds) and with the torch maths.
Printed: median milliseconds and the ratios learned / Adam.

    OMP_NUM_THREADS=1 python benchmarks/optim4rl/update_cost.py           # ~20 s
    OMP_NUM_THREADS=1 python benchmarks/optim4rl/update_cost.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(reps: int, k: int = 8) -> dict[str, dict[str, float]]:
    import torch

    from agents.a2c import A2CConfig, A2CLearner
    from agents.optim import get_update_rule
    from solvers.optim4rl import kernel

    learners = {name: A2CLearner(A2CConfig(task="CartPole-v1", update_rule=name), seed=0) for name in ("adam", "optim4rl")}
    source = learners["adam"]
    batches = [source.collector.collect(source.params, source.config.num_steps, 0.99)[0] for _ in range(k)]
    grads = {n: torch.randn_like(v) for n, v in source.params.items()}
    rules = {name: get_update_rule(name) for name in learners}

    library = kernel.library

    def maths(name: str) -> str:
        """The rule's name; a ``_torch`` suffix turns the compiled kernel off for the call."""
        kernel.library = (lambda: None) if name.endswith("_torch") else library
        return name.removesuffix("_torch")

    def steps(name: str) -> None:
        learner = learners[maths(name)]
        params, state = learner.params, learner.opt_state
        for batch in batches:
            params, state, _ = learner.train_step(params, state, batch)

    def rule_only(name: str) -> None:
        name = maths(name)
        params = {n: v.detach() for n, v in source.params.items()}
        state = rules[name].init(params)
        with torch.no_grad():
            for _ in range(k):
                params, state = rules[name].update(grads, state, params, {"lr": 1e-3})

    names = (*learners, "optim4rl_torch")
    runs = {f"{kind} {name}": (fn, name) for kind, fn in (("train_step", steps), ("update only", rule_only)) for name in names}
    times: dict[str, list[float]] = {label: [] for label in runs}
    for rep in range(reps + 1):
        for label, (fn, name) in runs.items():
            start = time.perf_counter()
            fn(name)
            if rep:  # the first round is warm-up
                times[label].append((time.perf_counter() - start) / k)
    kernel.library = library
    for learner in learners.values():
        learner.close()
    n_params = sum(v.numel() for v in source.params.values())
    return {"ms": {label: 1e3 * statistics.median(ts) for label, ts in times.items()}, "params": n_params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    import torch

    reps = 5 if args.quick else 40
    result = measure(reps)
    ms = result["ms"]
    threads = torch.get_num_threads()
    print(f"A2C CartPole 64-64 ({result['params']} parameters), 16 envs x 5 steps; torch threads {threads}; {reps} reps")
    print(f"{'what':<12} {'adam ms':>9} {'optim4rl ms':>12} {'ratio':>7} {'torch maths ms':>15} {'ratio':>7}")
    for kind in ("train_step", "update only"):
        a, b, c = ms[f"{kind} adam"], ms[f"{kind} optim4rl"], ms[f"{kind} optim4rl_torch"]
        print(f"{kind:<12} {a:>9.3f} {b:>12.3f} {b / a:>7.2f} {c:>15.3f} {c / a:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
