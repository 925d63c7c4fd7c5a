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
import time

import gymnasium as gym
import torch
from rounds import interleaved, machine, parse_args, sync, time_random_actions, write

from hyperenvs.tasks import make_task

TASKS = {
    "cart_pole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
    "mountain_car": "MountainCar-v0",
    "mountain_car_continuous": "MountainCarContinuous-v0",
    "pendulum": "Pendulum-v1",
}


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
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        env.step(action())
    sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def configurations(device: torch.device) -> list[tuple[str, str, int]]:
    sizes = [4096] + ([65536] if device.type == "cuda" else [])
    configs = [(task, "twin", b) for task in TASKS for b in sizes]
    configs += [(task, "gym_sync16", 16) for task in TASKS]
    return configs + [("cart_pole", "gym_vector4096", 4096)]


def measure(task: str, kind: str, batch: int, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    if kind == "twin":
        return time_twin(task, batch, args.steps, device)
    if kind == "gym_sync16":
        return time_random_actions(gym.vector.SyncVectorEnv([lambda: gym.make(TASKS[task]) for _ in range(16)]), args.sync_steps)
    return time_random_actions(gym.make_vec(TASKS[task], num_envs=batch, vectorization_mode="vector_entry_point"), args.steps)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    rates = interleaved(configurations(device), lambda task, kind, batch: measure(task, kind, batch, args, device), args.rounds)
    medians = rates["medians"]
    summary = {}
    for task in TASKS:
        twin, gym_sync = medians[f"{task}/twin/4096"], medians[f"{task}/gym_sync16/16"]
        summary[task] = {
            "twin_4096_steps_per_s": twin,
            "gym_sync16_steps_per_s": gym_sync,
            "ratio_4096_vs_gym_sync16": twin / gym_sync,
        }
        if device.type == "cuda":
            summary[task]["twin_65536_steps_per_s"] = medians[f"{task}/twin/65536"]
    summary["cart_pole"]["gym_vector4096_steps_per_s"] = medians["cart_pole/gym_vector4096/4096"]
    return {**machine(args), **rates, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, steps=200, sync_steps=300, quick=(30, 50))
    torch.set_num_threads(args.threads)
    write(run(args), args, "classic_speed")


if __name__ == "__main__":
    main()
