"""Meta-training an Optim4RL optimizer with pipeline training (paper section 4.1).

    hyperrl optim4rl-train --task CartPole-v1 --units 8 --reset-interval 64 --iterations 400 --out o4rl.pt

Pipeline: unit j resets when ``(t - 1) % m == offset_j`` with ``offset = int(linspace(0, m - 1, n))``
(truncated), so at any meta-iteration the units sit at every stage of a training interval;
``pipeline=False`` (``--no-pipeline``) resets all units together.  Each meta-iteration: the due
resets, the population's mean meta-loss (``solvers.optim4rl.meta``), its gradient with respect to
the optimizer's weights, global-norm clip, one Adam step.  Here the population is a Python loop over
Gymnasium A2C units; the vectorised population plugs into ``MetaTrainer`` in its place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.optim import adam, adam_init, clip_grad_norm
from agents.seeding import derive
from solvers.optim4rl.config import MetaTrainConfig
from solvers.optim4rl.meta import LoopPopulation, Population, Unit
from solvers.optim4rl.optimizer import Optim4RL, init_weights


def pipeline_offsets(n: int, m: int) -> np.ndarray:
    """Reset offsets of ``n`` units over a reset interval ``m``: ``int(linspace(0, m - 1, n))``, truncated."""
    if n < 1 or m < 1:
        raise ValueError(f"pipeline_offsets needs n >= 1 and m >= 1, got n={n}, m={m}")
    return np.linspace(0, m - 1, n).astype(np.int64)


def due_resets(t: int, offsets: np.ndarray, m: int) -> list[int]:
    """Units that reset at meta-iteration ``t`` (counted from 1): those with ``(t - 1) % m == offset``."""
    return [int(j) for j in np.flatnonzero((t - 1) % m == offsets)]


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

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: the optimizer's weights, the meta-Adam state, t, the population."""
        return {
            "t": self.t,
            "weights": {k: v.detach().clone() for k, v in self.weights.items()},
            "adam": {k: v if k == "step" else {n: t.clone() for n, t in v.items()} for k, v in self.adam_state.items()},
            "population": self.population.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["weights"]) != set(self.weights):
            raise ValueError(f"checkpoint has weights {sorted(state['weights'])}, this optimizer {sorted(self.weights)}")
        with torch.no_grad():
            for k, w in self.weights.items():
                w.copy_(state["weights"][k])
        self.adam_state = {k: v if k == "step" else {n: t.clone() for n, t in v.items()} for k, v in state["adam"].items()}
        self.t = int(state["t"])
        self.population.load_state_dict(state["population"])


def loop_population(config: MetaTrainConfig, rule: Optim4RL) -> LoopPopulation:
    """``config.units`` A2C units on ``config.task``, all updating with ``rule``."""
    from agents.a2c import A2CConfig, A2CLearner

    a2c = A2CConfig(task=config.task, num_envs=config.num_envs, num_steps=config.rollout, hidden=config.hidden, update_rule=rule)

    def make(seed: int) -> A2CLearner:
        return A2CLearner(a2c, seed=seed)

    return LoopPopulation([Unit(make, derive(config.seed, "unit", j)) for j in range(config.units)])


def meta_train(
    config: MetaTrainConfig,
    *,
    on_step: Callable[[MetaReport], None] | None = None,
    resume: Mapping[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 25,
) -> tuple[Optim4RL, list[MetaReport]]:
    """An optimizer meta-trained as ``config`` says; returns it (weights detached) and this call's reports.

    ``resume``: a ``MetaTrainer.state_dict()`` to continue from (the run then ends at the same
    ``config.iterations`` and the same weights as the uninterrupted one).  ``checkpoint(state)`` is
    called every ``checkpoint_every`` meta-iterations and at the end.
    """
    rule = Optim4RL(config=config.optimizer, weights=init_weights(config.optimizer, seed=derive(config.seed, "optimizer")))
    population = loop_population(config, rule)
    trainer = MetaTrainer(rule, population, config)
    if resume is not None:
        trainer.load_state_dict(resume)
    reports = []
    try:
        while trainer.t < config.iterations:
            reports.append(trainer.step())
            if on_step is not None:
                on_step(reports[-1])
            if checkpoint is not None and (trainer.t % checkpoint_every == 0 or trainer.t == config.iterations):
                checkpoint(trainer.state_dict())
    finally:
        population.close()
    weights = {k: v.detach().clone() for k, v in rule.weights.items()}
    return Optim4RL(config=rule.config, weights=weights), reports
