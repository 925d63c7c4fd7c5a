"""Declare each hyperparameter once, as a field of its algorithm's hyperparameter dataclass.

Torch-free, so that the registry and the spaces can read declarations cheaply::

    @declare
    @dataclass(frozen=True, kw_only=True)
    class ToyHyperparams:
        lr: float = hyperparameter(0.1, low=1e-3, high=1.0, log=True, multipliers=(0.5, 1, 2), doc="step size")

``declared(ToyHyperparams)`` then gives ``(Hyperparameter("lr", 1e-3, 1.0, log=True, default=0.1, ...),)``:
the one declaration the Box/MultiDiscrete spaces, decoding, validation, ``hyperrl list`` and the
README's tables derive from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np

FALLBACK_BINS = 5
"""evenly spaced bins of a hyperparameter that declares none (or whose range was replaced)"""

_KEY = "hyperparameter"


@dataclass(frozen=True)
class Hyperparameter:
    """One controllable hyperparameter: its range, scale, default and default discrete bins.

    ``Hyperparameter("lr", 1e-5, 1e-2, log=True, default=3e-4)``: a Box action of -1 means
    ``low``, +1 means ``high``, interpolated on a log scale when ``log`` is set.
    """

    name: str
    """the learner's name for it (a field of its hyperparameter dataclass)"""
    low: float
    """smallest value an action can set"""
    high: float
    """largest value an action can set"""
    _: KW_ONLY
    log: bool = False
    """interpolate on a log scale (learning rates, entropy weights)"""
    integer: bool = False
    """round decoded values to integers (minibatch size, epochs)"""
    default: float | None = None
    """value the ``static`` baseline holds; the range's midpoint when None"""
    doc: str = ""
    """what it does, in a line (its range, default and bins are printed from the fields)"""
    bins: tuple[float, ...] | None = None
    """default discrete values (must contain ``default``); None: see ``multipliers``"""
    multipliers: tuple[float, ...] | None = None
    """default discrete values as multiples of ``default`` (must contain 1), clipped to the range;
    with neither this nor ``bins``, ``FALLBACK_BINS`` evenly spaced points"""

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"hyperparameter {self.name!r}: {name} must be finite, got {getattr(self, name)}")
        if not self.low < self.high:
            raise ValueError(f"hyperparameter {self.name!r}: low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"hyperparameter {self.name!r}: a log-scale range needs low > 0, got {self.low}")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"hyperparameter {self.name!r}: default {self.default} outside [{self.low}, {self.high}]")
        self._check_bins()

    def _check_bins(self) -> None:
        if self.bins is not None and self.multipliers is not None:
            raise ValueError(f"hyperparameter {self.name!r}: declare bins or multipliers, not both")
        if self.bins is not None:
            object.__setattr__(self, "bins", tuple(float(b) for b in self.bins))
            self.grid(self.bins)  # the range check
            if self.default is not None and not np.isclose(self.bins, self.default, rtol=1e-12, atol=0).any():
                raise ValueError(
                    f"hyperparameter {self.name!r}: default {self.default} is not one of its bins {list(self.bins)}; "
                    "give bins that contain it"
                )
        if self.multipliers is not None:
            object.__setattr__(self, "multipliers", tuple(float(m) for m in self.multipliers))
            if self.default is None:
                raise ValueError(f"hyperparameter {self.name!r}: bin multipliers need a default to multiply")
            if not all(math.isfinite(m) and m > 0 for m in self.multipliers) or 1.0 not in self.multipliers:
                raise ValueError(
                    f"hyperparameter {self.name!r}: multipliers must be positive and contain 1 (the default), "
                    f"got {list(self.multipliers)}"
                )

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

    def grid(self, bins: int | Sequence[float] | None = None) -> np.ndarray:
        """The values of a discrete action: the declared bins (None), ``bins`` evenly spaced points, or explicit values."""
        if bins is None:
            return self._default_grid()
        if isinstance(bins, (int, np.integer)):
            if bins < 2:
                raise ValueError(f"hyperparameter {self.name!r}: bins must be >= 2, got {bins}")
            return np.array([self.from_unit(u) for u in np.linspace(-1.0, 1.0, int(bins))])
        values = np.asarray(bins, dtype=np.float64)
        if values.ndim != 1 or len(values) < 1 or not np.all((values >= self.low) & (values <= self.high)):
            raise ValueError(f"hyperparameter {self.name!r}: bin values {values.tolist()} must lie in [{self.low}, {self.high}]")
        return values

    def _default_grid(self) -> np.ndarray:
        if self.bins is not None:
            return np.array(self.bins)
        if self.multipliers is None:
            return self.grid(FALLBACK_BINS)
        values = np.clip(np.array(self.multipliers) * self.default, self.low, self.high)
        if self.integer:
            values = np.round(values)
        return np.unique(values)  # sorted; multipliers clipped at a range end collapse into one bin

    def describe(self) -> str:
        """``doc; [low, high] log, default d, bins {...}``: the declaration in one line."""
        scale = ", log" if self.log else ""
        kind = ", integer" if self.integer else ""
        bins = ", ".join(f"{b:g}" for b in self.grid())
        return f"{self.doc}; [{self.low:g}, {self.high:g}{scale}{kind}], default {self.resolved_default:g}, bins {{{bins}}}"


def hyperparameter(
    default: float,
    *,
    low: float,
    high: float,
    doc: str,
    log: bool = False,
    integer: bool = False,
    bins: Sequence[float] | None = None,
    multipliers: Sequence[float] | None = None,
) -> Any:
    """A hyperparameter dataclass field that carries its declaration (the arguments of ``Hyperparameter``)."""
    spec = {"low": low, "high": high, "log": log, "integer": integer, "default": default, "doc": doc}
    spec |= {"bins": None if bins is None else tuple(bins), "multipliers": None if multipliers is None else tuple(multipliers)}
    return dataclasses.field(default=default, metadata={_KEY: spec})


def declare(cls: type) -> type:
    """Class decorator over a dataclass whose every field is a ``hyperparameter(...)``.

    Builds and checks each ``Hyperparameter`` now (a bad declaration fails at import, naming the
    field) and appends their one-line descriptions to the class docstring.
    """
    out = []
    for f in dataclasses.fields(cls):
        if _KEY not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared: write `{f.name}: float = hyperparameter(...)`")
        if not f.metadata[_KEY]["doc"]:
            raise ValueError(f"{cls.__name__}.{f.name}: doc must say what the hyperparameter does")
        out.append(Hyperparameter(f.name, **f.metadata[_KEY]))
    cls.__hyperparameters__ = tuple(out)
    lines = [f"    {h.name}: {h.describe()}" for h in out]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Hyperparameters:\n\n" + "\n".join(lines) + "\n"
    return cls


def declared(cls: type) -> tuple[Hyperparameter, ...]:
    """The hyperparameters ``cls`` declares (decorated with ``declare``), in field order."""
    try:
        return cls.__hyperparameters__
    except AttributeError:
        raise TypeError(f"{cls.__name__} declares no hyperparameters: decorate it with agents.hparams.declare") from None
