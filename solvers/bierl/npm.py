"""BiERL-NPM: the nonparametric meta-level, Bayesian optimisation of the one-step fitness (Eq. 7).

Every ``interval`` hyper-steps (= inner iterations on ``HyperRL/ES-*`` ids, see
``LookAheadSolver``): score ``init_points`` random settings and
``bo_points`` more chosen by a botorch ``SingleTaskGP`` with
``LogExpectedImprovement`` (the reference used 10 + 20 with bayes_opt), all
in the controlled hyperparameters' unit cube, and keep the best.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.seeding import derive
from solvers.bierl.common import LookAheadSolver


def bo_propose(x: np.ndarray, y: np.ndarray, *, seed: int, restarts: int = 4, raw_samples: int = 64) -> np.ndarray:
    """Next point in ``[0, 1]^d`` maximising log-EI of a GP fitted to ``(x [N, d], y [N])``."""
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be [N, d] and y [N], got {x.shape} and {y.shape}")
    d = x.shape[1]
    train_x = torch.as_tensor(x, dtype=torch.float64)
    train_y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
    bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
    with torch.random.fork_rng():  # GP fitting and acquisition restarts draw from torch's global RNG
        torch.manual_seed(seed)
        model = SingleTaskGP(train_x, train_y, input_transform=Normalize(d, bounds=bounds), outcome_transform=Standardize(1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acq = LogExpectedImprovement(model, best_f=train_y.max())
        best, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=restarts, raw_samples=raw_samples, options={"seed": seed})
    return best.detach().numpy().reshape(d)


class BiERLNPM(LookAheadSolver):
    """BiERL's nonparametric model (BO over sigma, or every controlled hyperparameter)."""

    name = "bierl-npm"

    def __init__(self, *, interval: int = 10, init_points: int = 10, bo_points: int = 20, **scoring: Any) -> None:
        """``interval`` and ``scoring`` (scorer, lookahead_repeats, ...) are ``LookAheadSolver``'s."""
        super().__init__(interval=interval, **scoring)
        if init_points < 1 or bo_points < 0:
            raise ValueError(f"need init_points >= 1 and bo_points >= 0, got {init_points}, {bo_points}")
        self.init_points, self.bo_points = init_points, bo_points

    def begin(self, env: Any, obs: Any, info: dict[str, Any], seed: int) -> None:
        super().begin(env, obs, info, seed)
        self.updates = 0

    def _values(self, unit: np.ndarray) -> dict[str, float]:
        return {h.name: h.from_unit(2.0 * float(u) - 1.0) for h, u in zip(self.space.hyperparameters, unit)}

    def meta_update(self) -> None:
        d = len(self.space)
        rng = np.random.default_rng(derive(self.seed, "bierl-npm", self.updates))  # no RNG state to snapshot
        xs = list(rng.uniform(size=(self.init_points, d)))
        ys = [self.score(self._values(x)) for x in xs]
        for _ in range(self.bo_points):
            seed = int(rng.integers(2**31 - 1))
            if np.ptp(ys) == 0:  # a flat landscape gives the GP nothing to fit: explore at random
                x = rng.uniform(size=d)
            else:
                x = bo_propose(np.array(xs), np.array(ys), seed=seed)
            xs.append(x)
            ys.append(self.score(self._values(x)))
        self.values = self._values(xs[int(np.argmax(ys))])
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Counters and the chosen setting: each meta-update's BO starts afresh from points it draws itself."""
        return {**super().state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.updates = int(state["updates"])
