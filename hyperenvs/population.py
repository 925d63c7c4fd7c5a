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

This module runs the lifetimes as a Python loop over HyperEnvs, which serves
every id; ``lifetimes`` are those envs (``lifetimes[j].unwrapped.learner`` is
lifetime ``j``'s learner), ``stacked_parameters()`` stacks their parameters
along a leading lifetime axis, and on A2C ids ``stacked()`` gives the stacked
parameters, update-rule states and the vmapped functional update
(``agents.stacked``).  The vectorised runner of N task lifetimes,
``agents.stacked.StackedTaskA2C``, is not yet behind this ParallelEnv.
"""

from __future__ import annotations

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
        for agent in self.agents:
            j = self._index[agent]
            o, r, te, tr, info = self.lifetimes[j].step(actions[agent])
            rewards[agent] = float(r)
            if self.reset_interval is not None and (te or tr or self.t % self.reset_interval == self.offsets[j]):
                # (t - 1) % m == offset_j at the next step t = self.t + 1: the lifetime restarts now.
                ended = "terminated" if te else "truncated" if tr else "interval"
                info = {**info, "restarted": True, "final_observation": o, "ended": ended}
                o, _ = self.lifetimes[j].reset()
                te = tr = False
            obs[agent], terms[agent], truncs[agent], infos[agent] = o, bool(te), bool(tr), info
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

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

    def close(self) -> None:
        for env in self.lifetimes:
            env.close()


def parallel_env(
    env_id: str, *, num_lifetimes: int, reset_interval: int | None = None, stagger: bool = True, **make_kwargs: Any
) -> LifetimePopulation:
    """A population of ``num_lifetimes`` lifetimes of ``env_id`` (``make_kwargs`` go to each ``gym.make``)."""
    return LifetimePopulation(env_id, num_lifetimes=num_lifetimes, reset_interval=reset_interval, stagger=stagger, **make_kwargs)
