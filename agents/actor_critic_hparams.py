"""Hyperparameters every on-policy actor-critic has: PPO and A2C declare their fields with these factories,
so each range, default, bins and doc text is written once."""

from __future__ import annotations

from typing import Any

from agents.hparams import hyperparameter


def gamma_hyperparameter() -> Any:
    return hyperparameter(
        0.99,
        low=0.9,
        high=0.999,
        bins=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
        doc="discount factor; horizon about 1 / (1 - gamma)",
    )


def ent_coef_hyperparameter(doc: str) -> Any:
    return hyperparameter(0.0, low=0.0, high=0.1, bins=(0.0, 0.001, 0.01, 0.02, 0.05), doc=doc)


def vf_coef_hyperparameter() -> Any:
    return hyperparameter(0.5, low=0.1, high=1.0, bins=(0.25, 0.5, 0.75, 1.0), doc="value loss weight")


def max_grad_norm_hyperparameter(doc: str = "global gradient-norm clip") -> Any:
    return hyperparameter(0.5, low=0.1, high=10.0, log=True, multipliers=(0.5, 1, 2), doc=doc)
