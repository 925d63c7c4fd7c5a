"""Optim4RL (Lan et al., 2024): a learned optimizer for RL, usable as the update rule of any HyperRL learner.

``gym.make(ID, config={"update_rule": "optim4rl"})`` trains with the shipped optimizer frozen,
``"optim4rl:PATH"`` with one saved by ``hyperrl optim4rl-train``.
"""

from __future__ import annotations

from solvers.optim4rl.files import DEFAULT_WEIGHTS, from_spec, load, save
from solvers.optim4rl.optimizer import Optim4RL, Optim4RLConfig, init_weights, weight_shapes

__all__ = ["DEFAULT_WEIGHTS", "Optim4RL", "Optim4RLConfig", "from_spec", "init_weights", "load", "save", "weight_shapes"]
