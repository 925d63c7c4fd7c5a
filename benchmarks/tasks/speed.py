"""Batched torch tasks: raw steps/s against Gymnasium's SyncVectorEnv, and with a Dense32 policy in the loop.

Side by side in one run, interleaved over rounds (every configuration once per
round), medians reported, because the machine is shared and its load changes:
- ``vector``: the task's Gymnasium ``VectorEnv`` as an agent gets it,
  ``gym.make_vec("HyperRLTasks/{Name}-v0", num_envs=B, vectorization_mode="vector_entry_point")``
  (same-step autoreset, ``info["final_obs"]`` recorded, observations in reused
  buffers valid until the next step), stepped with uniformly random actions
  drawn on the device (B = 512 and 4096; 65536 too on CUDA);
- ``fresh``: B = 4096, the bare ``make_task(task, B)`` with a freshly allocated
  observation every step (``reuse_obs=False``), to show what that costs;
- ``sync16``: the same task's single Gymnasium env (``HyperRLTasks/{Name}-v0``)
  in a ``gymnasium.vector.SyncVectorEnv`` of 16, random actions;
- ``numpy16``: the same rules in a plain numpy single env (``numpy_reference.py``)
  in a ``SyncVectorEnv`` of 16: the fastest straightforward per-instance baseline;
- ``policy``: B = 512, the ``vector`` env with a Dense32 actor-critic forward pass
  (flattened observation -> 32 ReLU -> logits and value) choosing the actions by
  Gumbel-max sampling; its buffers are preallocated (``out=`` forms), so the loop
  allocates almost nothing.

    python benchmarks/tasks/speed.py              # 5 rounds
    python benchmarks/tasks/speed.py --quick      # 2 short rounds
    python benchmarks/tasks/speed.py --threads 2  # torch threads (default 1)
    python benchmarks/tasks/speed.py --device cuda

Writes ``benchmarks/tasks/results/speed_{device}.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from numpy_reference import NumpyCatch, NumpyGrid
from rounds import interleaved, machine, parse_args, sync, time_random_actions, write

import hyperenvs  # noqa: F401  (registers HyperRLTasks/*)
from hyperenvs.tasks import make_task
from hyperenvs.tasks.optim4rl_grids import OPTIM4RL_GRIDS
from hyperenvs.tasks.registration import GYM_IDS

TASKS = {"big_dense_long": "HyperRLTasks/BigDenseLong-v0", "catch": "HyperRLTasks/Catch-v0"}
TARGETS = {"batched_4096_steps_per_s": 1e6, "ratio_vs_sync16": 50.0, "policy_512_steps_per_s": 1.5e5}


class Dense32Policy:
    """A Dense32 actor-critic forward pass with preallocated buffers, sampling by Gumbel-max."""

    def __init__(self, obs_size: int, num_actions: int, batch: int, device: torch.device, seed: int = 0) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        self.w1 = torch.randn(obs_size, 32, generator=gen, device=device) / obs_size**0.5
        self.b1 = torch.zeros(32, device=device)
        self.w2 = torch.randn(32, num_actions + 1, generator=gen, device=device) / 32**0.5
        self.b2 = torch.zeros(num_actions + 1, device=device)
        self.hidden = torch.empty(batch, 32, device=device)
        self.out = torch.empty(batch, num_actions + 1, device=device)
        self.noise = torch.empty(batch, num_actions, device=device)
        self.actions = torch.empty(batch, dtype=torch.long, device=device)
        self.generator, self.num_actions = gen, num_actions

    @torch.inference_mode()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1)
        torch.relu_(torch.addmm(self.b1, x, self.w1, out=self.hidden))
        torch.addmm(self.b2, self.hidden, self.w2, out=self.out)
        # Gumbel-max: argmax(logits - log(-log u)) is a sample of softmax(logits)
        self.noise.uniform_(generator=self.generator).log_().neg_().log_().neg_()
        self.noise.add_(self.out[:, : self.num_actions])
        return torch.argmax(self.noise, dim=1, out=self.actions)


def time_batched(task: str, batch: int, steps: int, device: torch.device, policy: bool, fresh: bool) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process)."""
    if fresh:
        env = make_task(task, batch, device=device, seed=0)
        reset, step = (lambda: env.reset(0)), env.step
        space = env.single_observation_space, env.single_action_space
    else:
        vec = gym.make_vec(TASKS[task], num_envs=batch, vectorization_mode="vector_entry_point", device=str(device))
        reset, step = (lambda: vec.reset(seed=0)[0]), vec.step
        space = vec.single_observation_space, vec.single_action_space
    n = space[1].n
    gen = torch.Generator(device=device).manual_seed(1)
    obs = reset()
    net = Dense32Policy(int(np.prod(space[0].shape)), n, batch, device) if policy else None
    for _ in range(10):
        obs = step(net.act(obs) if net else torch.randint(n, (batch,), generator=gen, device=device))[0]
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        obs = step(net.act(obs) if net else torch.randint(n, (batch,), generator=gen, device=device))[0]
    sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def time_sync16(make_one, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of a SyncVectorEnv of 16 envs from ``make_one``."""
    return time_random_actions(gym.vector.SyncVectorEnv([make_one for _ in range(16)]), steps)


def _numpy_env(task: str) -> gym.Env:
    return NumpyCatch() if task == "catch" else NumpyGrid(OPTIM4RL_GRIDS[task])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def configurations(device: torch.device, quick: bool) -> list[tuple[str, str, int]]:
    sizes = [512, 4096] + ([65536] if device.type == "cuda" else [])
    configs = [(task, "vector", b) for task in TASKS for b in sizes]
    configs += [(task, "fresh", 4096) for task in TASKS]
    configs += [(task, kind, 16) for task in TASKS for kind in ("sync16", "numpy16")]
    configs += [(task, "policy", 512) for task in TASKS]
    return configs


def measure(task: str, kind: str, batch: int, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    if kind == "sync16":
        return time_sync16(lambda: gym.make(TASKS[task]), args.sync_steps)
    if kind == "numpy16":
        return time_sync16(lambda: _numpy_env(task), args.sync_steps)
    return time_batched(task, batch, args.steps, device, kind == "policy", kind == "fresh")


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    configs = configurations(device, args.quick)
    rates = interleaved(configs, lambda task, kind, batch: measure(task, kind, batch, args, device), args.rounds)
    medians, cpu_medians = rates["medians"], rates["cpu_medians"]
    summary = {}
    for task in TASKS:
        sync16, plain = medians[f"{task}/sync16/16"], medians[f"{task}/numpy16/16"]
        summary[task] = {
            "batched_512_steps_per_s": medians[f"{task}/vector/512"],
            "batched_4096_steps_per_s": medians[f"{task}/vector/4096"],
            "fresh_obs_4096_steps_per_s": medians[f"{task}/fresh/4096"],
            "sync16_steps_per_s": sync16,
            "ratio_4096_vs_sync16": medians[f"{task}/vector/4096"] / sync16,
            "ratio_512_vs_sync16": medians[f"{task}/vector/512"] / sync16,
            "numpy16_steps_per_s": plain,
            "ratio_4096_vs_numpy16": medians[f"{task}/vector/4096"] / plain,
            "policy_512_steps_per_s": medians[f"{task}/policy/512"],
            "per_cpu_second": {key.split("/", 1)[1]: v for key, v in cpu_medians.items() if key.startswith(task + "/")},
        }
        if device.type == "cuda":
            summary[task]["batched_65536_steps_per_s"] = medians[f"{task}/vector/65536"]
    ids = [TASKS[t] for t in TASKS if TASKS[t] in GYM_IDS]
    return {**machine(args), **rates, "summary": summary, "targets": TARGETS, "ids": ids}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(8, 3.2), sharey=True)
    for ax, task in zip(axes, TASKS):
        keys = [k for k in result["medians"] if k.startswith(task + "/")]
        labels = [k.split("/", 1)[1].replace("/", "\nB=") for k in keys]
        ax.bar(range(len(keys)), [result["medians"][k] for k in keys], color="tab:blue")
        ax.set_xticks(range(len(keys)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(task, fontsize=9)
        ax.axhline(1e6, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("env steps / s (median)")
    fig.suptitle(f"batched torch tasks vs SyncVectorEnv(16), {result['device']}, {result['torch_threads']} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, steps=300, sync_steps=200, quick=(50, 40))
    torch.set_num_threads(args.threads)
    result = run(args)
    plot(result, write(result, args, "speed").with_suffix(".png"))


if __name__ == "__main__":
    main()
