"""``hyperrl lpg-train``: meta-train an LPG with a progress bar (meta-iteration, mean lifetime return per
environment, the bandit's choices) and save its rule file.  Torch loads only when the command runs."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from solvers.checkpoint import read_state
from solvers.lpg.config import MetaTrainConfig
from solvers.lpg.network import LPGConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MetaTrainConfig()
    p.add_argument(
        "--envs",
        default="tabular,chains",
        help=(
            "training environments: groups (tabular, chains, random) or task names (chain_distractor, lpg_random_small, "
            "...); tabular ones get table agents, the others small networks (Table 3)"
        ),
    )
    p.add_argument("--lifetimes", type=int, default=d.lifetimes, help="parallel lifetimes (the paper: 960)")
    p.add_argument("--envs-per-lifetime", type=int, default=d.envs_per_lifetime, help="environments per agent (the paper: 64)")
    p.add_argument("--lifetime-updates", type=int, default=d.lifetime_updates, help="agent updates in one lifetime")
    p.add_argument("--iterations", type=int, default=d.iterations, help="meta-iterations (K agent updates each)")
    p.add_argument("--unroll", type=int, default=d.unroll, help="K: agent updates per meta-gradient")
    p.add_argument("--hidden", type=int, default=d.lpg.hidden, help="LSTM units of the LPG (the paper: 256)")
    p.add_argument("--meta-lr", type=float, default=d.meta_lr, help="Adam step size on the LPG (the paper: 1e-4)")
    p.add_argument(
        "--meta-grad-clip", type=float, default=d.meta_grad_clip, help="global-norm clip of the meta-gradient (0: none)"
    )
    p.add_argument(
        "--no-bandit",
        action="store_true",
        help="fixed (lr, kl_coef): the middle of each list (tables: 40, 0.5) instead of the bandit (ablation)",
    )
    p.add_argument(
        "--untrained-critic", action="store_true", help="never train the meta-critic (the public port's bug, ablation)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default="lpg-run", help="directory: rule.pt, log.jsonl, checkpoint.pt")
    p.add_argument("--checkpoint-every", type=int, default=10, help="meta-iterations between checkpoints")
    p.add_argument(
        "--rule-every",
        type=int,
        default=100,
        help="meta-iterations between rule snapshots OUT/rules/rule_NNNNN.pt (0: none); a rule from before a "
        "meta-gradient spike can be evaluated or shipped instead of the last one",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint (give the same options)")


def config_from_args(args: argparse.Namespace) -> MetaTrainConfig:
    from solvers.lpg.lifetimes import expand_envs

    return MetaTrainConfig(
        envs=expand_envs(args.envs),
        lifetimes=args.lifetimes,
        envs_per_lifetime=args.envs_per_lifetime,
        lifetime_updates=args.lifetime_updates,
        iterations=args.iterations,
        unroll=args.unroll,
        lpg=LPGConfig(hidden=args.hidden),
        meta_lr=args.meta_lr,
        meta_grad_clip=args.meta_grad_clip,
        bandit=not args.no_bandit,
        train_critic=not args.untrained_critic,
        seed=args.seed,
    )


def _summary(metrics: dict) -> str:
    parts = []
    for name, m in metrics["envs"].items():
        ret = "-" if math.isnan(m["return"]) else f"{m['return']:.2f}"
        lr, kl = m["arm"]
        parts.append(f"{name.replace('lpg_', '').replace('chain_', 'c.')} {ret} ({lr:g},{kl:g})")
    return "  ".join(parts)


def command(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from solvers.checkpoint import write_state
    from solvers.lpg.train import MetaTrainer

    config = config_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = MetaTrainer(config)
    if args.resume:
        trainer.load_state_dict(read_state(out / "checkpoint.pt", "--resume: checkpoint"))
    columns = (
        TextColumn("[bold]meta-iteration"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[envs]}"),
    )
    with Progress(*columns) as progress, open(out / "log.jsonl", "a" if args.resume else "w") as log:
        bar = progress.add_task("meta", total=config.iterations, completed=trainer.iteration, envs="return (lr, kl) per env")
        while trainer.iteration < config.iterations:
            metrics = trainer.step()
            progress.update(bar, completed=trainer.iteration, envs=_summary(metrics))
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            if args.rule_every > 0 and trainer.iteration % args.rule_every == 0:
                write_rule(trainer, out / "rules" / f"rule_{trainer.iteration:05d}.pt")
            if trainer.iteration % args.checkpoint_every == 0 or trainer.iteration == config.iterations:
                write_state(trainer.state_dict(), out / "checkpoint.pt")
    path, best = write_rule(trainer, out / "rule.pt")
    print(f"wrote {path} (bandit's best (lr, kl_coef) per environment: {json.dumps(best)})")
    return 0


def write_rule(trainer, path: Path) -> tuple[Path, dict]:
    """The trainer's LPG as a rule file, with the median of the bandit's best ``kl_coef`` over environments."""
    from solvers.lpg.files import save_rule

    best = {name: trainer.bandit.best(name) for name in trainer.env_names}
    kl = sorted(arm[1] for arm in best.values())[len(best) // 2]
    return save_rule(path, trainer.config.lpg, trainer.weights, {"kl_coef": kl}), best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solvers.lpg.cli", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
