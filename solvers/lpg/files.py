"""LPG rule files: ``save_rule``, ``load_rule`` (``torch.load(weights_only=True)``, checked), the shipped default.

A file is ``{"format": "lpg-v1", "config": {hidden, embed, m}, "weights": {...}, "hparams": {...}}``;
``hparams`` holds what meta-testing should use where the file knows better than the defaults (``kl_coef``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from solvers.checkpoint import read_state, write_state
from solvers.lpg.network import LPGConfig, LPGNetwork, Weights

FORMAT = "lpg-v1"
DEFAULT_RULE = Path(__file__).with_name("default.pt")
"""The LPG shipped in the package (this folder's README says what it was meta-trained on)."""


def rule_state(config: LPGConfig, weights: Weights, hparams: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "config": {"hidden": config.hidden, "embed": config.embed, "m": config.m},
        "weights": {k: v.detach().clone().float() for k, v in weights.items()},
        "hparams": dict(hparams or {}),
    }


def save_rule(path: str | Path, config: LPGConfig, weights: Weights, hparams: dict[str, float] | None = None) -> Path:
    return write_state(rule_state(config, weights, hparams), path)


def load_rule(path: str | Path) -> tuple[LPGNetwork, Weights, dict[str, float]]:
    """``(network, weights, hparams)`` of the LPG in ``path``; a ValueError naming the file otherwise."""
    return from_state(read_state(path, "LPG rule file"), source=f"LPG rule file {path}")


def from_state(state: Any, *, source: str = "the state_dict") -> tuple[LPGNetwork, Weights, dict[str, float]]:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source} is not an LPG rule: format {found!r}, expected {FORMAT!r}")
    try:
        network = LPGNetwork(LPGConfig(**state["config"]))
    except (TypeError, KeyError) as err:
        raise ValueError(f"{source}: config does not fit LPGConfig: {err}") from err
    weights = state.get("weights")
    expected = network.shapes()
    if not isinstance(weights, dict) or set(weights) != set(expected):
        found = sorted(weights) if isinstance(weights, dict) else type(weights).__name__
        raise ValueError(f"{source}: weights {found} do not match the LPG's {sorted(expected)}")
    for k, shape in expected.items():
        if tuple(weights[k].shape) != shape:
            raise ValueError(
                f"{source}: weight {k} has shape {tuple(weights[k].shape)}, the config {state['config']} needs {shape}"
            )
    return network, {k: v.detach().clone() for k, v in weights.items()}, dict(state.get("hparams", {}))
