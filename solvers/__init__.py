"""Meta-controllers that act on HyperRL envs, and the ``hyperrl`` command line."""

from __future__ import annotations

from typing import Any

from solvers.base import EpisodeSolver, RunLog, Solver, StepRecord, StopRun
from solvers.baselines import RandomSolver, StaticSolver

SOLVERS: dict[str, str] = {
    "static": "solvers.baselines:StaticSolver",
    "random": "solvers.baselines:RandomSolver",
    "epgt": "solvers.epgt:EPGTSolver",
    "rnd": "solvers.baselines:RndSolver",
    "dqn": "solvers.epgt:DQNSolver",
    "stac": "solvers.stac:STACSolver",
    "stacx": "solvers.stac:STACXSolver",
    "bierl-pm": "solvers.bierl:BiERLPM",
    "bierl-npm": "solvers.bierl:BiERLNPM",
    "pbt": "solvers.pbt:PBTSolver",
    "pb2": "solvers.pbt:PB2Solver",
}
"""Solver names (as the command line knows them) -> ``module:Class``; classes load on use."""


def solver_class(name: str) -> type:
    """The class registered as ``name`` (imported on first use)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}")
    module, _, attr = SOLVERS[name].partition(":")
    import importlib

    return getattr(importlib.import_module(module), attr)


def make_solver(name: str, **kwargs: Any) -> Solver:
    """Build the solver registered as ``name``."""
    return solver_class(name)(**kwargs)


def default_action_type(name: str) -> str:
    """The action type a solver needs (its class's ``action_type``; ``continuous`` when it does not say)."""
    return getattr(solver_class(name), "action_type", "continuous")


__all__ = [
    "SOLVERS",
    "EpisodeSolver",
    "RandomSolver",
    "RunLog",
    "Solver",
    "StaticSolver",
    "StepRecord",
    "StopRun",
    "default_action_type",
    "make_solver",
    "solver_class",
]
