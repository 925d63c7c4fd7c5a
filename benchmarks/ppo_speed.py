"""Inner PPO speed: HyperRL's ``PPOLearner`` against Stable-Baselines3's ``PPO``, side by side.

Both train HalfCheetah-v5 with 8 envs x 256 steps (2048 transitions per
iteration), minibatch 64, 10 epochs, 64-64 tanh actor and critic, Adam at
lr 3e-4 (eps 1e-8 for both), gamma 0.99, GAE lambda 0.95, clip 0.2, no entropy
bonus, value weight 0.5, gradient-norm clip 0.5, per-minibatch advantage
standardisation, and the same observation/reward normalisation (SB3's
``VecNormalize`` with clip 10 against the learner's ``normalize_obs`` /
``normalize_reward``, which follow the same recipe; ``--no-normalize`` turns
it off for both).  Both run in this one process, on the CPU, with the same
torch thread count.

Timing is interleaved: each round times ``--iters`` iterations of ours, then
of SB3 (the order alternates between rounds), so load from other processes on
a shared machine hits both alike.  The table shows medians over rounds; the
ratio is the median of the per-round ratios.  Env-steps/s by this process's
CPU time are printed beside the wall-clock figures: with one torch thread
both learners are single-threaded, and CPU time is far less sensitive to
other jobs on the machine.

    python benchmarks/ppo_speed.py            # 15 rounds of 1 iteration per side
    python benchmarks/ppo_speed.py --quick    # 3 rounds of 1 iteration
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

TARGET_RATIO = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="HalfCheetah-v5", help="Gymnasium id of the inner task")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=256, help="vector steps per iteration")
    p.add_argument("--minibatch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=15, help="interleaved measurement rounds")
    p.add_argument("--iters", type=int, default=1, help="PPO iterations per side per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per side before the rounds")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, the same for both")
    p.add_argument("--no-normalize", action="store_true", help="no obs/reward normalisation for either side")
    p.add_argument("--skip-sb3", action="store_true", help="time HyperRL's learner only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="3 rounds of 1 iteration (a smoke run, noisy)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.iters = 3, 1
    return args


def make_ours(args: argparse.Namespace) -> Callable[[int], None]:
    from agents.ppo import PPOConfig, PPOHyperparams, PPOLearner

    normalize = not args.no_normalize
    config = PPOConfig(
        task=args.task,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        hidden=(64, 64),
        activation="tanh",
        update_rule="adam",
        normalize_obs=normalize,
        normalize_reward=normalize,
    )
    hparams = PPOHyperparams(
        lr=3e-4,
        clip=0.2,
        gae_lambda=0.95,
        minibatch_size=args.minibatch,
        epochs=args.epochs,
        gamma=0.99,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
    )
    learner = PPOLearner(config, seed=args.seed, hparams=hparams)

    def run(iterations: int) -> None:
        for _ in range(iterations):
            learner.iterate()

    return run


def make_sb3(args: argparse.Namespace) -> Callable[[int], None]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize
    from torch import nn

    venv = make_vec_env(args.task, n_envs=args.num_envs, seed=args.seed)
    if not args.no_normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, clip_reward=10.0, gamma=0.99)
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=3e-4,
        n_steps=args.num_steps,
        batch_size=args.minibatch,
        n_epochs=args.epochs,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        normalize_advantage=True,
        policy_kwargs=dict(
            net_arch=dict(pi=[64, 64], vf=[64, 64]),
            activation_fn=nn.Tanh,
            optimizer_kwargs=dict(eps=1e-8),  # SB3 defaults to 1e-5; ours is 1e-8
        ),
        device="cpu",
        seed=args.seed,
        verbose=0,
    )
    per_iteration = args.num_envs * args.num_steps

    def run(iterations: int) -> None:
        model.learn(total_timesteps=iterations * per_iteration, reset_num_timesteps=False)

    return run


def measure(sides: dict[str, Callable[[int], None]], args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Per-round env-steps/s of each side by wall clock and by this process's CPU time, interleaved."""
    steps = args.iters * args.num_envs * args.num_steps
    for run in sides.values():
        if args.warmup:
            run(args.warmup)
    sps: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            sides[name](args.iters)
            sps[name]["cpu"].append(steps / (time.process_time() - cpu))
            sps[name]["wall"].append(steps / (time.perf_counter() - wall))
        line = "  ".join(f"{n} {sps[n]['wall'][-1]:6.0f} ({sps[n]['cpu'][-1]:6.0f} by CPU time)" for n in names)
        print(f"  round {r + 1:2d}/{args.rounds}: {line} env-steps/s", flush=True)
    return sps


def report(sps: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> float | None:
    import torch

    print()
    print(
        f"PPO speed on {args.task}: {args.num_envs} envs x {args.num_steps} steps, minibatch {args.minibatch}, "
        f"{args.epochs} epochs, 64-64 tanh"
    )
    print(
        f"normalisation: {'off for both' if args.no_normalize else 'obs + reward, VecNormalize recipe, both'}; "
        f"torch threads: {torch.get_num_threads()}; torch {torch.__version__}; "
        f"{os.cpu_count()} CPUs; python {platform.python_version()}"
    )
    print(
        f"{args.rounds} interleaved rounds x {args.iters} iteration(s) per side; "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    per_iter = args.num_envs * args.num_steps
    print(f"{'learner':<10} {'median SPS':>11} {'min':>7} {'max':>7} {'s/iter':>7}   {'SPS by CPU time':>16}")
    for name, v in sps.items():
        med = statistics.median(v["wall"])
        print(
            f"{name:<10} {med:>11.0f} {min(v['wall']):>7.0f} {max(v['wall']):>7.0f} {per_iter / med:>7.3f}   "
            f"{statistics.median(v['cpu']):>16.0f}"
        )
    if "SB3" not in sps:
        return None
    ratios = {k: [o / s for o, s in zip(sps["HyperRL"][k], sps["SB3"][k])] for k in ("wall", "cpu")}
    ratio = statistics.median(ratios["wall"])
    print()
    print(
        f"ratio HyperRL / SB3 (wall clock): median of per-round ratios {ratio:.2f}x "
        f"(range {min(ratios['wall']):.2f} .. {max(ratios['wall']):.2f}); ratio of medians "
        f"{statistics.median(sps['HyperRL']['wall']) / statistics.median(sps['SB3']['wall']):.2f}x"
    )
    print(
        f"ratio HyperRL / SB3 (CPU time, less sensitive to other jobs): {statistics.median(ratios['cpu']):.2f}x "
        f"(range {min(ratios['cpu']):.2f} .. {max(ratios['cpu']):.2f})"
    )
    print(f"target >= {TARGET_RATIO:.1f}x (wall clock): {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    return ratio


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    sides: dict[str, Callable[[int], None]] = {"HyperRL": make_ours(args)}
    if not args.skip_sb3:
        sides["SB3"] = make_sb3(args)
    sps = measure(sides, args)
    report(sps, args)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
