"""Plain numpy single-instance Catch and Optim4RL gridworld: the fairest per-instance Gymnasium baseline.

The registered single envs (``HyperRLTasks/*-v0``) run the batched torch task
with B = 1 so that they match a batched task step for step; each step then
pays torch's per-operation overhead.  These two envs follow the same rules in
plain numpy (not the same random stream), so the benchmark can also show the
batched tasks against the fastest straightforward one-instance implementation.
Benchmark-only: not registered, not used by the library.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from hyperenvs.tasks.gridworld import MOVES, GridSpec


class NumpyCatch(gym.Env):
    """bsuite Catch, one board, numpy."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (10, 5), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.row, self.col, self.paddle = 0, int(self.np_random.integers(5)), 2
        return self._obs(), {}

    def step(self, action):
        self.paddle = min(max(self.paddle + int(action) - 1, 0), 4)
        self.row += 1
        done = self.row == 9
        reward = (1.0 if self.col == self.paddle else -1.0) if done else 0.0
        return self._obs(), reward, done, False, {}

    def _obs(self):
        board = np.zeros((10, 5), dtype=np.float32)
        board[self.row, self.col] = board[9, self.paddle] = 1.0
        return board


class NumpyGrid(gym.Env):
    """An Optim4RL gridworld (episode positions, 9 moves), one instance, numpy."""

    def __init__(self, spec: GridSpec) -> None:
        self.spec, walls = spec, spec.wall_map()
        self.shape, self.walls = walls.shape, walls.ravel()
        self.free = np.flatnonzero(~self.walls)
        self.deltas = np.array([dr * walls.shape[1] + dc for dr, dc in MOVES])
        self.table = np.array(spec.objects)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (len(spec.objects) + 1, *walls.shape), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(9)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        cells = self.np_random.choice(self.free, len(self.table) + 1, replace=False)
        self.agent, self.pos = int(cells[0]), cells[1:].copy()
        self.present, self.t = np.ones(len(self.table), dtype=bool), 0
        return self._obs(), {}

    def step(self, action):
        new = self.agent + self.deltas[int(action)]
        if not self.walls[new]:
            self.agent = int(new)
        collected = self.present & (self.pos == self.agent)
        u = self.np_random.random((2, len(self.table)))
        reward = float((self.table[:, 0] * collected).sum())
        terminated = bool((collected & (u[0] < self.table[:, 1])).any())
        respawn = ~(self.present & ~collected) & (u[1] < self.table[:, 2])
        self.pos = np.where(respawn, self.np_random.choice(self.free, len(self.table)), self.pos)
        self.present = (self.present & ~collected) | respawn
        self.t += 1
        return self._obs(), reward, terminated, self.t >= self.spec.max_steps and not terminated, {}

    def _obs(self):
        obs = np.zeros((len(self.table) + 1, self.walls.size), dtype=np.float32)
        obs[np.flatnonzero(self.present), self.pos[self.present]] = 1.0
        obs[-1, self.agent] = 1.0
        return obs.reshape(self.observation_space.shape)
