"""Optim4RL's meta-gradient (paper section 2 and appendix C), for one training unit and for a population.

One unit is an A2C learner whose update rule is the shared learned optimizer, with its own
parameters, optimizer (recurrent) state and environment.  Per meta-iteration it makes
``inner_steps`` (the paper's M = 4) A2C updates, each on its own fresh rollout, through the shared
differentiable unroll; the meta-loss is the A2C loss of the last parameters on one more fresh
rollout, and it is differentiated back through the M updates and the recurrent states to the
optimizer's weights.  The unit then carries on from the M-th parameters and state, detached.

``Population`` is the seam for the vectorised population of lifetimes: anything with
``num_units``, ``reset(units)`` and ``meta_loss(hparams) -> PopulationLoss`` plugs into
``solvers.optim4rl.train``.  ``LoopPopulation`` is the reference one, a Python loop over units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agents.base import Batch, Params
from agents.optim import OptState
from agents.seeding import derive
from agents.unroll import Collect, unroll


@dataclass(frozen=True, kw_only=True)
class MetaLoss:
    """What ``meta_loss`` returns for one unit."""

    loss: torch.Tensor
    """the outer A2C loss of the last inner parameters on the validation rollout (graph to the optimizer's weights)"""
    params: Params
    """the parameters after the inner updates, with their graph"""
    opt_state: OptState
    """the optimizer state after the inner updates, with its graph"""
    batches: list[Batch]
    """the inner batches, then the validation batch"""


def meta_loss(
    learner: Any,
    batches: Sequence[Batch] | Collect,
    hparams: Mapping[str, Any],
    *,
    steps: int = 4,
    params: Params | None = None,
    opt_state: OptState | None = None,
) -> MetaLoss:
    """``steps`` differentiable updates of ``learner`` then its own objective on one more batch.

    ``batches``: ``steps + 1`` fixed batches (the last is the validation batch), or a
    ``collect(params, k)`` callable, called for ``k = 0 .. steps`` (``k = steps``: validation).
    ``params`` / ``opt_state`` default to the learner's own (detached); nothing of the learner changes.
    """
    if not callable(batches) and len(batches) != steps + 1:
        raise ValueError(f"meta_loss needs steps + 1 = {steps + 1} batches (the last for validation), got {len(batches)}")
    out = unroll(learner, batches, hparams, params=params, opt_state=opt_state, steps=steps)
    if callable(batches):
        with torch.no_grad():
            validation = batches({k: v.detach() for k, v in out.params.items()}, steps)
    else:
        validation = batches[steps]
    loss, _ = learner.objective(out.params, validation, learner.hparam_values(hparams))
    return MetaLoss(loss=loss, params=out.params, opt_state=out.opt_state, batches=[*out.batches, validation])


def detach_state(obj: Any) -> Any:
    """A copy of an optimizer state with every tensor detached (the recurrent state carries on, its graph does not)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: detach_state(v) for k, v in obj.items()}
    return obj


class Unit:
    """One training unit: a learner (agent, its environment, its optimizer state) built by ``make_learner(seed)``.

    Each ``reset`` builds a fresh learner (new network, zero recurrent state, fresh episodes)
    with a seed derived from the unit's seed and its count of lives.
    """

    def __init__(self, make_learner: Callable[[int], Any], seed: int) -> None:
        self._make, self.seed, self.lives = make_learner, int(seed), 0
        self.learner: Any = None
        self.reset()

    def reset(self) -> None:
        if self.learner is not None:
            self.learner.close()
        self.learner = self._make(derive(self.seed, "life", self.lives))
        self.lives += 1

    def meta_loss(self, hparams: Mapping[str, Any], steps: int) -> tuple[torch.Tensor, list[float]]:
        """This unit's meta-loss; advances the unit to its post-update parameters. Returns the loss and the
        returns of the inner episodes that ended during the ``steps + 1`` rollouts."""
        learner = self.learner
        gamma = float(learner.hparam_values(hparams)["gamma"])
        returns: list[float] = []

        def collect(params: Params, k: int) -> Batch:
            batch, episodes = learner.collector.collect(params, learner.config.num_steps, gamma)
            returns.extend(e.ret for e in episodes)
            learner.timesteps += batch.num_steps
            return batch

        out = meta_loss(learner, collect, hparams, steps=steps)
        learner.params = {k: v.detach().requires_grad_() for k, v in out.params.items()}
        learner.opt_state = detach_state(out.opt_state)
        learner.iterations += steps
        return out.loss, returns

    def state_dict(self) -> dict[str, Any]:
        return {"lives": self.lives, "learner": self.learner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the life ``state`` was in, then restore its learner (parameters, recurrent state, envs, RNG)."""
        self.lives = int(state["lives"]) - 1
        self.reset()
        self.learner.load_state_dict(state["learner"])

    def close(self) -> None:
        self.learner.close()


@dataclass(frozen=True, kw_only=True)
class PopulationLoss:
    """One meta-iteration's loss over a population."""

    loss: torch.Tensor
    """the mean of the units' meta-losses"""
    returns: list[float]
    """returns of the inner episodes that ended during it, all units together"""


class Population(Protocol):
    """The seam for a vectorised population: ``solvers.optim4rl.train`` needs only these."""

    num_units: int

    def reset(self, units: Sequence[int]) -> None: ...

    def meta_loss(self, hparams: Mapping[str, Any], steps: int) -> PopulationLoss: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class LoopPopulation:
    """A population as a Python loop over ``Unit``\\ s (the reference the vectorised one must match)."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self.units = list(units)
        self.num_units = len(self.units)

    def reset(self, units: Sequence[int]) -> None:
        for j in units:
            self.units[j].reset()

    def meta_loss(self, hparams: Mapping[str, Any], steps: int) -> PopulationLoss:
        losses, returns = [], []
        for unit in self.units:
            loss, rets = unit.meta_loss(hparams, steps)
            losses.append(loss)
            returns.extend(rets)
        return PopulationLoss(loss=torch.stack(losses).mean(), returns=returns)

    def state_dict(self) -> dict[str, Any]:
        return {"units": [unit.state_dict() for unit in self.units]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["units"]) != self.num_units:
            raise ValueError(f"state has {len(state['units'])} units, this population {self.num_units}")
        for unit, unit_state in zip(self.units, state["units"]):
            unit.load_state_dict(unit_state)

    def close(self) -> None:
        for unit in self.units:
            unit.close()
