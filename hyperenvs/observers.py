"""Hyper-state encoders: what a hyper-agent sees of a training run.

An observer is built from the learner's parameter shapes, has a fixed
``space``, and maps ``(learner, context)`` to a float32 vector.  Outputs are
made finite so a diverged run still yields a valid observation.

``observe_batch(observer, learners, contexts)`` gives N lifetimes' observations
as one ``[N, size]`` array: the projection and statistics observers compute
them together (one matmul per tensor and order, one fused norm call), equal to
their one-lifetime calls; ``DeferredObserver`` stands in for an observer inside
a HyperEnv whose observation a population computes so, afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

_BIG = 1e6


@dataclass(frozen=True, kw_only=True)
class Context:
    """Lifetime bookkeeping an observer may use besides the learner itself."""

    losses: Mapping[str, float]
    """loss terms of the last iteration"""
    stats: Mapping[str, float]
    """update statistics of the last iteration"""
    recent_return: float
    """mean return of the lifetime's last 10 finished episodes (0 before any)"""
    budget_fraction: float
    """fraction of the lifetime's env-step budget spent"""


def _finite(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=_BIG, neginf=-_BIG), -_BIG, _BIG).astype(np.float32)


class ProjectionObserver:
    """EPGT's hyper-state: each tensor's weights and last gradients times a fixed random matrix.

    A weight reshaped to ``[out, in]`` is multiplied by its own ``[in, d]``
    Gaussian matrix (Xavier scale) per order; a 1-D tensor of size ``n`` by an
    ``[n, d]`` matrix.  Orders are the current value, then the most recent
    gradients (zeros until they exist).  The matrices depend only on ``seed``
    and the shapes, so keys stay comparable across lifetimes.
    """

    name = "projection"

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], *, dim: int = 4, orders: int = 3, seed: int = 0) -> None:
        if dim < 1 or orders < 1:
            raise ValueError(f"projection dim and orders must be >= 1, got dim={dim}, orders={orders}")
        self.names = sorted(shapes)
        self.dim, self.orders = dim, orders
        gen = torch.Generator().manual_seed(seed)
        self.matrices: dict[tuple[str, int], torch.Tensor] = {}
        size = 0
        for name in self.names:
            shape = shapes[name]
            rows, cols = (shape[0], math.prod(shape[1:])) if len(shape) > 1 else (1, shape[0])
            for order in range(orders):
                std = math.sqrt(2.0 / (cols + dim))
                self.matrices[name, order] = torch.randn(cols, dim, generator=gen) * std
            size += rows * dim * orders
        self.space = spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)

    @torch.no_grad()
    def __call__(self, learner, context: Context) -> np.ndarray:
        params = learner.parameters()
        history = learner.gradient_history()
        parts = []
        for name in self.names:
            sources = [params[name], *(g[name] for g in history[: self.orders - 1])]
            for order in range(self.orders):
                matrix = self.matrices[name, order]
                if order < len(sources):
                    tensor = sources[order].detach().cpu()
                    flat = tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 1 else tensor.reshape(1, -1)
                    parts.append((flat @ matrix).flatten())
                else:
                    rows = params[name].shape[0] if params[name].dim() > 1 else 1
                    parts.append(torch.zeros(rows * self.dim))
        return _finite(torch.cat(parts).numpy())

    @torch.no_grad()
    def batch(self, learners: Sequence, contexts: Sequence[Context]) -> np.ndarray:
        """``[self(learner, context) for ...]`` as one ``[N, size]`` array, each tensor's N projections by one matmul
        (the same kernel per lifetime, so the same bits as the one-lifetime call)."""
        params = [lr.parameters() for lr in learners]
        histories = [lr.gradient_history()[: self.orders - 1] for lr in learners]
        n, parts = len(learners), []
        for name in self.names:
            shape = params[0][name].shape
            rows = shape[0] if len(shape) > 1 else 1
            for order in range(self.orders):
                have = [order == 0 or order - 1 < len(h) for h in histories]
                if not any(have):
                    parts.append(torch.zeros(n, rows * self.dim))
                    continue
                zeros = None if all(have) else torch.zeros_like(params[0][name])
                sources = [
                    (p[name] if order == 0 else h[order - 1][name]) if ok else zeros for p, h, ok in zip(params, histories, have)
                ]
                stacked = _stacked(sources).cpu()
                projected = (stacked.reshape(n, rows, -1) @ self.matrices[name, order]).reshape(n, -1)
                if not all(have):  # a lifetime without that gradient yet sees zeros, as alone
                    projected[torch.tensor([not ok for ok in have])] = 0.0
                parts.append(projected)
        return _finite(torch.cat(parts, dim=1).numpy())


STAT_KEYS = ("policy", "value", "entropy", "approx_kl", "clip_fraction", "explained_variance", "grad_norm")


class StatisticsObserver:
    """Training statistics: per-tensor weight and gradient norms, loss terms, returns, budget.

    Layout: ``[|w| for each tensor, |g| for each tensor, *STAT_KEYS,
    recent_return, budget_fraction]``; a statistic the learner does not
    report is 0.
    """

    name = "statistics"

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.names = sorted(shapes)
        self.labels = (
            [f"weight_norm/{n}" for n in self.names]
            + [f"grad_norm/{n}" for n in self.names]
            + list(STAT_KEYS)
            + ["recent_return", "budget_fraction"]
        )
        self.space = spaces.Box(-np.inf, np.inf, (len(self.labels),), dtype=np.float32)

    @torch.no_grad()
    def __call__(self, learner, context: Context) -> np.ndarray:
        params = learner.parameters()
        history = learner.gradient_history()
        weights = torch.stack(torch._foreach_norm([params[n].detach() for n in self.names])).cpu().numpy()
        if history:
            grads = torch.stack(torch._foreach_norm([history[0][n] for n in self.names])).cpu().numpy()
        else:
            grads = np.zeros(len(self.names))
        merged = {**context.losses, **context.stats}
        stats = [merged.get(k, 0.0) for k in STAT_KEYS]
        return _finite(np.concatenate([weights, grads, stats, [context.recent_return, context.budget_fraction]]))

    @torch.no_grad()
    def batch(self, learners: Sequence, contexts: Sequence[Context]) -> np.ndarray:
        """``[self(learner, context) for ...]`` as one ``[N, size]`` array: the N norms of a tensor by one row norm
        where they are rows of one stacked tensor, else every lifetime's by one fused ``_foreach_norm`` call
        (equal to the one-lifetime call to float rounding; on a CPU the same bits)."""
        n, k = len(learners), len(self.names)
        params = [lr.parameters() for lr in learners]
        newest = [h[0] if h else None for h in (lr.gradient_history() for lr in learners)]
        out = np.zeros((n, len(self.labels)))
        out[:, :k] = _norms([[p[name] for name in self.names] for p in params])
        with_grads = [j for j, g in enumerate(newest) if g is not None]
        if with_grads:
            out[with_grads, k : 2 * k] = _norms([[newest[j][name] for name in self.names] for j in with_grads])
        for j, context in enumerate(contexts):
            merged = {**context.losses, **context.stats}
            out[j, 2 * k :] = [*(merged.get(key, 0.0) for key in STAT_KEYS), context.recent_return, context.budget_fraction]
        return _finite(out)


def _base_of(rows: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The contiguous tensor whose rows ``rows`` are, in order, or None (a vectorised population's lifetimes
    hold views of its stacked parameters and gradients; a restarted lifetime holds tensors of its own)."""
    base = rows[0]._base
    if (
        base is not None
        and base.is_contiguous()
        and base.shape == (len(rows), *rows[0].shape)
        and all(r._base is base and r.storage_offset() == base.storage_offset() + j * base.stride(0) for j, r in enumerate(rows))
    ):
        return base.detach()
    return None


def _stacked(rows: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(rows)``, without the copy where they are the rows of one tensor."""
    base = _base_of(rows)
    return torch.stack(rows) if base is None else base  # under no_grad: detached


def _norms(per_lifetime: list[list[torch.Tensor]]) -> np.ndarray:
    """``[N, K]`` 2-norms (float32) of N lifetimes' K tensors: one row norm per tensor name where the N are the
    rows of one tensor, else one fused ``_foreach_norm`` call (on a CPU, per tensor the same op)."""
    n, k = len(per_lifetime), len(per_lifetime[0])
    columns = [[tensors[i] for tensors in per_lifetime] for i in range(k)]
    bases = [_base_of(c) for c in columns]
    if all(b is not None for b in bases):
        norms = torch.stack([torch.linalg.vector_norm(b.reshape(n, -1), dim=1) for b in bases], dim=1)
    else:
        norms = torch.stack(torch._foreach_norm([t for tensors in per_lifetime for t in tensors])).view(n, k)
    return norms.cpu().numpy()


def zscore_sorted(fitness: np.ndarray, quantiles: int) -> np.ndarray:
    """A population's fitness vector, sorted and z-scored, read at ``quantiles`` evenly spaced ranks.

    The quantile read-out gives every population size one length; with
    ``quantiles == n`` it is exactly BiERL's sorted, z-scored vector.
    """
    f = np.sort(np.asarray(fitness, dtype=np.float64).ravel())
    std = f.std()
    z = (f - f.mean()) / std if std > 0 else np.zeros_like(f)
    return np.interp(np.linspace(0, f.size - 1, quantiles), np.arange(f.size), z)


class FitnessObserver:
    """BiERL's population representation: the last ``k`` populations' fitness vectors.

    Layout: ``k`` blocks of ``quantiles`` sorted, z-scored fitness values,
    newest first (zeros before a population exists), then the unperturbed
    policy's return and its rank among the newest population (fraction of
    candidates it beats).  Needs an ES learner (``fitness_history()``).
    """

    name = "fitness"
    requires = "fitness_history"
    """the learner method this observer reads: only ES learners have it"""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], *, k: int = 10, quantiles: int = 20) -> None:
        if k < 1 or quantiles < 2:
            raise ValueError(f"fitness observer needs k >= 1 and quantiles >= 2, got k={k}, quantiles={quantiles}")
        self.k, self.quantiles = k, quantiles
        self.space = spaces.Box(-np.inf, np.inf, (k * quantiles + 2,), dtype=np.float32)

    def __call__(self, learner, context: Context) -> np.ndarray:
        if not hasattr(learner, "fitness_history"):
            raise TypeError(f"the fitness observer needs an ES learner; {type(learner).__name__} has no fitness history")
        blocks = np.zeros((self.k, self.quantiles))
        for i, fitness in enumerate(learner.fitness_history()[: self.k]):
            blocks[i] = zscore_sorted(fitness, self.quantiles)
        extra = [getattr(learner, "centre_return", 0.0), getattr(learner, "centre_rank", 0.0)]
        return _finite(np.concatenate([blocks.ravel(), extra]))


def observe_batch(observer, learners: Sequence, contexts: Sequence[Context]) -> np.ndarray:
    """N lifetimes' observations by ``observer``, ``[N, size]``: its ``batch`` where it has one, else one call each."""
    if len(learners) != len(contexts):
        raise ValueError(f"learners and contexts must pair up, got {len(learners)} learners and {len(contexts)} contexts")
    if hasattr(observer, "batch"):
        return observer.batch(learners, contexts)
    return np.stack([observer(lr, c) for lr, c in zip(learners, contexts)])


class DeferredObserver:
    """Stands in for ``observer`` in a HyperEnv whose observations are computed later for many lifetimes at once.

    Each call records its ``(learner, context)`` in ``calls`` and returns zeros of the observer's
    shape (a valid placeholder); ``flush()`` then gives the real observations of every recorded call,
    ``[len(calls), size]``, by ``observe_batch``, and forgets the calls.
    """

    def __init__(self, observer) -> None:
        self.observer = observer
        self.space = observer.space
        self.calls: list[tuple[object, Context]] = []

    def __call__(self, learner, context: Context) -> np.ndarray:
        self.calls.append((learner, context))
        return np.zeros(self.space.shape, dtype=np.float32)

    def flush(self) -> np.ndarray:
        learners, contexts = [c[0] for c in self.calls], [c[1] for c in self.calls]
        self.calls = []
        if not learners:
            return np.zeros((0, *self.space.shape), dtype=np.float32)
        return observe_batch(self.observer, learners, contexts)


OBSERVERS = {"projection": ProjectionObserver, "statistics": StatisticsObserver, "fitness": FitnessObserver}
"""Observation parts by name."""


def make_observers(
    names: str | Sequence[str], shapes: Mapping[str, tuple[int, ...]], *, learner: type | None = None
) -> dict[str, object]:
    """Observers by name; with ``learner`` (the learner class), parts it cannot feed are rejected here."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in OBSERVERS]
    if unknown or not names:
        raise ValueError(f"observe must name one or more of {sorted(OBSERVERS)}, got {names}")
    if learner is not None:
        unfit = [n for n in names if not hasattr(learner, getattr(OBSERVERS[n], "requires", "parameters"))]
        if unfit:
            fit = sorted(n for n in OBSERVERS if hasattr(learner, getattr(OBSERVERS[n], "requires", "parameters")))
            raise ValueError(f"observe parts {unfit} do not fit a {learner.__name__}; it can give {fit}")
    return {n: OBSERVERS[n](shapes) for n in dict.fromkeys(names)}
