"""How a BiERL meta-level scores a candidate hyperparameter setting; every scorer leaves the lifetime as it found it.

``lookahead`` is the paper's Eq. 4-5: fork the lifetime, take one inner ES step
with the candidate, score the updated policy by one evaluation episode, rewind;
``l`` repeats averaged.  ``perturbed`` is what the authors' code does instead:
the mean return of a few perturbed copies ``theta + sigma eps`` of the current
policy, no ES step (PM used 10 copies, NPM one mirrored pair), so it is blind to
every hyperparameter but sigma.

Both use common random numbers across the candidates of one meta-update: look-
ahead repeat ``i`` draws its noise and episode from the learner's noise stream
``i`` and the perturbed copies are keyed by the current iteration, so two
candidates differ only by their hyperparameters.  A call returns the score and
the inner env steps it cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

SCORERS = ("lookahead", "perturbed")
"""the selectable scorers"""


class Scorer(Protocol):
    name: str

    def __call__(self, env: Any, hparams: Mapping[str, float]) -> tuple[float, int]:
        """``(score, env steps spent)`` of ``hparams`` on the lifetime ``env`` (an unwrapped ES hyper-env)."""


class LookAhead:
    """Paper Eq. 5: mean return after one inner ES iteration with the candidate, over ``repeats`` forks."""

    name = "lookahead"

    def __init__(self, repeats: int = 1) -> None:
        if repeats < 1:
            raise ValueError(f"lookahead_repeats must be >= 1, got {repeats}")
        self.repeats = repeats

    def __call__(self, env: Any, hparams: Mapping[str, float]) -> tuple[float, int]:
        snap = env.snapshot()
        scores, steps = [], 0
        try:
            for repeat in range(self.repeats):
                if repeat:
                    env.restore(snap)
                learner = env.learner
                before = learner.timesteps
                with learner.noise_stream(repeat):
                    learner.iterate(hparams)
                    [(ret, length)] = learner.evaluate_episodes(1)
                steps += learner.timesteps - before + length  # the inner iteration and its scoring episode
                scores.append(ret)
        finally:
            env.restore(snap)
        return float(np.mean(scores)), steps


class Perturbed:
    """The authors' scorer: mean return of ``samples`` perturbed copies ``theta +- sigma eps`` (mirrored pairs)."""

    name = "perturbed"

    def __init__(self, samples: int = 10) -> None:
        if samples < 1:
            raise ValueError(f"perturbed_samples must be >= 1, got {samples}")
        self.samples = samples

    def __call__(self, env: Any, hparams: Mapping[str, float]) -> tuple[float, int]:
        episodes = env.learner.perturbed_episodes(float(hparams["sigma"]), self.samples)
        return float(np.mean([ret for ret, _ in episodes])), sum(length for _, length in episodes)


def make_scorer(name: str, *, lookahead_repeats: int = 1, perturbed_samples: int = 10) -> Scorer:
    if name == "lookahead":
        return LookAhead(lookahead_repeats)
    if name == "perturbed":
        return Perturbed(perturbed_samples)
    raise ValueError(f"scorer must be one of {list(SCORERS)}, got {name!r}")
