"""The classic-control twins: raw steps/s of the batched twin against Gymnasium's own env, side by side.

Interleaved over rounds (every configuration once per round, the order reversed
on odd rounds), medians reported, because the machine is shared and its load changes:
- ``twin``: ``make_task(task, B)`` stepped with uniformly random actions drawn on
  the device (B = 4096; 65536 too on CUDA);
- ``gym_sync16``: Gymnasium's own env (``CartPole-v1`` ...) in a
  ``gymnasium.vector.SyncVectorEnv`` of 16, random actions;
- ``gym_vector4096``: CartPole only, Gymnasium's own numpy ``CartPoleVectorEnv``
  with 4096 instances (the one classic-control task Gymnasium vectorises itself).

    python benchmarks/tasks/classic_speed.py            # 5 rounds
    python benchmarks/tasks/classic_speed.py --quick    # 2 short rounds
    python benchmarks/tasks/classic_speed.py --device cuda

Writes ``benchmarks/tasks/results/classic_speed_{device}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks import make_task

TASKS = {
    "cart_pole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
    "mountain_car": "MountainCar-v0",
    "mountain_car_continuous": "MountainCarContinuous-v0",
    "pendulum": "Pendulum-v1",
}
RESULTS = Path(__file__).parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_twin(task: str, batch: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process) of the batched twin."""
    env = make_task(task, batch, device=device, seed=0)
    space = env.single_action_space
    gen = torch.Generator(device=device).manual_seed(1)

    def action() -> torch.Tensor:
        if isinstance(space, gym.spaces.Discrete):
            return torch.randint(space.n, (batch,), generator=gen, device=device)
        return (torch.rand(batch, 1, generator=gen, device=device) * 2 - 1) * float(space.high[0])

    for _ in range(10):
        env.step(action())
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        env.step(action())
    _sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def time_gym(envs: gym.vector.VectorEnv, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of a Gymnasium vector env under random actions."""
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


def configurations(device: torch.device) -> list[tuple[str, str, int]]:
    sizes = [4096] + ([65536] if device.type == "cuda" else [])
    configs = [(task, "twin", b) for task in TASKS for b in sizes]
    configs += [(task, "gym_sync16", 16) for task in TASKS]
    return configs + [("cart_pole", "gym_vector4096", 4096)]


def measure(task: str, kind: str, batch: int, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    if kind == "twin":
        return time_twin(task, batch, args.steps, device)
    if kind == "gym_sync16":
        return time_gym(gym.vector.SyncVectorEnv([lambda: gym.make(TASKS[task]) for _ in range(16)]), args.sync_steps)
    return time_gym(gym.make_vec(TASKS[task], num_envs=batch, vectorization_mode="vector_entry_point"), args.steps)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    configs = configurations(device)
    samples: dict[str, list[float]] = {f"{t}/{k}/{b}": [] for t, k, b in configs}
    cpu_samples: dict[str, list[float]] = {key: [] for key in samples}
    for round_ in range(args.rounds):
        for task, kind, batch in configs if round_ % 2 == 0 else configs[::-1]:
            rate, cpu_rate = measure(task, kind, batch, args, device)
            samples[f"{task}/{kind}/{batch}"].append(rate)
            cpu_samples[f"{task}/{kind}/{batch}"].append(cpu_rate)
            print(f"round {round_}  {task:24s} {kind:14s} B={batch:6d}  {rate:12,.0f} steps/s  ({cpu_rate:12,.0f} per CPU s)")
    medians = {key: statistics.median(v) for key, v in samples.items()}
    cpu_medians = {key: statistics.median(v) for key, v in cpu_samples.items()}
    summary = {}
    for task in TASKS:
        twin, sync = medians[f"{task}/twin/4096"], medians[f"{task}/gym_sync16/16"]
        summary[task] = {"twin_4096_steps_per_s": twin, "gym_sync16_steps_per_s": sync, "ratio_4096_vs_gym_sync16": twin / sync}
        if device.type == "cuda":
            summary[task]["twin_65536_steps_per_s"] = medians[f"{task}/twin/65536"]
    summary["cart_pole"]["gym_vector4096_steps_per_s"] = medians["cart_pole/gym_vector4096/4096"]
    return {
        "device": str(device),
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
        "samples": samples,
        "medians": medians,
        "cpu_samples": cpu_samples,
        "cpu_medians": cpu_medians,
        "summary": summary,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="batched steps per configuration and round")
    parser.add_argument("--sync-steps", type=int, default=300, help="SyncVectorEnv steps per round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 30 / 50 steps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.sync_steps = 2, 30, 50
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"classic_speed_{torch.device(args.device).type}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
