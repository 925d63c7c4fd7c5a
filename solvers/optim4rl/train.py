"""Meta-training an Optim4RL optimizer with pipeline training (paper section 4.1).

    hyperrl optim4rl-train --task CartPole-v1 --units 8 --reset-interval 16 --iterations 200 --out o4rl.pt

Pipeline: unit j resets when ``(t - 1) % m == offset_j`` with ``offset = int(linspace(0, m - 1, n))``
(truncated), so at any meta-iteration the units sit at every stage of a training interval;
``pipeline=False`` (``--no-pipeline``) resets all units together.  Each meta-iteration: the due
resets, the population's mean meta-loss (``solvers.optim4rl.meta``), its gradient with respect to
the optimizer's weights, global-norm clip, one Adam step.  Here the population is a Python loop over
Gymnasium A2C units; the vectorised population plugs into ``MetaTrainer`` in its place.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from agents.optim import adam, adam_init, clip_grad_norm
from agents.seeding import derive
from solvers.optim4rl.meta import LoopPopulation, Population, Unit
from solvers.optim4rl.optimizer import Optim4RL, Optim4RLConfig, init_weights


def pipeline_offsets(n: int, m: int) -> np.ndarray:
    """Reset offsets of ``n`` units over a reset interval ``m``: ``int(linspace(0, m - 1, n))``, truncated."""
    if n < 1 or m < 1:
        raise ValueError(f"pipeline_offsets needs n >= 1 and m >= 1, got n={n}, m={m}")
    return np.linspace(0, m - 1, n).astype(np.int64)


def due_resets(t: int, offsets: np.ndarray, m: int) -> list[int]:
    """Units that reset at meta-iteration ``t`` (counted from 1): those with ``(t - 1) % m == offset``."""
    return [int(j) for j in np.flatnonzero((t - 1) % m == offsets)]


@dataclass(frozen=True, kw_only=True)
class MetaTrainConfig:
    """One meta-training run on a Gymnasium task with a loop population."""

    task: str = "CartPole-v1"
    """Gymnasium id of the units' task"""
    units: int = 8
    """training units n (each one A2C agent)"""
    num_envs: int = 1
    """inner environments per unit (the paper: 1)"""
    rollout: int = 20
    """vector steps per inner rollout (the paper: 20)"""
    hidden: tuple[int, ...] = (32,)
    """hidden widths of the units' actor and critic MLPs"""
    reset_interval: int = 16
    """m: meta-iterations between two resets of a unit"""
    pipeline: bool = True
    """stagger the resets (pipeline training); False resets all units together"""
    iterations: int = 100
    """meta-iterations"""
    inner_steps: int = 4
    """M: inner A2C updates per meta-iteration (the paper: 4)"""
    meta_lr: float = 1e-3
    """Adam step size on the optimizer's weights"""
    max_meta_grad_norm: float = 0.5
    """global-norm clip of the meta-gradient (the paper: 0.5)"""
    agent_hparams: dict[str, float] = field(default_factory=lambda: {"lr": 1e-3, "gae_lambda": 0.95, "ent_coef": 0.01})
    """the units' A2C hyperparameters (others: A2C's defaults); the paper's Catch lr is 1e-3"""
    optimizer: Optim4RLConfig = field(default_factory=Optim4RLConfig)
    """structure of the learned optimizer"""
    seed: int = 0
    """seeds the optimizer's initial weights and every unit"""

    def __post_init__(self) -> None:
        for name in ("units", "num_envs", "rollout", "reset_interval", "iterations", "inner_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetaTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.meta_lr > 0:
            raise ValueError(f"MetaTrainConfig.meta_lr must be > 0, got {self.meta_lr}")


@dataclass(frozen=True, kw_only=True)
class MetaReport:
    """One meta-iteration, as the progress bar shows it."""

    iteration: int
    """t, from 1"""
    loss: float
    """the population's mean meta-loss"""
    grad_norm: float
    """global norm of the meta-gradient before clipping"""
    returns: tuple[float, ...]
    """returns of the unit episodes that ended during the iteration"""
    resets: tuple[int, ...]
    """units reset at the start of the iteration"""


class MetaTrainer:
    """Meta-trains ``rule``'s weights in place on ``population``; ``step()`` is one meta-iteration."""

    def __init__(self, rule: Optim4RL, population: Population, config: MetaTrainConfig) -> None:
        self.rule, self.population, self.config = rule, population, config
        m = config.reset_interval
        self.offsets = pipeline_offsets(population.num_units, m) if config.pipeline else np.zeros(population.num_units, np.int64)
        self.weights = rule.parameters()
        for w in self.weights.values():
            w.requires_grad_()
        self.adam_state = adam_init(self.weights)
        self.t = 0

    def step(self) -> MetaReport:
        self.t += 1
        resets = due_resets(self.t, self.offsets, self.config.reset_interval)
        if self.t > 1:  # the population starts fresh: the first resets are already done
            self.population.reset(resets)
        out = self.population.meta_loss(self.config.agent_hparams, self.config.inner_steps)
        names = list(self.weights)
        grads = dict(zip(names, torch.autograd.grad(out.loss, [self.weights[k] for k in names], allow_unused=True)))
        grads = {k: torch.zeros_like(self.weights[k]) if g is None else g for k, g in grads.items()}
        grads, norm = clip_grad_norm(grads, self.config.max_meta_grad_norm)
        with torch.no_grad():
            new, self.adam_state = adam(self.weights, grads, self.adam_state, lr=self.config.meta_lr)
            for k in names:
                self.weights[k].copy_(new[k])
        return MetaReport(
            iteration=self.t,
            loss=float(out.loss.detach()),
            grad_norm=float(norm),
            returns=tuple(out.returns),
            resets=tuple(resets),
        )


def loop_population(config: MetaTrainConfig, rule: Optim4RL) -> LoopPopulation:
    """``config.units`` A2C units on ``config.task``, all updating with ``rule``."""
    from agents.a2c import A2CConfig, A2CLearner

    a2c = A2CConfig(task=config.task, num_envs=config.num_envs, num_steps=config.rollout, hidden=config.hidden, update_rule=rule)

    def make(seed: int) -> A2CLearner:
        return A2CLearner(a2c, seed=seed)

    return LoopPopulation([Unit(make, derive(config.seed, "unit", j)) for j in range(config.units)])


def meta_train(
    config: MetaTrainConfig, *, on_step: Callable[[MetaReport], None] | None = None
) -> tuple[Optim4RL, list[MetaReport]]:
    """A fresh optimizer meta-trained as ``config`` says; returns it (weights detached) and the reports."""
    rule = Optim4RL(config=config.optimizer, weights=init_weights(config.optimizer, seed=derive(config.seed, "optimizer")))
    population = loop_population(config, rule)
    trainer = MetaTrainer(rule, population, config)
    reports = []
    try:
        for _ in range(config.iterations):
            reports.append(trainer.step())
            if on_step is not None:
                on_step(reports[-1])
    finally:
        population.close()
    weights = {k: v.detach().clone() for k, v in rule.weights.items()}
    return Optim4RL(config=rule.config, weights=weights), reports


# -- command line -------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MetaTrainConfig()
    p.add_argument("--task", default=d.task, help="Gymnasium id of the units' task")
    p.add_argument("--units", type=int, default=d.units, help="training units n")
    p.add_argument("--reset-interval", type=int, default=d.reset_interval, help="m: meta-iterations between resets of a unit")
    p.add_argument("--no-pipeline", action="store_true", help="reset all units together (the paper's ablation)")
    p.add_argument("--iterations", type=int, default=d.iterations, help="meta-iterations")
    p.add_argument("--num-envs", type=int, default=d.num_envs, help="inner environments per unit")
    p.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="units' MLP widths, e.g. 32 or 64,64")
    p.add_argument("--meta-lr", type=float, default=d.meta_lr, help="Adam step size on the optimizer's weights")
    p.add_argument("--lr", type=float, default=d.agent_hparams["lr"], help="the units' agent learning rate")
    p.add_argument("--head", default="", help="head widths: '' linear (default), '16,16' the paper's MLP")
    p.add_argument("--clip-inputs", action="store_true", help="clip gradient elements to [-1, 1] before the GRUs")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default="optim4rl.pt", help="where to write the optimizer's state_dict")
    p.add_argument("--log", help="also write one JSON line per meta-iteration here")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(",") if w.strip())


def config_from_args(args: argparse.Namespace) -> MetaTrainConfig:
    return MetaTrainConfig(
        task=args.task,
        units=args.units,
        num_envs=args.num_envs,
        hidden=_ints(args.hidden),
        reset_interval=args.reset_interval,
        pipeline=not args.no_pipeline,
        iterations=args.iterations,
        meta_lr=args.meta_lr,
        agent_hparams={**MetaTrainConfig().agent_hparams, "lr": args.lr},
        optimizer=Optim4RLConfig(head=_ints(args.head), clip_inputs=args.clip_inputs),
        seed=args.seed,
    )


def command(args: argparse.Namespace) -> int:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from solvers.optim4rl.files import save

    config = config_from_args(args)
    log = open(args.log, "w") if args.log else None  # noqa: SIM115 -- closed below
    seen: list[float] = []
    columns = (
        TextColumn("[bold]meta-iteration"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("unit return {task.fields[ret]}  meta-grad norm {task.fields[norm]}"),
    )
    with Progress(*columns) as progress:
        bar = progress.add_task("meta", total=config.iterations, ret="-", norm="-")

        def on_step(r: MetaReport) -> None:
            seen.extend(r.returns)
            ret = f"{np.mean(seen[-50:]):7.1f}" if seen else "-"
            progress.update(bar, completed=r.iteration, ret=ret, norm=f"{r.grad_norm:.3g}")
            if log is not None:
                log.write(json.dumps({"iteration": r.iteration, "loss": r.loss, "grad_norm": r.grad_norm,
                                      "returns": list(r.returns), "resets": list(r.resets)}) + "\n")  # fmt: skip

        try:
            rule, _ = meta_train(config, on_step=on_step)
        finally:
            if log is not None:
                log.close()
    print(f"wrote {save(rule, args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solvers.optim4rl.train", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
