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
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask, lifetime_specs

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
    """``num_envs`` instances of one :class:`GridSpec` in one tensor state (``lifetimes`` groups of them).

    ``spec`` may also be one spec per lifetime (index observations): the maps then lie side by side in one
    flat cell space, each lifetime with its own moves, free cells, objects (padded to the most objects, the
    padding never present) and horizon, and lifetime ``j`` steps and draws exactly as a lone task of
    ``spec[j]`` seeded like it would; tasks of several grids then step as one.
    """

    groups_lifetimes = True
    row_state = ("agent", "obj_pos", "present", "layout", "t", "collect_rows")

    def __init__(
        self,
        spec: GridSpec | Sequence[GridSpec],
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
        self.specs = _lifetime_specs(spec, self.lifetimes)
        """each lifetime's spec"""
        if not np.isfinite(reward_scale):
            raise ValueError(f"reward_scale must be finite, got {reward_scale!r}")
        self.collect_actions = bool(collect_actions)
        self.single_action_space = gym.spaces.Discrete(18 if collect_actions else 9)
        self.mixed = len(set(self.specs)) > 1
        """whether the lifetimes run different specs (then ``spec`` is None)"""
        self.spec = None if self.mixed else self.specs[0]
        """the spec every lifetime runs (None for a task of several)"""
        self.positions, self.observation = self.specs[0].positions, self.specs[0].observation
        if self.mixed:
            self._init_mix(float(reward_scale))
        else:
            self._init_one(self.specs[0], float(reward_scale))
        self._init_state()
        self.collect_rows = torch.full((self.num_envs,), self.collect_actions, dtype=torch.bool, device=self.device)
        """per row: the 18-action rules (True) or the 9-action ones; only a task built with ``collect_actions`` may
        hold True (``set_action_set``)"""

    def lifetime_spec(self, j: int) -> GridSpec:
        return self.specs[j]

    def _from_lone(self, name: str, j: int, value: torch.Tensor, back: bool = False) -> torch.Tensor:
        if not self.mixed or name not in ("agent", "obj_pos", "layout"):
            return value
        shift = -self._map_start[j] if back else self._map_start[j]
        return torch.where(value >= 0, value + shift, value)  # cells move; a padding object's -2 stays

    def _init_one(self, spec: GridSpec, reward_scale: float) -> None:
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
        self.obj_reward = table[:, 0] * reward_scale
        self.obj_p_term, self.obj_p_respawn = table[:, 1], table[:, 2]
        self.deltas = torch.tensor([dr * cols + dc for dr, dc in MOVES], device=dev)
        self.max_steps: int | torch.Tensor = spec.max_steps
        """the horizon (per row in a task of several specs)"""
        self._init_observation(walls)

    def _init_mix(self, reward_scale: float) -> None:
        """Per-row tables for lifetimes of different specs: maps side by side in one flat cell space."""
        dev, e = self.device, self.envs_per_lifetime
        maps = list(dict.fromkeys(self.specs))
        walls = [m.wall_map() for m in maps]
        offsets = np.cumsum([0] + [w.size for w in walls])[:-1]
        free = [offset + np.flatnonzero(~w.ravel()) for offset, w in zip(offsets, walls)]
        k = self.num_objects = max(len(m.objects) for m in maps)
        for cells in free:
            if len(cells) < k + 1:  # a draw of k + 1 distinct cells in every map (the padding's cells are never used)
                raise ValueError(f"a grid of {len(cells)} free cells cannot share a task with grids of {k} objects")
        self.walls = torch.as_tensor(np.concatenate([w.ravel() for w in walls]), device=dev)
        self.cell_index = torch.full((self.walls.numel(),), -1, dtype=torch.long, device=dev)
        for cells in free:
            self.cell_index[torch.as_tensor(cells)] = torch.arange(len(cells), device=dev)
        self.bits = 2 ** torch.arange(k, device=dev)
        self.deltas = torch.tensor([dr * w.shape[1] + dc for w in walls for dr, dc in MOVES], device=dev)

        def rows(values: list) -> torch.Tensor:  # one value per lifetime -> one per row
            return torch.as_tensor(np.repeat(np.array(values), e, axis=0), device=dev)

        index = [maps.index(s) for s in self.specs]
        self._map_start = [int(offsets[i]) for i in index]
        """each lifetime's first cell in the flat cell space"""
        self._free_sizes = [len(free[i]) for i in index]
        self._objects = [len(s.objects) for s in self.specs]
        widest = max(self._free_sizes)
        self._free_rows = rows([np.pad(free[i], (0, widest - len(free[i])), constant_values=-1) for i in index])
        """each row's free cells (flat), padded with -1 to the largest map's count"""
        self._free_count = rows(self._free_sizes)
        self._move_start = rows([9 * i for i in index])
        self._stride = rows([2 ** len(s.objects) for s in self.specs])
        self.max_steps = rows([s.max_steps for s in self.specs])
        padded = [list(s.objects) + [(0.0, 0.0, 0.0)] * (k - len(s.objects)) for s in self.specs]
        table = rows(padded).float()
        self.obj_reward = table[..., 0] * reward_scale
        self.obj_p_term, self.obj_p_respawn = table[..., 1], table[..., 2]
        self._real = rows([[i < len(s.objects) for i in range(k)] for s in self.specs])
        """which object columns each row really has (the rest never appear)"""
        self.single_observation_space = gym.spaces.Discrete(max(len(f) * 2 ** len(m.objects) for f, m in zip(free, maps)))

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
            self._stride = 2**self.num_objects
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
        if self.observation == "index":
            return self.cell_index[self.agent] * self._stride + (self.present.long() * self.bits).sum(1)
        # an absent object marks the agent's pixel, which is 1 anyway: no masking, no spare column to copy out
        agent_px, obj_px = self.agent, self.obj_pos
        if self.pixel is not None:
            agent_px, obj_px = self.pixel[agent_px], self.pixel[obj_px]
        agent = (self.agent_offset + agent_px).unsqueeze(1)
        ones = torch.cat([torch.where(self.present, self.plane_offset + obj_px, agent), agent], 1)
        return self._binary(ones + self._row_offset, (self.num_planes, *self.obs_hw))

    # ------------------------------------------------------------- dynamics
    def _scores(self, rows: torch.Tensor | None, fill: float) -> torch.Tensor:
        """A uniform per free cell of each row's map, ``[n, free cells]`` (``fill`` past a smaller map's cells)."""
        if not self.mixed:
            return self._uniform(rows, self.num_free)
        return self._uniform_each(rows, [(n,) for n in self._free_sizes], fill)

    def _cells(self, rows: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        """Free-cell numbers ``[n, k]`` within each row's map -> flat cells."""
        if not self.mixed:
            return self.free[index]
        return torch.gather(self._free_rows if rows is None else self._free_rows[rows], 1, index)

    def _new_lifetimes(self, rows: torch.Tensor) -> None:
        if self.positions == "lifetime":
            cells = self._cells(rows, self._distinct_cells(rows, self.num_objects))
            # a padding object gets no cell (-2 matches none), so the agent's start ignores it, as a lone task's does
            self.layout[rows] = cells.masked_fill(~self._real[rows], -2) if self.mixed else cells

    def _reset_rows(self, rows: torch.Tensor) -> None:
        if not rows.numel():  # most steps end no episode: skip the writes (an empty draw takes nothing from a generator)
            return
        k = self.num_objects
        if self.positions == "lifetime":
            # the agent starts on a random free cell that holds no object
            score, layout = self._scores(rows, 3.0), self.layout[rows]
            free = self._free_rows[rows].unsqueeze(1) if self.mixed else self.free.view(1, 1, -1)
            taken = (free == layout.unsqueeze(2)).any(1)
            self.agent[rows] = self._cells(rows, score.masked_fill(taken, 2.0).argmin(1, keepdim=True))[:, 0]
            self.obj_pos[rows] = layout
        else:
            cells = self._cells(rows, self._distinct_cells(rows, k + 1))
            self.agent[rows] = cells[:, 0]
            self.obj_pos[rows] = cells[:, 1:]
        self.present[rows] = self._real[rows] if self.mixed else True
        self.t[rows] = 0

    def _distinct_cells(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        # the k largest of iid uniforms: a uniformly random k-subset in random order (topk is ~15x cheaper than argsort
        # here); a smaller map's padding scores -1, below every cell's
        return self._scores(rows, -1.0).topk(k, dim=1).indices

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        direction = action % 9
        delta = self.deltas[self._move_start + direction if self.mixed else direction]
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
        k = self.num_objects
        # a padding object draws nothing and never terminates nor respawns (probability 0 against a fill of 1)
        u = self._uniform_each(None, [(2, n) for n in self._objects], 1.0) if self.mixed else self._uniform(None, 2, k)
        reward = (collected * self.obj_reward).sum(1)
        terminated = (collected & (u[:, 0] < self.obj_p_term)).any(1)
        respawn = ~(self.present & ~collected) & (u[:, 1] < self.obj_p_respawn)
        if self.positions == "lifetime":
            new_pos = self.layout
        elif self.mixed:
            count = self._free_count.unsqueeze(1)
            draw = (self._uniform_each(None, [(n,) for n in self._objects], 0.0) * count).long()
            new_pos = self._cells(None, torch.minimum(draw, count - 1))
        else:
            new_pos = self.free[self._integers(self.num_free, None, k)]
        self.obj_pos = torch.where(respawn, new_pos, self.obj_pos)
        self.present = (self.present & ~collected) | respawn
        self.t = self.t + 1
        truncated = (self.t >= self.max_steps) & ~terminated
        return reward, terminated, truncated


def _lifetime_specs(spec: GridSpec | Sequence[GridSpec], lifetimes: int) -> tuple[GridSpec, ...]:
    """One checked spec per lifetime; several different ones must share index observations and a position mode."""
    specs = lifetime_specs(spec, lifetimes, GridSpec)
    for one in specs:
        _check_spec(one)
    if len(set(specs)) > 1:
        if any(one.observation != "index" for one in specs):
            raise ValueError("lifetimes of different grids share a task only with index observations (planes differ in shape)")
        if len({one.positions for one in specs}) > 1:
            modes = sorted({one.positions for one in specs})
            raise ValueError(f"lifetimes of different grids must share a position mode, got {modes}")
    return specs


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
