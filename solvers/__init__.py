"""Meta-controllers that act on HyperRL envs, and the ``hyperrl`` command line."""

from __future__ import annotations

from typing import Any

from solvers.base import EpisodeSolver, RunLog, Solver, SolverSpec, Stateful, StepRecord, StopRun
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
    "optim4rl": "solvers.optim4rl.solver:Optim4RLSolver",
    "lpg": "solvers.lpg.solver:LPGSolver",
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


def solver_spec(solver: str | Solver) -> SolverSpec:
    """What the solver registered as ``solver`` (or this solver object) needs from its env."""
    return solver_class(solver).spec if isinstance(solver, str) else solver.spec


def is_stateful(solver: str | Solver) -> bool:
    """Whether the solver (a registered name or an object) can be checkpointed and resumed (``Stateful``)."""
    return issubclass(solver_class(solver) if isinstance(solver, str) else type(solver), Stateful)


__all__ = [
    "SOLVERS",
    "EpisodeSolver",
    "RandomSolver",
    "RunLog",
    "Solver",
    "SolverSpec",
    "Stateful",
    "StaticSolver",
    "StepRecord",
    "StopRun",
    "is_stateful",
    "make_solver",
    "solver_class",
    "solver_spec",
]
