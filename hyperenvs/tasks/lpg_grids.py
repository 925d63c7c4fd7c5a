"""LPG's gridworlds (Oh et al. 2020, appendix A.1 tabular and A.2 random), from the paper's tables.

The tables give each grid's size, objects ``N x [reward, p_terminate, p_respawn]``
and horizon, and no inner walls, so every grid is an open room of that size
(the walkable interior) inside a wall border.

- Tabular (A.1): object cells drawn once per lifetime; the observation is the
  state index ``agent cell * 2**K + present-object bits`` (the paper's
  ``p x 2**m`` states).
- Random (A.2): positions drawn each episode, objects reappear at random cells;
  the observation is one binary plane per object type plus one for the agent,
  over the interior (the paper's ``{0, 1}^{N x H x W}``; the agent plane is ours:
  the agent must be seen).

Both take ``collect_actions=True`` for the 18-action set (9 moves + 9 collect).
"""

from __future__ import annotations

from hyperenvs.tasks.gridworld import GridSpec

_DENSE = 2 * ((1.0, 0.0, 0.05),) + ((-1.0, 0.5, 0.1), (-1.0, 0.0, 0.5))
_LONG = 2 * ((1.0, 0.0, 0.01),) + 2 * ((-1.0, 0.5, 1.0),)


def _tabular(height: int, width: int, objects: tuple, max_steps: int) -> GridSpec:
    return GridSpec(height=height, width=width, objects=objects, max_steps=max_steps, positions="lifetime", observation="index")


def _random(height: int, width: int, objects: tuple, max_steps: int) -> GridSpec:
    return GridSpec(height=height, width=width, objects=objects, max_steps=max_steps, channels="type", border_in_obs=False)


LPG_TABULAR_GRIDS = {
    "lpg_dense": _tabular(11, 11, _DENSE, 500),
    "lpg_sparse": _tabular(13, 13, ((1.0, 1.0, 0.0), (-1.0, 1.0, 0.0)), 50),
    "lpg_long": _tabular(11, 11, _LONG, 1000),
    "lpg_longer": _tabular(7, 9, 2 * ((1.0, 0.1, 0.01),) + 5 * ((-1.0, 0.8, 1.0),), 2000),
    "lpg_long_dense": _tabular(11, 11, 4 * ((1.0, 0.0, 0.005),), 2000),
}
"""A.1: task name -> spec"""

LPG_RANDOM_GRIDS = {
    "lpg_random_dense": _random(11, 11, _DENSE, 500),
    "lpg_random_long": _random(11, 11, _LONG, 1000),
    "lpg_random_small": _random(5, 7, 2 * ((1.0, 0.0, 0.05),) + 2 * ((-1.0, 0.5, 0.1),), 500),
    "lpg_random_small_sparse": _random(5, 7, ((1.0, 1.0, 1.0),) + 2 * ((-1.0, 1.0, 1.0),), 50),
    "lpg_random_very_dense": _random(11, 11, ((1.0, 0.0, 1.0),), 2000),
}
"""A.2: task name -> spec"""
