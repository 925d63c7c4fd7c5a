"""Evolution strategies, BiERL's inner level: ask/tell strategies under one learner shell.

``config`` and ``learner`` are the public face (``ESConfig.strategy`` picks
``openai``, ``nsres`` or ``cmaes``); ``strategy`` holds the ask/tell contract,
``openai``, ``nsres`` and ``cmaes`` one strategy each; ``policy``, ``workers``
and ``backends`` evaluate candidates; ``maths`` is the shaping and the gradient.
"""

from agents.es.config import STRATEGIES, ESConfig, ESHyperparams
from agents.es.learner import ESLearner
from agents.es.maths import mirrored_gradient, rank_utilities

__all__ = ["STRATEGIES", "ESConfig", "ESHyperparams", "ESLearner", "mirrored_gradient", "rank_utilities"]
