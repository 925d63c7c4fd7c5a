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
    input_scale: float = 1.0
    """the GRUs read ``input_scale * g`` (then clipped, with ``clip_inputs``): 1 is the paper's rule.  A GRU
    input weight of order 1 cannot see gradients of 1e-6..1e-4 (Catch's) next to its biases, so the state
    cannot carry their size; 1e3-1e5 brings them into view (not in the paper; see benchmarks/optim4rl)"""

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"Optim4RLConfig.hidden must be >= 1, got {self.hidden}")
        if any(int(w) < 1 for w in self.head):
            raise ValueError(f"Optim4RLConfig.head widths must be >= 1, got {self.head}")
        if not self.eps > 0:
            raise ValueError(f"Optim4RLConfig.eps must be > 0, got {self.eps}")
        if not 0 < self.input_scale < float("inf"):
            raise ValueError(f"Optim4RLConfig.input_scale must be a finite number > 0, got {self.input_scale}")
        object.__setattr__(self, "head", tuple(int(w) for w in self.head))


@dataclass(frozen=True, kw_only=True)
class TaskSetting:
    """How Optim4RL trains its units on one batched task (paper appendix C; REFERENCE-NOTES, Optim4RL)."""

    hidden: int
    """width of the agent torso's dense layer (Catch 256, grids 32)"""
    conv_channels: int
    """channels of the 2x2 conv before it (big grids 16, else 0)"""
    lr: float
    """the units' agent learning rate when meta-training on this task alone"""
    mix_lr: float
    """the agent learning rate in the six-grid mix"""
    reward_scale: float
    """reward multiplier in the six-grid mix (1 when the task is trained alone)"""
    clip_inputs: bool
    """whether the optimizer clips its gradient inputs to [-1, 1] here (grids yes, Catch no)"""


_GRID = {"hidden": 32, "clip_inputs": True}
TASK_SETTINGS: dict[str, TaskSetting] = {
    "catch": TaskSetting(hidden=256, conv_channels=0, lr=1e-3, mix_lr=1e-3, reward_scale=1.0, clip_inputs=False),
    "small_dense_long": TaskSetting(**_GRID, conv_channels=0, lr=3e-2, mix_lr=1e-3, reward_scale=1000.0),
    "small_dense_short": TaskSetting(**_GRID, conv_channels=0, lr=3e-3, mix_lr=3e-3, reward_scale=100.0),
    "big_sparse_short": TaskSetting(**_GRID, conv_channels=16, lr=3e-3, mix_lr=3e-3, reward_scale=100.0),
    "big_dense_short": TaskSetting(**_GRID, conv_channels=16, lr=3e-3, mix_lr=3e-3, reward_scale=10.0),
    "big_sparse_long": TaskSetting(**_GRID, conv_channels=16, lr=1e-3, mix_lr=1e-3, reward_scale=10.0),
    "big_dense_long": TaskSetting(**_GRID, conv_channels=16, lr=3e-3, mix_lr=3e-3, reward_scale=1.0),
}
"""Optim4RL's batched tasks: Catch and the six gridworlds (single-grid lrs other than sdl and bdl, which
the paper gives, are the mix's)"""

GRID_MIX = "grids"
"""``--task grids``: the six gridworlds together, each its own population, meta-gradients rescaled per task"""

A2C_HPARAMS = {"gamma": 0.995, "gae_lambda": 0.95, "vf_coef": 0.5, "ent_coef": 0.01, "max_grad_norm": float("inf")}
"""Optim4RL's A2C on the batched tasks (TD(lambda) 0.95, gamma 0.995, value 0.5, entropy 0.01, no gradient clip)"""


def batched_tasks(task: str) -> list[str]:
    """The batched tasks a ``MetaTrainConfig.task`` names (``[]``: a Gymnasium id, for the loop population)."""
    if task == GRID_MIX:
        return [t for t in TASK_SETTINGS if t != "catch"]
    return [task] if task in TASK_SETTINGS else []


@dataclass(frozen=True, kw_only=True)
class MetaTrainConfig:
    """One meta-training run: a Gymnasium task with a loop population, or Optim4RL's batched tasks vectorised."""

    task: str = "CartPole-v1"
    """``catch``, a gridworld (``small_dense_long``, ...) or ``grids`` (the six together): the vectorised
    population on the batched task; anything else is a Gymnasium id, run by the loop population"""
    units: int = 8
    """training units n (each one A2C agent)"""
    num_envs: int = 1
    """inner environments per unit (the paper: 1)"""
    rollout: int = 20
    """vector steps per inner rollout (the paper: 20)"""
    hidden: tuple[int, ...] = (32,)
    """hidden widths of the units' actor and critic MLPs (Gymnasium tasks; a batched task uses Optim4RL's
    network for it, ``TASK_SETTINGS``)"""
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
    """global-norm clip of the meta-gradient (the paper: 0.5); with several tasks, also the norm each task's
    meta-gradient is rescaled to before they are averaged"""
    agent_hparams: dict[str, float] = field(default_factory=lambda: {"lr": 1e-3, "gae_lambda": 0.95, "ent_coef": 0.01})
    """the units' A2C hyperparameters on a Gymnasium task (others: A2C's defaults); the paper's Catch lr is 1e-3"""
    lr: float = 0.0
    """agent learning rate on batched tasks; 0: Optim4RL's for the task (``TASK_SETTINGS``)"""
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
        if self.lr < 0:
            raise ValueError(f"MetaTrainConfig.lr must be >= 0 (0: the task's own), got {self.lr}")

    @property
    def env_steps_per_iteration(self) -> int:
        """Environment steps of one meta-iteration, all units and all M + 1 rollouts (how the authors' code
        counts Optim4RL's 5e5 Catch steps: 64 units x 20 x 5 = 6,400 a meta-iteration, so 78 iterations); in the
        six-grid mix, per task, as the authors count them."""
        return self.units * self.num_envs * self.rollout * (self.inner_steps + 1)
