"""The object gridworld of Oh et al. (2020), as Optim4RL and LPG use it, batched in torch.

A map of walls and free cells (a one-cell wall border around an ``H x W``
interior unless a hand-built map is given), an agent and K objects, each
``[reward, p_terminate, p_respawn]``.  Per step: the agent moves (9 moves:
stay, 4 straight, 4 diagonal; a move into a wall leaves it in place), then per
object: collect -> reward -> terminate with ``p_terminate`` -> respawn with
``p_respawn`` (collected objects may respawn in the same step).  Objects do not
interact, so doing the K objects at once is the same as doing them in order.

Two position modes: ``"episode"`` (Optim4RL, LPG's random grids: agent and
objects at distinct random cells each episode, respawn at a random free cell,
which may hold the agent or another object) and ``"lifetime"`` (LPG's tabular
grids: object cells drawn once per lifetime, an object reappears at its own
cell, the agent starts at a random cell free of objects).  With the 18-action
set (LPG), actions 9..17 collect at the cell in direction ``a - 9`` without
moving, and walking onto an object does not collect it.  A task built with the
18-action set holds the rule per row (``collect_rows``): rows set back to the
9-action rules take actions 0..8 only (their agent masks the rest), so the
lifetimes of both action sets step as one task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask

# (row, col) offsets: stay, 4 straight, 4 diagonal
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(frozen=True, kw_only=True)
class GridSpec:
    """One gridworld: map, objects, horizon, and how it is observed."""

    height: int
    """rows of the walkable interior (the paper's H); the map adds a wall border"""
    width: int
    """columns of the walkable interior (the paper's W)"""
    objects: tuple[tuple[float, float, float], ...]
    """one ``(reward, p_terminate, p_respawn)`` per object"""
    max_steps: int
    """episode length limit (truncation)"""
    positions: str = "episode"
    """``"episode"``: positions redrawn each episode; ``"lifetime"``: object cells fixed per lifetime"""
    observation: str = "grid"
    """``"grid"``: binary ``(channels + 1, H, W)`` planes, agent last; ``"index"``: one integer state"""
    channels: str = "object"
    """grid planes per ``"object"`` (Optim4RL) or per object ``"type"`` (LPG's random grids)"""
    border_in_obs: bool = True
    """draw the planes over the full map with its border (Optim4RL) or over the interior only (LPG)"""
    walls: tuple[str, ...] | None = None
    """a hand-built full map, ``"#"`` wall and ``"."`` free, whose outer ring must be walls; overrides H x W"""

    def wall_map(self) -> np.ndarray:
        """The full map as a bool array, True on walls."""
        if self.walls is not None:
            rows = [[ch == "#" for ch in row] for row in self.walls]
            grid = np.array(rows, dtype=bool)
            if grid.ndim != 2 or not (grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()):
                raise ValueError("walls must be a rectangle whose outer ring is all '#'")
            return grid
        grid = np.ones((self.height + 2, self.width + 2), dtype=bool)
        grid[1:-1, 1:-1] = False
        return grid


class GridWorld(BatchedTask):
    """``num_envs`` instances of one :class:`GridSpec` in one tensor state."""

    groups_lifetimes = True
    row_state = ("agent", "obj_pos", "present", "layout", "t", "collect_rows")

    def __init__(
        self,
        spec: GridSpec,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        reward_scale: float = 1.0,
        collect_actions: bool = False,
        record_final: bool = False,
        reuse_obs: bool = False,
        lifetimes: int = 1,
    ) -> None:
        super().__init__(num_envs, device=device, record_final=record_final, reuse_obs=reuse_obs, lifetimes=lifetimes)
        _check_spec(spec)
        if not np.isfinite(reward_scale):
            raise ValueError(f"reward_scale must be finite, got {reward_scale!r}")
        self.spec = spec
        walls = spec.wall_map()
        self.map_shape = walls.shape
        cols, dev = walls.shape[1], self.device
        self.walls = torch.as_tensor(walls.ravel(), device=dev)
        self.free = torch.as_tensor(np.flatnonzero(~walls.ravel()), device=dev)
        self.num_free = int(self.free.numel())
        self.num_objects = len(spec.objects)
        if self.num_free < self.num_objects + 1:
            raise ValueError(f"the map has {self.num_free} free cells, too few for {self.num_objects} objects and the agent")
        table = torch.tensor(spec.objects, dtype=torch.float32, device=dev)
        self.obj_reward = table[:, 0] * float(reward_scale)
        self.obj_p_term, self.obj_p_respawn = table[:, 1], table[:, 2]
        self.deltas = torch.tensor([dr * cols + dc for dr, dc in MOVES], device=dev)
        self.collect_actions = bool(collect_actions)
        self.single_action_space = gym.spaces.Discrete(18 if collect_actions else 9)
        self._init_observation(walls)
        self._init_state()
        self.collect_rows = torch.full((self.num_envs,), self.collect_actions, dtype=torch.bool, device=self.device)
        """per row: the 18-action rules (True) or the 9-action ones; only a task built with ``collect_actions`` may
        hold True (``set_action_set``)"""

    def set_action_set(self, rows: torch.Tensor, collect_actions: bool) -> None:
        """Give ``rows`` the 18-action rules (``True``) or the 9-action ones; a 9-action task has only the latter."""
        if collect_actions and not self.collect_actions:
            raise ValueError("this GridWorld was built with the 9-action set: build it with collect_actions=True")
        self.collect_rows[torch.as_tensor(rows, dtype=torch.long, device=self.device)] = bool(collect_actions)

    def _init_state(self) -> None:
        b, k, dev = self.num_envs, self.num_objects, self.device
        self.agent = torch.zeros(b, dtype=torch.long, device=dev)
        """the agent's cell, a flat index into the full map"""
        self.obj_pos = torch.zeros(b, k, dtype=torch.long, device=dev)
        """each object's cell (flat index)"""
        self.present = torch.zeros(b, k, dtype=torch.bool, device=dev)
        """whether each object is on the map"""
        self.layout = torch.zeros(b, k, dtype=torch.long, device=dev)
        """lifetime mode: each object's fixed cell"""
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        """steps taken in the current episode"""

    # ------------------------------------------------------------ observation
    def _init_observation(self, walls: np.ndarray) -> None:
        spec, dev = self.spec, self.device
        if spec.observation == "index":
            # state = free-cell index of the agent * 2**K + bitmask of present objects
            self.cell_index = torch.full((walls.size,), -1, dtype=torch.long, device=dev)
            self.cell_index[self.free] = torch.arange(self.num_free, device=dev)
            self.bits = 2 ** torch.arange(self.num_objects, device=dev)
            self.single_observation_space = gym.spaces.Discrete(self.num_free * 2**self.num_objects)
            return
        if spec.channels == "type":
            types = list(dict.fromkeys(spec.objects))
            plane = [types.index(o) for o in spec.objects]
        else:
            plane = list(range(self.num_objects))
        self.num_planes = max(plane, default=-1) + 2
        rows, cols = walls.shape
        self.pixel: torch.Tensor | None = None  # None: a map cell's flat index is its pixel
        if spec.border_in_obs:
            self.obs_hw = (rows, cols)
        else:
            self.obs_hw = (rows - 2, cols - 2)
            r, c = np.divmod(np.arange(walls.size), cols)
            pixel = np.clip(r - 1, 0, rows - 3) * (cols - 2) + np.clip(c - 1, 0, cols - 3)
            self.pixel = torch.as_tensor(pixel, device=dev)
        self.plane_offset = torch.tensor(plane, device=dev) * (self.obs_hw[0] * self.obs_hw[1])
        self.agent_offset = (self.num_planes - 1) * self.obs_hw[0] * self.obs_hw[1]
        shape = (self.num_planes, *self.obs_hw)
        self._row_offset = (torch.arange(self.num_envs, device=dev) * math.prod(shape)).unsqueeze(1)
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, shape, dtype=np.float32)

    def _observe(self) -> torch.Tensor:
        if self.spec.observation == "index":
            return self.cell_index[self.agent] * 2**self.num_objects + (self.present.long() * self.bits).sum(1)
        # an absent object marks the agent's pixel, which is 1 anyway: no masking, no spare column to copy out
        agent_px, obj_px = self.agent, self.obj_pos
        if self.pixel is not None:
            agent_px, obj_px = self.pixel[agent_px], self.pixel[obj_px]
        agent = (self.agent_offset + agent_px).unsqueeze(1)
        ones = torch.cat([torch.where(self.present, self.plane_offset + obj_px, agent), agent], 1)
        return self._binary(ones + self._row_offset, (self.num_planes, *self.obs_hw))

    # ------------------------------------------------------------- dynamics
    def _new_lifetimes(self, rows: torch.Tensor) -> None:
        if self.spec.positions == "lifetime":
            self.layout[rows] = self.free[self._distinct_cells(rows, self.num_objects)]

    def _reset_rows(self, rows: torch.Tensor) -> None:
        k = self.num_objects
        if self.spec.positions == "lifetime":
            # the agent starts on a random free cell that holds no object
            score = self._uniform(rows, self.num_free)
            taken = (self.free.view(1, 1, -1) == self.layout[rows].unsqueeze(2)).any(1)
            self.agent[rows] = self.free[score.masked_fill(taken, 2.0).argmin(1)]
            self.obj_pos[rows] = self.layout[rows]
        else:
            cells = self.free[self._distinct_cells(rows, k + 1)]
            self.agent[rows] = cells[:, 0]
            self.obj_pos[rows] = cells[:, 1:]
        self.present[rows] = True
        self.t[rows] = 0

    def _distinct_cells(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        # the k largest of iid uniforms: a uniformly random k-subset in random order (topk is ~15x cheaper than argsort here)
        return self._uniform(rows, self.num_free).topk(k, dim=1).indices

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        direction = action % 9
        delta = self.deltas[direction]
        if self.collect_actions:
            collecting = action >= 9  # never on a 9-action row: its actions are 0..8
            step_to = torch.where(collecting, self.agent, self.agent + delta)
        else:
            step_to = self.agent + delta
        self.agent = torch.where(self.walls[step_to], self.agent, step_to)
        if self.collect_actions:
            # 18-action rows collect only by a collect action, at the cell ahead; 9-action rows by walking on
            rule = self.collect_rows
            target = torch.where(rule, self.agent + delta, self.agent)
            collected = self.present & (self.obj_pos == target.unsqueeze(1)) & (collecting | ~rule).unsqueeze(1)
        else:
            collected = self.present & (self.obj_pos == self.agent.unsqueeze(1))
        u = self._uniform(None, 2, self.num_objects)
        reward = (collected * self.obj_reward).sum(1)
        terminated = (collected & (u[:, 0] < self.obj_p_term)).any(1)
        respawn = ~(self.present & ~collected) & (u[:, 1] < self.obj_p_respawn)
        if self.spec.positions == "lifetime":
            new_pos = self.layout
        else:
            new_pos = self.free[self._integers(self.num_free, None, self.num_objects)]
        self.obj_pos = torch.where(respawn, new_pos, self.obj_pos)
        self.present = (self.present & ~collected) | respawn
        self.t = self.t + 1
        truncated = (self.t >= self.spec.max_steps) & ~terminated
        return reward, terminated, truncated


def _check_spec(spec: GridSpec) -> None:
    for field, allowed in (("positions", ("episode", "lifetime")), ("observation", ("grid", "index"))):
        if getattr(spec, field) not in allowed:
            raise ValueError(f"{field} must be one of {allowed}, got {getattr(spec, field)!r}")
    if spec.channels not in ("object", "type"):
        raise ValueError(f"channels must be 'object' or 'type', got {spec.channels!r}")
    if spec.max_steps < 1:
        raise ValueError(f"max_steps must be positive, got {spec.max_steps}")
    for reward, p_term, p_respawn in spec.objects:
        if not (0.0 <= p_term <= 1.0 and 0.0 <= p_respawn <= 1.0):
            raise ValueError(f"objects: probabilities must lie in [0, 1], got {(reward, p_term, p_respawn)}")
