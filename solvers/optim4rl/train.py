"""Meta-training an Optim4RL optimizer with pipeline training (paper section 4.1).

    hyperrl optim4rl-train --task CartPole-v1 --units 8 --reset-interval 64 --iterations 400 --out o4rl.pt

Pipeline: unit j resets when ``(t - 1) % m == offset_j`` with ``offset = int(linspace(0, m - 1, n))``
(truncated), so at any meta-iteration the units sit at every stage of a training interval;
``pipeline=False`` (``--no-pipeline``) resets all units together.  Each meta-iteration: the due
resets, the population's mean meta-loss (``solvers.optim4rl.meta``), its gradient with respect to
the optimizer's weights, global-norm clip, one Adam step.  Here the population is a Python loop over
Gymnasium A2C units (``loop_population``) or, on Optim4RL's batched tasks, the vectorised population
(``solvers.optim4rl.vectorised``).  Several tasks (``--task grids``): one population per task, each
task's meta-gradient rescaled to norm ``max_meta_grad_norm`` before they are averaged (normalisation,
not clipping: every task weighs the same), the rewards scaled as the paper's Table 3 says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.optim import adam, adam_init, clip_grad_norm
from agents.seeding import derive
from hyperenvs.population import stagger_offsets
from solvers.optim4rl.config import A2C_HPARAMS, GRID_MIX, TASK_SETTINGS, MetaTrainConfig, Optim4RLConfig, batched_tasks
from solvers.optim4rl.meta import LoopPopulation, Population, Unit
from solvers.optim4rl.optimizer import Optim4RL, init_weights


def pipeline_offsets(n: int, m: int) -> np.ndarray:
    """Reset offsets of ``n`` units over a reset interval ``m``: the population's stagger, ``int(linspace(0, m - 1, n))``."""
    if n < 1 or m < 1:
        raise ValueError(f"pipeline_offsets needs n >= 1 and m >= 1, got n={n}, m={m}")
    return np.asarray(stagger_offsets(n, m), dtype=np.int64)


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
    """Meta-trains ``rule``'s weights in place on ``population`` (or several, one per task); ``step()`` is
    one meta-iteration.  ``hparams``: the units' agent hyperparameters, one mapping per population
    (default ``config.agent_hparams`` for each)."""

    def __init__(
        self,
        rule: Optim4RL,
        population: Population | Sequence[Population],
        config: MetaTrainConfig,
        hparams: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.rule, self.config = rule, config
        self.populations = list(population) if isinstance(population, Sequence) else [population]
        self.hparams = list(hparams) if hparams is not None else [config.agent_hparams] * len(self.populations)
        if len(self.hparams) != len(self.populations):
            raise ValueError(f"hparams has {len(self.hparams)} entries for {len(self.populations)} populations")
        n, m = self.populations[0].num_units, config.reset_interval
        self.offsets = pipeline_offsets(n, m) if config.pipeline else np.zeros(n, np.int64)
        self.weights = rule.parameters()
        for w in self.weights.values():
            w.requires_grad_()
        self.adam_state = adam_init(self.weights)
        self.t = 0

    @property
    def population(self) -> Population:
        """The (first) population."""
        return self.populations[0]

    def step(self) -> MetaReport:
        self.t += 1
        resets = due_resets(self.t, self.offsets, self.config.reset_interval)
        names = list(self.weights)
        losses, returns, task_grads = [], [], []
        for population, hparams in zip(self.populations, self.hparams):
            if self.t > 1:  # the population starts fresh: the first resets are already done
                population.reset(resets)
            out = population.meta_loss(hparams, self.config.inner_steps)
            grads = torch.autograd.grad(out.loss, [self.weights[k] for k in names], allow_unused=True)
            task_grads.append({k: torch.zeros_like(self.weights[k]) if g is None else g for k, g in zip(names, grads)})
            losses.append(float(out.loss.detach()))
            returns.extend(out.returns)
        grads = task_grads[0] if len(task_grads) == 1 else mean_of_normalised(task_grads, self.config.max_meta_grad_norm)
        grads, norm = clip_grad_norm(grads, self.config.max_meta_grad_norm)
        with torch.no_grad():
            new, self.adam_state = adam(self.weights, grads, self.adam_state, lr=self.config.meta_lr)
            for k in names:
                self.weights[k].copy_(new[k])
        return MetaReport(
            iteration=self.t, loss=float(np.mean(losses)), grad_norm=float(norm), returns=tuple(returns), resets=tuple(resets)
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: the optimizer's weights, the meta-Adam state, t, the populations."""
        return {
            "t": self.t,
            "weights": {k: v.detach().clone() for k, v in self.weights.items()},
            "adam": {k: v if k == "step" else {n: t.clone() for n, t in v.items()} for k, v in self.adam_state.items()},
            "populations": [population.state_dict() for population in self.populations],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["weights"]) != set(self.weights):
            raise ValueError(f"checkpoint has weights {sorted(state['weights'])}, this optimizer {sorted(self.weights)}")
        if len(state["populations"]) != len(self.populations):
            raise ValueError(f"checkpoint has {len(state['populations'])} populations, this run {len(self.populations)}")
        with torch.no_grad():
            for k, w in self.weights.items():
                w.copy_(state["weights"][k])
        self.adam_state = {k: v if k == "step" else {n: t.clone() for n, t in v.items()} for k, v in state["adam"].items()}
        self.t = int(state["t"])
        for population, population_state in zip(self.populations, state["populations"]):
            population.load_state_dict(population_state)


def mean_of_normalised(task_grads: Sequence[Mapping[str, torch.Tensor]], norm: float) -> dict[str, torch.Tensor]:
    """Each task's meta-gradient rescaled to global norm ``norm`` (a zero one stays zero), then their mean."""
    out = {k: torch.zeros_like(v) for k, v in task_grads[0].items()}
    for grads in task_grads:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
        scale = norm / total if total > 0 else 0.0
        for k, g in grads.items():
            out[k] += g * scale / len(task_grads)
    return out


def loop_population(config: MetaTrainConfig, rule: Optim4RL) -> LoopPopulation:
    """``config.units`` A2C units on ``config.task``, all updating with ``rule``."""
    from agents.a2c import A2CConfig, A2CLearner

    a2c = A2CConfig(task=config.task, num_envs=config.num_envs, num_steps=config.rollout, hidden=config.hidden, update_rule=rule)

    def make(seed: int) -> A2CLearner:
        return A2CLearner(a2c, seed=seed)

    return LoopPopulation([Unit(make, derive(config.seed, "unit", j)) for j in range(config.units)])


def vector_populations(config: MetaTrainConfig, rule: Optim4RL) -> tuple[list[Any], list[dict[str, float]]]:
    """The vectorised populations of ``config.task`` (one per task; six for ``grids``) and their agent
    hyperparameters: Optim4RL's A2C, the task's lr (the mix's in the mix) unless ``config.lr`` is set."""
    from solvers.optim4rl.vectorised import VectorPopulation

    tasks, mix = batched_tasks(config.task), config.task == GRID_MIX
    populations, hparams = [], []
    for i, task in enumerate(tasks):
        setting = TASK_SETTINGS[task]
        populations.append(
            VectorPopulation(
                rule,
                task,
                units=config.units,
                envs_per_unit=config.num_envs,
                rollout=config.rollout,
                reward_scale=setting.reward_scale if mix else 1.0,
                seed=derive(config.seed, "task", i) if mix else config.seed,
            )
        )
        lr = config.lr or (setting.mix_lr if mix else setting.lr)
        hparams.append({**A2C_HPARAMS, "lr": lr})
    return populations, hparams


def default_optimizer_config(config: MetaTrainConfig) -> Optim4RLConfig:
    """``config.optimizer``, with input clipping switched on for the gridworlds (the paper clips there)."""
    tasks = batched_tasks(config.task)
    if tasks and all(TASK_SETTINGS[t].clip_inputs for t in tasks) and not config.optimizer.clip_inputs:
        return dataclasses.replace(config.optimizer, clip_inputs=True)
    return config.optimizer


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
    structure = default_optimizer_config(config)
    rule = Optim4RL(config=structure, weights=init_weights(structure, seed=derive(config.seed, "optimizer")))
    if batched_tasks(config.task):
        populations, hparams = vector_populations(config, rule)
    else:
        populations, hparams = [loop_population(config, rule)], None
    trainer = MetaTrainer(rule, populations, config, hparams)
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
        for population in populations:
            population.close()
    weights = {k: v.detach().clone() for k, v in rule.weights.items()}
    return Optim4RL(config=rule.config, weights=weights), reports
