"""Optim4RL (Lan et al., 2024): a learned optimizer for RL, usable as the update rule of any HyperRL learner.

``gym.make(ID, config={"update_rule": "optim4rl"})`` trains with the shipped optimizer frozen,
``"optim4rl:PATH"`` with one saved by ``hyperrl optim4rl-train``.  Names load on first use, so the
command line can import this package without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from solvers.optim4rl.config import MetaTrainConfig, Optim4RLConfig

_LAZY = {
    "DEFAULT_WEIGHTS": "solvers.optim4rl.files",
    "from_spec": "solvers.optim4rl.files",
    "load": "solvers.optim4rl.files",
    "save": "solvers.optim4rl.files",
    "Optim4RL": "solvers.optim4rl.optimizer",
    "init_weights": "solvers.optim4rl.optimizer",
    "weight_shapes": "solvers.optim4rl.optimizer",
    "Optim4RLSolver": "solvers.optim4rl.solver",
    "meta_train": "solvers.optim4rl.train",
    "pipeline_offsets": "solvers.optim4rl.train",
    "VectorPopulation": "solvers.optim4rl.vectorised",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'solvers.optim4rl' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = ["MetaTrainConfig", "Optim4RLConfig", *_LAZY]
