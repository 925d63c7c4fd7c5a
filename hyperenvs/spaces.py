"""Action spaces over declared hyperparameters: encoding, decoding, bins and validation.

Each hyperparameter is declared once, next to its algorithm (``agents.hparams``); this module
re-exports ``Hyperparameter`` and builds the Box or MultiDiscrete action on top of declarations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from gymnasium import spaces

from agents.hparams import Hyperparameter

__all__ = ["Hyperparameter", "HyperparameterSpace"]


class HyperparameterSpace:
    """An ordered set of hyperparameters and the action encoding on top of them.

    ``action_type="continuous"`` gives ``Box(-1, 1, (k,), float32)``;
    ``"discrete"`` gives ``MultiDiscrete`` with one grid per hyperparameter: its declared bins,
    or ``bins`` (a count for all, or per-name counts or values; names left out keep their declared bins).
    """

    def __init__(
        self,
        hyperparameters: Sequence[Hyperparameter],
        *,
        action_type: str = "continuous",
        bins: int | Mapping[str, int | Sequence[float]] | None = None,
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
            self.grids = tuple(h.grid(bins.get(h.name)) for h in hyperparameters)
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
        """Hyperparameters selected by ``overrides`` keys, with ``(low, high)`` replacing the range.

        A replaced range drops the declared bins (they belong to the declared range): its
        discrete grid is ``FALLBACK_BINS`` evenly spaced points unless ``bins`` says otherwise.
        """
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
                h = replace(h, low=low, high=high, default=default, bins=None, multipliers=None)
            chosen.append(h)
        return chosen


def _parse_range(name: str, rng: object) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in rng)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(f"range for hyperparameter {name!r} must be (low, high) or None, got {rng!r}") from err
    return low, high
