"""HyperEnv: one lifetime of one inner learner as a Gymnasium episode."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hyperenvs import registry
from hyperenvs.observers import Context, make_observers
from hyperenvs.rewards import make_reward
from hyperenvs.spaces import HyperparameterSpace

RECENT_EPISODES = 10


class HyperEnv(gym.Env):
    """``step(action)`` sets hyperparameters and runs a slice of inner training.

    Built by ``gym.make("HyperRL/<ALGO>-<Task>-v0", **overrides)``; see
    ``__init__`` for the overrides.  ``env.unwrapped.learner`` is the
    white-box handle; ``snapshot()``/``restore()`` fork a lifetime.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        entry: str,
        *,
        total_timesteps: int | None = None,
        hyperparameters: Sequence[str] | Mapping[str, tuple[float, float] | None] | None = None,
        action_type: str = "continuous",
        bins: int | Mapping[str, int | Sequence[float]] | None = None,
        observe: Sequence[str] | None = None,
        reward: str = "mean_return",
        num_envs: int | None = None,
        device: str = "cpu",
        iterations_per_step: int | None = None,
        config: Mapping[str, Any] | None = None,
        defaults: Mapping[str, float] | None = None,
        timing: bool = True,
        gymnasium_env: bool = False,
    ) -> None:
        """
        Args:
            entry: the registry id this env was made from.
            total_timesteps: lifetime budget in inner env steps (the id's default when None).
            hyperparameters: which to control: a list of names, or ``{name: (low, high) | None}``
                where None keeps the id's range.
            action_type: ``"continuous"`` (Box in [-1, 1]) or ``"discrete"`` (MultiDiscrete bins).
            bins: bins per hyperparameter for discrete actions: a count, or per-name counts or values;
                None (and names left out) keeps each hyperparameter's declared bins.
            observe: observation parts, from ``projection`` and ``statistics``.
            reward: ``mean_return``, ``improvement`` or ``final_return``.
            num_envs: parallel inner environments (overrides the id's config).
            device: torch device of the learner, ``cpu`` or ``cuda``.
            iterations_per_step: learner iterations per hyper-step.
            config: further overrides of the learner's config dataclass fields.
            defaults: values of the hyperparameters the agent does not control.
            timing: put the step's wall time in ``info["wall_time"]`` (and the part of it spent
                compiling in ``info["compile_seconds"]``); off makes ``info`` deterministic, as
                Gymnasium's ``check_env`` requires.
            gymnasium_env: run the inner task on Gymnasium's own env instead of its batched torch
                twin (the ``-v1`` classic-control ids); a no-op for ids already on Gymnasium.
        """
        self.entry = registry.get(entry)
        self.total_timesteps = _positive_int("total_timesteps", total_timesteps, self.entry.total_timesteps)
        self.iterations_per_step = _positive_int("iterations_per_step", iterations_per_step, self.entry.iterations_per_step)
        self.device = _check_device(device)
        self.timing = timing
        if not isinstance(gymnasium_env, bool):
            raise ValueError(f"gymnasium_env must be True or False, got {gymnasium_env!r}")
        self.gymnasium_env = gymnasium_env
        self.config = self._make_config(config, num_envs)
        all_hparams = HyperparameterSpace(self.entry.hyperparameters(), action_type=action_type)
        chosen = self._choose(all_hparams, hyperparameters)
        self.hparam_space = HyperparameterSpace(chosen, action_type=action_type, bins=bins)
        self.defaults = self._make_defaults(all_hparams, defaults)
        self.action_space = self.hparam_space.action_space
        learner_cls = registry.load(self.entry.algorithm.learner)
        if hasattr(learner_cls, "check_budget"):  # a budget one iteration overruns fails here, not minutes later
            learner_cls.check_budget(self.config, self.total_timesteps)
        parts = observe if observe is not None else self.entry.observe
        self.observers = make_observers(parts, learner_cls.param_shapes(self.config), learner=learner_cls)
        self.observation_space = spaces.Dict({name: obs.space for name, obs in self.observers.items()})
        self.reward_fn = make_reward(reward)
        self.learner = None
        self._inner_envs = None
        self._ended = True

    # -- construction helpers ------------------------------------------------
    def _make_config(self, overrides: Mapping[str, Any] | None, num_envs: int | None) -> Any:
        cls = registry.load(self.entry.algorithm.config)
        task = registry.gymnasium_task(self.entry.task) if self.gymnasium_env else self.entry.task
        values = {"task": task, **self.entry.config, **(overrides or {})}
        if num_envs is not None:
            values["num_envs"] = _positive_int("num_envs", num_envs, 1)
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; {cls.__name__} has {sorted(known)}")
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def _choose(self, space: HyperparameterSpace, selection: Any) -> list:
        if selection is None:
            selection = self.entry.algorithm.controlled
        if isinstance(selection, str):
            raise ValueError(f"hyperparameters must be a list of names or a mapping, got the string {selection!r}")
        if not isinstance(selection, Mapping):
            selection = {name: None for name in selection}
        if not selection:
            raise ValueError(f"hyperparameters must name at least one of {list(space.names)}")
        return space.with_ranges(selection)

    def _make_defaults(self, space: HyperparameterSpace, overrides: Mapping[str, float] | None) -> dict[str, float]:
        hparams_cls = registry.load(self.entry.algorithm.hparams)
        fields = set(hparams_cls.__dataclass_fields__)
        values = {**{k: v for k, v in space.defaults().items()}, **self.entry.defaults}
        for name, value in (overrides or {}).items():
            if name not in fields:
                raise ValueError(f"unknown hyperparameter {name!r} in defaults; {hparams_cls.__name__} has {sorted(fields)}")
            values[name] = _check_default(name, value)
        return values

    # -- the Gymnasium API ---------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start a fresh lifetime: new learner, network and inner envs, all seeded from ``seed``."""
        super().reset(seed=seed)
        if self.learner is not None:
            self.learner.close()
        learner_cls = registry.load(self.entry.algorithm.learner)
        if self._inner_envs is None and getattr(learner_cls, "uses_vector_env", True):
            # Built once per HyperEnv: lifetimes re-seed it rather than pay the simulator start-up.
            make = registry.load("agents.rollout:make_vector_env")
            self._inner_envs = make(self.config.task, self.config.num_envs, self.device)
        hparams_cls = registry.load(self.entry.algorithm.hparams)
        learner_seed = int(self.np_random.integers(2**31 - 1))
        self.learner = learner_cls(
            self.config,
            seed=learner_seed,
            hparams=hparams_cls(**_typed(hparams_cls, self.defaults)),
            device=self.device,
            envs=self._inner_envs,
        )
        self.reward_fn.reset()
        self._recent: deque[float] = deque(maxlen=RECENT_EPISODES)
        self._losses: dict[str, float] = {}
        self._stats: dict[str, float] = {}
        self._ended = False
        defaults = self.hparam_space.defaults()
        info = {"hyperparameters": defaults, "timesteps": 0, "default_action": self.hparam_space.encode(defaults)}
        return self._observe(), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.learner is None:
            raise RuntimeError("step() called before reset(): call env.reset(seed=...) to start a lifetime")
        if self._ended:
            raise RuntimeError("step() called after the lifetime ended (terminated or truncated): call env.reset()")
        chosen = self.hparam_space.decode(action)
        hparams = {**self.defaults, **chosen}
        start, compiling = time.perf_counter(), getattr(self.learner, "compile_seconds", 0.0)
        returns: list[float] = []
        rollouts: list[float] = []
        diverged, divergence = False, ""
        for _ in range(self.iterations_per_step):
            report = self.learner.iterate(hparams)
            returns.extend(report.episode_returns)
            rollouts.append(report.rollout_return)
            self._losses, self._stats = dict(report.losses), dict(report.stats)
            diverged = report.diverged
            divergence = report.divergence or ("diverged (no cause reported)" if diverged else "")
            if diverged or self.learner.timesteps >= self.total_timesteps:
                break
        self._recent.extend(returns)
        truncated = not diverged and self.learner.timesteps >= self.total_timesteps
        self._ended = diverged or truncated
        reward = float(np.nan_to_num(self.reward_fn(returns, self._recent_mean(), self._ended)))
        info = {
            "hyperparameters": chosen,
            "timesteps": self.learner.timesteps,
            "episode_returns": tuple(returns),
            # () where the learner measures none: NaN would make equal infos compare unequal (Gymnasium's checks)
            "rollout_return": tuple(rollouts) if np.isfinite(rollouts).any() else (),
            "losses": self._losses,
            "stats": self._stats,
            "diverged": diverged,
            "divergence": divergence,  # why it diverged, e.g. a non-finite loss or a parameter norm beyond its bound
        }
        if self.timing:
            info["wall_time"] = time.perf_counter() - start
            info["compile_seconds"] = getattr(self.learner, "compile_seconds", 0.0) - compiling
        return self._observe(), reward, diverged, truncated, info

    def _recent_mean(self) -> float:
        return float(np.mean(self._recent)) if self._recent else 0.0

    def _observe(self) -> dict[str, np.ndarray]:
        context = Context(
            losses=self._losses,
            stats=self._stats,
            recent_return=self._recent_mean(),
            budget_fraction=min(1.0, self.learner.timesteps / self.total_timesteps),
        )
        return {name: observer(self.learner, context) for name, observer in self.observers.items()}

    # -- forking a lifetime ----------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole lifetime: ``restore`` it any number of times, here or into another env of the same id.

        Plain data (tensors, numbers, lists, dicts), so ``torch.save(snapshot, path)`` and
        ``restore(torch.load(path, weights_only=True))`` resume a lifetime from a file.
        """
        if self.learner is None:
            raise RuntimeError("snapshot() called before reset()")
        return {
            "learner": self.learner.state_dict(),
            "recent": list(self._recent),
            "losses": dict(self._losses),
            "stats": dict(self._stats),
            "ended": self._ended,
            "reward": self.reward_fn.state_dict(),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Return the lifetime to ``snapshot``; gives the observation at that point."""
        if self.learner is None:
            raise RuntimeError("restore() called before reset(): the learner to restore into does not exist")
        self.learner.load_state_dict(snapshot["learner"])
        self._recent = deque(snapshot["recent"], maxlen=RECENT_EPISODES)
        self._losses, self._stats = dict(snapshot["losses"]), dict(snapshot["stats"])
        self._ended = snapshot["ended"]
        self.reward_fn.load_state_dict(snapshot["reward"])
        return self._observe()

    def close(self) -> None:
        if self.learner is not None:
            self.learner.close()
            self.learner = None
        if self._inner_envs is not None:
            self._inner_envs.close()
            self._inner_envs = None
        super().close()


def _positive_int(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_device(device: str) -> str:
    """Fail at ``gym.make`` rather than at ``reset`` when ``device`` cannot be used."""
    import torch  # here, not at import: importing hyperenvs stays free of torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device here; use device='cpu'")
    return device


def _check_default(name: str, value: Any) -> float:
    """A fixed hyperparameter value: a finite, non-negative number (0 can mean "off", e.g. max_grad_norm)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"defaults[{name!r}] must be a number, got {value!r}") from err
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"defaults[{name!r}] must be finite and >= 0, got {value}")
    return value


def _typed(cls: type, values: Mapping[str, float]) -> dict[str, float | int]:
    """Cast each value to its dataclass field's type (integers for minibatch sizes and epochs)."""
    types = {name: f.type for name, f in cls.__dataclass_fields__.items()}
    return {k: int(round(v)) if types[k] in (int, "int") else float(v) for k, v in values.items() if k in types}
