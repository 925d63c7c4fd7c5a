"""bsuite's Catch, batched: a ball falls down a 10 x 5 board, a paddle on the bottom row catches it.

The ball starts in row 0 at a random column and falls one row per step; the
paddle starts in column 2 of the bottom row and action ``a`` in {0, 1, 2} moves
it by ``a - 1`` (clipped to the board).  After 9 steps the ball reaches the
bottom row and the episode ends with +1 if ball and paddle share a column,
else -1; every other reward is 0.  The observation is the board, 1 on the
ball's and the paddle's cells.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask

ROWS, COLUMNS = 10, 5


class Catch(BatchedTask):
    """``num_envs`` Catch boards in one tensor state."""

    groups_lifetimes = True
    row_state = ("ball_row", "ball_col", "paddle")

    def __init__(self, num_envs: int, **kwargs) -> None:
        """``kwargs``: ``device``, ``record_final``, ``reuse_obs``, ``lifetimes`` (see ``BatchedTask``)."""
        super().__init__(num_envs, **kwargs)
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (ROWS, COLUMNS), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(3)
        b, dev = self.num_envs, self.device
        self.ball_row = torch.zeros(b, dtype=torch.long, device=dev)
        """the ball's row, 0 at the top"""
        self.ball_col = torch.zeros(b, dtype=torch.long, device=dev)
        """the ball's column"""
        self.paddle = torch.zeros(b, dtype=torch.long, device=dev)
        """the paddle's column (it lives on the bottom row)"""
        self._rows_offset = torch.arange(b, device=dev) * (ROWS * COLUMNS)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        self.ball_row[rows] = 0
        self.ball_col[rows] = self._integers(COLUMNS, rows)
        self.paddle[rows] = COLUMNS // 2

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.paddle = (self.paddle + action - 1).clamp_(0, COLUMNS - 1)
        self.ball_row = self.ball_row + 1
        terminated = self.ball_row == ROWS - 1
        caught = (self.ball_col == self.paddle).float() * 2.0 - 1.0
        reward = torch.where(terminated, caught, 0.0)
        return reward, terminated, torch.zeros_like(terminated)

    def _observe(self) -> torch.Tensor:
        ball = self._rows_offset + self.ball_row * COLUMNS + self.ball_col
        paddle = self._rows_offset + (ROWS - 1) * COLUMNS + self.paddle
        return self._binary(torch.stack([ball, paddle], 1), (ROWS, COLUMNS))
