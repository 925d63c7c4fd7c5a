"""Meta-controllers that act on HyperRL envs, and the ``hyperrl`` command line."""

from __future__ import annotations

from typing import Any

from solvers.base import EpisodeSolver, RunLog, Solver, StepRecord
from solvers.baselines import RandomSolver, StaticSolver

SOLVERS: dict[str, str] = {
    "static": "solvers.baselines:StaticSolver",
    "random": "solvers.baselines:RandomSolver",
}
"""Solver names (as the command line knows them) -> ``module:Class``; classes load on use."""


def make_solver(name: str, **kwargs: Any) -> Solver:
    """Build the solver registered as ``name``."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}")
    module, _, attr = SOLVERS[name].partition(":")
    import importlib

    return getattr(importlib.import_module(module), attr)(**kwargs)


__all__ = [
    "SOLVERS",
    "EpisodeSolver",
    "RandomSolver",
    "RunLog",
    "Solver",
    "StaticSolver",
    "StepRecord",
    "make_solver",
]
