"""The shared body of on-policy actor-critic learners (PPO, A2C).

Subclasses supply a hyperparameter dataclass, an objective and ``_update``;
this class owns construction, seeding, collection, divergence detection,
snapshots and evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from agents import envstate
from agents.base import Batch, IterationReport, Params
from agents.networks import ActorCritic, sample
from agents.optim import OptState, get_optimizer
from agents.rollout import Collector, make_vector_env, task_spaces


@dataclass(frozen=True, kw_only=True)
class ActorCriticConfig:
    """Structure of an actor-critic learner: fixed for a whole lifetime."""

    task: str = "CartPole-v1"
    """Gymnasium id of the inner task, or ``ALE/<Game>-v5`` for Atari"""
    num_envs: int = 8
    """parallel inner environments (one process, synchronous)"""
    num_steps: int = 128
    """vector steps per collection; a batch holds ``num_envs * num_steps`` transitions"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden widths of the actor and critic MLPs (ignored for image observations)"""
    activation: str = "tanh"
    """hidden activation of the MLPs: ``tanh`` or ``relu``"""
    optimizer: str = "adam"
    """update rule: ``adam``, ``rmsprop`` or ``sgd``"""
    normalize_obs: bool = False
    """standardise observations with running statistics (MuJoCo PPO standard)"""
    normalize_reward: bool = False
    """divide rewards by the running std of the discounted return"""
    sign_reward: bool = False
    """clip rewards to their sign (Atari standard); reported returns stay unclipped"""
    grad_history: int = 2
    """how many recent update gradients ``gradient_history()`` keeps"""

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        get_optimizer(self.optimizer)


def _to_tensors(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively, so ``torch.load(weights_only=True)`` can read the result."""
    if isinstance(obj, np.ndarray):
        # np.array, not np.ascontiguousarray: the latter turns 0-d arrays (counters, flags) into shape (1,).
        return torch.from_numpy(np.array(obj, order="C"))
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_tensors(v) for v in obj]
    return obj


def _to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    return obj


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


class ActorCriticLearner:
    """One training run of an on-policy actor-critic on one vectorised task."""

    Hyperparams: ClassVar[type]
    """the algorithm's hyperparameter dataclass (set by subclasses)"""
    uses_vector_env: ClassVar[bool] = True

    def __init__(
        self,
        config: ActorCriticConfig,
        *,
        seed: int,
        hparams: Any = None,
        device: str = "cpu",
        envs: gym.vector.VectorEnv | None = None,
    ) -> None:
        """``envs``: an existing vector env of ``config.task`` to reuse (it is reset with ``seed``
        and left open by ``close``); by default the learner builds and owns its own."""
        self.config = config
        self.seed = int(seed)
        self.device = torch.device(device)
        self.default_hparams = hparams if hparams is not None else self.Hyperparams()
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._owns_envs = envs is None
        self.envs = make_vector_env(config.task, config.num_envs) if envs is None else envs
        if self.envs.num_envs != config.num_envs:
            raise ValueError(f"envs has {self.envs.num_envs} environments, config.num_envs is {config.num_envs}")
        self.network = self.build_network(config, self.envs.single_observation_space, self.envs.single_action_space)
        self.params: Params = {
            # Initialise on CPU so a seed gives the same network on every device.
            k: v.to(self.device).requires_grad_()
            for k, v in self.network.init(torch.Generator().manual_seed(self.seed)).items()
        }
        self._opt_init, self._opt_update = get_optimizer(config.optimizer)
        self.opt_state: OptState = self._opt_init(self.params)
        self.collector = Collector(
            self.envs,
            self.network,
            self.generator,
            device=self.device,
            normalize_obs=config.normalize_obs,
            normalize_reward=config.normalize_reward,
            sign_reward=config.sign_reward,
        )
        self.collector.reset(seed=self.seed)
        self.timesteps = 0
        self.iterations = 0
        self.diverged = False
        self._grads: deque[Params] = deque(maxlen=config.grad_history)
        self._eval_env: gym.vector.VectorEnv | None = None
        self._eval_count = 0

    @classmethod
    def param_shapes(cls, config: ActorCriticConfig) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters a learner with ``config`` will have, without building it."""
        return cls.build_network(config, *task_spaces(config.task)).shapes()

    @staticmethod
    def build_network(config: ActorCriticConfig, obs_space: gym.Space, act_space: gym.Space) -> ActorCritic:
        discrete = isinstance(act_space, gym.spaces.Discrete)
        image = len(obs_space.shape) == 3
        return ActorCritic(
            obs_dim=0 if image else int(np.prod(obs_space.shape)),
            action_dim=int(act_space.n) if discrete else int(np.prod(act_space.shape)),
            discrete=discrete,
            hidden=config.hidden,
            activation=config.activation,
            cnn_channels=obs_space.shape[0] if image else 0,
        )

    # -- hyperparameters -------------------------------------------------
    def resolve_hparams(self, hparams: Mapping[str, float] | Any | None) -> Any:
        """Merge a (partial) mapping of hyperparameters into the defaults, checking names."""
        if hparams is None:
            return self.default_hparams
        if isinstance(hparams, self.Hyperparams):
            return hparams
        fields = {f.name: f.type for f in dataclasses.fields(self.Hyperparams)}
        unknown = set(hparams) - set(fields)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; known: {sorted(fields)}")
        cast = {k: int(round(float(v))) if fields[k] in (int, "int") else float(v) for k, v in hparams.items()}
        return dataclasses.replace(self.default_hparams, **cast)

    # -- the black-box path ----------------------------------------------
    def iterate(self, hparams: Mapping[str, float] | Any | None = None) -> IterationReport:
        """Collect ``num_envs * num_steps`` transitions, then update with ``hparams``."""
        hp = self.resolve_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True)
        batch, episodes = self.collector.collect(self.params, self.config.num_steps, hp.gamma)
        self.timesteps += batch.num_steps
        losses, stats = self._update(batch, hp)
        self.iterations += 1
        self.diverged = not self._finite(losses)
        return IterationReport(
            timesteps=self.timesteps,
            env_steps=batch.num_steps,
            episode_returns=tuple(e.ret for e in episodes),
            episode_lengths=tuple(e.length for e in episodes),
            losses=losses,
            stats=stats,
            diverged=self.diverged,
            wall_time=time.perf_counter() - start,
            rollout_return=self.collector.rollout_return,
        )

    def _update(self, batch: Batch, hp: Any) -> tuple[dict[str, float], dict[str, float]]:
        raise NotImplementedError

    def _apply(self, grads: Params, lr: float) -> None:
        """One update-rule step; the new parameters become leaves for the next gradient."""
        self._grads.appendleft(grads)
        with torch.no_grad():
            params, self.opt_state = self._opt_update(self.params, grads, self.opt_state, lr=lr)
        self.params = {k: v.requires_grad_() for k, v in params.items()}

    def _finite(self, losses: Mapping[str, float]) -> bool:
        norms = torch.stack(torch._foreach_norm(list(self.params.values())))
        return bool(torch.isfinite(norms).all()) and all(np.isfinite(v) for v in losses.values())

    # -- white-box access -------------------------------------------------
    def parameters(self) -> Params:
        return self.params

    def gradient_history(self) -> list[Params]:
        return list(self._grads)

    # -- snapshots ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Training state as tensors and numbers: ``torch.save`` it, ``torch.load(weights_only=True)`` it.

        Inner-env state is included where the engine exposes it (classic
        control, MuJoCo), so training resumes bit-for-bit; for Box2D and Atari
        ``load_state_dict`` starts fresh inner episodes instead.
        """
        state: dict[str, Any] = {
            "seed": self.seed,  # fresh inner episodes and evaluation seeds derive from it
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "opt_state": _clone(self.opt_state),
            "generator": self.generator.get_state(),
            "timesteps": self.timesteps,
            "iterations": self.iterations,
            "diverged": self.diverged,
            "grad_history": [_clone(g) for g in self._grads],
            "collector": _to_tensors(self.collector.state_dict()),
        }
        try:
            state["envs"] = _to_tensors(envstate.capture(self.envs))
        except NotImplementedError:
            pass
        return state

    def fresh_episode_seed(self) -> int:
        """Reset seed of the fresh inner episodes a restore starts where the engine cannot save its state.

        Distinct per lifetime and point in it; below 2**31, since ALE's vector env takes int32 seeds.
        """
        return (self.seed * 1_000_003 + self.timesteps) % (2**31 - 1)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["params"]) != set(self.params):
            raise ValueError(f"state has parameters {sorted(state['params'])}, this learner has {sorted(self.params)}")
        self.params = {k: state["params"][k].detach().clone().to(self.device).requires_grad_() for k in self.params}
        self.opt_state = _clone(dict(state["opt_state"]))
        self.generator.set_state(state["generator"])
        self.seed = int(state.get("seed", self.seed))
        self.timesteps = int(state["timesteps"])
        self.iterations = int(state["iterations"])
        self.diverged = bool(state["diverged"])
        self._grads = deque((_clone(g) for g in state["grad_history"]), maxlen=self.config.grad_history)
        restored = "envs" in state
        if restored:
            envstate.restore(self.envs, _to_numpy(state["envs"]))
        else:
            self.collector.reset(seed=self.fresh_episode_seed())
        self.collector.load_state_dict(_to_numpy(state["collector"]), episodes=restored)

    # -- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int = 10) -> list[float]:
        """Returns of the deterministic policy on separate envs; training state is untouched."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if self._eval_env is None:
            self._eval_env = make_vector_env(self.config.task, 1)
        env, returns = self._eval_env, []
        obs, _ = env.reset(seed=self.seed + 7919 * (1 + self._eval_count))
        self._eval_count += 1
        total = 0.0
        while len(returns) < episodes:
            x = torch.as_tensor(self.collector.normalize(obs), device=self.device)
            policy_out, _ = self.network.forward(self.params, x)
            action = sample(policy_out, self.params, self.network.discrete, self.generator, deterministic=True)
            action = action.cpu().numpy()
            if self.collector._low is not None:
                action = np.clip(action, self.collector._low, self.collector._high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward[0])
            if terminated[0] or truncated[0]:
                returns.append(total)
                total = 0.0
        return returns

    def close(self) -> None:
        if self._owns_envs:
            self.envs.close()
        if self._eval_env is not None:
            self._eval_env.close()
