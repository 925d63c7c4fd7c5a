"""The Ray Tune side of PBT and PB2: a lifetime as a Trainable, the guarded schedulers, and the fit.

Imported only once a population run starts (it imports Ray).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

import hyperenvs
from solvers.base import Callback, RunLog, StepRecord, StopRun
from solvers.checkpoint import write_state
from solvers.tensorboard import StepScalars, summary_writer

gym.register_envs(hyperenvs)

LIFETIME_FILE = "lifetime.pt"
"""the one file of a member's checkpoint: its snapshot, its RunLog and who saved it"""
METRIC = "return"
"""what the population is ranked by: the mean return of the member's last 10 inner episodes"""
TIME_ATTR = "hyper_step"
"""PBT's clock: hyper-steps of the member's lineage (an exploit inherits the source's)"""


@dataclass(frozen=True, kw_only=True)
class MemberSetup:
    """What every member shares: the env to rebuild and how to read its hyperparameters from the config."""

    env_id: str
    """the HyperRL id"""
    env_kwargs: dict[str, Any]
    """``gym.make`` overrides, as the solver's env was made"""
    solver: str
    """``pbt`` or ``pb2``, for the RunLogs"""
    coordinates: str
    """``natural`` (config holds hyperparameter values) or ``unit`` (config holds actions in [-1, 1])"""
    space: list[dict[str, Any]] = field(default_factory=list)
    """the controlled hyperparameters, for the RunLogs' headers"""
    integers: tuple[str, ...] = ()
    """hyperparameters that take whole numbers (minibatch size, epochs)"""
    tensorboard: str | None = None
    """directory for per-member TensorBoard scalars"""


def params_digest(learner: Any) -> str:
    """SHA-256 of the learner's parameters, in name order: equal digests, equal parameters bit for bit."""
    sha = hashlib.sha256()
    for name, value in sorted(learner.parameters().items()):
        sha.update(name.encode())
        sha.update(value.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def _flat(learner: Any) -> torch.Tensor:
    return torch.cat([v.detach().flatten().double() for _, v in sorted(learner.parameters().items())])


class LifetimeTrainable(tune.Trainable):
    """One member: a HyperRL lifetime, one hyper-step per ``step``, checkpointed as its snapshot."""

    def setup(self, config: dict[str, Any], member: MemberSetup) -> None:
        self.member = member
        self.env = gym.make(member.env_id, **member.env_kwargs)
        self.space = self.env.unwrapped.hparam_space
        self.scalars, self._scalars_of = None, None
        self._begin(config)

    def _open_scalars(self) -> None:
        """This trial's TensorBoard writer: a reused actor may now run another trial."""
        if not self.member.tensorboard or self._scalars_of == self.trial_name:
            return
        if self.scalars is not None:
            self.scalars.close()
        self.scalars = StepScalars(summary_writer(Path(self.member.tensorboard) / self.trial_name))
        self._scalars_of = self.trial_name

    def _begin(self, config: dict[str, Any]) -> None:
        """A fresh lifetime with this config's seed (a checkpoint, if one follows, replaces it)."""
        seed = int(config["lifetime_seed"])
        self.env.reset(seed=seed)
        self.log = RunLog(solver=self.member.solver, env_id=self.member.env_id, seed=seed, space=list(self.member.space))
        self.restored: dict[str, Any] = {}
        self._open_scalars()
        if self.scalars is not None:
            self.scalars.reset()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        # Called when this actor is reused for another trial or an exploit: the lifetime
        # starts afresh and ``load_checkpoint`` (when the trial has one) restores the right one.
        self._begin(new_config)
        return True

    def action(self) -> np.ndarray:
        """This config's hyperparameters as the env's action (clipped into the ranges)."""
        if self.member.coordinates == "unit":
            return np.clip(np.array([self.config[n] for n in self.space.names], dtype=np.float32), -1.0, 1.0)
        return self.space.encode({n: float(self.config[n]) for n in self.space.names})

    def step(self) -> dict[str, Any]:
        start = time.perf_counter()
        before = _flat(self.env.unwrapped.learner)
        _, reward, terminated, truncated, info = self.env.step(self.action())
        after = _flat(self.env.unwrapped.learner)
        record = StepRecord.of_step(len(self.log), reward, info, time.perf_counter() - start)
        self.log.append(record)
        if self.scalars is not None:
            self.scalars.write(record.reward, info, record.wall_time)
        result = {
            METRIC: self.log.final_return(),
            TIME_ATTR: len(self.log),
            "timesteps": record.timesteps,
            "done": bool(terminated or truncated),
            "update_norm": float(torch.linalg.vector_norm(after - before)),
            "params_digest": params_digest(self.env.unwrapped.learner),
            "record": json.dumps(asdict(record)),
            **self.restored,
        }
        self.restored = {}
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        state = {
            "lifetime": self.env.unwrapped.snapshot(),
            "log": self.log.dumps(),
            "trial": self.trial_id,
            "digest": params_digest(self.env.unwrapped.learner),
        }
        write_state(state, Path(checkpoint_dir) / LIFETIME_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / LIFETIME_FILE, weights_only=True)
        self.env.unwrapped.restore(state["lifetime"])
        self.log = RunLog.loads(state["log"], source=f"checkpoint of trial {state['trial']}")
        self.restored = {"restored_from": state["trial"], "restored_digest": params_digest(self.env.unwrapped.learner)}
        if self.scalars is not None:
            self.scalars.restart_from([x for r in self.log.records for x in r.episode_returns])

    def cleanup(self) -> None:
        if self.scalars is not None:
            self.scalars.close()
        self.env.close()


def holds_lifetime(checkpoint: Any) -> bool:
    """True when ``checkpoint`` is a saved Tune checkpoint with a lifetime in it (never a pending or absent one)."""
    if not isinstance(checkpoint, tune.Checkpoint):
        return False
    from pyarrow.fs import FileType

    info = checkpoint.filesystem.get_file_info(f"{checkpoint.path}/{LIFETIME_FILE}")
    return info.type == FileType.File


class _Guarded:
    """Exploits only sources whose checkpoint holds a lifetime, and writes every exploit to ``events_path``."""

    events_path: Path | None = None
    names: tuple[str, ...] = ()

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        source = self._trial_state[trial_to_clone]
        if not holds_lifetime(source.last_checkpoint):
            return  # ray#27170: a member that never checkpointed has nothing to copy
        super()._exploit(tune_controller, trial, trial_to_clone)
        event = {
            "target": trial.trial_id,
            "source": trial_to_clone.trial_id,
            "hyper_step": source.last_train_time,
            "checkpoint": source.last_checkpoint.path,
            "source_config": {n: trial_to_clone.config[n] for n in self.names},
            "config": {n: trial.config[n] for n in self.names},
        }
        if self.events_path is not None:
            with open(self.events_path, "a") as f:
                f.write(json.dumps(event) + "\n")


class GuardedPBT(_Guarded, PopulationBasedTraining):
    """Ray Tune's PBT with the guard above."""


class GuardedPB2(_Guarded, PB2):
    """Ray Tune's PB2 with the guard above; members without a return yet stay out of its GP data."""

    def _save_trial_state(self, state: Any, time: int, result: dict, trial: Any) -> float:
        if np.isnan(result[METRIC]):  # no inner episode has ended: PBT leaves the member out of the ranking
            return PopulationBasedTraining._save_trial_state(self, state, time, result, trial)
        return super()._save_trial_state(state, time, result, trial)


def _mutations(space: list[dict[str, Any]], integers: set[str]) -> dict[str, Any]:
    out = {}
    for h in space:
        if h["name"] in integers:
            draw = tune.lograndint if h["log"] else tune.randint
            out[h["name"]] = draw(int(h["low"]), int(h["high"]) + 1)
        elif h["log"]:
            out[h["name"]] = tune.loguniform(h["low"], h["high"])
        else:
            out[h["name"]] = tune.uniform(h["low"], h["high"])
    return out


def _clipper(space: list[dict[str, Any]], integers: set[str]) -> Any:
    """PBT scales values by 0.8 or 1.2: put them back into their ranges so the config says what trains."""

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        for h in space:
            value = min(max(float(config[h["name"]]), h["low"]), h["high"])
            config[h["name"]] = int(round(value)) if h["name"] in integers else value
        return config

    return explore


def make_scheduler(solver: Any, member: MemberSetup, integers: set[str], events_path: Path | None) -> Any:
    cfg = solver.config
    names = tuple(h["name"] for h in member.space)
    common = dict(
        time_attr=TIME_ATTR,
        metric=METRIC,
        mode="max",
        perturbation_interval=cfg.perturbation_interval,
        quantile_fraction=cfg.quantile_fraction,
        synch=cfg.synch,
        log_config=False,
    )
    if solver.scheduler == "pb2":
        scheduler = GuardedPB2(hyperparam_bounds={n: [-1.0, 1.0] for n in names}, **common)
    else:
        scheduler = GuardedPBT(
            hyperparam_mutations=_mutations(member.space, integers),
            resample_probability=cfg.resample_probability,
            custom_explore_fn=_clipper(member.space, integers),
            **common,
        )
    scheduler.events_path, scheduler.names = events_path, names
    return scheduler


RESULT_KEYS = (METRIC, TIME_ATTR, "timesteps", "update_norm", "params_digest", "record", "restored_from", "restored_digest")
"""what each member's results keep for the run's record (``solver.results``)"""


class _Relay(tune.Callback):
    """Hands every member's hyper-step to the run's callback; a StopRun from it stops the whole population."""

    def __init__(self, callback: Callback | None) -> None:
        self.callback = callback
        self.stopped = False
        self.results: list[dict[str, Any]] = []

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; the run's callback (a progress
        # bar, say) need not pickle, and a restored experiment has no run to report to.
        return {**self.__dict__, "callback": None, "results": []}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "record" not in result:
            return
        self.results.append({"trial": trial.trial_id, **{k: result[k] for k in RESULT_KEYS if k in result}})
        if self.callback is None or self.stopped:
            return
        row = json.loads(result["record"])
        row["episode_returns"] = tuple(row["episode_returns"])
        try:
            self.callback(StepRecord(**row))
        except StopRun:
            self.stopped = True


class _StopAll(tune.Stopper):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.relay.stopped


def fit(
    solver: Any, member: MemberSetup, members: list[dict[str, Any]], *, storage: Path, callback: Callback | None
) -> tuple[list[RunLog], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the population to the end of its lifetimes; returns each member's RunLog, the exploit events, every result."""
    storage = storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    events_path = storage / "exploits.jsonl"
    events_path.write_text("")
    integers = set(member.integers)
    relay = _Relay(callback)
    param_space: dict[str, Any] = {"member": tune.grid_search(list(range(len(members))))}
    for key in members[0]:
        param_space[key] = tune.sample_from(lambda config, key=key: members[config["member"]][key])
    tuner = tune.Tuner(
        tune.with_parameters(LifetimeTrainable, member=member),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=make_scheduler(solver, member, integers, events_path), reuse_actors=True),
        run_config=tune.RunConfig(
            name=member.solver,
            storage_path=str(storage),
            verbose=0,
            stop=_StopAll(relay),
            callbacks=[relay],
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=solver.config.keep_checkpoints),
        ),
    )
    with _quiet_tune():
        grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} member(s) of the population failed; first: {grid.errors[0]}")
    logs = [_final_log(result) for result in sorted(grid, key=lambda r: r.path)]
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    if relay.stopped:
        stop = StopRun()
        stop.log = max(logs, key=lambda log: np.nan_to_num(log.final_return(), nan=-np.inf))
        raise stop
    return logs, events, relay.results


@contextlib.contextmanager
def _quiet_tune() -> Any:
    """Tune narrates every exploit at INFO (the exploit events file has them all) and prints a
    header table even at ``verbose=0`` unless its older console output is chosen; both are put
    back as they were after the run."""
    logger, saved_env = logging.getLogger("ray.tune"), os.environ.get("RAY_AIR_NEW_OUTPUT")
    level = logger.level
    logger.setLevel(logging.WARNING)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        logger.setLevel(level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env


def _final_log(result: Any) -> RunLog:
    with result.checkpoint.as_directory() as path:
        state = torch.load(Path(path) / LIFETIME_FILE, weights_only=True)
    return RunLog.loads(state["log"], source=str(result.path))
