"""Optim4RL optimizer files: ``save``, ``load`` (``torch.load(weights_only=True)``, checked), and the shipped default.

A file is ``Optim4RL.state_dict()``: ``{"format": "optim4rl-v1", "config": {...}, "weights": {...}}``.
``from_spec`` is what ``config={"update_rule": "optim4rl"}`` (the default file) and
``"optim4rl:PATH"`` resolve to, through ``agents.optim.RULE_FACTORIES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from solvers.checkpoint import read_state, write_state
from solvers.optim4rl.optimizer import FORMAT, Optim4RL, Optim4RLConfig, check_weights

DEFAULT_WEIGHTS = Path(__file__).with_name("default.pt")
"""The optimizer shipped in the package (see this folder's README for what it was meta-trained on)."""


def save(rule: Optim4RL, path: str | Path) -> Path:
    """Write ``rule.state_dict()`` to ``path`` (parents created); returns the path."""
    return write_state(rule.state_dict(), path)


def load(path: str | Path) -> Optim4RL:
    """The optimizer saved in ``path``; a ValueError naming the file and what does not fit otherwise."""
    return from_state_dict(read_state(path, "optimizer file"), source=f"optimizer file {path}")


def from_state_dict(state: Any, *, source: str = "the state_dict") -> Optim4RL:
    """An ``Optim4RL`` from ``Optim4RL.state_dict()``'s format, checked field by field."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source} is not an Optim4RL optimizer: format {found!r}, expected {FORMAT!r}")
    try:
        config = Optim4RLConfig(**state["config"])
    except (TypeError, KeyError) as err:
        raise ValueError(f"{source}: config does not fit Optim4RLConfig: {err}") from err
    weights = state.get("weights")
    if not isinstance(weights, dict):
        raise ValueError(f"{source}: 'weights' is {type(weights).__name__}, expected a dict of tensors")
    check_weights(config, weights, source=source)
    return Optim4RL(config=config, weights={k: v.detach().clone() for k, v in weights.items()})


def from_spec(arg: str) -> Optim4RL:
    """``""``: the shipped default optimizer; else ``arg`` is the path of an optimizer file."""
    return load(arg or DEFAULT_WEIGHTS)
