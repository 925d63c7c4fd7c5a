"""LPG's meta-training environments: the slots of all tabular grids are lifetimes of one batched task, those of
all tabular chains of another, yet each slot lives exactly what a lone task of its environment seeded like it
lives (the per-lifetime generators of issue 11)."""

from __future__ import annotations

import pytest
import torch

from hyperenvs.tasks.registration import make_task
from solvers.lpg.lifetimes import LifetimeEnvs

NAMES = ["lpg_sparse", "chain_long", "lpg_longer", "chain_short_noisy", "lpg_sparse", "lpg_dense"]
E = 3


def _lone(name: str, seed: int, collect: bool):
    """The old way: one task per slot, its first instance's lifetime draws copied to all, new episodes."""
    task = make_task(name, E, seed=seed, **({"collect_actions": collect} if name.startswith("lpg") else {}))
    for attr in ("layout", "length"):
        if hasattr(task, attr):
            getattr(task, attr)[:] = getattr(task, attr)[:1].clone()
    return task, task.reset().long()


def _step_both(envs: LifetimeEnvs, lones: list, steps: int, g: torch.Generator) -> None:
    for _ in range(steps):
        actions = torch.stack([torch.randint(t.single_action_space.n, (E,), generator=g) for t, _ in lones])
        reward, ended, _ = envs.step(actions)
        for j, (task, _) in enumerate(lones):
            obs, r, term, trunc = task.step(actions[j])
            assert torch.equal(envs.obs[j], obs.long()), f"slot {j}"
            assert torch.equal(reward[j], r.double()) and torch.equal(ended[j], term | trunc)


def test_slots_live_what_lone_tasks_seeded_like_them_live():
    envs = LifetimeEnvs(NAMES, E)
    collect = [True, False, False, False, True, False]
    lones = []
    for j, name in enumerate(NAMES):
        envs.reset_slot(j, 100 + j, collect[j])
        lones.append(_lone(name, 100 + j, collect[j]))
        assert torch.equal(envs.obs[j], lones[-1][1])
    assert len(envs.groups) == 2 and envs.collect_actions == collect  # one grid task for both action sets, one chain task
    g = torch.Generator().manual_seed(0)
    _step_both(envs, lones, 60, g)
    # a new lifetime in the other action set switches the slot's rows to its rules; the rest go on undisturbed
    assert envs.reset_slot(0, 7, False) == 9
    lones[0] = _lone("lpg_sparse", 7, False)
    assert torch.equal(envs.obs[0], lones[0][1])
    _step_both(envs, lones, 40, g)
    assert envs.task(0) is envs.task(2) is envs.task(5) and envs.task(1) is envs.task(3)


def test_state_dict_round_trip_continues_bit_for_bit():
    envs = LifetimeEnvs(NAMES, E)
    for j in range(len(NAMES)):
        envs.reset_slot(j, j, j % 2 == 0)
    g = torch.Generator().manual_seed(1)
    sizes = [18 if envs.collect[j] else int(envs.task(j).single_action_space.n) for j in range(len(NAMES))]
    sizes = [9 if NAMES[j].startswith("lpg") and not envs.collect[j] else n for j, n in enumerate(sizes)]
    act = lambda: torch.stack([torch.randint(n, (E,), generator=g) for n in sizes])  # noqa: E731
    for _ in range(10):
        envs.step(act())
    state, g_state = envs.state_dict(), g.get_state()
    first = [envs.step(act()) for _ in range(15)]
    again = LifetimeEnvs(NAMES, E)
    again.load_state_dict(state)
    g.set_state(g_state)
    second = [again.step(act()) for _ in range(15)]
    for a, b in zip(first, second):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_slot_that_never_started_is_a_clear_error():
    envs = LifetimeEnvs(NAMES, E)
    with pytest.raises(RuntimeError, match="slot 1 has not started"):
        envs.task(1)
    with pytest.raises(ValueError, match="envs_per_lifetime must be >= 1"):
        LifetimeEnvs(NAMES, 0)
