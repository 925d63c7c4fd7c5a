"""The one aggregate every reproduction reports; it lives in the library (solvers/aggregate.py) so sweeps share it."""

from solvers.aggregate import CI_METHOD, auc, iqm_ci, probability_of_improvement

__all__ = ["CI_METHOD", "auc", "iqm_ci", "probability_of_improvement"]
