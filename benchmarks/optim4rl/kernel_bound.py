"""Whether the learned optimizer's kernel runs at this machine's arithmetic bound (why the throughput ratio is
what it is).

    python benchmarks/optim4rl/kernel_bound.py --threads 2     # results/kernel_bound.json

Measures, interleaved and repeated: the machine's peak float32 FMA rate on one thread in the kernel's
vector width (``fma_rate.c``); the kernel's step and its 4-step meta-gradient replay per element, at 1 and
``--threads`` threads, on the 901k elements of 64 Catch units.  Their product is the FMA slots a step takes per
element, set against the vector operations a step of two hidden-8 GRUs must do (``OPS_PER_STEP``): a
ratio near 1 (or under: other ops issue beside the FMAs) says the kernel is at the bound, and only faster
arithmetic (a wider machine, a GPU) makes it cheaper.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path

import torch

from agents import native
from solvers.optim4rl import kernel
from solvers.optim4rl.config import Optim4RLConfig
from solvers.optim4rl.optimizer import init_weights

ELEMENTS = 64 * 14_084  # 64 Catch units of Dense256 agents
ACTIVATIONS = 2 * 8 * 3  # two GRUs, 8 hidden units, sigmoid r, sigmoid z, tanh n
OPS_PER_STEP = {
    "gate matmuls W_hh h (2 GRUs x 3 gates x 8 x 8)": 2 * 3 * 8 * 8,
    "input terms, biases, new state (2 GRUs x 8 x 6)": 2 * 8 * 6,
    "activations (a 13/6 rational: clamp 2, x^2, 7 + 4 polynomial, a division, sigmoid's 2)": ACTIVATIONS * 17,
    "heads and the step (2 x 8 FMAs, 2 exps of ~15, a square root, a division, sign)": 2 * 8 + 2 * 15 + 6,
}
"""vector operations (FMA, multiply, add, compare, division: one each) per element of a forward step,
counted from kernel.c's maths; the replay does a forward and a backward (about as many again) a step"""


def _fma_rate() -> float:
    lib = native.compiled(Path(__file__).with_name("fma_rate.c"))
    if lib is None:
        raise SystemExit("kernel_bound: no C compiler (the kernel does not build either)")
    lib.fma_lanes_per_second.restype, lib.fma_lanes_per_second.argtypes = ctypes.c_double, [ctypes.c_int64]
    return float(lib.fma_lanes_per_second(20_000_000))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "kernel_bound.json"))
    args = p.parse_args()
    if kernel.library() is None:
        raise SystemExit("kernel_bound: the compiled kernel did not build")
    gen = torch.Generator().manual_seed(0)
    config = Optim4RLConfig()
    weights = {k: v + 0.3 * torch.randn(v.shape, generator=gen) for k, v in init_weights(config, 0).items()}
    g = torch.randn(ELEMENTS, generator=gen) * 1e-3
    h1, h2 = torch.randn(ELEMENTS, 8, generator=gen) * 0.3, torch.randn(ELEMENTS, 8, generator=gen) * 0.3
    grads, adjoint = [torch.randn(ELEMENTS, generator=gen) * 1e-3 for _ in range(4)], torch.randn(ELEMENTS, generator=gen)
    settings = sorted({1, args.threads})
    rates, step_s, replay_s = [], {t: [] for t in settings}, {t: [] for t in settings}
    kernel.step(config, weights, g, h1, h2)  # warm-up
    for _ in range(args.repeats):  # interleaved: the least disturbed of each is the machine's
        torch.set_num_threads(1)
        rates.append(_fma_rate())
        for t in settings:
            torch.set_num_threads(t)
            step_s[t].append(_timed(lambda: kernel.step(config, weights, g, h1, h2)))
            replay_s[t].append(_timed(lambda: kernel.replay(config, weights, h1, h2, grads, adjoint)))
    step_ns = {t: 1e9 * min(v) / ELEMENTS for t, v in step_s.items()}
    replay_ns = {t: 1e9 * min(v) / ELEMENTS / 4 for t, v in replay_s.items()}
    rate = max(rates)  # lane-FMAs per second, one thread
    counted = sum(OPS_PER_STEP.values())
    summary = {
        "fma_lanes_per_ns_one_thread": rate / 1e9,
        "step_ns_per_element": step_ns,
        "replay_ns_per_element_step": replay_ns,
        "step_fma_slots_per_element": step_ns[1] * rate / 1e9,
        "counted_ops_per_element_step": counted,
        "counted": OPS_PER_STEP,
        "step_over_bound": step_ns[1] * rate / 1e9 / counted,
        "thread_speedup_step": step_ns[1] / step_ns[max(step_ns)],
        "thread_speedup_replay": replay_ns[1] / replay_ns[max(replay_ns)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
