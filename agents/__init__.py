"""Inner learners: what a hyper-environment trains.

A learner is a collector (``rollout``), an objective (``ppo.PPOObjective``,
``a2c.A2CObjective``, ``impala_objective.IMPALAObjective``) and an update rule
(``optim.UpdateRule``), met in ``learner.train_step``; ``unroll`` differentiates
through K of those steps.

Names load on first use (PEP 562), so ``agents.hparams`` -- the torch-free
hyperparameter declarations the registry reads -- imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "agents.a2c": ("A2CConfig", "A2CHyperparams", "A2CLearner", "A2CObjective"),
    "agents.base": ("Batch", "IterationReport", "Learner", "Params"),
    "agents.es": ("ESConfig", "ESHyperparams", "ESLearner"),
    "agents.hparams": ("Hyperparameter", "declare", "declared", "hyperparameter"),
    "agents.impala": ("IMPALAConfig", "IMPALAHyperparams", "IMPALALearner"),
    "agents.impala_network": ("IMPALANetwork",),
    "agents.impala_objective": ("IMPALAObjective",),
    "agents.learner": ("ActorCriticConfig", "ActorCriticLearner"),
    "agents.networks": ("ActorCritic",),
    "agents.optim": (
        "SGD",
        "Adam",
        "RMSProp",
        "UpdateRule",
        "adam",
        "adam_init",
        "clip_grad_norm",
        "get_update_rule",
        "rmsprop",
        "sgd",
    ),
    "agents.ppo": ("PPOConfig", "PPOHyperparams", "PPOLearner", "PPOObjective"),
    "agents.returns": ("gae", "lambda_returns"),
    "agents.rollout": ("Collector", "make_vector_env"),
    "agents.unroll": ("Unrolled", "unroll"),
    "agents.vtrace": ("leaky_vtrace", "vtrace"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
