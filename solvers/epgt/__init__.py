"""EPGT: episodic policy gradient training (Le et al., AAAI 2022) as a black-box HyperRL solver."""

from solvers.epgt.actions import JointActions, linear_epsilon
from solvers.epgt.dqn import DQNSolver
from solvers.epgt.encoder import HyperStateVAE
from solvers.epgt.memory import EpisodicMemory
from solvers.epgt.solver import EPGTConfig, EPGTSolver

__all__ = [
    "DQNSolver",
    "EPGTConfig",
    "EPGTSolver",
    "EpisodicMemory",
    "HyperStateVAE",
    "JointActions",
    "linear_epsilon",
]
