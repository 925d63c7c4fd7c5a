"""Declare each hyperparameter once; spaces, decoding and validation derive from it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class Hyperparameter:
    """One controllable hyperparameter and its range.

    ``Hyperparameter("lr", 1e-5, 1e-2, log=True, default=3e-4)``: a Box
    action of -1 means ``low``, +1 means ``high``, interpolated on a log scale
    when ``log`` is set.
    """

    name: str
    """the learner's name for it (a field of its hyperparameter dataclass)"""
    low: float
    """smallest value an action can set"""
    high: float
    """largest value an action can set"""
    log: bool = False
    """interpolate on a log scale (learning rates, entropy weights)"""
    integer: bool = False
    """round decoded values to integers (minibatch size, epochs)"""
    default: float | None = None
    """value the ``static`` baseline holds; the range's midpoint when None"""

    def __post_init__(self) -> None:
        for field in ("low", "high"):
            if not math.isfinite(getattr(self, field)):
                raise ValueError(f"hyperparameter {self.name!r}: {field} must be finite, got {getattr(self, field)}")
        if not self.low < self.high:
            raise ValueError(f"hyperparameter {self.name!r}: low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"hyperparameter {self.name!r}: a log-scale range needs low > 0, got {self.low}")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"hyperparameter {self.name!r}: default {self.default} outside [{self.low}, {self.high}]")

    @property
    def resolved_default(self) -> float:
        return self.default if self.default is not None else self.from_unit(0.0)

    def from_unit(self, u: float) -> float:
        """Map ``u`` in [-1, 1] onto the range."""
        frac = (u + 1.0) / 2.0
        if self.log:
            value = math.exp(math.log(self.low) + frac * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + frac * (self.high - self.low)
        value = min(max(value, self.low), self.high)
        return float(round(value)) if self.integer else value

    def to_unit(self, value: float) -> float:
        """Inverse of ``from_unit`` (before integer rounding)."""
        if self.log:
            frac = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            frac = (value - self.low) / (self.high - self.low)
        return float(np.clip(2.0 * frac - 1.0, -1.0, 1.0))

    def grid(self, bins: int | Sequence[float]) -> np.ndarray:
        """The values of a discrete action: ``bins`` evenly spaced points, or explicit values."""
        if isinstance(bins, (int, np.integer)):
            if bins < 2:
                raise ValueError(f"hyperparameter {self.name!r}: bins must be >= 2, got {bins}")
            return np.array([self.from_unit(u) for u in np.linspace(-1.0, 1.0, int(bins))])
        values = np.asarray(bins, dtype=np.float64)
        if values.ndim != 1 or len(values) < 1 or not np.all((values >= self.low) & (values <= self.high)):
            raise ValueError(f"hyperparameter {self.name!r}: bin values {list(values)} must lie in [{self.low}, {self.high}]")
        return values


class HyperparameterSpace:
    """An ordered set of hyperparameters and the action encoding on top of them.

    ``action_type="continuous"`` gives ``Box(-1, 1, (k,), float32)``;
    ``"discrete"`` gives ``MultiDiscrete`` with one grid per hyperparameter.
    """

    def __init__(
        self,
        hyperparameters: Sequence[Hyperparameter],
        *,
        action_type: str = "continuous",
        bins: int | Mapping[str, int | Sequence[float]] = 5,
    ) -> None:
        if not hyperparameters:
            raise ValueError("a HyperparameterSpace needs at least one hyperparameter")
        names = [h.name for h in hyperparameters]
        if len(set(names)) != len(names):
            raise ValueError(f"hyperparameter names must be unique, got {names}")
        if action_type not in ("continuous", "discrete"):
            raise ValueError(f"action_type must be 'continuous' or 'discrete', got {action_type!r}")
        self.hyperparameters = tuple(hyperparameters)
        self.action_type = action_type
        if isinstance(bins, Mapping):
            unknown = set(bins) - set(names)
            if unknown:
                raise ValueError(f"bins given for unknown hyperparameters {sorted(unknown)}; controlled: {names}")
            self.grids = tuple(h.grid(bins.get(h.name, 5)) for h in hyperparameters)
        else:
            self.grids = tuple(h.grid(bins) for h in hyperparameters)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hyperparameters)

    def __len__(self) -> int:
        return len(self.hyperparameters)

    def __repr__(self) -> str:
        parts = [f"{h.name}[{h.low:g}, {h.high:g}{', log' if h.log else ''}]" for h in self.hyperparameters]
        return f"HyperparameterSpace({', '.join(parts)}, {self.action_type})"

    @property
    def action_space(self) -> spaces.Space:
        if self.action_type == "continuous":
            return spaces.Box(-1.0, 1.0, (len(self),), dtype=np.float32)
        return spaces.MultiDiscrete([len(g) for g in self.grids])

    def defaults(self) -> dict[str, float]:
        return {h.name: h.resolved_default for h in self.hyperparameters}

    def decode(self, action: object) -> dict[str, float]:
        """Action -> ``{name: value}``; a ``ValueError`` names what is wrong, nothing else happens."""
        arr = self._as_array(action)
        if self.action_type == "continuous":
            return {h.name: h.from_unit(float(u)) for h, u in zip(self.hyperparameters, arr)}
        return {h.name: float(g[int(i)]) for h, g, i in zip(self.hyperparameters, self.grids, arr)}

    def encode(self, values: Mapping[str, float]) -> np.ndarray:
        """``{name: value}`` -> the action that decodes to it (nearest bin when discrete)."""
        missing = set(self.names) - set(values)
        if missing:
            raise ValueError(f"values missing for hyperparameters {sorted(missing)}")
        if self.action_type == "continuous":
            return np.array([h.to_unit(values[h.name]) for h in self.hyperparameters], dtype=np.float32)
        return np.array([self._nearest(h, g, values[h.name]) for h, g in zip(self.hyperparameters, self.grids)], dtype=np.int64)

    @staticmethod
    def _nearest(h: Hyperparameter, grid: np.ndarray, value: float) -> int:
        scale = np.log if h.log else (lambda x: x)
        return int(np.argmin(np.abs(scale(grid) - scale(value))))

    def _as_array(self, action: object) -> np.ndarray:
        try:
            arr = np.asarray(action)
        except Exception as err:  # ragged lists and the like
            raise ValueError(f"action {action!r} is not an array of numbers for {list(self.names)}") from err
        if arr.shape != (len(self),):
            raise ValueError(f"action has shape {arr.shape}; expected ({len(self)},), one entry for each of {list(self.names)}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise ValueError(f"action has dtype {arr.dtype}; expected real numbers for {list(self.names)}")
        arr = arr.astype(np.float64)
        sizes = [len(g) for g in self.grids]
        for h, x, size in zip(self.hyperparameters, arr, sizes):
            if not np.isfinite(x):
                raise ValueError(f"action for hyperparameter {h.name!r} is {x}; it must be finite")
            if self.action_type == "continuous" and not -1.0 - 1e-6 <= x <= 1.0 + 1e-6:
                raise ValueError(f"action for hyperparameter {h.name!r} is {x}; it must lie in [-1, 1]")
            if self.action_type == "discrete" and (x != int(x) or not 0 <= x < size):
                raise ValueError(f"action for hyperparameter {h.name!r} is {x}; it must be an integer bin in [0, {size - 1}]")
        return arr

    def with_ranges(self, overrides: Mapping[str, tuple[float, float] | None]) -> list[Hyperparameter]:
        """Hyperparameters selected by ``overrides`` keys, with ``(low, high)`` replacing the range."""
        by_name = {h.name: h for h in self.hyperparameters}
        chosen = []
        for name, rng in overrides.items():
            if name not in by_name:
                raise ValueError(f"unknown hyperparameter {name!r}; this id can control {sorted(by_name)}")
            h = by_name[name]
            if rng is not None:
                low, high = _parse_range(name, rng)
                # Keep the id's default where the new range allows it, else its nearest end.
                default = None if h.default is None else min(max(h.default, low), high)
                h = replace(h, low=low, high=high, default=default)
            chosen.append(h)
        return chosen


def _parse_range(name: str, rng: object) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in rng)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(f"range for hyperparameter {name!r} must be (low, high) or None, got {rng!r}") from err
    return low, high
