"""HyperEnv overhead: ``env.step(action)`` against ``learner.iterate(hparams)`` for the same work.

Builds ``gym.make("HyperRL/PPO-HalfCheetah-v0")`` (one iteration per
hyper-step: 1 env x 2048 steps, 10 epochs of minibatch 64, obs/reward
normalisation) and a bare learner of the same class, config and seed, so both
sides do identical training (the script checks that their parameters are
equal at the end).  Each round times one ``env.step`` and one direct
``iterate`` with the same hyperparameters, alternating which goes first.

Two overhead figures are printed:
- side by side: median over rounds of ``step / iterate - 1``, by wall clock
  and by this process's CPU time (on a shared, noisy machine the spread of
  both is larger than the overhead itself);
- in-step: the part of each ``env.step`` spent outside the learner's
  ``iterate`` (decoding the action, observing, the reward, Gymnasium's
  wrappers), measured inside the same call, so load from other processes
  cancels out.

    python benchmarks/overhead.py           # 9 rounds on the id's own config
    python benchmarks/overhead.py --quick   # 3 rounds of 512-step iterations
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any

TARGET_PCT = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="HyperRL/PPO-HalfCheetah-v0")
    p.add_argument("--rounds", type=int, default=9, help="interleaved measurement rounds")
    p.add_argument("--num-steps", type=int, default=None, help="override the id's vector steps per iteration")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="3 rounds of 512-step iterations (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 3
        args.num_steps = args.num_steps or 512
    return args


class Timed:
    """Wraps ``learner.iterate`` to record the time spent inside it."""

    def __init__(self, learner: Any) -> None:
        self.inner = learner.iterate
        self.seconds = 0.0
        learner.iterate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def build(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, float]]:
    import gymnasium as gym

    import hyperenvs

    gym.register_envs(hyperenvs)
    kwargs: dict[str, Any] = {"timing": True}
    if args.num_steps:
        kwargs["config"] = {"num_steps": args.num_steps}
    env = gym.make(args.env_id, **kwargs)
    env.reset(seed=args.seed)
    he = env.unwrapped
    space = he.hparam_space
    action = space.encode({n: he.defaults[n] for n in space.names})  # the id's default hyperparameters
    hparams = {**he.defaults, **space.decode(action)}  # exactly what step() hands the learner
    learner = he.learner
    direct = type(learner)(he.config, seed=learner.seed, hparams=learner.default_hparams, device=he.device)
    return env, direct, action, hparams


def measure(env: Any, direct: Any, action: Any, hparams: dict[str, float], rounds: int) -> dict[str, list[float]]:
    timer = Timed(env.unwrapped.learner)
    out: dict[str, list[float]] = {"step": [], "iterate": [], "inside": [], "step_cpu": [], "iterate_cpu": []}

    def step() -> None:
        before = timer.seconds
        start, cpu = time.perf_counter(), time.process_time()
        env.step(action)
        out["step_cpu"].append(time.process_time() - cpu)
        out["step"].append(time.perf_counter() - start)
        out["inside"].append(timer.seconds - before)

    def iterate() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        direct.iterate(hparams)
        out["iterate_cpu"].append(time.process_time() - cpu)
        out["iterate"].append(time.perf_counter() - start)

    for r in range(rounds + 1):  # round 0 warms both up and is dropped
        for fn in (step, iterate) if r % 2 == 0 else (iterate, step):
            fn()
        if r == 0:
            for v in out.values():
                v.clear()
            continue
        print(
            f"  round {r}/{rounds}: env.step {out['step'][-1]:.3f} s  iterate {out['iterate'][-1]:.3f} s  "
            f"outside iterate {1e3 * (out['step'][-1] - out['inside'][-1]):.2f} ms",
            flush=True,
        )
    return out


def micro(env: Any, action: Any, repeats: int = 50) -> dict[str, float]:
    """Median milliseconds of the step's own parts, each alone."""
    he = env.unwrapped
    parts = {"decode action": lambda: he.hparam_space.decode(action), "observe": he._observe}
    result = {}
    for name, fn in parts.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        result[name] = 1e3 * statistics.median(times)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    env, direct, action, hparams = build(args)
    cfg = env.unwrapped.config
    print(
        f"{args.env_id}: {cfg.num_envs} env(s) x {cfg.num_steps} steps per iteration, "
        f"{env.unwrapped.iterations_per_step} iteration(s) per hyper-step; torch threads {torch.get_num_threads()}"
    )
    t = measure(env, direct, action, hparams, args.rounds)
    same = all(torch.equal(a, b) for a, b in zip(env.unwrapped.learner.params.values(), direct.params.values()))
    parts = micro(env, action)
    env.close()
    direct.close()

    step, it = statistics.median(t["step"]), statistics.median(t["iterate"])
    paired = [100 * (s / i - 1) for s, i in zip(t["step"], t["iterate"])]
    paired_cpu = [100 * (s / i - 1) for s, i in zip(t["step_cpu"], t["iterate_cpu"])]
    outside = [s - i for s, i in zip(t["step"], t["inside"])]
    outside_pct = [100 * o / i for o, i in zip(outside, t["inside"])]
    print()
    print(f"{'':<32} {'median':>10} {'min':>10} {'max':>10}")
    print(f"{'env.step (s)':<32} {step:>10.3f} {min(t['step']):>10.3f} {max(t['step']):>10.3f}")
    print(f"{'learner.iterate, direct (s)':<32} {it:>10.3f} {min(t['iterate']):>10.3f} {max(t['iterate']):>10.3f}")
    print(f"{'side-by-side overhead (%)':<32} {statistics.median(paired):>10.2f} {min(paired):>10.2f} {max(paired):>10.2f}")
    print(
        f"{'side-by-side by CPU time (%)':<32} {statistics.median(paired_cpu):>10.2f} {min(paired_cpu):>10.2f} "
        f"{max(paired_cpu):>10.2f}"
    )
    print(
        f"{'in-step, outside iterate (ms)':<32} {1e3 * statistics.median(outside):>10.2f} "
        f"{1e3 * min(outside):>10.2f} {1e3 * max(outside):>10.2f}"
    )
    print(
        f"{'in-step overhead (%)':<32} {statistics.median(outside_pct):>10.3f} "
        f"{min(outside_pct):>10.3f} {max(outside_pct):>10.3f}"
    )
    print()
    print("parts of a step, each alone (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    print(f"identical parameters on both sides after {len(t['step']) + 1} iterations (same work): {same}")
    pct = statistics.median(outside_pct)
    print(
        f"target <= {TARGET_PCT:.0f}% (in-step): {'met' if pct <= TARGET_PCT else 'NOT met'}; "
        f"side by side {statistics.median(paired):+.2f}% "
        f"(IQR {np.percentile(paired, 25):+.2f} .. {np.percentile(paired, 75):+.2f}, noise-dominated)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
