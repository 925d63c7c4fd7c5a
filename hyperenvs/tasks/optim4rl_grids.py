"""Optim4RL's six gridworlds (Optim4RL paper, appendix B, table 2; Oh et al. 2020's design).

Sizes are the walkable interior (the paper's H x W); the map adds a one-cell
wall border and the observation covers the full map: (objects + 1, H + 2, W + 2).
"""

from __future__ import annotations

from hyperenvs.tasks.gridworld import GridSpec

_SMALL = ((1.0, 0.0, 0.5), (-1.0, 0.5, 0.5))
_BIG_SPARSE = 2 * ((1.0, 0.0, 0.05),) + 2 * ((-1.0, 0.5, 0.05),)
_BIG_DENSE = 2 * ((1.0, 0.0, 0.5),) + 2 * ((-1.0, 0.5, 0.5),)

OPTIM4RL_GRIDS = {
    "small_dense_short": GridSpec(height=4, width=6, objects=_SMALL, max_steps=50),
    "small_dense_long": GridSpec(height=6, width=4, objects=_SMALL, max_steps=500),
    "big_sparse_short": GridSpec(height=10, width=12, objects=_BIG_SPARSE, max_steps=50),
    "big_sparse_long": GridSpec(height=12, width=10, objects=_BIG_SPARSE, max_steps=500),
    "big_dense_short": GridSpec(height=9, width=13, objects=_BIG_DENSE, max_steps=50),
    "big_dense_long": GridSpec(height=13, width=9, objects=_BIG_DENSE, max_steps=500),
}
"""task name -> spec; Optim4RL's reward scales for its 6-grid run are a ``reward_scale`` option, default 1"""
