"""The hyperparameter-balancing bandit p(alpha | E) of the paper (Sec. 3.4, appendix B.1, Eq. 6).

    p(alpha | E)  ~  exp((R(alpha, E) + rho / sqrt(N(alpha, E))) / tau)

``R``: the mean final return of the last ``window`` (10) lifetimes that ran with ``alpha`` in ``E``; ``N``:
how many lifetimes ran with it.  An arm never tried has an unbounded bonus (``N = 0``), so untried arms of an
environment are drawn first, uniformly.  Arms are the grid ``learning rate x KL cost``; the bandit is
updated when a lifetime ends, and draws from its own ``torch.Generator`` (a state_dict restores it).  Arms
may differ by environment (a tabular agent's SGD step sizes are not a network's Adam ones): pass a mapping.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch


class HyperBandit:
    """One softmax bandit per environment over ``arms`` (tuples of hyperparameter values, the same for every
    environment, or ``{env: arms}``)."""

    def __init__(
        self,
        envs: Sequence[str],
        arms: Sequence[tuple[float, ...]] | Mapping[str, Sequence[tuple[float, ...]]],
        *,
        tau: float = 0.1,
        rho: float = 0.2,
        window: int = 10,
        seed: int = 0,
    ) -> None:
        per_env = arms if isinstance(arms, Mapping) else {e: arms for e in envs}
        if not envs or any(not per_env.get(e) for e in envs):
            raise ValueError("HyperBandit needs at least one environment and, for each, at least one arm")
        if tau <= 0 or rho < 0 or window < 1:
            raise ValueError(f"HyperBandit needs tau > 0, rho >= 0, window >= 1; got tau={tau}, rho={rho}, window={window}")
        self.envs = list(envs)
        self.arms_by_env = {e: [tuple(a) for a in per_env[e]] for e in self.envs}
        self.tau, self.rho, self.window = float(tau), float(rho), int(window)
        self.returns: dict[str, list[list[float]]] = {e: [[] for _ in self.arms_by_env[e]] for e in self.envs}
        """per environment, per arm: the final returns of its last ``window`` lifetimes"""
        self.counts: dict[str, list[int]] = {e: [0] * len(self.arms_by_env[e]) for e in self.envs}
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def grid(
        cls, envs: Sequence[str], lrs: Sequence[float] | Mapping[str, Sequence[float]], kl_coefs: Sequence[float], **kwargs: Any
    ) -> HyperBandit:
        """Arms ``(lr, kl_coef)`` over the product of the two lists (the paper's Table 3); ``lrs`` may be per environment."""
        per_env = lrs if isinstance(lrs, Mapping) else {e: lrs for e in envs}
        return cls(envs, {e: list(itertools.product(per_env[e], kl_coefs)) for e in envs}, **kwargs)

    def arms(self, env: str) -> list[tuple[float, ...]]:
        """The arms of ``env``."""
        self._check(env)
        return self.arms_by_env[env]

    def _check(self, env: str) -> None:
        if env not in self.returns:
            raise ValueError(f"environment {env!r} is not one of the bandit's {self.envs}")

    def probabilities(self, env: str) -> torch.Tensor:
        """``p(alpha | env)`` over the arms, float64."""
        self._check(env)
        counts = torch.tensor(self.counts[env], dtype=torch.float64)
        untried = counts == 0
        if bool(untried.any()):
            return untried.double() / untried.sum()
        mean = torch.tensor([sum(r) / len(r) for r in self.returns[env]], dtype=torch.float64)
        return torch.softmax((mean + self.rho / counts.sqrt()) / self.tau, 0)

    def sample(self, env: str) -> int:
        """An arm index drawn from ``p(alpha | env)``."""
        return int(torch.multinomial(self.probabilities(env), 1, generator=self.generator))

    def update(self, env: str, arm: int, final_return: float) -> None:
        """A lifetime in ``env`` that ran with ``arm`` ended with ``final_return``."""
        self._check(env)
        if not 0 <= arm < len(self.arms_by_env[env]):
            raise ValueError(f"arm must lie in [0, {len(self.arms_by_env[env])}), got {arm}")
        recent = self.returns[env][arm]
        recent.append(float(final_return))
        del recent[: -self.window]
        self.counts[env][arm] += 1

    def best(self, env: str) -> tuple[float, ...]:
        """The arm of highest probability (what meta-testing would pick)."""
        return self.arms_by_env[env][int(self.probabilities(env).argmax())]

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, "counts": self.counts, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["counts"]) != set(self.envs):
            raise ValueError(f"bandit state covers environments {sorted(state['counts'])}, this bandit {sorted(self.envs)}")
        self.returns = {e: [list(map(float, r)) for r in v] for e, v in state["returns"].items()}
        self.counts = {e: list(map(int, v)) for e, v in state["counts"].items()}
        self.generator.set_state(state["generator"])
