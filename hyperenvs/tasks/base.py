"""The batched task protocol: B instances in one tensor state, automatic reset, one generator per lifetime.

A subclass keeps its state as tensors with a leading batch dimension and fills
three hooks: ``_advance`` (one transition of every instance), ``_reset_rows``
(new episodes for some rows) and ``_observe``.  ``step`` runs them with
same-step automatic reset: the observation it returns for a finished instance
is the first one of its next episode, and with ``record_final`` the last one of
the finished episode is kept in ``final_obs``.

Observation buffers.  With ``reuse_obs`` every step writes its observation into
a preallocated tensor and returns it (``final_obs`` has a buffer of its own):
the returned tensor is valid until the next ``step`` or ``reset``, so a caller
copies what it keeps.  Binary observations (gridworlds, Catch) are then drawn
by clearing the cells the buffer set last time and setting the new ones, a few
writes per instance instead of zeroing the whole tensor (13.5 MB per step for
big_dense_long at B = 4096, which costs more than the rest of the step).

Randomness and lifetimes.  A task holds ``lifetimes`` groups of ``num_envs``
instances (rows ``j * num_envs .. (j + 1) * num_envs - 1`` are lifetime ``j``),
one ``torch.Generator`` per lifetime.  Every random number is a float32
uniform drawn for some rows (``_uniform``/``_integers``): each lifetime's share
comes from its own generator, in row order, so the rows of lifetime ``j``
evolve exactly as a task with ``lifetimes=1`` seeded like lifetime ``j`` (the
population of ``hyperenvs.population`` steps N lifetimes as one such task).
``reset(seed)`` seeds every lifetime (one seed each); ``restart_lifetimes``
starts chosen lifetimes afresh without touching the others.  Draws a lifetime
fixes (LPG's object layouts, a chain's length) happen only when a lifetime is
seeded (or on the first reset), so a reset without a seed starts new episodes
of the same lifetimes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch


def check_num_envs(num_envs: int, field: str = "num_envs") -> int:
    """``num_envs`` as an int, or a ValueError naming it."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"{field} must be a positive integer, got {num_envs!r}")
    return int(num_envs)


def lifetime_specs(spec: Any, lifetimes: int, kind: type) -> tuple[Any, ...]:
    """``spec`` -- one ``kind`` for every lifetime, or a sequence of one per lifetime -- as one per lifetime."""
    specs = (spec,) * lifetimes if isinstance(spec, kind) else tuple(spec)
    if len(specs) != lifetimes:
        raise ValueError(f"spec must be one {kind.__name__} or one per lifetime ({lifetimes}), got {len(specs)}")
    for one in specs:
        if not isinstance(one, kind):
            raise TypeError(f"spec must hold {kind.__name__}s, got {type(one).__name__}")
    return specs


def _leading(lone: torch.Tensor) -> tuple[slice, ...]:
    """The index of a lone task's row tensor inside a grouped one's rows: a task of several specs pads per-row
    columns (a grid's objects) to its widest lifetime."""
    return (slice(None), *(slice(0, n) for n in lone.shape[1:]))


def _random_seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**63)


class BatchedTask(ABC):
    """``lifetimes * num_envs`` instances of one task stepped as one tensor program on ``device``."""

    single_observation_space: gym.Space
    """the space of one instance's observation"""
    single_action_space: gym.spaces.Discrete
    """the space of one instance's action"""
    groups_lifetimes: ClassVar[bool] = False
    """whether the task draws every random number through ``_uniform`` (so it may hold several lifetimes)"""
    row_state: ClassVar[tuple[str, ...]] = ()
    """the per-instance state tensors (leading dim ``num_envs``): what ``load_lifetime`` copies"""

    def __init__(
        self,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        record_final: bool = False,
        reuse_obs: bool = False,
        lifetimes: int = 1,
    ) -> None:
        self.envs_per_lifetime = check_num_envs(num_envs)
        """instances of one lifetime (the rows of lifetime ``j`` are ``j * envs_per_lifetime ...``)"""
        self.lifetimes = check_num_envs(lifetimes, "lifetimes")
        """lifetimes held side by side, each with its own generator"""
        if self.lifetimes > 1 and not self.groups_lifetimes:
            raise ValueError(f"lifetimes must be 1 for {type(self).__name__}, whose draws are not split by lifetime")
        self.num_envs = self.envs_per_lifetime * self.lifetimes
        """all rows: ``lifetimes * envs_per_lifetime``"""
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device) for _ in range(self.lifetimes)]
        """one generator per lifetime"""
        self.record_final = record_final
        self.reuse_obs = reuse_obs
        self._buffers: dict[str, Any] = {}
        self._slot = "obs"
        self.final_obs: torch.Tensor | None = None
        self._seeded = False
        self._all_rows = torch.arange(self.num_envs, device=self.device)

    @property
    def generator(self) -> torch.Generator:
        """The generator of a task of one lifetime."""
        if self.lifetimes != 1:
            raise AttributeError(f"a task of {self.lifetimes} lifetimes has one generator each: use generators[j]")
        return self.generators[0]

    # ---------------------------------------------------------------- public
    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Start a new episode in every instance; a seed (one per lifetime, or the first reset) also draws new lifetimes."""
        if seed is not None or not self._seeded:
            for g, s in zip(self.generators, self._seeds(seed)):
                g.manual_seed(s)
            self._seeded = True
            self._new_lifetimes(self._all_rows)
        self._reset_rows(self._all_rows)
        return self._observe()

    def restart_lifetimes(self, lifetimes: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """Start ``lifetimes`` afresh, lifetime ``lifetimes[i]`` seeded with ``seeds[i]``, as ``reset(seed)`` starts a
        task of one lifetime; the other lifetimes' rows and generators are untouched.  Returns the new rows'
        observations, ``[len(lifetimes) * envs_per_lifetime, ...]`` in increasing lifetime order."""
        if not self._seeded:
            raise RuntimeError("call reset() before restart_lifetimes()")
        if len(lifetimes) != len(seeds) or len(set(lifetimes)) != len(lifetimes):
            raise ValueError(f"lifetimes must be distinct and match seeds one to one, got {list(lifetimes)} and {list(seeds)}")
        order = sorted(range(len(lifetimes)), key=lambda i: lifetimes[i])
        for i in order:
            if not 0 <= lifetimes[i] < self.lifetimes:
                raise ValueError(f"lifetimes must lie in [0, {self.lifetimes}), got {lifetimes[i]}")
            self.generators[lifetimes[i]].manual_seed(int(seeds[i]))
        b = self.envs_per_lifetime
        rows = torch.cat([torch.arange(lifetimes[i] * b, (lifetimes[i] + 1) * b, device=self.device) for i in order])
        self._new_lifetimes(rows)
        self._reset_rows(rows)
        return self._observe_rows(rows)

    def reset_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """New episodes in the instances ``rows`` only (a 1-D index tensor); their lifetimes go on (nothing fixed per
        lifetime is redrawn), the other rows are untouched.  Returns the observations of ``rows``, in sorted order."""
        if not self._seeded:
            raise RuntimeError("call reset() before reset_rows()")
        rows = torch.unique(torch.as_tensor(rows, dtype=torch.long, device=self.device).flatten())
        if rows.numel() and (int(rows[0]) < 0 or int(rows[-1]) >= self.num_envs):
            raise ValueError(f"rows must lie in [0, {self.num_envs}), got {rows.tolist()}")
        self._reset_rows(rows)
        return self._observe_rows(rows)

    def load_lifetime(self, j: int, lone: BatchedTask) -> None:
        """Make lifetime ``j`` (its rows and its generator) the one ``lone`` lives: a seeded task of one lifetime
        of the same kind and size, in whatever state.  ``store_lifetime`` copies the other way."""
        self._check_lone(j, lone)
        rows = slice(j * self.envs_per_lifetime, (j + 1) * self.envs_per_lifetime)
        for name in self.row_state:
            theirs = getattr(lone, name)
            getattr(self, name)[rows][_leading(theirs)] = self._from_lone(name, j, theirs)
        self.generators[j].set_state(lone.generator.get_state())
        self._seeded = True

    def store_lifetime(self, j: int, lone: BatchedTask) -> None:
        """Copy lifetime ``j``'s rows and generator state into ``lone`` (the inverse of ``load_lifetime``)."""
        self._check_lone(j, lone)
        rows = slice(j * self.envs_per_lifetime, (j + 1) * self.envs_per_lifetime)
        for name in self.row_state:
            theirs = getattr(lone, name)
            theirs.copy_(self._from_lone(name, j, getattr(self, name)[rows][_leading(theirs)], back=True))
        lone.generator.set_state(self.generators[j].get_state())

    def _check_lone(self, j: int, lone: BatchedTask) -> None:
        if not 0 <= j < self.lifetimes:
            raise ValueError(f"lifetime must lie in [0, {self.lifetimes}), got {j}")
        same = type(lone) is type(self) and getattr(lone, "spec", None) == self.lifetime_spec(j)
        if not same or lone.lifetimes != 1 or lone.envs_per_lifetime != self.envs_per_lifetime or not lone._seeded:
            raise ValueError(f"lone must be a seeded {type(self).__name__} of one lifetime of {self.envs_per_lifetime} instances")

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Act in every instance: ``(obs, reward, terminated, truncated)``, finished ones already reset."""
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        action = self._check_action(action)
        reward, terminated, truncated = self._advance(action)
        if self.record_final:
            self._slot = "final"  # a buffer of its own, so the next observation does not overwrite it
            try:
                self.final_obs = self._observe()
            finally:
                self._slot = "obs"
        self._reset_rows(self._ended(terminated, truncated))
        return self._observe(), reward, terminated, truncated

    def _ended(self, terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
        """The instances whose episode ended, as sorted indices (on CPU found in NumPy: a microsecond, not ten)."""
        if self.device.type == "cpu":
            return torch.from_numpy(np.flatnonzero(terminated.numpy() | truncated.numpy()))
        return (terminated | truncated).nonzero().squeeze(1)

    # ----------------------------------------------------------------- hooks
    def _from_lone(self, name: str, j: int, value: torch.Tensor, back: bool = False) -> torch.Tensor:
        """Row state ``name`` of a lone task as lifetime ``j`` holds it (``back``: the other way); the same values
        unless the task numbers things per lifetime (a ``GridWorld`` of several maps numbers its cells globally)."""
        return value

    def lifetime_spec(self, j: int) -> Any:
        """What lifetime ``j`` runs (a task of several specs gives each lifetime its own; else the task's ``spec``)."""
        return getattr(self, "spec", None)

    def _new_lifetimes(self, rows: torch.Tensor) -> None:  # noqa: B027  (optional hook: most tasks fix nothing per lifetime)
        """Draw what stays fixed for a lifetime in the instances ``rows`` (nothing by default)."""

    @abstractmethod
    def _reset_rows(self, rows: torch.Tensor) -> None:
        """Start new episodes in the instances ``rows`` (a sorted 1-D index tensor, maybe empty)."""

    @abstractmethod
    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One transition of every instance: ``(reward float32, terminated bool, truncated bool)``."""

    @abstractmethod
    def _observe(self) -> torch.Tensor:
        """The current observation of every instance (a new tensor, or with ``reuse_obs`` the slot's buffer)."""

    def _observe_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The current observations of ``rows`` only (a task whose observation draws must draw for those rows alone)."""
        return self._observe()[rows]

    # --------------------------------------------------------------- helpers
    def _seeds(self, seed: int | Sequence[int] | None) -> list[int]:
        if seed is None:
            return [_random_seed() for _ in range(self.lifetimes)]
        if isinstance(seed, (int, np.integer)):
            if self.lifetimes != 1:
                raise ValueError(f"seed must hold one seed per lifetime ({self.lifetimes}), got the single seed {seed}")
            return [int(seed)]
        seeds = [int(s) for s in seed]
        if len(seeds) != self.lifetimes:
            raise ValueError(f"seed must hold one seed per lifetime ({self.lifetimes}), got {len(seeds)}")
        return seeds

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        action = torch.as_tensor(action, device=self.device)
        if action.shape != (self.num_envs,):
            raise ValueError(f"action must have shape ({self.num_envs},), got {tuple(action.shape)}")
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise ValueError(f"action must be an integer tensor, got {action.dtype}")
        n = self.single_action_space.n
        if action.device.type == "cpu":  # NumPy's reductions: a microsecond each, against aminmax's several
            values = action.numpy()
            low, high = int(values.min()), int(values.max())
        else:
            low, high = (int(v) for v in torch.aminmax(action))
        if low < 0 or high >= n:
            raise ValueError(f"action must lie in [0, {n}), got values from {low} to {high}")
        return action.long()

    def _zeros(self, *shape: int) -> torch.Tensor:
        """A zeroed tensor for an observation: a fresh one, or with ``reuse_obs`` the current slot's buffer."""
        if not self.reuse_obs:
            return torch.zeros(shape, device=self.device)
        return self._slot_buffer(shape).zero_()

    def _slot_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """With ``reuse_obs``, the current slot's observation buffer as it is (for a caller that overwrites it all)."""
        buf = self._buffers.get(self._slot)
        if buf is None or buf.shape != shape:
            buf = self._buffers[self._slot] = torch.zeros(shape, device=self.device)
        return buf

    def _binary(self, ones: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A ``(num_envs, *shape)`` float observation, 1 at the flat indices ``ones`` (into the whole tensor), else 0.

        With ``reuse_obs`` the slot's buffer is updated by clearing the cells it set last time.
        """
        full = (self.num_envs, *shape)
        ones = ones.reshape(-1)
        fill = self._buffers.get("fill")
        if fill is None or fill[0].numel() != ones.numel():  # scatter_ from a tensor: ~2.5x faster than index_put_
            zeros = torch.zeros(ones.numel(), device=self.device)
            fill = self._buffers["fill"] = (zeros, torch.ones_like(zeros))
        if not self.reuse_obs:
            return torch.zeros(self.num_envs * math.prod(shape), device=self.device).scatter_(0, ones, fill[1]).view(full)
        key = "binary_" + self._slot
        buf, last = self._buffers.get(key, (None, None))
        if buf is None or buf.shape != full:
            buf, last = torch.zeros(full, device=self.device), None
        flat = buf.view(-1)
        if last is not None:
            flat.scatter_(0, last, fill[0])
        flat.scatter_(0, ones, fill[1])
        self._buffers[key] = (buf, ones)
        return buf

    def _uniform(self, rows: torch.Tensor | None, *shape: int) -> torch.Tensor:
        """float32 uniforms in [0, 1), ``[len(rows), *shape]`` (all rows when None): each lifetime's from its generator."""
        if self.lifetimes == 1:
            n = self.num_envs if rows is None else rows.numel()
            return torch.rand((n, *shape), generator=self.generators[0], device=self.device)
        if rows is None:
            out = torch.empty((self.lifetimes, self.envs_per_lifetime, *shape), device=self.device)
            for block, g in zip(out, self.generators):
                block.uniform_(generator=g)
            return out.view(self.num_envs, *shape)
        out = torch.empty((rows.numel(), *shape), device=self.device)
        counts = torch.bincount(rows // self.envs_per_lifetime, minlength=self.lifetimes).tolist()
        start = 0
        for count, g in zip(counts, self.generators):
            if count:  # an empty draw leaves a generator as it is, so lone and grouped tasks agree
                out[start : start + count].uniform_(generator=g)
                start += count
        return out

    def _uniform_each(self, rows: torch.Tensor | None, shapes: Sequence[tuple[int, ...]], fill: float) -> torch.Tensor:
        """``_uniform`` where lifetime ``j`` draws ``shapes[j]`` a row (what a lone task of its own sizes draws, from its
        generator), laid into the elementwise largest shape, ``fill`` where a lifetime's shape ends: the draws of a
        task whose lifetimes differ in size (``GridWorld`` or ``DelayedChain`` of several specs)."""
        if len(set(shapes)) == 1:
            return self._uniform(rows, *shapes[0])
        if rows is None:  # every step's draw: each lifetime into its own stretch of one buffer, then one gather
            blocks, flat, index = self._each_buffers(tuple(shapes), fill)
            for block, g in zip(blocks, self.generators):
                if block is not None:
                    block.uniform_(generator=g)
            return flat[index]
        widest = tuple(max(sizes) for sizes in zip(*shapes))
        b = self.envs_per_lifetime
        counts = [b] * self.lifetimes if rows is None else torch.bincount(rows // b, minlength=self.lifetimes).tolist()
        out = torch.full((sum(counts), *widest), fill, device=self.device)
        start = 0
        for count, shape, g in zip(counts, shapes, self.generators):
            if count and math.prod(shape):  # an empty draw leaves a generator as it is, so lone and grouped tasks agree
                block = out[(slice(start, start + count), *(slice(0, n) for n in shape))]
                block.copy_(torch.empty((count, *shape), device=self.device).uniform_(generator=g))
            start += count
        return out

    def _each_buffers(self, shapes: tuple[tuple[int, ...], ...], fill: float) -> tuple[list, torch.Tensor, torch.Tensor]:
        """For ``_uniform_each`` of all rows: a flat buffer holding each lifetime's draw in turn and then ``fill``,
        a view of it per lifetime (None where it draws nothing), and the index that lays it out padded."""
        key = ("each", shapes, fill)
        if key not in self._buffers:
            b, widest = self.envs_per_lifetime, tuple(max(sizes) for sizes in zip(*shapes))
            sizes = [b * math.prod(shape) for shape in shapes]
            flat = torch.full((sum(sizes) + 1,), fill, device=self.device)
            index = torch.full((self.num_envs, *widest), sum(sizes), dtype=torch.long, device=self.device)
            blocks, start = [], 0
            for j, (shape, size) in enumerate(zip(shapes, sizes)):
                cells = torch.arange(start, start + size, device=self.device).view(b, *shape)
                index[(slice(j * b, (j + 1) * b), *(slice(0, n) for n in shape))] = cells
                blocks.append(flat[start : start + size] if size else None)
                start += size
            self._buffers[key] = (blocks, flat, index)
        return self._buffers[key]

    def _integers(self, high: int, rows: torch.Tensor | None, *shape: int) -> torch.Tensor:
        """Uniform integers in ``[0, high)`` from ``_uniform`` (floor of ``u * high``)."""
        return (self._uniform(rows, *shape) * high).long().clamp_(max=high - 1)
