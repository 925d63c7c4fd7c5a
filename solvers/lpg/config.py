"""Meta-training settings of LPG (paper Table 2 and 3; the CPU-sized defaults are stated per field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from solvers.lpg.network import LPGConfig


@dataclass(frozen=True, kw_only=True)
class MetaTrainConfig:
    """One LPG meta-training run (Algorithm 1)."""

    envs: tuple[str, ...] = ("tabular", "chains")
    """training environments: task names or the groups ``tabular`` / ``chains`` (``solvers.lpg.lifetimes``)"""
    lifetimes: int = 16
    """parallel lifetimes, the meta-gradient's batch (the paper: 960); slot j runs environment j mod len(envs)"""
    envs_per_lifetime: int = 8
    """environments each agent acts in (the paper: 64); an update reads envs_per_lifetime x num_steps steps"""
    num_steps: int = 20
    """steps per trajectory (the paper: 20)"""
    unroll: int = 5
    """K, agent updates per meta-gradient, backpropagated through (the paper: 5)"""
    lifetime_updates: int = 200
    """agent updates in one lifetime (the paper: 3M steps / 1280 = 2343 on grids, 781 on chains)"""
    iterations: int = 100
    """meta-iterations (each: K updates of every lifetime, then one Adam step on the LPG)"""
    meta_lr: float = 1e-4
    """Adam step size on the LPG's weights (the paper: 1e-4)"""
    meta_grad_clip: float = 0.0
    """global-norm clip of the meta-gradient (0: none, as the paper)"""
    gammas: tuple[float, ...] = (0.995, 0.99)
    """discount factors, one drawn per lifetime (fed to the LPG and to the meta-critic)"""
    beta0s: tuple[float, ...] = (0.01, 0.02)
    """policy-entropy costs of Eq. 4, one drawn per lifetime"""
    beta1: float = 1e-3
    """prediction-entropy cost of Eq. 4"""
    beta2: float = 1e-3
    """L2 cost on pi_hat of Eq. 4"""
    beta3: float = 1e-3
    """L2 cost on y_hat of Eq. 4"""
    lrs: tuple[float, ...] = (20.0, 40.0, 80.0)
    """the tabular agents' SGD step sizes the bandit chooses from (Table 3; a network agent's Adam step sizes are
    its environment's, ``solvers.lpg.lifetimes.NETWORK_AGENTS``)"""
    kl_coefs: tuple[float, ...] = (0.1, 0.5, 1.0)
    """the prediction (KL) costs the bandit chooses from (Table 3)"""
    bandit: bool = True
    """balance (lr, kl_coef) per environment with the bandit of Eq. 6; False: the middle of both lists, fixed"""
    tau: float = 0.1
    """bandit temperature (the paper: 0.1)"""
    rho: float = 0.2
    """bandit exploration bonus (the paper: 0.2)"""
    final_fraction: float = 0.2
    """the last fraction of a lifetime whose finished episodes make its final return (the bandit's R)"""
    train_critic: bool = True
    """train the meta-critic (the A2C value table of each lifetime); False repeats the public port's bug"""
    critic_lr: float = 0.5
    """step of the tabular meta-critic towards each visited state's mean TD(lambda) return"""
    critic_adam_lr: float = 1e-3
    """Adam step size of the network lifetimes' meta-critics (value networks of the agent's architecture; 1e-4 .. 1e-2)"""
    critic_lambda: float = 0.95
    """lambda of the meta-critic's targets and of the meta-gradient's advantages"""
    entropy_floor: float = 1e-3
    """a lifetime whose mean policy entropy (nats) falls below this is reset (the paper: entropy 0)"""
    lpg: LPGConfig = field(default_factory=LPGConfig)
    """the LPG network's structure (the paper: hidden 256, embed 16, m 30)"""
    dtype: str = "float32"
    """``float32`` or ``float64`` (tests)"""
    seed: int = 0
    """everything derives from it (agents' sampling, tasks, bandit, LPG initialisation)"""

    def __post_init__(self) -> None:
        for name in ("lifetimes", "envs_per_lifetime", "num_steps", "unroll", "lifetime_updates", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MetaTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gammas", "beta0s", "lrs", "kl_coefs"):
            if not getattr(self, name):
                raise ValueError(f"MetaTrainConfig.{name} must hold at least one value")
        if not 0 < self.final_fraction <= 1:
            raise ValueError(f"MetaTrainConfig.final_fraction must lie in (0, 1], got {self.final_fraction}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"MetaTrainConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.meta_lr <= 0:
            raise ValueError(f"MetaTrainConfig.meta_lr must be > 0, got {self.meta_lr}")
