"""BiERL-PM: the parametric meta-level, an LSTM over the population history trained by meta-ES.

The encoder reads the last ``k`` populations' fitness vectors (sorted,
z-scored; read at ``quantiles`` ranks, see ``hyperenvs.observers``), an MLP
head maps its last state to each controlled hyperparameter through a
sigmoid onto its range (sigma = 0.02 + 0.06 sigmoid(.)).  Every ``interval``
hyper-steps (= inner iterations on ``HyperRL/ES-*`` ids, see ``LookAheadSolver``)
the network's weights take one meta-ES step (paper Eq. 6) whose candidates are
scored by the one-step look-ahead fitness (Eq. 4-5).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.es import mirrored_gradient, rank_utilities
from agents.seeding import derive
from hyperenvs.observers import zscore_sorted
from solvers.bierl.common import LookAheadSolver
from solvers.checkpoint import write_state

PRETRAINED = "pretrained_pm.pt"
"""the warm-start file shipped in this package (``python -m solvers.bierl.pretrain`` writes one)"""


class MetaNetwork(nn.Module):
    """LSTM encoder over ``[k, quantiles]`` population representations -> Linear -> Linear -> one logit per output."""

    def __init__(self, *, quantiles: int = 20, hidden: int = 16, outputs: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(quantiles, hidden, batch_first=True)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, outputs)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """``history [B, k, quantiles]`` (oldest first) -> ``[B, outputs]`` in (0, 1)."""
        out, _ = self.lstm(history)
        return torch.sigmoid(self.fc2(torch.tanh(self.fc1(out[:, -1]))))


def pretrained_path() -> Path | None:
    path = resources.files("solvers.bierl") / PRETRAINED
    return Path(str(path)) if path.is_file() else None


class BiERLPM(LookAheadSolver):
    """BiERL's parametric model: the meta-network sets the hyperparameters every hyper-step."""

    name = "bierl-pm"

    def __init__(
        self,
        *,
        interval: int = 10,
        k: int = 10,
        quantiles: int = 20,
        hidden: int = 16,
        meta_pairs: int = 100,
        meta_sigma: float = 0.05,
        meta_lr: float = 0.03,
        pretrained: str | Path | None = "auto",
        train: bool = True,
        **scoring: Any,
    ) -> None:
        """``pretrained``: a state_dict file, ``"auto"`` (the packaged warm start if present) or None.

        ``interval`` and ``scoring`` (scorer, lookahead_repeats, ...) are ``LookAheadSolver``'s.
        """
        super().__init__(interval=interval, **scoring)
        self.k, self.quantiles, self.hidden = k, quantiles, hidden
        self.meta_pairs, self.meta_sigma, self.meta_lr = meta_pairs, meta_sigma, meta_lr
        self.pretrained = pretrained
        self.train = train
        self.net: MetaNetwork | None = None

    # -- lifetime hooks -----------------------------------------------------------
    def begin(self, env: Any, obs: Any, info: dict[str, Any], seed: int) -> None:
        super().begin(env, obs, info, seed)
        outputs = len(self.space)
        if self.net is None or self.net.fc2.out_features != outputs:
            # The network persists across lifetimes (meta-training); built on the first one.
            self._build(outputs, seed)
            self._warm_start()
        self.updates = 0

    def _build(self, outputs: int, seed: int) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = MetaNetwork(quantiles=self.quantiles, hidden=self.hidden, outputs=outputs)

    def _attach(self, env: Any) -> None:
        super()._attach(env)
        if self.net is not None and self.net.fc2.out_features != len(self.space):
            raise ValueError(
                f"this meta-network sets {self.net.fc2.out_features} hyperparameters; the env controls {list(self.space.names)}"
            )

    def _warm_start(self) -> None:
        """Load ``pretrained``; the packaged file only fits its own space, so a misfit warns instead of failing."""
        path = pretrained_path() if self.pretrained == "auto" else self.pretrained
        if path is None:
            return
        try:
            self.load(path)
        except ValueError as error:
            if self.pretrained != "auto":
                raise
            warnings.warn(
                f"BiERL-PM starts without its warm start: {error}. Pass pretrained=None to start "
                "from scratch on purpose, or a state_dict meta-trained for this space.",
                stacklevel=3,
            )

    def load(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=True)
        mine = self.net.state_dict()
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != {k: tuple(v.shape) for k, v in mine.items()}:
            raise ValueError(
                f"{path} holds a meta-network of shapes {shapes}, which does not fit this solver "
                f"(quantiles={self.quantiles}, hidden={self.hidden}, "
                f"{len(self.space)} controlled hyperparameters: {', '.join(self.space.names)})"
            )
        self.net.load_state_dict(state)

    def save(self, path: str | Path) -> Path:
        return write_state(self.net.state_dict(), path)

    # -- the meta-level -----------------------------------------------------------------
    def representation(self) -> torch.Tensor:
        """``[1, k, quantiles]``: the last k populations, oldest first, zeros before they exist."""
        blocks = np.zeros((self.k, self.quantiles), dtype=np.float32)
        history = self.env.learner.fitness_history()[: self.k]  # newest first
        for i, fitness in enumerate(history):
            blocks[self.k - 1 - i] = zscore_sorted(fitness, self.quantiles)
        return torch.from_numpy(blocks).unsqueeze(0)

    @torch.no_grad()
    def _decide(self, vector: torch.Tensor | None = None) -> dict[str, float]:
        net = self.net
        if vector is not None:
            saved = nn.utils.parameters_to_vector(net.parameters())
            nn.utils.vector_to_parameters(vector, net.parameters())
        try:
            out = net(self.representation())[0].double().numpy()
        finally:
            if vector is not None:
                nn.utils.vector_to_parameters(saved, net.parameters())
        return {h.name: h.from_unit(2.0 * float(u) - 1.0) for h, u in zip(self.space.hyperparameters, out)}

    def choose(self) -> dict[str, float]:
        return self._decide()

    @torch.no_grad()
    def meta_update(self) -> None:
        if not self.train or not self.env.learner.fitness_history():
            return
        vartheta = nn.utils.parameters_to_vector(self.net.parameters()).double()
        rng = np.random.default_rng(derive(self.seed, "bierl-pm", self.updates))  # no RNG state to snapshot
        noise = rng.standard_normal((self.meta_pairs, vartheta.numel()))
        fitness = np.empty((self.meta_pairs, 2))
        for j in range(self.meta_pairs):
            for s, sign in enumerate((1.0, -1.0)):
                candidate = vartheta + sign * self.meta_sigma * torch.from_numpy(noise[j])
                fitness[j, s] = self.score(self._decide(candidate.float()))
        shaped = rank_utilities(fitness.ravel()).reshape(self.meta_pairs, 2)
        grad = mirrored_gradient(shaped, noise, self.meta_sigma)
        nn.utils.vector_to_parameters((vartheta + self.meta_lr * torch.from_numpy(grad)).float(), self.net.parameters())
        self.updates += 1

    # -- snapshots ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The meta-network's weights and the counters (meta-ES keeps no optimizer state: plain steps)."""
        if self.net is None:
            raise RuntimeError("nothing to save yet: the solver has not seen an env (call run or begin first)")
        return {**super().state_dict(), "net": {k: v.clone() for k, v in self.net.state_dict().items()}, "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        net = state["net"]
        self._build(int(net["fc2.weight"].shape[0]), self.seed)
        theirs = {k: tuple(v.shape) for k, v in net.items()}
        if theirs != {k: tuple(v.shape) for k, v in self.net.state_dict().items()}:
            raise ValueError(
                f"the state holds a meta-network of shapes {theirs}, which does not fit this solver "
                f"(quantiles={self.quantiles}, hidden={self.hidden})"
            )
        self.net.load_state_dict(net)
        self.updates = int(state["updates"])
