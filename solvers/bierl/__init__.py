"""BiERL (Wang et al., 2023): bilevel meta-evolution of ES hyperparameters.

``BiERLPM`` (parametric: LSTM meta-network trained by meta-ES) and
``BiERLNPM`` (nonparametric: Bayesian optimisation), both scoring candidate
hyperparameters by a one-step look-ahead through snapshot/restore.
"""

from solvers.bierl.common import LookAheadSolver
from solvers.bierl.npm import BiERLNPM, bo_propose
from solvers.bierl.pm import BiERLPM, MetaNetwork

__all__ = ["BiERLNPM", "BiERLPM", "LookAheadSolver", "MetaNetwork", "bo_propose"]
