"""The environments of N meta-training lifetimes: E instances of one task per lifetime, one task object per kind.

A lifetime's E instances share what the task draws once per lifetime (a tabular grid's object cells, a
chain's length: the paper's agent sees 64 copies of *its* environment), so after a lifetime starts its first
instance's draws are copied to all E (``share_lifetime``).  The slots that run one environment are the
lifetimes of one batched task (``make_task(name, E, lifetimes=L)``, issue 11): each has its own generator, so
slot ``j`` draws exactly what a lone task seeded like it would, yet all of them move in one ``step`` call.  The
tabular grids share one task (``make_task([names], E)``: each lifetime its own map, objects and horizon), and so
do the tabular chains, since a task step costs about the same at 8 rows as at 300: the slots of all nine
tabular environments step as two tasks.  A grid's task is built with the 18-action set and each slot's rows
get the action set its lifetime drew (``GridWorld.set_action_set``), so the lifetimes of both sets step together.
"""

from __future__ import annotations

from typing import Any

import torch

from hyperenvs.tasks.registration import make_task
from solvers.lpg.networks import NetSpec

ENV_GROUPS = {
    "tabular": ("lpg_dense", "lpg_sparse", "lpg_long", "lpg_longer", "lpg_long_dense"),
    "chains": ("chain_short", "chain_short_noisy", "chain_long", "chain_long_noisy"),
    "random": ("lpg_random_dense", "lpg_random_long", "lpg_random_small", "lpg_random_small_sparse", "lpg_random_very_dense"),
}
"""``--envs`` shorthands: the paper's tabular grids (A.1), its random grids (A.2) and its tabular delayed chains (A.3)
(the fifth chain, ``chain_distractor``, is named on its own: its agents are networks)"""

GRIDS = ENV_GROUPS["tabular"]
TABULAR = GRIDS + ENV_GROUPS["chains"]
"""the environments whose agents are tables"""

_TABLE3_LRS = (5e-4, 1e-3, 2e-3, 5e-3)
NETWORK_AGENTS = {
    "lpg_random_dense": NetSpec(conv=(16,), hidden=32, lrs=_TABLE3_LRS),
    "lpg_random_long": NetSpec(conv=(16,), hidden=32, lrs=_TABLE3_LRS),
    "lpg_random_small": NetSpec(hidden=32, lrs=_TABLE3_LRS),
    "lpg_random_small_sparse": NetSpec(hidden=32, lrs=_TABLE3_LRS),
    "lpg_random_very_dense": NetSpec(conv=(32, 16, 16), hidden=256, lrs=_TABLE3_LRS),
    "chain_distractor": NetSpec(hidden=16, lrs=(2e-3, 5e-3, 1e-2)),
}
"""the environments whose agents are networks, with the paper's architecture and Adam step sizes (Table 3)"""

ACTION_SETS = GRIDS + ENV_GROUPS["random"]
"""the grids whose lifetimes draw the 9- or the 18-action set"""


def expand_envs(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"tabular,chains"`` (groups or task names, comma-separated) -> task names, in order, without repeats."""
    words = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for w in (w.strip() for w in words if w.strip()):
        for name in ENV_GROUPS.get(w, (w,)):
            if name not in TABULAR and name not in NETWORK_AGENTS:
                known = sorted(ENV_GROUPS) + sorted(TABULAR) + sorted(NETWORK_AGENTS)
                raise ValueError(f"envs: {name!r} is not an LPG training environment; known: {known}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("envs must name at least one environment")
    return tuple(names)


def task_sizes(name: str) -> tuple[int | tuple[int, ...], int]:
    """``(states, most actions)`` of a tabular task, ``(observation shape, most actions)`` of another (grids: with
    the 18-action set)."""
    options = {"collect_actions": True} if name in ACTION_SETS else {}
    task = make_task(name, 1, **options)
    space = task.single_observation_space
    return (int(space.n) if name in TABULAR else tuple(space.shape)), int(task.single_action_space.n)


def task_group(name: str) -> str:
    """The task a slot of ``name`` steps in: one for the tabular grids, one for the tabular chains, else its own."""
    return "grids" if name in GRIDS else "chains" if name in ENV_GROUPS["chains"] else name


def share_lifetime(task: Any, rows: torch.Tensor) -> torch.Tensor:
    """Give the instances ``rows`` of ``task`` (one lifetime's) the lifetime draws of the first of them, then start
    new episodes there; returns their first observations."""
    for attr in ("layout", "length"):  # GridWorld's object cells, DelayedChain's chain length
        value = getattr(task, attr, None)
        if isinstance(value, torch.Tensor):
            value[rows] = value[rows[:1]].clone()
    return task.reset_rows(rows)


def _task_state(task: Any) -> dict[str, Any]:
    """The task's own tensors and every lifetime's generator state."""
    tensors = {k: v.clone() for k, v in vars(task).items() if isinstance(v, torch.Tensor)}
    return {"tensors": tensors, "generators": [g.get_state() for g in task.generators]}


def _load_task_state(task: Any, state: dict[str, Any]) -> None:
    for k, v in state["tensors"].items():
        setattr(task, k, v.clone())
    for g, s in zip(task.generators, state["generators"]):
        g.set_state(s)


class LifetimeEnvs:
    """``N`` slots, slot ``j`` running ``names[j]`` on ``envs_per_lifetime`` instances."""

    def __init__(self, names: list[str], envs_per_lifetime: int, obs_shape: tuple[int, ...] = ()) -> None:
        if envs_per_lifetime < 1:
            raise ValueError(f"envs_per_lifetime must be >= 1, got {envs_per_lifetime}")
        self.names, self.e = list(names), int(envs_per_lifetime)
        self.group = [task_group(name) for name in self.names]
        """slot ``j``'s task (``task_group``)"""
        self.lifetime = [self.group[:j].count(group) for j, group in enumerate(self.group)]
        """slot ``j``'s lifetime index in its task"""
        self.groups: dict[str, Any] = {}
        """``task_group -> `` the batched task of its slots (built when its first slot starts)"""
        self.started = [False] * len(names)
        self.collect = [False] * len(names)
        """whether each slot's lifetime has the 18-action set"""
        self.obs = torch.zeros(len(names), self.e, *obs_shape, dtype=torch.float32 if obs_shape else torch.long)
        """each instance's current observation (a state index, or the observation tensor when ``obs_shape`` is given)"""
        self.running = torch.zeros(len(names), self.e, dtype=torch.float64)
        """each instance's return so far in its current episode"""
        self._members: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def collect_actions(self) -> list[bool]:
        """Whether each slot's grid has the 18-action set."""
        return list(self.collect)

    def task(self, j: int) -> Any:
        """The batched task slot ``j`` runs in (its rows ``lifetime[j] * E ...``)."""
        if not self.started[j]:
            raise RuntimeError(f"slot {j} has not started: call reset_slot({j}, ...)")
        return self.groups[self.group[j]]

    def _group_task(self, group: str) -> Any:
        if group not in self.groups:
            names = [name for name, g in zip(self.names, self.group) if g == group]  # lifetime i runs names[i]
            options = {"collect_actions": True} if names[0] in ACTION_SETS else {}
            # every lifetime is reseeded when its slot starts; this first seed only makes the unstarted rows defined
            self.groups[group] = make_task(names, self.e, seed=[0] * len(names), **options)
        return self.groups[group]

    def reset_slot(self, j: int, seed: int, collect_actions: bool) -> int:
        """A new environment for slot ``j`` (new lifetime draws); returns its number of actions."""
        name = self.names[j]
        task, i = self._group_task(self.group[j]), self.lifetime[j]
        rows = torch.arange(i * self.e, (i + 1) * self.e)
        actions = int(task.single_action_space.n)
        if name in ACTION_SETS:
            self.collect[j] = bool(collect_actions)
            task.set_action_set(rows, self.collect[j])
            actions = 18 if self.collect[j] else 9
        task.restart_lifetimes([i], [seed])
        self.obs[j] = share_lifetime(task, rows).to(self.obs.dtype)
        if not self.started[j]:
            self.started[j] = True
            self._index_members()
        self.running[j] = 0.0
        return actions

    def _index_members(self) -> None:
        """Per task: its started slots and their lifetime indices (what ``step`` scatters and gathers by)."""
        self._members = {}
        for group in self.groups:
            slots = [j for j, g in enumerate(self.group) if g == group and self.started[j]]
            self._members[group] = (torch.tensor(slots, dtype=torch.long), torch.tensor([self.lifetime[j] for j in slots]))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Act in every instance (``actions [N, E]``): ``(reward, ended, finished_returns)``, all ``[N, E]``;
        ``finished_returns`` is the return of an episode that ended at this step (0 elsewhere)."""
        rewards, ended = torch.zeros_like(self.running), torch.zeros(self.running.shape, dtype=torch.bool)
        for key, task in self.groups.items():
            slots, index = self._members[key]
            if not slots.numel():
                continue
            act = torch.zeros(task.lifetimes, self.e, dtype=torch.long)
            act[index] = actions[slots]
            obs, reward, terminated, truncated = task.step(act.view(-1))
            self.obs[slots] = obs.view(task.lifetimes, self.e, *self.obs.shape[2:])[index].to(self.obs.dtype)
            rewards[slots] = reward.view(task.lifetimes, self.e)[index].double()
            ended[slots] = (terminated | truncated).view(task.lifetimes, self.e)[index]
        self.running += rewards
        finished = torch.where(ended, self.running, 0.0)
        self.running = torch.where(ended, 0.0, self.running)
        return rewards, ended, finished

    def state_dict(self) -> dict[str, Any]:
        names = list(self.groups)
        return {
            "groups": names,
            "tasks": [_task_state(self.groups[k]) for k in names],
            "started": list(self.started),
            "collect": list(self.collect),
            "obs": self.obs.clone(),
            "running": self.running.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the saved tasks and put every slot back where it was."""
        self.groups = {}
        for group, snap in zip(state["groups"], state["tasks"]):
            _load_task_state(self._group_task(str(group)), snap)
        self.started, self.collect = [bool(x) for x in state["started"]], [bool(x) for x in state["collect"]]
        self._index_members()
        self.obs, self.running = state["obs"].clone(), state["running"].clone()
