"""One prepared GPU check: every learner family and the differentiable unroll on CPU and on CUDA.

For PPO on MuJoCo (HalfCheetah), PPO on Atari (Pong), A2C (CartPole), IMPALA
(CartPole) and ES (HalfCheetah), it builds the learner on each device, runs a
few ``iterate`` calls and prints env steps/s side by side.  For the
actor-critic families it also checks that CPU and CUDA agree on one fixed
batch (collected on the CPU): the objective's loss to 1e-4 (relative), and the
parameters after one ``train_step`` to 1e-3.  Last, the differentiable unroll
(K = 4 A2C updates, metagradient to lr and gamma) on both devices: the
metagradients agree to 1e-3 and its cost per update is printed.

Exit status: 0 when every check passed, 1 when one failed, 2 when there is no
CUDA device (only the CPU half ran, and it says so).

    python benchmarks/gpu_check.py              # a few minutes on a GPU machine
    python benchmarks/gpu_check.py --iterations 2
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True, kw_only=True)
class Family:
    """One learner family to check."""

    name: str
    """label in the table"""
    learner: str
    """``module:Class`` of the learner"""
    config: str
    """``module:Class`` of its config"""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """config fields"""
    hparams: dict[str, Any] = field(default_factory=dict)
    """hyperparameters of the timed iterations (a cheap schedule)"""
    fixed_batch: bool = True
    """whether the family has an objective over a collected Batch to compare across devices"""


FAMILIES = [
    Family(
        name="PPO MuJoCo (HalfCheetah)",
        learner="agents.ppo:PPOLearner",
        config="agents.ppo:PPOConfig",
        kwargs={"task": "HalfCheetah-v5", "num_envs": 8, "num_steps": 256, "normalize_obs": True, "normalize_reward": True},
        hparams={"epochs": 4, "minibatch_size": 256},
    ),
    Family(
        name="PPO Atari (Pong)",
        learner="agents.ppo:PPOLearner",
        config="agents.ppo:PPOConfig",
        kwargs={"task": "ALE/Pong-v5", "num_envs": 8, "num_steps": 128, "sign_reward": True},
        hparams={"epochs": 2, "minibatch_size": 256},
    ),
    Family(name="A2C (CartPole)", learner="agents.a2c:A2CLearner", config="agents.a2c:A2CConfig", kwargs={"task": "CartPole-v1"}),
    Family(
        name="IMPALA (CartPole)",
        learner="agents.impala:IMPALALearner",
        config="agents.impala:IMPALAConfig",
        kwargs={"task": "CartPole-v1"},
    ),
    Family(
        name="ES (HalfCheetah)",
        learner="agents.es:ESLearner",
        config="agents.es:ESConfig",
        kwargs={"task": "HalfCheetah-v5", "population": 16, "max_episode_steps": 100, "backend": "serial"},
        fixed_batch=False,
    ),
]


def load(target: str) -> Any:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def build(family: Family, device: str) -> Any:
    return load(family.learner)(load(family.config)(**family.kwargs), seed=0, device=device)


def steps_per_second(family: Family, device: str, iterations: int) -> float:
    learner = build(family, device)
    try:
        learner.iterate(family.hparams)  # warm-up (and CUDA kernels' first launch)
        start, steps = time.perf_counter(), 0
        for _ in range(iterations):
            steps += learner.iterate(family.hparams).env_steps
        _sync(device)
        return steps / (time.perf_counter() - start)
    finally:
        learner.close()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def moved(batch: Any, device: str) -> Any:
    from agents.base import Batch

    fields = {k: getattr(batch, k) for k in batch.__dataclass_fields__}
    return Batch(**{k: v.to(device) if hasattr(v, "to") else v for k, v in fields.items()})


def agreement(family: Family, device: str) -> tuple[float, float]:
    """(relative loss difference, largest parameter difference after one train_step) between CPU and ``device``."""

    cpu, gpu = build(family, "cpu"), build(family, device)
    try:
        batch = cpu.collector.collect(cpu.params, cpu.config.num_steps, 0.99)[0]
        hp = cpu.hparam_values(family.hparams)
        if "epochs" in hp:  # one full-batch step: no minibatch shuffling to match across devices
            hp = {**hp, "epochs": 1, "minibatch_size": batch.num_steps}
        loss_cpu = cpu.objective(cpu.params, batch, hp)[0].item()
        params = {k: v.detach().to(device).requires_grad_() for k, v in cpu.params.items()}
        loss_gpu = gpu.objective(params, moved(batch, device), hp)[0].item()
        rel = abs(loss_cpu - loss_gpu) / max(1.0, abs(loss_cpu))
        new_cpu, _, _ = cpu.train_step(cpu.params, cpu.opt_state, batch, hp)
        state = {k: ({n: t.to(device) for n, t in v.items()} if isinstance(v, dict) else v) for k, v in cpu.opt_state.items()}
        new_gpu, _, _ = gpu.train_step(params, state, moved(batch, device), hp)
        diff = max(float((new_cpu[k].detach() - new_gpu[k].detach().cpu()).abs().max()) for k in new_cpu)
        return rel, diff
    finally:
        cpu.close()
        gpu.close()


def unroll_check(device: str, k: int = 4) -> tuple[Any, float]:
    """The metagradient (d meta-loss / d lr, d gamma) of a K-step A2C unroll on ``device`` and its seconds per update."""
    import torch

    from agents.a2c import A2CConfig, A2CLearner
    from agents.unroll import unroll

    cpu = A2CLearner(A2CConfig(task="CartPole-v1"), seed=0)
    learner = A2CLearner(A2CConfig(task="CartPole-v1"), seed=0, device=device)
    batches = [moved(cpu.collector.collect(cpu.params, 5, 0.99)[0], device) for _ in range(k + 1)]
    held_out = batches.pop()
    fixed = learner.hparam_values(None)
    start = time.perf_counter()
    lr = torch.tensor(fixed["lr"], device=device, requires_grad=True)
    gamma = torch.tensor(fixed["gamma"], device=device, requires_grad=True)
    out = unroll(learner, batches, {"lr": lr, "gamma": gamma})
    grads = torch.autograd.grad(learner.objective(out.params, held_out, fixed)[0], [lr, gamma])
    _sync(device)
    seconds = (time.perf_counter() - start) / k
    cpu.close()
    learner.close()
    return torch.stack(grads).cpu(), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per learner and device")
    parser.add_argument("--device", default="cuda", help="the accelerator to compare with the CPU")
    args = parser.parse_args(argv)
    import torch

    has_cuda = torch.cuda.is_available()
    devices = ["cpu"] + ([args.device] if has_cuda else [])
    if not has_cuda:
        print("NO CUDA DEVICE: torch.cuda.is_available() is False; running the CPU half only (no agreement checks).")
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    failed = []
    print(
        f"{'family':<26} "
        + " ".join(f"{d + ' steps/s':>16}" for d in devices)
        + ("   loss rel diff   param diff" if has_cuda else "")
    )
    for family in FAMILIES:
        row = f"{family.name:<26} "
        try:
            row += " ".join(f"{steps_per_second(family, d, args.iterations):>16.0f}" for d in devices)
            if has_cuda and family.fixed_batch:
                rel, diff = agreement(family, args.device)
                ok = rel <= 1e-4 and diff <= 1e-3
                row += f"   {rel:>13.2e}   {diff:>10.2e}" + ("" if ok else "   FAILED")
                if not ok:
                    failed.append(family.name)
        except Exception:  # report and go on: one broken family must not hide the others
            row += "   ERROR\n" + traceback.format_exc()
            failed.append(family.name)
        print(row, flush=True)
    try:
        results = {d: unroll_check(d) for d in devices}
        line = "differentiable unroll (A2C, K=4): " + ", ".join(f"{d} {1e3 * s:.2f} ms/update" for d, (_, s) in results.items())
        if has_cuda:
            a, b = results["cpu"][0], results[args.device][0]
            rel = float((a - b).norm() / a.norm())
            line += f"; metagradient rel diff {rel:.2e}" + ("" if rel <= 1e-3 else "  FAILED")
            if rel > 1e-3:
                failed.append("unroll")
        print(line)
    except Exception:
        print("differentiable unroll: ERROR\n" + traceback.format_exc())
        failed.append("unroll")
    if failed:
        print(f"FAILED: {failed}")
        return 1
    if not has_cuda:
        print("CPU half passed; the CUDA half did not run (no CUDA device).")
        return 2
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
