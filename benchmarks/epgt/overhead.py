"""EPGT's wall-time overhead over a solver that decides nothing, at equal env steps (target <= 10%).

On ``HyperRL/PPO-HalfCheetah-v0`` (discrete actions: lr, clip, GAE lambda,
minibatch size, 5 bins each), per seed and side by side in one process:

1. ``epgt``: one lifetime, EPGT choosing every hyper-action;
2. ``replay``: the same seed replaying EPGT's actions with no decision cost,
   so the inner learner does exactly the same work (the minibatch size EPGT
   picks changes PPO's cost several-fold, so a fixed-action ``static`` run is
   not equal work);
3. ``static``: the id's defaults (nearest bins), for reference.

Overhead = (epgt - replay) / replay of the lifetimes' wall times; also EPGT's
own time (its begin/act/observe hooks) as a share of the env's step time,
which the machine's noise affects far less.

    python benchmarks/epgt/overhead.py                  # default: 10 hyper-steps (20,480 env steps) x 2 seeds
    python benchmarks/epgt/overhead.py --hyper-steps 8  # the recorded run (README, results/overhead/): 16,384 env steps
    python benchmarks/epgt/overhead.py --quick

Every lifetime runs with the same torch thread count (``--threads``); the script checks
that EPGT's memory left it unchanged (faiss runs one thread inside the memory's calls only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_json  # noqa: E402

ENV_ID = "HyperRL/PPO-HalfCheetah-v0"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hyper-steps", type=int, default=10, help="hyper-steps per lifetime (2,048 env steps each)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every lifetime alike")
    p.add_argument("--out", type=Path, default=RESULTS / "overhead")
    args = p.parse_args(argv)

    import gymnasium as gym
    import torch

    import hyperenvs
    from solvers.base import EpisodeSolver
    from solvers.baselines import StaticSolver
    from solvers.epgt import EPGTSolver

    torch.set_num_threads(args.threads)
    gym.register_envs(hyperenvs)
    kwargs = {"action_type": "discrete", "total_timesteps": args.hyper_steps * 2048}
    if args.quick:
        args.seeds = 1
        kwargs.update(total_timesteps=4 * 256, config={"num_steps": 256})

    class TimedEPGT(EPGTSolver):
        own = 0.0

        def _timed(self, fn, *a):
            start = time.perf_counter()
            out = fn(*a)
            self.own += time.perf_counter() - start
            return out

        def begin(self, *a):
            return self._timed(super().begin, *a)

        def act(self, *a):
            return self._timed(super().act, *a)

        def observe(self, *a):
            return self._timed(super().observe, *a)

    class Replay(EpisodeSolver):
        name = "replay"

        def __init__(self, actions):
            self.actions = list(actions)

        def begin(self, env, obs, info, seed):
            self.t = 0

        def act(self, obs):
            self.t += 1
            return self.actions[self.t - 1]

    def lifetime(solver, seed):
        env = gym.make(ENV_ID, **kwargs)
        env.reset(seed=seed)  # simulator start-up outside the timing, for every solver alike
        start = time.perf_counter()
        log = solver.run(env, seed=seed)
        wall = time.perf_counter() - start
        # EPGT's memory keeps faiss at one thread only inside its own calls: torch's count must be unchanged.
        assert torch.get_num_threads() == args.threads, f"{solver.name} left torch at {torch.get_num_threads()} threads"
        space = env.get_wrapper_attr("hparam_space")
        env.close()
        return log, wall, space

    rows = []
    for seed in range(args.seeds):
        epgt = TimedEPGT()
        log, t_epgt, space = lifetime(epgt, seed)
        actions = [space.encode(r.hyperparameters) for r in log.records]
        replay_log, t_replay, _ = lifetime(Replay(actions), seed)
        assert [r.hyperparameters for r in replay_log.records] == [r.hyperparameters for r in log.records]
        _, t_static, _ = lifetime(StaticSolver(), seed)
        rows.append(
            {
                "seed": seed,
                "env_steps": int(log.records[-1].timesteps),
                "hyper_steps": len(log),
                "wall_epgt_s": t_epgt,
                "wall_replay_s": t_replay,
                "wall_static_s": t_static,
                "epgt_own_s": epgt.own,
                "overhead_vs_replay_pct": 100 * (t_epgt - t_replay) / t_replay,
                "epgt_own_share_pct": 100 * epgt.own / (t_epgt - epgt.own),
                "vae_steps": epgt.vae_steps,
            }
        )
        print(rows[-1], flush=True)
    total = {k: sum(r[k] for r in rows) for k in ("wall_epgt_s", "wall_replay_s", "wall_static_s", "epgt_own_s")}
    summary = {
        "overhead_vs_replay_pct": 100 * (total["wall_epgt_s"] - total["wall_replay_s"]) / total["wall_replay_s"],
        "epgt_own_share_pct": 100 * total["epgt_own_s"] / (total["wall_epgt_s"] - total["epgt_own_s"]),
        "overhead_vs_static_pct (unequal work)": 100 * (total["wall_epgt_s"] - total["wall_static_s"]) / total["wall_static_s"],
        **total,
    }
    write_json(
        args.out / "overhead.json",
        {"env_id": ENV_ID, "env_kwargs": kwargs, "torch_threads": args.threads, "rows": rows, "summary": summary},
    )
    for k, v in summary.items():
        print(f"{k}: {v:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
