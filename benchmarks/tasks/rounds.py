"""What the task speed scripts share: interleaved rounds with medians, a Gymnasium baseline, the command line.

The machine is shared and its load changes, so every configuration runs once per
round (the order reversed on odd rounds) and the medians over rounds are reported,
next to the same rates per CPU second of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"

Config = tuple[str, str, int]
"""(task, kind, batch size): one measured configuration"""


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_random_actions(envs: gym.vector.VectorEnv, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of a Gymnasium vector env under random actions; closes it."""
    envs.reset(seed=0)
    envs.action_space.seed(1)
    for _ in range(5):
        envs.step(envs.action_space.sample())
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        envs.step(envs.action_space.sample())
    elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu
    envs.close()
    return steps * envs.num_envs / elapsed, steps * envs.num_envs / cpu_elapsed


def interleaved(
    configs: Sequence[Config], measure: Callable[[str, str, int], tuple[float, float]], rounds: int
) -> dict[str, dict[str, list[float] | float]]:
    """Every configuration once a round; ``{"samples", "cpu_samples", "medians", "cpu_medians"}`` keyed ``task/kind/batch``."""
    samples: dict[str, list[float]] = {f"{t}/{k}/{b}": [] for t, k, b in configs}
    cpu_samples: dict[str, list[float]] = {key: [] for key in samples}
    width = max(len(t) for t, _, _ in configs)
    for round_ in range(rounds):
        for task, kind, batch in configs if round_ % 2 == 0 else configs[::-1]:
            rate, cpu_rate = measure(task, kind, batch)
            samples[f"{task}/{kind}/{batch}"].append(rate)
            cpu_samples[f"{task}/{kind}/{batch}"].append(cpu_rate)
            rates = f"{rate:12,.0f} steps/s  ({cpu_rate:12,.0f} per CPU s)"
            print(f"round {round_}  {task:{width}s} {kind:14s} B={batch:6d}  {rates}", flush=True)
    return {
        "samples": samples,
        "cpu_samples": cpu_samples,
        "medians": {key: statistics.median(v) for key, v in samples.items()},
        "cpu_medians": {key: statistics.median(v) for key, v in cpu_samples.items()},
    }


def machine(args: argparse.Namespace) -> dict:
    """Where and how a result was measured: device, threads, load, versions, round sizes."""
    return {
        "device": str(torch.device(args.device)),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "sync_steps_per_round": args.sync_steps,
    }


def parse_args(doc: str, argv: list[str] | None, *, steps: int, sync_steps: int, quick: tuple[int, int]) -> argparse.Namespace:
    """The shared command line; ``--quick`` is 2 rounds of ``quick`` (batched, SyncVectorEnv) steps."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=steps, help="batched steps per configuration and round")
    parser.add_argument("--sync-steps", type=int, default=sync_steps, help="SyncVectorEnv steps per round")
    parser.add_argument("--quick", action="store_true", help=f"2 rounds of {quick[0]} / {quick[1]} steps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, (args.steps, args.sync_steps) = 2, quick
    return args


def write(result: dict, args: argparse.Namespace, name: str) -> Path:
    """``OUT/{name}_{device type}.json``; prints the summary; returns the path without suffix (for a plot beside it)."""
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{name}_{torch.device(args.device).type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    return stem
