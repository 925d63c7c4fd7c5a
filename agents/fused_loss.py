"""The closed-form gradient of PPO's and A2C's policy and entropy terms, in NumPy, and their metrics an epoch at a time.

For a categorical policy with logits ``l`` (probabilities ``p``, taken action ``a``) and a
diagonal Gaussian (mean ``mu``, ``log_std``, ``z = (action - mu) / std``):

- ``d logp / d l = onehot(a) - p``;  ``d H / d l = -p (log p + H)``;
- ``d logp / d mu = z / std``;  ``d logp / d log_std = z^2 - 1``;  ``d H / d log_std = 1``.

The policy term's gradient with respect to ``logp`` is ``-adv / M`` for A2C, and for PPO's clipped
surrogate ``min(r A, clip(r) A)`` it is ``-r A / M`` where the unclipped term is the smaller (or the
two are equal: torch splits a tie in halves that sum to the same), else 0.  The entropy bonus adds
``-ent_coef / M * d H``.

A step computes only what its gradient needs, writing the probabilities, ratios and surrogate
terms into an epoch's ``records`` (``[K, M, ...]``, one row per step); ``metrics`` then turns all
``K`` steps' records into the eager objective's metrics in a dozen array ops, where per step they
would cost as many again as the gradient (each NumPy op here is about a microsecond of dispatch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def records(kind: str, actions: int, discrete: bool, steps: int, rows: int) -> dict[str, np.ndarray]:
    """Empty per-step records for ``steps`` steps on ``rows``-row minibatches of a policy over ``actions``."""
    names = ("ratio", "log_ratio", "unclipped", "clipped") if kind == "ppo" else ("surrogate",)
    out = {name: np.empty((steps, rows), np.float32) for name in (*names, "error")}
    if discrete:
        out["probs"], out["logp_all"] = (np.empty((steps, rows, actions), np.float32) for _ in range(2))
    else:
        out["entropy"] = np.empty(steps, np.float32)
    return out


def standardized(adv: np.ndarray) -> np.ndarray:
    """Each row of ``adv`` ``[K, M]`` as ``(adv - mean) / (std + 1e-8)`` with the unbiased std, as ``PPOObjective``
    standardises a minibatch (all of an epoch's minibatches at once)."""
    centred = adv - adv.mean(axis=1, keepdims=True)
    var = np.einsum("km,km->k", centred, centred) / (adv.shape[1] - 1)
    return centred / (np.sqrt(var) + 1e-8)[:, None]


def _policy_weight(kind: str, logp: np.ndarray, arrays: Mapping[str, np.ndarray], clip: float, rec: dict, i: int) -> np.ndarray:
    """``-d loss / d logp`` of the policy term per row (recording step ``i``'s surrogate terms)."""
    adv, m = arrays["advantages"], logp.shape[0]
    if kind != "ppo":
        np.multiply(logp, adv, out=rec["surrogate"][i])
        return adv * (1.0 / m)
    log_ratio = np.subtract(logp, arrays["log_probs"], out=rec["log_ratio"][i])
    ratio = np.exp(log_ratio, out=rec["ratio"][i])
    unclipped = np.multiply(ratio, adv, out=rec["unclipped"][i])
    clipped = np.clip(ratio, 1 - clip, 1 + clip, out=rec["clipped"][i])
    clipped *= adv
    weight = unclipped * (unclipped <= clipped)
    weight *= 1.0 / m
    return weight


def policy_gradient(
    kind: str,
    policy_out: np.ndarray,
    log_std: np.ndarray | None,
    arrays: Mapping[str, np.ndarray],
    hp: Mapping[str, Any],
    rec: dict[str, np.ndarray],
    i: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``d loss / d policy_out`` ``[M, A]`` (and ``d loss / d log_std``) of the policy and entropy terms of one
    step, whose records go to row ``i`` of ``rec``.

    ``arrays`` holds the minibatch's ``actions``, ``log_probs`` (behaviour), ``advantages`` (already
    standardised where the objective does) and, for a categorical policy, ``index``: the flat
    positions of the taken actions in ``[M, A]`` (``row * A + action``).
    """
    m, a = policy_out.shape
    ent_coef, clip = float(hp["ent_coef"]), float(hp.get("clip", 0.0))
    if log_std is None:
        probs, logp_all = rec["probs"][i], rec["logp_all"][i]
        np.subtract(policy_out, policy_out.max(axis=1, keepdims=True), out=logp_all)
        np.exp(logp_all, out=probs)
        total = probs.sum(axis=1, keepdims=True)
        probs /= total
        logp_all -= np.log(total)
        weight = _policy_weight(kind, np.take(logp_all, arrays["index"]), arrays, clip, rec, i)
        if ent_coef:
            entropy = np.einsum("ma,ma->m", probs, logp_all)
            entropy *= -1
            grad = probs * ((logp_all + entropy[:, None]) * (ent_coef / m) + weight[:, None])
        else:
            grad = probs * weight[:, None]
        grad.reshape(-1)[arrays["index"]] -= weight  # one taken action a row: no repeated positions
        return grad, None
    log_std_sum = float(log_std.sum())
    rec["entropy"][i] = log_std_sum + a * (0.5 + _LOG_SQRT_2PI)
    inv_std = np.exp(-log_std)
    z = arrays["actions"] - policy_out
    z *= inv_std
    logp = np.einsum("ma,ma->m", z, z)
    logp *= -0.5
    logp -= log_std_sum + a * _LOG_SQRT_2PI
    weight = _policy_weight(kind, logp, arrays, clip, rec, i)
    grad = z * inv_std
    grad *= -weight[:, None]
    grad_log_std = float(weight.sum()) - np.einsum("ma,m->a", z * z, weight) - ent_coef
    return grad, grad_log_std


def metrics(kind: str, rec: Mapping[str, np.ndarray], hp: Mapping[str, Any]) -> np.ndarray:
    """The eager objective's metrics of every recorded step, ``[K, n]`` in ``PPO_METRICS`` / ``A2C_METRICS`` order."""
    error = rec["error"]
    k, m = error.shape
    if kind == "ppo":
        policy = -np.minimum(rec["unclipped"], rec["clipped"]).sum(axis=1, dtype=np.float64) / m
    else:
        policy = -rec["surrogate"].sum(axis=1, dtype=np.float64) / m
    value = 0.5 * np.einsum("km,km->k", error, error, dtype=np.float64) / m
    if "probs" in rec:
        entropy = -np.einsum("kma,kma->k", rec["probs"], rec["logp_all"], dtype=np.float64) / m
    else:
        entropy = rec["entropy"].astype(np.float64)
    columns = [policy, value, entropy]
    if kind == "ppo":
        excess = rec["ratio"] - 1
        columns.append((excess - rec["log_ratio"]).sum(axis=1, dtype=np.float64) / m)
        columns.append(np.count_nonzero(np.abs(excess) > float(hp["clip"]), axis=1) / m)
    return np.stack(columns, axis=1)
