"""A population of lifetimes of one HyperRL id as a PettingZoo ``ParallelEnv``: one agent per lifetime.

Each agent is one HyperEnv lifetime and sees that id's observation and action
spaces.  ``reset(seed)`` starts lifetime ``j`` with seed ``seed + j`` (the same
lifetime as ``gym.make(id).reset(seed=seed + j)``).

Restarts.  Without ``reset_interval`` every lifetime ends on its own budget (or
divergence): its agent is truncated (terminated) and leaves, and the population
ends when the last one has.  With ``reset_interval=m`` the population is
Optim4RL's pipeline and never ends: lifetime ``j`` restarts when
``(t - 1) % m == offset_j`` at the population's step ``t`` (1, 2, ...), with
``offset_j = int(linspace(0, m - 1, N))[j]`` under ``stagger`` and 0 for all
otherwise.  The restart happens at the end of step ``t - 1`` (for ``t > 1``),
so the observation an agent acts on is always its current lifetime's; a
lifetime whose budget runs out (or which diverges) before its turn restarts at
once.  An agent whose lifetime restarted gets ``info["restarted"] = True`` and
the ended lifetime's last observation in ``info["final_observation"]``; its
termination and truncation flags stay False, since the agent itself goes on.

Two runners, one behaviour.  ``LifetimePopulation`` steps the lifetimes as a
Python loop over HyperEnvs and serves every id.  ``VectorisedPopulation`` (what
``parallel_env`` builds for A2C and PPO ids on batched tasks, ``HyperRL/A2C-Catch-v0``,
``HyperRL/PPO-BigDenseLong-v0``, ...; PPO with a stock update rule; not the
classic twins) runs the N lifetimes as ONE program,
``agents.stacked_tasks.StackedTaskA2C`` / ``StackedTaskPPO``: one batched
task of ``N * num_envs`` instances stepped by one call, one vmapped network
evaluation per step, one vmapped A2C update per iteration (PPO: one vmapped
gradient per minibatch of its epochs, each lifetime's minibatch order from its
own generator; lifetimes with different ``epochs``/``minibatch_size`` run as
separate groups), each lifetime's randomness from its own generators.  Its lifetime ``j`` is the lifetime of
``gym.make(id).reset(seed=seed + j)`` (observations, rewards and parameters
equal to float rounding); each HyperEnv still computes its agent's reward and
info, replaying the iteration reports the runner computed, while the
observations of all lifetimes are computed together afterwards
(``hyperenvs.observers.observe_batch``: equal to each HyperEnv's own).

White-box handles (both runners).  ``lifetimes[j]`` is lifetime ``j``'s HyperEnv
(``lifetimes[j].unwrapped.learner`` its learner); ``stacked_parameters()``
stacks the lifetimes' parameters ``[N, ...]``; on A2C ids ``stacked()`` gives
``(update, params, opt_state)``: copies of the stacked parameters and
update-rule states and ``update.train_step(params, opt_state, stacked_batch,
hparams)``, the functional vmapped update (``agents.stacked.StackedA2C``).

On a ``VectorisedPopulation``, ``learner`` is the running program itself, the
population's ``env.unwrapped.learner`` (a ``StackedTaskA2C``):

* ``learner.params`` / ``learner.opt_state``: the live stacked parameters and
  update-rule states (dicts of ``[N, ...]`` tensors; the Adam step counter is
  ``[N]``, so staggered lifetimes keep their own bias corrections).  Assigning
  new tensors of the same shapes sets every lifetime at once;
* ``learner.update.train_step(params, opt_state, batch, hparams, return_grads=False)``:
  the functional update of all N (``hparams`` values may be ``[N]`` tensors); on PPO
  ids ``train_step(params, opt_state, batch, hparams_per_lifetime, generators)``
  (``agents.stacked.StackedPPO``: the generators draw the minibatch orders);
* ``learner.collect(num_steps, gammas)``: one stacked batch ``[N, T, B, ...]``
  from the live lifetimes without updating them; ``learner.iterate(hparams, active)``:
  one collection and update, per-lifetime ``IterationReport``\ s;
* ``learner.learners[j]``: lifetime ``j``'s learner, whose ``params`` and
  ``opt_state`` are views of row ``j`` (``last_update``, ``gradient_history()``,
  ``timesteps`` kept as a lone learner keeps them); ``learner.sync(j)`` copies
  row ``j``'s task and episode state into that learner; ``env.snapshot(agent)``
  does that before ``HyperEnv.snapshot``, and ``env.restore(agent, snapshot)``
  loads the restored learner back into its rows.

A restart (staggered or on a lifetime's end) rebuilds only that lifetime's
learner and loads it into its rows of the stacked state; the others go on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


def stagger_offsets(num_lifetimes: int, reset_interval: int, stagger: bool = True) -> list[int]:
    """``offset_j = int(linspace(0, m - 1, N))[j]`` (truncated, not rounded), or all 0 without ``stagger``."""
    if not stagger:
        return [0] * num_lifetimes
    return [int(x) for x in np.linspace(0, reset_interval - 1, num_lifetimes)]


def _check(num_lifetimes: Any, reset_interval: Any) -> None:
    if isinstance(num_lifetimes, bool) or not isinstance(num_lifetimes, (int, np.integer)) or num_lifetimes < 1:
        raise ValueError(f"num_lifetimes must be a positive integer, got {num_lifetimes!r}")
    if reset_interval is not None and (
        isinstance(reset_interval, bool) or not isinstance(reset_interval, (int, np.integer)) or reset_interval < 1
    ):
        raise ValueError(f"reset_interval must be an integer >= 1 or None, got {reset_interval!r}")


class LifetimePopulation(ParallelEnv):
    """``num_lifetimes`` lifetimes of ``env_id``, one PettingZoo agent each (see the module docstring)."""

    metadata = {"name": "hyperrl_population_v0", "render_modes": []}

    def __init__(
        self, env_id: str, *, num_lifetimes: int, reset_interval: int | None = None, stagger: bool = True, **make_kwargs: Any
    ) -> None:
        _check(num_lifetimes, reset_interval)
        self.env_id = env_id
        self.num_lifetimes = int(num_lifetimes)
        self.reset_interval = None if reset_interval is None else int(reset_interval)
        self.offsets = stagger_offsets(self.num_lifetimes, self.reset_interval or 1, stagger)
        self.lifetimes: list[gym.Env] = [gym.make(env_id, **make_kwargs) for _ in range(self.num_lifetimes)]
        """one HyperEnv per lifetime (``lifetimes[j].unwrapped.learner``: its learner)"""
        self.possible_agents = [f"lifetime_{j}" for j in range(self.num_lifetimes)]
        self._index = {agent: j for j, agent in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent: str) -> gym.Space:
        return self.lifetimes[self._agent_index(agent)].observation_space  # one space object per agent

    def action_space(self, agent: str) -> gym.Space:
        return self.lifetimes[self._agent_index(agent)].action_space

    def _agent_index(self, agent: str) -> int:
        if agent not in self._index:
            raise ValueError(f"unknown agent {agent!r}; agents are lifetime_0 .. lifetime_{self.num_lifetimes - 1}")
        return self._index[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start every lifetime afresh: lifetime ``j`` with seed ``seed + j`` (random seeds when ``seed`` is None)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31)
        self.agents = list(self.possible_agents)
        self.t = 0
        obs, infos = {}, {}
        for j, agent in enumerate(self.agents):
            obs[agent], infos[agent] = self.lifetimes[j].reset(seed=int(seed) + j)
        return obs, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One hyper-step of every live lifetime with its agent's action."""
        self._check_actions(actions)
        self.t += 1
        obs, rewards, terms, truncs, infos = {}, {}, {}, {}, {}
        stepped = self._step_lifetimes(actions)
        restarts = []
        for agent in self.agents:
            j = self._index[agent]
            o, r, te, tr, info = stepped[agent]
            rewards[agent] = float(r)
            if self.reset_interval is not None and (te or tr or self.t % self.reset_interval == self.offsets[j]):
                # (t - 1) % m == offset_j at the next step t = self.t + 1: the lifetime restarts now.
                ended = "terminated" if te else "truncated" if tr else "interval"
                info = {**info, "restarted": True, "final_observation": o, "ended": ended}
                restarts.append(agent)
                te = tr = False
            obs[agent], terms[agent], truncs[agent], infos[agent] = o, bool(te), bool(tr), info
        for agent, o in self._restart([self._index[a] for a in restarts]).items():
            obs[agent] = o
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

    def _step_lifetimes(self, actions: Mapping[str, Any]) -> dict[str, tuple]:
        """Each live lifetime's ``HyperEnv.step`` result, by agent."""
        return {agent: self.lifetimes[self._index[agent]].step(actions[agent]) for agent in self.agents}

    def _restart(self, rows: list[int]) -> dict[str, Any]:
        """New lifetimes in the slots ``rows`` (each HyperEnv's ``reset()`` goes on with its own seed sequence)."""
        return {self.possible_agents[j]: self.lifetimes[j].reset()[0] for j in rows}

    def _check_actions(self, actions: Mapping[str, Any]) -> None:
        if not self.agents:
            raise RuntimeError("step() called with no live agents: call reset()")
        missing, extra = sorted(set(self.agents) - set(actions)), sorted(set(actions) - set(self.agents))
        if missing or extra:
            raise ValueError(f"actions must hold one action per live agent: missing {missing}, not live {extra}")
        for agent in self.agents:
            space, action = self.action_space(agent), np.asarray(actions[agent])
            if space.shape is not None and action.shape != space.shape:
                raise ValueError(f"actions[{agent!r}] has shape {action.shape}, the action space's is {space.shape}")

    def stacked_parameters(self) -> dict[str, Any]:
        """Every lifetime's parameters stacked along a leading lifetime axis, ``[N, ...]`` (detached copies)."""
        import torch

        learners = [env.unwrapped.learner for env in self.lifetimes]
        if any(learner is None for learner in learners):
            raise RuntimeError("stacked_parameters() called before reset()")
        names = learners[0].parameters()
        return {k: torch.stack([learner.parameters()[k].detach() for learner in learners]) for k in names}

    def stacked(self) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """White-box handle on A2C ids: ``(update, params, opt_state)``, the lifetimes' parameters and update-rule
        states stacked ``[N, ...]`` and ``update.train_step(params, opt_state, stacked_batch, hparams)``, their
        one vmapped update (``agents.stacked.StackedA2C``; copies: the lifetimes themselves are not changed)."""
        from agents.stacked import StackedA2C

        learners = [env.unwrapped.learner for env in self.lifetimes]
        if any(learner is None for learner in learners):
            raise RuntimeError("stacked() called before reset()")
        update = StackedA2C(learners[0])
        return (update, *update.stack(learners))

    def snapshot(self, agent: str) -> dict[str, Any]:
        """Lifetime ``agent``'s ``HyperEnv.snapshot()`` (plain data; ``restore`` it into this or another slot)."""
        return self.lifetimes[self._agent_index(agent)].unwrapped.snapshot()

    def restore(self, agent: str, snapshot: Mapping[str, Any]) -> Any:
        """Put ``snapshot`` (a lifetime of this id) in ``agent``'s slot; returns that agent's observation."""
        return self.lifetimes[self._agent_index(agent)].unwrapped.restore(snapshot)

    def close(self) -> None:
        for env in self.lifetimes:
            env.close()


class VectorisedPopulation(LifetimePopulation):
    """The population of an A2C id on a batched task, run as one program (see the module docstring)."""

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        super().__init__(env_id, **kwargs)
        if not vectorisable(self.lifetimes[0].unwrapped):
            raise ValueError(f"env_id {env_id!r} is not an A2C or PPO id on a batched task; its population runs as a loop")
        self.learner: Any = None
        """the running ``agents.stacked_tasks.StackedTaskA2C`` (None before ``reset``)"""

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, infos = super().reset(seed, options)
        from agents.stacked_tasks import StackedTaskA2C, StackedTaskPPO

        runner = StackedTaskPPO if _algorithm(self.lifetimes[0].unwrapped) == "PPO" else StackedTaskA2C
        self.learner = runner([env.unwrapped.learner for env in self.lifetimes])
        return obs, infos

    def _step_lifetimes(self, actions: Mapping[str, Any]) -> dict[str, tuple]:
        envs = [env.unwrapped for env in self.lifetimes]
        live = {self._index[a]: a for a in self.agents}
        hparams = [None] * self.num_lifetimes
        for j, agent in live.items():
            hparams[j] = {**envs[j].defaults, **envs[j].hparam_space.decode(actions[agent])}
        reports: dict[int, deque] = {j: deque() for j in live}
        going = set(live)
        for _ in range(envs[0].iterations_per_step):
            if not going:
                break
            done = self.learner.iterate(hparams, active=[j in going for j in range(self.num_lifetimes)])
            for j in sorted(going):
                reports[j].append(done[j])
                if done[j].diverged or envs[j].learner.timesteps >= envs[j].total_timesteps:
                    going.discard(j)  # HyperEnv.step stops here too
        # Every HyperEnv observes through stand-ins that record its call; the observations are then
        # computed for all lifetimes together (one matmul per tensor, one fused norm call).
        from hyperenvs.observers import DeferredObserver  # here: importing the population stays free of torch

        deferred = {name: DeferredObserver(obs) for name, obs in envs[0].observers.items()}
        stepped = {agent: self._replay(j, actions[agent], reports[j], deferred) for j, agent in live.items()}
        observed = {name: d.flush() for name, d in deferred.items()}
        return {
            agent: ({name: rows[i] for name, rows in observed.items()}, *result[1:])
            for i, (agent, result) in enumerate(stepped.items())
        }

    def _replay(self, j: int, action: Any, reports: deque, observers: dict[str, Any]) -> tuple:
        """Lifetime ``j``'s ``HyperEnv.step``, its learner's ``iterate`` handing out the reports already computed
        and ``observers`` (deferred stand-ins) in place of its own."""
        env = self.lifetimes[j].unwrapped
        learner, own = env.learner, env.observers
        final = learner.timesteps

        def iterate(hparams: Any = None) -> Any:
            report = reports.popleft()
            learner.timesteps = report.timesteps  # the HyperEnv reads the budget after each iteration
            return report

        learner.iterate, env.observers = iterate, observers
        try:
            return self.lifetimes[j].step(action)
        finally:
            del learner.iterate
            learner.timesteps = final
            env.observers = own

    def snapshot(self, agent: str) -> dict[str, Any]:
        self.learner.sync(self._agent_index(agent))  # the runner's rows of that lifetime into its learner first
        return super().snapshot(agent)

    def restore(self, agent: str, snapshot: Mapping[str, Any]) -> Any:
        obs = super().restore(agent, snapshot)
        j = self._agent_index(agent)
        self.learner.replace({j: self.lifetimes[j].unwrapped.learner})
        return obs

    def _restart(self, rows: list[int]) -> dict[str, Any]:
        obs = super()._restart(rows)
        if rows:
            self.learner.replace({j: self.lifetimes[j].unwrapped.learner for j in rows})
        return obs


_RUNNABLE = {"agents.task_learners:TaskA2CLearner": "A2C", "agents.task_learners:TaskPPOLearner": "PPO"}
"""the learners whose lifetimes run as one program, by import string"""


def _algorithm(env: Any) -> str | None:
    return _RUNNABLE.get(env.entry.algorithm.learner)


def vectorisable(env: Any) -> bool:
    """Whether a HyperEnv's population can run as one program: an A2C or PPO learner with its own objective and
    a stock update rule on a batched task that groups lifetimes."""
    from agents.objectives import OWN
    from agents.optim import UPDATE_RULES
    from agents.stacked import STOCK_RULES
    from hyperenvs.tasks.registration import groups_lifetimes

    kind = _algorithm(env)
    if kind is None or not groups_lifetimes(env.config.task) or env.config.objective not in (OWN, kind.lower()):
        return False  # a learned objective (LPG) runs lifetime by lifetime
    rule = env.config.update_rule  # PPO's stacked schedule steps stock rules only (a learned rule: a loop)
    if isinstance(rule, str):
        rule = UPDATE_RULES[rule]() if rule in UPDATE_RULES else None
    return kind == "A2C" or type(rule) in STOCK_RULES


def parallel_env(
    env_id: str,
    *,
    num_lifetimes: int,
    reset_interval: int | None = None,
    stagger: bool = True,
    vectorise: bool | None = None,
    **make_kwargs: Any,
) -> LifetimePopulation:
    """A population of ``num_lifetimes`` lifetimes of ``env_id`` (``make_kwargs`` go to each ``gym.make``).

    ``vectorise``: None (default) runs the lifetimes as one program where the id allows it (A2C on a
    batched task) and as a loop elsewhere; True insists on one program (ValueError where it cannot);
    False always loops.
    """
    kwargs = {"num_lifetimes": num_lifetimes, "reset_interval": reset_interval, "stagger": stagger, **make_kwargs}
    if vectorise not in (None, True, False):
        raise ValueError(f"vectorise must be None, True or False, got {vectorise!r}")
    if vectorise is False:
        return LifetimePopulation(env_id, **kwargs)
    population = LifetimePopulation(env_id, **kwargs)
    if vectorisable(population.lifetimes[0].unwrapped):
        population.close()
        return VectorisedPopulation(env_id, **kwargs)
    if vectorise:
        population.close()
        raise ValueError(f"vectorise=True needs an A2C or PPO id on a batched task (e.g. HyperRL/A2C-Catch-v0), got {env_id!r}")
    return population
