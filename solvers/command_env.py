"""The env a ``hyperrl`` command asks for: its flags (``--observe``, ``--config``, ``--hyperparameters``, ...)
merged with what the solver declares in its ``SolverSpec``.  The command line and sweeps build envs here."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

import hyperenvs
from solvers import solver_spec
from solvers.base import Solver, SolverSpec


def _parse_hyperparameters(text: str | None) -> list[str] | dict[str, Any] | None:
    """``lr,clip`` or ``lr=1e-5:1e-2,clip`` -> what ``gym.make(hyperparameters=...)`` takes."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, rng = part.partition("=")
        if rng:
            low, sep, high = rng.partition(":")
            if not sep:
                raise SystemExit(f"--hyperparameters: range for {name!r} must be LOW:HIGH, got {rng!r}")
            out[name.strip()] = (float(low), float(high))
        else:
            out[name.strip()] = None
    return out


def make_env(args: argparse.Namespace, env_id: str | None = None, solver: str | Solver | None = None) -> gym.Env:
    """The env of ``args`` as ``solver`` (a registered name or a solver) needs it, from its ``SolverSpec``.

    Without ``--action-type``, the spec's action type (EPGT, RND, DQN: discrete); the spec's observation
    parts (EPGT's ``projection``) are added to ``--observe`` or the id's own; ``--config`` overrides the
    spec's env config.
    """
    env_id = env_id or args.env_id
    spec = solver_spec(solver) if solver is not None else SolverSpec()
    kwargs: dict[str, Any] = {"action_type": args.action_type or spec.action_type}
    observe = _observe(env_id, getattr(args, "observe", None), spec.observe)
    if observe is not None:
        kwargs["observe"] = observe
    for key in ("total_timesteps", "iterations_per_step", "num_envs", "bins"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    if getattr(args, "hyperparameters", None):
        kwargs["hyperparameters"] = _parse_hyperparameters(args.hyperparameters)
    config = {**spec.env_config, **_parse_config(args.config)}
    if config:
        kwargs["config"] = config
    kwargs["device"] = args.device
    return gym.make(env_id, **kwargs)


def _observe(env_id: str, text: str | None, needs: Sequence[str]) -> list[str] | None:
    """``--observe`` (or the id's default parts) plus the parts the solver needs; None keeps the id's default."""
    chosen = [part.strip() for part in text.split(",") if part.strip()] if text else None
    entry = hyperenvs.REGISTRY.get(env_id.split(":")[-1])
    base = chosen if chosen is not None else (list(entry.observe) if entry is not None else None)
    if base is None or all(part in base for part in needs):
        return chosen
    return [*base, *(part for part in needs if part not in base)]


def _parse_config(items: Sequence[str] | None) -> dict[str, Any]:
    """``["num_steps=64", "normalize_obs=true"]`` -> learner config overrides (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
