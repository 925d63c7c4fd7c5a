"""The environments of N meta-training lifetimes: E instances of one task per lifetime, stepped in turn.

A lifetime's E instances share what the task draws once per lifetime (a tabular grid's object cells, a
chain's length: the paper's agent sees 64 copies of *its* environment), so after ``make_task`` draws E of
them the first one's is copied to all (``share_lifetime``).  Each lifetime keeps its own task object and
generator (as ``agents.stacked.StackedTaskA2C`` does); the agents' tables, sampling and the LPG are one
program over all ``N * E`` columns.
"""

from __future__ import annotations

from typing import Any

import torch

from hyperenvs.tasks.registration import make_task

ENV_GROUPS = {
    "tabular": ("lpg_dense", "lpg_sparse", "lpg_long", "lpg_longer", "lpg_long_dense"),
    "chains": ("chain_short", "chain_short_noisy", "chain_long", "chain_long_noisy"),
}
"""``--envs`` shorthands: the paper's tabular grids (A.1) and its tabular delayed chains (A.3)"""

GRIDS = ENV_GROUPS["tabular"]


def expand_envs(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"tabular,chains"`` (groups or task names, comma-separated) -> task names, in order, without repeats."""
    words = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for w in (w.strip() for w in words if w.strip()):
        for name in ENV_GROUPS.get(w, (w,)):
            if name not in GRIDS and name not in ENV_GROUPS["chains"]:
                known = sorted(ENV_GROUPS) + sorted(GRIDS) + sorted(ENV_GROUPS["chains"])
                raise ValueError(f"envs: {name!r} is not a tabular LPG training environment; known: {known}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("envs must name at least one environment")
    return tuple(names)


def task_sizes(name: str) -> tuple[int, int]:
    """``(states, most actions)`` of a tabular task (grids: with the 18-action set)."""
    options = {"collect_actions": True} if name in GRIDS else {}
    task = make_task(name, 1, **options)
    return int(task.single_observation_space.n), int(task.single_action_space.n)


def share_lifetime(task: Any) -> torch.Tensor:
    """Give every instance of ``task`` its first instance's lifetime draws, then start new episodes (their
    first observations are returned)."""
    for attr in ("layout", "length"):  # GridWorld's object cells, DelayedChain's chain length
        value = getattr(task, attr, None)
        if isinstance(value, torch.Tensor):
            value[:] = value[:1].clone()
    return task.reset()


def snapshot(task: Any) -> dict[str, Any]:
    """The task's own tensors and generator (as ``agents.task_rollout.task_state`` keeps them)."""
    tensors = {k: v.clone() for k, v in vars(task).items() if isinstance(v, torch.Tensor) and k != "_obs_buffer"}
    return {"tensors": tensors, "generator": task.generator.get_state()}


def restore(task: Any, state: dict[str, Any]) -> None:
    for k, v in state["tensors"].items():
        setattr(task, k, v.clone())
    task.generator.set_state(state["generator"])


class LifetimeEnvs:
    """``N`` slots, slot ``j`` running ``names[j]`` on ``envs_per_lifetime`` instances."""

    def __init__(self, names: list[str], envs_per_lifetime: int) -> None:
        if envs_per_lifetime < 1:
            raise ValueError(f"envs_per_lifetime must be >= 1, got {envs_per_lifetime}")
        self.names, self.e = list(names), int(envs_per_lifetime)
        self.tasks: list[Any] = [None] * len(names)
        self.collect_actions = [False] * len(names)
        self.obs = torch.zeros(len(names), self.e, dtype=torch.long)
        """each instance's current observation (a state index)"""
        self.running = torch.zeros(len(names), self.e, dtype=torch.float64)
        """each instance's return so far in its current episode"""

    def reset_slot(self, j: int, seed: int, collect_actions: bool) -> int:
        """A new environment for slot ``j`` (new lifetime draws); returns its number of actions."""
        options = {"collect_actions": collect_actions} if self.names[j] in GRIDS else {}
        task = make_task(self.names[j], self.e, seed=seed, **options)
        self.obs[j] = share_lifetime(task).long()
        self.tasks[j], self.collect_actions[j] = task, bool(collect_actions and self.names[j] in GRIDS)
        self.running[j] = 0.0
        return int(task.single_action_space.n)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Act in every instance (``actions [N, E]``): ``(reward, ended, finished_returns)``, all ``[N, E]``;
        ``finished_returns`` is the return of an episode that ended at this step (0 elsewhere)."""
        rewards, ended = torch.zeros_like(self.running), torch.zeros(self.obs.shape, dtype=torch.bool)
        for j, task in enumerate(self.tasks):
            obs, reward, terminated, truncated = task.step(actions[j])
            self.obs[j], rewards[j], ended[j] = obs.long(), reward.double(), terminated | truncated
        self.running += rewards
        finished = torch.where(ended, self.running, 0.0)
        self.running = torch.where(ended, 0.0, self.running)
        return rewards, ended, finished

    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": [snapshot(t) for t in self.tasks],
            "collect_actions": list(self.collect_actions),
            "obs": self.obs.clone(),
            "running": self.running.clone(),
        }

    def load_state_dict(self, state: dict[str, Any], seeds: list[int]) -> None:
        """Rebuild every slot's task (``seeds``: any; the saved tensors replace what it drew), then restore."""
        for j, (snap, collect) in enumerate(zip(state["tasks"], state["collect_actions"])):
            self.reset_slot(j, seeds[j], bool(collect))
            restore(self.tasks[j], snap)
        self.obs, self.running = state["obs"].clone(), state["running"].clone()
