"""Objectives that live outside ``agents/`` (learned ones, e.g. LPG), selectable by name in a learner's config.

``OBJECTIVE_FACTORIES`` maps a name to a factory ``(argument, learner) -> objective`` or its ``"module:attr"``
import string, imported only when the name is asked for (so ``agents/`` never imports ``solvers/``, as
``agents.optim.RULE_FACTORIES`` does for update rules).  ``"name"`` calls the factory with ``""`` (its
default), ``"name:ARG"`` with ``ARG`` (e.g. a rule file).  An objective may bring parameters of its own (an
LPG agent's prediction head y): ``init_params(generator) -> Params``; ``attach_objective`` adds them to the
learner's parameters, which the update rule then trains with the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from agents.seeding import derive

OBJECTIVE_FACTORIES: dict[str, str | Callable[[str, Any], Any]] = {"lpg": "solvers.lpg.plugin:from_spec"}
"""learned objectives by name: a factory ``(argument, learner) -> objective`` or its import string"""


def register_objective(name: str, factory: str | Callable[[str, Any], Any]) -> None:
    """Make ``name`` (and ``name:ARG``) selectable as ``config={"objective": ...}``."""
    if not name or ":" in name:
        raise ValueError(f"objective name must be non-empty and without ':', got {name!r}")
    OBJECTIVE_FACTORIES[name] = factory


def make_objective(spec: str, learner: Any) -> Any:
    """The objective ``spec`` (``name`` or ``name:ARG``) names, built for ``learner``."""
    name, _, arg = str(spec).partition(":")
    factory = OBJECTIVE_FACTORIES.get(name)
    if factory is None:
        raise ValueError(
            f"objective must be the learner's own or one of {sorted(OBJECTIVE_FACTORIES)} (as 'name' or 'name:ARG'), got {spec!r}"
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(arg, learner)


OWN = "own"
"""``config.objective`` for the learner's own loss (A2C's, PPO's clipped surrogate, IMPALA's V-trace)"""


def use_config_objective(learner: Any, own_name: str) -> bool:
    """Swap in the learned objective ``learner.config.objective`` names, unless it is the learner's own (``own``, or
    the learner's name ``own_name``); a learner calls this once its own objective is set.  True if swapped."""
    spec = learner.config.objective
    if spec in (OWN, own_name):
        return False
    if learner.config.compile in (True, "fused"):
        raise ValueError(
            f"compile={learner.config.compile!r} needs {own_name.upper()}'s own objective; objective {spec!r} runs eager"
        )
    attach_objective(learner, spec)
    return True


def attach_objective(learner: Any, spec: str) -> None:
    """Give ``learner`` the objective ``spec`` names, with its own parameters joined to the learner's."""
    objective = make_objective(spec, learner)
    init = getattr(objective, "init_params", None)
    extra = init(torch.Generator().manual_seed(derive(learner.seed, "objective", str(spec)))) if init else {}
    clash = set(extra) & set(learner.params)
    if clash:
        raise ValueError(f"objective {spec!r} brings parameters {sorted(clash)} the learner already has")
    learner.objective = objective
    learner.params = {**learner.params, **{k: v.to(learner.device).requires_grad_() for k, v in extra.items()}}
    learner.opt_state = learner.update_rule.init(learner.params)
    norm = torch.linalg.vector_norm(torch.stack([v.detach().norm() for v in learner.params.values()]))
    learner.initial_param_norm = float(norm)
