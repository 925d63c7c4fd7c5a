"""The configuration of Optim4RL's optimizer and of a meta-training run (plain data: no torch here, so the
command line can build its parser cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class Optim4RLConfig:
    """Structure of a learned optimizer: fixed once it is built (its weights are trained, not this)."""

    hidden: int = 8
    """hidden size of each of the two GRUs (the paper: 8)"""
    head: tuple[int, ...] = ()
    """hidden widths of the two output heads: ``()`` a linear head (the authors' current code), ``(16, 16)``
    the paper's ReLU MLP"""
    clip_inputs: bool = False
    """clip each gradient element to [-1, 1] before it enters the GRUs (the paper's gridworlds: True; Catch: False)"""
    eps: float = 1e-8
    """added to ``exp(o2)`` under the square root"""

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"Optim4RLConfig.hidden must be >= 1, got {self.hidden}")
        if any(int(w) < 1 for w in self.head):
            raise ValueError(f"Optim4RLConfig.head widths must be >= 1, got {self.head}")
        if not self.eps > 0:
            raise ValueError(f"Optim4RLConfig.eps must be > 0, got {self.eps}")
        object.__setattr__(self, "head", tuple(int(w) for w in self.head))


@dataclass(frozen=True, kw_only=True)
class MetaTrainConfig:
    """One meta-training run on a Gymnasium task with a loop population."""

    task: str = "CartPole-v1"
    """Gymnasium id of the units' task"""
    units: int = 8
    """training units n (each one A2C agent)"""
    num_envs: int = 1
    """inner environments per unit (the paper: 1)"""
    rollout: int = 20
    """vector steps per inner rollout (the paper: 20)"""
    hidden: tuple[int, ...] = (32,)
    """hidden widths of the units' actor and critic MLPs"""
    reset_interval: int = 16
    """m: meta-iterations between two resets of a unit"""
    pipeline: bool = True
    """stagger the resets (pipeline training); False resets all units together"""
    iterations: int = 100
    """meta-iterations"""
    inner_steps: int = 4
    """M: inner A2C updates per meta-iteration (the paper: 4)"""
    meta_lr: float = 1e-3
    """Adam step size on the optimizer's weights"""
    max_meta_grad_norm: float = 0.5
    """global-norm clip of the meta-gradient (the paper: 0.5)"""
    agent_hparams: dict[str, float] = field(default_factory=lambda: {"lr": 1e-3, "gae_lambda": 0.95, "ent_coef": 0.01})
    """the units' A2C hyperparameters (others: A2C's defaults); the paper's Catch lr is 1e-3"""
    optimizer: Optim4RLConfig = field(default_factory=Optim4RLConfig)
    """structure of the learned optimizer"""
    seed: int = 0
    """seeds the optimizer's initial weights and every unit"""

    def __post_init__(self) -> None:
        for name in ("units", "num_envs", "rollout", "reset_interval", "iterations", "inner_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetaTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.meta_lr > 0:
            raise ValueError(f"MetaTrainConfig.meta_lr must be > 0, got {self.meta_lr}")
