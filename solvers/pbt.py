"""PBT and PB2 through Ray Tune: a population of lifetimes that copy the best and perturb their hyperparameters.

Each Tune trial is one HyperRL lifetime, advanced one hyper-step per ``Trainable.step``;
its checkpoint is the lifetime's ``snapshot()`` (plain tensors, read back with
``weights_only=True``).  An exploit restores the source trial's snapshot and the
next hyper-step trains with the *perturbed* hyperparameters: they live in the
trial's config and reach the learner with every ``iterate`` call, so a restore
cannot bring the source's old values back (ray#62173).  A trial that has not
checkpointed is never a source (ray#27170), and the mutations are rebuilt from
the env's space on every run rather than restored (ray#54755): a PBT run is not
resumed through ``Tuner.restore``.

A population spends ``population`` lifetimes of env steps.  ``run`` returns the
RunLog of the best member's lineage (the records it inherited at each exploit,
then its own), so ``hyperrl run pbt`` saves and plots one lifetime like any
solver; with ``out`` set, every member's RunLog and the exploit events are saved.

Ray is imported only when a run starts (the ``distributed`` extra).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.seeding import derive
from solvers.base import Callback, RunLog, SolverSpec, describe_space


@dataclass(frozen=True, kw_only=True)
class PBTConfig:
    """How the population is run; every field is checked before Ray starts."""

    population: int = 8
    """lifetimes trained side by side (at least 2: one to copy, one to copy it)"""
    perturbation_interval: int = 4
    """hyper-steps between two exploit/explore rounds"""
    quantile_fraction: float = 0.25
    """the bottom fraction copies the top fraction at each round"""
    resample_probability: float = 0.25
    """PBT: chance a hyperparameter is drawn afresh from its range instead of scaled by 0.8 or 1.2"""
    synch: bool = True
    """compare the whole population at the same hyper-step (fair at equal env steps; PBT's asynchronous mode when False)"""
    address: str | None = None
    """a Ray cluster to join (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None starts Ray on this machine"""
    num_cpus: int | None = None
    """CPUs of a locally started Ray (all when None); a lifetime takes one"""
    out: str | None = None
    """directory for every member's RunLog, the exploit events and Tune's files (a temporary one when None)"""
    tensorboard: str | None = None
    """directory for per-member TensorBoard scalars (none when None)"""
    keep_checkpoints: int | None = 4
    """checkpoints kept per member (all when None); more than 2, since a source's latest must outlive its exploit"""

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError(f"population must be at least 2 (one member to copy, one to copy it), got {self.population}")
        if self.perturbation_interval < 1:
            raise ValueError(f"perturbation_interval must be at least 1 hyper-step, got {self.perturbation_interval}")
        if not 0.0 < self.quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must lie in (0, 0.5], got {self.quantile_fraction}")
        if not 0.0 <= self.resample_probability <= 1.0:
            raise ValueError(f"resample_probability must lie in [0, 1], got {self.resample_probability}")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 3:
            raise ValueError(f"keep_checkpoints must be at least 3 (or None: all), got {self.keep_checkpoints}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"num_cpus must be at least 1, got {self.num_cpus}")


class PBTSolver:
    """Population-based training (Jaderberg et al. 2017): truncation selection, explore by x0.8 / x1.2 or resampling.

    The population searches the env's hyperparameters in their own units (log-scaled ones
    scaled multiplicatively, as PBT does); values leaving a range are clipped back into it.
    """

    name = "pbt"
    scheduler = "pbt"
    population_based = True
    spec = SolverSpec(action_type="continuous")
    """members act through the env's Box actions (PB2 searches those [-1, 1] coordinates)"""

    def __init__(self, config: PBTConfig | None = None, **fields: Any) -> None:
        self.config = config if config is not None else PBTConfig(**fields)
        from solvers import raycluster

        if self.config.address is not None:  # an unreachable cluster fails here, before any env is built
            raycluster.check_address(self.config.address)
        raycluster.require(f"the {self.name} solver")
        self.logs: list[RunLog] = []
        """every member's RunLog, in member order, after ``run``"""
        self.exploits: list[dict[str, Any]] = []
        """the exploit events: target, source, the source's checkpoint, the hyperparameters before and after"""
        self.results: list[dict[str, Any]] = []
        """every member's per-hyper-step results as Tune received them (parameter digests, update norms)"""

    def run(self, env: gym.Env, *, seed: int, callback: Callback | None = None) -> RunLog:
        """Train a population on ``env``'s id and settings; returns the best member's lineage (see the module doc)."""
        spec = _spec_of(env)
        from solvers import raycluster

        raycluster.connect(self.config.address, num_cpus=self.config.num_cpus, what=f"the {self.name} solver")
        from solvers import pbt_tune

        out = Path(self.config.out) if self.config.out else Path(tempfile.mkdtemp(prefix=f"hyperrl-{self.name}-"))
        space = env.unwrapped.hparam_space
        setup = pbt_tune.MemberSetup(
            env_id=spec.id,
            env_kwargs=dict(spec.kwargs),
            solver=self.name,
            coordinates="unit" if self.scheduler == "pb2" else "natural",
            space=describe_space(env),
            integers=tuple(h.name for h in space.hyperparameters if h.integer),
            tensorboard=self.config.tensorboard,
        )
        members = [self._initial(space, seed, k) for k in range(self.config.population)]
        self.logs, self.exploits, self.results = pbt_tune.fit(self, setup, members, storage=out / "tune", callback=callback)
        self._save(out, seed)
        best = max(self.logs, key=_final_score)
        best.seed = seed
        return best

    def _initial(self, space: Any, seed: int, member: int) -> dict[str, Any]:
        """Member ``member``'s lifetime seed and first hyperparameters: uniform over each range (log ones on the log scale)."""
        rng = np.random.default_rng(derive(seed, self.name, "init", member))
        unit = {h.name: float(rng.uniform(-1.0, 1.0)) for h in space.hyperparameters}
        values = unit if self.scheduler == "pb2" else {h.name: h.from_unit(unit[h.name]) for h in space.hyperparameters}
        return {"lifetime_seed": derive(seed, self.name, "lifetime", member), **values}

    def _save(self, out: Path, seed: int) -> None:
        for k, log in enumerate(self.logs):
            log.save(out / "population" / f"{self.name}-seed{seed}-member{k}.jsonl")
        lines = "".join(json.dumps(event) + "\n" for event in self.exploits)
        (out / "population" / f"{self.name}-seed{seed}-exploits.jsonl").write_text(lines)


class PB2Solver(PBTSolver):
    """Population-based bandits (Parker-Holder et al. 2020): the explore step is GP-UCB over the hyperparameters.

    PB2 searches the env's action coordinates in [-1, 1], where log-scaled ranges
    are already on the log scale, so its Gaussian process sees evenly spread values.
    """

    name = "pb2"
    scheduler = "pb2"


def _spec_of(env: gym.Env) -> Any:
    spec = env.spec
    if spec is None or not hasattr(env.unwrapped, "hparam_space"):
        raise ValueError("population solvers need a HyperRL env made by gym.make(id, ...): each member rebuilds it from env.spec")
    return spec


def _final_score(log: RunLog) -> float:
    score = log.final_return()
    return score if np.isfinite(score) else -np.inf


def add_arguments(parser: Any) -> None:
    """``hyperrl run``'s options for the population solvers (ignored by the others)."""
    group = parser.add_argument_group("pbt and pb2")
    group.add_argument("--population", type=int, default=8, help="lifetimes trained side by side (pbt, pb2; >= 2)")
    group.add_argument("--perturbation-interval", type=int, default=4, help="hyper-steps between exploit rounds (pbt, pb2)")
    group.add_argument("--address", help="Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); default: Ray on this machine")
    group.add_argument("--num-cpus", type=int, help="CPUs of a Ray started on this machine (default: all)")


def from_arguments(args: Any) -> dict[str, Any]:
    """The population solver's keyword arguments from ``hyperrl run``'s options."""
    return {
        "population": args.population,
        "perturbation_interval": args.perturbation_interval,
        "address": args.address,
        "num_cpus": args.num_cpus,
        "out": args.out,
        "tensorboard": getattr(args, "tensorboard", None),
    }
