"""BiERL (Wang et al., 2023): bilevel meta-evolution of ES hyperparameters.

``BiERLPM`` (parametric: LSTM meta-network trained by meta-ES) and
``BiERLNPM`` (nonparametric: Bayesian optimisation), both scoring candidate
hyperparameters by a one-step look-ahead through snapshot/restore.
Names load on first use, so the command line can import ``pretrain`` without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BiERLNPM", "BiERLPM", "LookAheadSolver", "MetaNetwork", "bo_propose"]

_LAZY = {
    "BiERLNPM": "solvers.bierl.npm",
    "bo_propose": "solvers.bierl.npm",
    "BiERLPM": "solvers.bierl.pm",
    "MetaNetwork": "solvers.bierl.pm",
    "LookAheadSolver": "solvers.bierl.common",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'solvers.bierl' has no attribute {name!r}")
