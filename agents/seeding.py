"""One seeding helper: every seed a learner or solver needs derives from its own seed and a few keys.

``derive(seed, "eval", 3)`` gives a seed for the fourth evaluation run of a
lifetime seeded ``seed``; different keys give independent seeds, the same
keys give the same seed on every machine and Python version (no ``hash()``).
"""

from __future__ import annotations

import zlib

import numpy as np

_MAX = 2**31 - 1  # ALE's vector env and some Gymnasium envs take int32 seeds


def _word(key: int | str) -> int:
    if isinstance(key, str):
        return zlib.crc32(key.encode())
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"seed keys must be ints or strings, got {type(key).__name__} {key!r}")
    if key < 0:
        raise ValueError(f"seed keys must be non-negative, got {key}")
    return int(key)


def derive(seed: int, *keys: int | str) -> int:
    """A seed in ``[0, 2**31 - 1)`` determined by ``seed`` and ``keys`` (ints >= 0 or strings).

    Built on ``numpy.random.SeedSequence``, so nearby inputs give unrelated outputs.
    """
    words = [_word(seed), *(_word(k) for k in keys)]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] % _MAX)
