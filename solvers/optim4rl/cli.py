"""``hyperrl optim4rl-train``: meta-train an optimizer with a progress bar (meta-iteration, unit return,
meta-gradient norm) and save its state_dict.  Torch loads only when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from solvers.optim4rl.config import MetaTrainConfig, Optim4RLConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MetaTrainConfig()
    p.add_argument(
        "--task",
        default=d.task,
        help="catch, a gridworld (small_dense_long, big_dense_long, ...) or grids (the six together): the vectorised "
        "population on Optim4RL's batched task; else a Gymnasium id for the loop population",
    )
    p.add_argument("--units", type=int, default=d.units, help="training units n")
    p.add_argument("--reset-interval", type=int, default=d.reset_interval, help="m: meta-iterations between resets of a unit")
    p.add_argument("--no-pipeline", action="store_true", help="reset all units together (the paper's ablation)")
    p.add_argument("--iterations", type=int, default=d.iterations, help="meta-iterations")
    p.add_argument(
        "--steps",
        type=int,
        help="env-step budget instead of --iterations: all units' steps of all M + 1 rollouts (the authors' count; "
        "per task in the mix), e.g. 500000 = 78 meta-iterations of 64 Catch units",
    )
    p.add_argument("--num-envs", type=int, default=d.num_envs, help="inner environments per unit")
    p.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="units' MLP widths, e.g. 32 or 64,64")
    p.add_argument("--meta-lr", type=float, default=d.meta_lr, help="Adam step size on the optimizer's weights")
    p.add_argument(
        "--lr", type=float, help="the units' agent learning rate (default: Optim4RL's for the task; 1e-3 on Gymnasium)"
    )
    p.add_argument("--head", default="", help="head widths: '' linear (default), '16,16' the paper's MLP")
    p.add_argument("--clip-inputs", action="store_true", help="clip gradient elements to [-1, 1] before the GRUs")
    p.add_argument(
        "--input-scale",
        type=float,
        default=1.0,
        help="the GRUs read input-scale x g (1: the paper; 1e3-1e5 lets them see Catch's gradients)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--out",
        default="optim4rl.pt",
        help="where to write the optimizer's state_dict (FILE.pt), or a folder: DIR/optimizer.pt, DIR/meta.jsonl "
        "(the log) and DIR/checkpoint.pt",
    )
    p.add_argument("--log", help="also write one JSON line per meta-iteration here (appended to on --resume)")
    p.add_argument(
        "--checkpoint", help="where to keep the run's checkpoint (default: OUT + '.checkpoint.pt'), every 25 iterations"
    )
    p.add_argument("--resume", metavar="PATH", help="continue the run whose checkpoint is PATH (give the same options)")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(",") if w.strip())


def config_from_args(args: argparse.Namespace) -> MetaTrainConfig:
    default_lr = MetaTrainConfig().agent_hparams["lr"]
    config = MetaTrainConfig(
        task=args.task,
        units=args.units,
        num_envs=args.num_envs,
        hidden=_ints(args.hidden),
        reset_interval=args.reset_interval,
        pipeline=not args.no_pipeline,
        iterations=args.iterations,
        meta_lr=args.meta_lr,
        agent_hparams={**MetaTrainConfig().agent_hparams, "lr": default_lr if args.lr is None else args.lr},
        lr=args.lr or 0.0,
        optimizer=Optim4RLConfig(head=_ints(args.head), clip_inputs=args.clip_inputs, input_scale=args.input_scale),
        seed=args.seed,
    )
    if args.steps is not None:
        iterations = args.steps // config.env_steps_per_iteration
        if iterations < 1:
            raise ValueError(f"--steps {args.steps} is less than one meta-iteration ({config.env_steps_per_iteration} env steps)")
        config = dataclasses.replace(config, iterations=iterations)
    return config


def output_paths(args: argparse.Namespace) -> tuple[Path, Path, str | None]:
    """The optimizer file, the checkpoint and the log of ``--out`` (a ``.pt`` file, or a folder) and its options."""
    out = Path(args.out)
    if out.suffix == ".pt":
        return out, Path(args.checkpoint or f"{out}.checkpoint.pt"), args.log
    out.mkdir(parents=True, exist_ok=True)
    return out / "optimizer.pt", Path(args.checkpoint or out / "checkpoint.pt"), args.log or str(out / "meta.jsonl")


def _describe(config: MetaTrainConfig) -> str:
    """The run's configuration as text: a checkpoint remembers it, so a resume with other options is refused."""
    return json.dumps(asdict(config), sort_keys=True, default=str)


def _read_checkpoint(path: str, config: MetaTrainConfig) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged or foreign file
        raise ValueError(f"checkpoint {path} is not readable: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict) or state.get("config") != _describe(config):
        raise ValueError(f"checkpoint {path} was written by a run with other options: give the same ones to --resume")
    return state["trainer"]


def command(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from solvers.checkpoint import write_state
    from solvers.optim4rl.files import save
    from solvers.optim4rl.train import MetaReport, meta_train

    config = config_from_args(args)
    resume = _read_checkpoint(args.resume, config) if args.resume else None
    out_path, checkpoint_path, log_path = output_paths(args)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    seen: list[float] = []
    columns = (
        TextColumn("[bold]meta-iteration"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("unit return {task.fields[ret]}  meta-grad norm {task.fields[norm]}"),
    )
    with Progress(*columns) as progress, open(log_path or os.devnull, "a" if resume else "w") as log:
        bar = progress.add_task("meta", total=config.iterations, completed=resume["t"] if resume else 0, ret="-", norm="-")

        def on_step(r: MetaReport) -> None:
            seen.extend(r.returns)
            ret = f"{np.mean(seen[-50:]):7.1f}" if seen else "-"
            progress.update(bar, completed=r.iteration, ret=ret, norm=f"{r.grad_norm:.3g}")
            row = {"iteration": r.iteration, "loss": r.loss, "grad_norm": r.grad_norm, "returns": list(r.returns)}
            log.write(json.dumps({**row, "resets": list(r.resets)}) + "\n")
            log.flush()

        def keep(state: dict) -> None:
            write_state({"config": _describe(config), "trainer": state}, checkpoint_path)

        rule, _ = meta_train(config, on_step=on_step, resume=resume, checkpoint=keep)
    print(f"wrote {save(rule, out_path)} (checkpoint {checkpoint_path})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solvers.optim4rl.cli", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
