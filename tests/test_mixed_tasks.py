"""Tasks whose lifetimes run different specs (``make_task([names], E)``): lifetime ``j`` steps and draws exactly
as a lone task of ``names[j]`` seeded like it, through episode ends, lifetime restarts and row copies."""

from __future__ import annotations

import pytest
import torch

from hyperenvs.tasks import make_task
from hyperenvs.tasks.chains import CHAINS, DelayedChain
from hyperenvs.tasks.gridworld import GridSpec, GridWorld

TABULAR = ["lpg_dense", "lpg_sparse", "lpg_long", "lpg_longer", "lpg_long_dense"]
CHAIN_NAMES = ["chain_short", "chain_short_noisy", "chain_long", "chain_long_noisy"]
E = 3


def _step_together(mixed, lones, steps: int, seed: int = 0) -> int:
    """Random actions in both; asserts every lifetime's rows equal its lone task's; returns the episodes ended."""
    g, n, ended = torch.Generator().manual_seed(seed), mixed.single_action_space.n, 0
    for t in range(steps):
        actions = torch.randint(n, (len(lones), E), generator=g)
        out = mixed.step(actions.view(-1))
        for j, lone in enumerate(lones):
            rows = slice(j * E, (j + 1) * E)
            for name, mine, theirs in zip(("obs", "reward", "terminated", "truncated"), out, lone.step(actions[j])):
                assert torch.equal(mine[rows], theirs), f"step {t}, lifetime {j}: {name}"
        ended += int((out[2] | out[3]).sum())
    return ended


@pytest.mark.parametrize("collect", [False, True])
def test_tabular_grids_as_one_task_step_as_their_lone_tasks(collect):
    names = TABULAR + TABULAR[::-1]
    mixed = make_task(names, E, seed=list(range(len(names))), collect_actions=collect)
    assert mixed.mixed and mixed.spec is None and mixed.lifetimes == len(names)
    lones = [make_task(name, E, seed=j, collect_actions=collect) for j, name in enumerate(names)]
    assert mixed.single_observation_space.n == max(lone.single_observation_space.n for lone in lones)
    assert _step_together(mixed, lones, 300) > 20  # lpg_sparse's 50-step episodes end, so resets are covered too


def test_chains_as_one_task_step_as_their_lone_tasks():
    names = CHAIN_NAMES * 2
    mixed = make_task(names, E, seed=[7 + j for j in range(len(names))])
    lones = [make_task(name, E, seed=7 + j) for j, name in enumerate(names)]
    assert [int(x) for x in mixed.length[::E]] == [int(lone.length[0]) for lone in lones]
    assert _step_together(mixed, lones, 200) > 20


def test_episode_positions_with_index_observations_mix_too():
    # random positions each episode and respawns at random cells: the per-lifetime draws of the other mode
    small = GridSpec(height=3, width=4, objects=((1.0, 0.5, 0.5), (-1.0, 0.0, 1.0)), max_steps=15, observation="index")
    big = GridSpec(height=5, width=5, objects=((1.0, 0.3, 0.2),) * 3, max_steps=25, observation="index")
    mixed = GridWorld([small, big, small], E, lifetimes=3)
    mixed.reset([1, 2, 3])
    lones = [GridWorld(spec, E) for spec in (small, big, small)]
    for seed, lone in zip([1, 2, 3], lones):
        lone.reset(seed)
    assert _step_together(mixed, lones, 200) > 20


def test_restarting_one_lifetime_and_copying_rows_keep_the_others():
    names = ["lpg_longer", "lpg_sparse", "lpg_dense"]
    mixed = make_task(names, E, seed=[0, 1, 2])
    lones = [make_task(name, E, seed=j) for j, name in enumerate(names)]
    _step_together(mixed, lones, 30)
    first = mixed.restart_lifetimes([1], [42])
    lones[1] = make_task("lpg_sparse", E, seed=42)
    assert torch.equal(first, lones[1].reset(42))
    _step_together(mixed, lones, 30, seed=1)
    # a lone task's state copied in (fewer object columns than the task's widest) and back out
    other = make_task("lpg_sparse", E, seed=5)
    other.step(torch.zeros(E, dtype=torch.long))
    mixed.load_lifetime(1, other)
    lones[1] = other
    _step_together(mixed, lones, 30, seed=2)
    back = make_task("lpg_sparse", E, seed=9)
    mixed.store_lifetime(1, back)  # the lone task goes on where lifetime 1 is, in its own map's cell numbers
    assert torch.equal(back.agent, other.agent) and torch.equal(back.obj_pos, other.obj_pos)
    lones[1] = back
    _step_together(mixed, lones, 30, seed=3)
    with pytest.raises(ValueError, match="lone must be a seeded GridWorld"):
        mixed.load_lifetime(0, make_task("lpg_sparse", E, seed=1))  # lifetime 0 runs lpg_longer


def test_padding_objects_never_appear():
    mixed = make_task(["lpg_sparse", "lpg_longer"], E, seed=[0, 1])
    assert mixed.num_objects == 7 and not mixed.present[:E, 2:].any()
    for _ in range(100):
        mixed.step(torch.randint(9, (2 * E,)))
        assert not mixed.present[:E, 2:].any()


def test_mixing_needs_compatible_specs():
    with pytest.raises(ValueError, match="only with index observations"):
        make_task(["lpg_random_dense", "lpg_random_small"], E)
    with pytest.raises(ValueError, match="several gridworlds or of several chains"):
        make_task(["lpg_dense", "chain_short"], E)
    with pytest.raises(ValueError, match="one observation kind"):
        make_task(["chain_short", "chain_distractor"], E)
    with pytest.raises(ValueError, match="lifetimes must match the 2 task names"):
        make_task(["chain_short", "chain_long"], E, lifetimes=3)
    with pytest.raises(ValueError, match="spec must be one ChainSpec or one per lifetime"):
        DelayedChain([CHAINS["chain_short"]] * 2, E, lifetimes=3)
    with pytest.raises(ValueError, match="unknown"):
        make_task(["chain_short", "chain_nope"], E)
    crowded = GridSpec(height=1, width=3, objects=((1.0, 0.0, 0.0),), max_steps=5, observation="index")
    many = GridSpec(height=4, width=4, objects=((1.0, 0.0, 0.0),) * 4, max_steps=5, observation="index")
    with pytest.raises(ValueError, match="a grid of 3 free cells cannot share a task with grids of 4 objects"):
        GridWorld([crowded, many], E, lifetimes=2)


def test_one_spec_in_a_list_is_the_plain_task():
    plain, listed = make_task("lpg_dense", E, lifetimes=2, seed=[3, 4]), make_task(["lpg_dense"] * 2, E, seed=[3, 4])
    assert not listed.mixed and listed.spec == plain.spec
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        a = torch.randint(9, (2 * E,), generator=g)
        assert all(torch.equal(x, y) for x, y in zip(plain.step(a), listed.step(a)))
