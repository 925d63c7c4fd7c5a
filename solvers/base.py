"""The Solver protocol and RunLog, the record of one solver's run on one lifetime."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@dataclass(frozen=True, kw_only=True)
class SolverSpec:
    """What a solver needs from the env it runs on; the command line builds the env from it."""

    action_type: str = "continuous"
    """``continuous`` (Box in [-1, 1]) or ``discrete`` (MultiDiscrete bins: EPGT, RND, DQN)"""
    observe: tuple[str, ...] = ()
    """observation parts the solver reads (EPGT: ``projection``), added to the id's own"""
    env_config: Mapping[str, Any] = field(default_factory=dict)
    """learner config overrides the solver needs (STACX: ``{"aux_heads": 2}``)"""

    def __post_init__(self) -> None:
        if self.action_type not in ("continuous", "discrete"):
            raise ValueError(f"SolverSpec.action_type must be 'continuous' or 'discrete', got {self.action_type!r}")


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One hyper-step as a solver saw it."""

    step: int
    """hyper-step index within the lifetime, from 0"""
    timesteps: int
    """inner env steps spent by the end of this hyper-step"""
    hyperparameters: dict[str, float]
    """the decoded hyperparameters this step trained with"""
    reward: float
    """the hyper-reward"""
    episode_returns: tuple[float, ...]
    """returns of the inner episodes that ended during the step"""
    wall_time: float
    """seconds of the whole ``env.step`` call plus the solver's own decision time"""
    diverged: bool = False
    """True when the inner training diverged at this step (the lifetime then ends)"""
    meta_env_steps: int = 0
    """inner env steps a meta-level spent outside the lifetime by the end of this step (BiERL's scoring),
    from ``info["meta_env_steps"]``; whether ``timesteps`` includes them is the solver's ``charge_budget``"""

    @classmethod
    def of_step(cls, step: int, reward: float, info: Mapping[str, Any], wall_time: float) -> StepRecord:
        """The record of hyper-step ``step`` from what ``env.step`` returned."""
        return cls(
            step=step,
            timesteps=int(info["timesteps"]),
            hyperparameters=dict(info["hyperparameters"]),
            reward=float(reward),
            episode_returns=tuple(float(x) for x in info["episode_returns"]),
            wall_time=wall_time,
            diverged=bool(info.get("diverged", False)),
            meta_env_steps=int(info.get("meta_env_steps", 0)),
        )


@dataclass(kw_only=True)
class RunLog:
    """Per hyper-step record of a run; saved as JSON lines (a header line, then one line a step)."""

    solver: str
    """the solver's registered name (``static``, ``epgt``, ...)"""
    env_id: str
    """the hyper-env's id, e.g. ``HyperRL/PPO-CartPole-v0``"""
    seed: int
    """the seed the lifetime was reset with"""
    threads: int | None = None
    """torch intra-op threads the run trained with (``hyperrl --threads``); results are bit-for-bit
    reproducible per thread count only.  None: not recorded (logs written before the field existed)"""
    space: list[dict[str, Any]] = field(default_factory=list)
    """the controlled hyperparameters (``name, low, high, log``), for plots"""
    records: list[StepRecord] = field(default_factory=list)
    """one record per hyper-step, in order"""

    def append(self, record: StepRecord) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def timesteps(self) -> np.ndarray:
        return np.array([r.timesteps for r in self.records])

    def returns(self, window: int = 10) -> np.ndarray:
        """Mean return of the last ``window`` inner episodes at each hyper-step (NaN before any)."""
        seen: list[float] = []
        out = []
        for r in self.records:
            seen.extend(r.episode_returns)
            out.append(np.mean(seen[-window:]) if seen else np.nan)
        return np.array(out)

    def schedule(self) -> dict[str, np.ndarray]:
        """Each hyperparameter's value over the hyper-steps."""
        names = list(self.records[0].hyperparameters) if self.records else []
        return {n: np.array([r.hyperparameters[n] for r in self.records]) for n in names}

    def final_return(self, window: int = 10) -> float:
        curve = self.returns(window)
        return float(curve[-1]) if len(curve) else float("nan")

    def dumps(self) -> str:
        """JSON lines: a header line, then one line a hyper-step."""
        header = {"solver": self.solver, "env_id": self.env_id, "seed": self.seed, "threads": self.threads, "space": self.space}
        return "".join(json.dumps(row) + "\n" for row in [{"header": header}, *map(asdict, self.records)])

    @classmethod
    def loads(cls, text: str, source: str = "the text") -> RunLog:
        lines = text.splitlines()
        if not lines or "header" not in json.loads(lines[0]):
            raise ValueError(f"{source} is not a HyperRL RunLog: its first line has no header")
        log = cls(**json.loads(lines[0])["header"])
        for line in lines[1:]:
            row = json.loads(line)
            row["episode_returns"] = tuple(row["episode_returns"])
            log.append(StepRecord(**row))
        return log

    def save(self, path: str | Path) -> Path:
        """Write JSON lines to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.dumps())
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunLog:
        return cls.loads(Path(path).read_text(), source=str(path))


Callback = Callable[[StepRecord], None]


@runtime_checkable
class Solver(Protocol):
    """A meta-controller: runs one lifetime of a hyper-environment and logs it."""

    name: str
    spec: SolverSpec
    """what it needs from its env (the command line builds the env from it)"""

    def run(self, env: gym.Env, *, seed: int, callback: Callback | None = None) -> RunLog: ...


@runtime_checkable
class Stateful(Protocol):
    """A solver whose run can be checkpointed and resumed (``hyperrl run --resume``).

    ``state_dict()`` returns everything the solver needs to continue a lifetime
    exactly where it stopped, as plain data: tensors, numbers, strings, and lists
    or dicts of them, so that ``torch.load(..., weights_only=True)`` reads it
    back.  ``load_state_dict(state)`` puts that state back.  To resume,
    ``solvers.checkpoint.restore`` resets a fresh env with the run's seed, calls
    ``begin`` (the solver binds to the env as at the lifetime's start), restores
    the lifetime's snapshot, then calls ``load_state_dict``; ``resume`` carries on.
    A solver with nothing to carry between hyper-steps returns ``{}``.
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class EpisodeSolver:
    """Template for solvers that act once per hyper-step (ask/tell).

    ``run`` does the bookkeeping; subclasses fill ``begin`` (once per
    lifetime), ``act`` (choose an action) and ``observe`` (learn from the
    outcome).  Black-box: only ``reset``/``step`` and what they return.
    """

    name = "solver"
    spec = SolverSpec()
    """a continuous Box action and the id's own observation; subclasses declare theirs"""

    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        """Called after ``env.reset``."""

    def act(self, obs: Any) -> Any:
        raise NotImplementedError

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        """Called after each ``env.step``."""

    def run(self, env: gym.Env, *, seed: int, callback: Callback | None = None) -> RunLog:
        log = RunLog(solver=self.name, env_id=env.spec.id if env.spec else type(env).__name__, seed=seed)
        obs, info = env.reset(seed=seed)
        self.begin(env, obs, info, seed)
        return self._loop(env, obs, log, callback)

    def resume(self, env: gym.Env, obs: Any, log: RunLog, *, callback: Callback | None = None) -> RunLog:
        """Continue a lifetime that stopped after ``log``'s last hyper-step.

        ``env`` must stand where that step left it (``env.unwrapped.restore`` of a snapshot
        taken then) and this solver must hold the state it had then (``begin`` on the env,
        then ``load_state_dict``: see ``Stateful``), so the rest of the run is the run that
        was interrupted.  ``begin`` is not called here.
        """
        if log.records and log.records[-1].diverged:
            raise ValueError("that lifetime already ended (diverged): there is nothing to resume")
        return self._loop(env, obs, log, callback)

    def _loop(self, env: gym.Env, obs: Any, log: RunLog, callback: Callback | None) -> RunLog:
        done, step = False, len(log)
        while not done:
            start = time.perf_counter()
            action = self.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            self.observe(action, obs, float(reward), done, info)
            record = StepRecord.of_step(step, reward, info, time.perf_counter() - start)
            log.append(record)
            if callback is not None:
                try:
                    callback(record)
                except StopRun as stop:  # the run ends on this step's boundary; the caller gets what it did
                    stop.log = log
                    raise
            step += 1
        return log


class StopRun(Exception):
    """Raised by a run's callback to end it after the hyper-step just recorded (a clean point to checkpoint).

    As it leaves ``run`` or ``resume``, ``log`` holds the run's RunLog up to and including that step.
    """

    log: RunLog | None = None


def describe_space(env: gym.Env) -> list[dict[str, Any]]:
    """The controlled hyperparameters of a HyperRL env, for a RunLog header (empty if unknown)."""
    try:
        space = env.get_wrapper_attr("hparam_space")
    except AttributeError:
        return []
    return [{"name": h.name, "low": h.low, "high": h.high, "log": h.log} for h in space.hyperparameters]


def mean_or_nan(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
