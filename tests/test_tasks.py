"""Batched torch tasks: golden transitions, statistics of the random parts, Gymnasium faces, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import hyperenvs  # noqa: F401  (registers the ids)
from hyperenvs.tasks import make_task
from hyperenvs.tasks.catch import Catch
from hyperenvs.tasks.chains import ChainSpec, DelayedChain
from hyperenvs.tasks.gridworld import GridSpec, GridWorld
from hyperenvs.tasks.gym_adapters import TaskEnv, TaskVectorEnv
from hyperenvs.tasks.registration import GYM_IDS

# A hand-built 3 x 3 room with a wall in its centre, inside the border: 8 free cells.
ROOM = ("#####", "#...#", "#.#.#", "#...#", "#####")


def cell(row: int, col: int) -> int:
    return row * 5 + col


def room(objects, *, num_envs=1, max_steps=100, seed=0, **kwargs) -> GridWorld:
    spec_kw = {k: kwargs.pop(k) for k in ("positions", "observation") if k in kwargs}
    spec = GridSpec(height=3, width=3, objects=tuple(objects), max_steps=max_steps, walls=ROOM, **spec_kw)
    env = GridWorld(spec, num_envs, **kwargs)
    env.reset(seed)
    return env


def place(env: GridWorld, agent: int, objects: list[int], present: list[bool]) -> None:
    b = env.num_envs
    env.agent = torch.full((b,), agent)
    env.obj_pos = torch.tensor(objects).repeat(b, 1)
    env.present = torch.tensor(present).repeat(b, 1)
    env.layout = env.obj_pos.clone()


INERT = [(0.0, 0.0, 0.0)]  # an object that is never on the map


# ------------------------------------------------------------------ gridworld
def test_moves_and_walls_golden():
    env = room(INERT, num_envs=9)
    place(env, cell(1, 1), [cell(1, 3)], [False])
    env.step(torch.arange(9))
    # stay, up(border), down, left(border), right, up-left, up-right, down-left (all border), down-right (centre wall)
    expected = [cell(1, 1), cell(1, 1), cell(2, 1), cell(1, 1), cell(1, 2), cell(1, 1), cell(1, 1), cell(1, 1), cell(1, 1)]
    assert env.agent.tolist() == expected
    place(env, cell(2, 1), [cell(1, 3)], [False])
    env.step(torch.arange(9))
    expected = [cell(2, 1), cell(1, 1), cell(3, 1), cell(2, 1), cell(2, 1), cell(2, 1), cell(1, 2), cell(2, 1), cell(3, 2)]
    assert env.agent.tolist() == expected


def test_collect_gives_scaled_reward_and_removes_the_object():
    env = room([(1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)], num_envs=2, reward_scale=10.0)
    place(env, cell(1, 1), [cell(1, 2), cell(3, 3)], [True, True])
    _, reward, terminated, truncated = env.step(torch.tensor([4, 0]))  # right onto object 0; stay
    assert reward.tolist() == [10.0, 0.0]
    assert env.present.tolist() == [[False, True], [True, True]]
    assert not terminated.any() and not truncated.any()


def test_terminate_and_automatic_reset():
    env = room([(1.0, 1.0, 0.0)], num_envs=1)
    place(env, cell(1, 1), [cell(1, 2)], [True])
    env.t[:] = 7
    obs, reward, terminated, _ = env.step(torch.tensor([4]))
    assert reward.item() == 1.0 and terminated.item()
    assert env.t.item() == 0 and env.present.all()  # a new episode began in the same step
    assert obs[0, 0].sum() == 1 and obs[0, 1].sum() == 1
    assert env.agent.item() != env.obj_pos[0, 0].item()  # episode start: distinct cells


def test_terminate_probability_is_p_terminate():
    env = room([(1.0, 0.3, 0.0)], num_envs=20000, seed=1)
    place(env, cell(1, 1), [cell(1, 2)], [True])
    _, reward, terminated, _ = env.step(torch.full((20000,), 4))
    assert (reward == 1).all()
    rate = terminated.float().mean().item()
    assert abs(rate - 0.3) < 4 * (0.3 * 0.7 / 20000) ** 0.5


def test_respawn_probability_and_cells_uniform_including_the_agent():
    n = 40000
    env = room([(1.0, 0.0, 0.25)], num_envs=n, seed=2)
    place(env, cell(1, 1), [cell(1, 1)], [False])
    env.step(torch.zeros(n, dtype=torch.long))
    back = env.present[:, 0]
    assert abs(back.float().mean().item() - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    cells = env.obj_pos[back, 0]
    counts = torch.bincount(cells, minlength=25).float()
    free = [cell(r, c) for r in (1, 2, 3) for c in (1, 2, 3) if (r, c) != (2, 2)]
    assert counts[[i for i in range(25) if i not in free]].sum() == 0  # never in a wall
    share = counts[free] / counts.sum()
    assert (share - 1 / 8).abs().max() < 4 * (1 / 8 * 7 / 8 / back.sum().item()) ** 0.5  # the agent's cell included


def test_collected_object_may_respawn_in_the_same_step():
    env = room([(1.0, 0.0, 1.0)], num_envs=1)
    place(env, cell(1, 1), [cell(1, 2)], [True])
    _, reward, _, _ = env.step(torch.tensor([4]))
    assert reward.item() == 1.0 and env.present.item()


def test_truncation_at_max_steps():
    env = room(INERT, num_envs=1, max_steps=3)
    place(env, cell(1, 1), [cell(1, 3)], [False])
    flags = [env.step(torch.tensor([0]))[2:] for _ in range(3)]
    assert [(bool(te), bool(tr)) for te, tr in flags] == [(False, False), (False, False), (False, True)]
    assert env.t.item() == 0


def test_grid_observation_planes():
    env = room([(1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)], num_envs=1)
    place(env, cell(1, 1), [cell(3, 3), cell(1, 3)], [True, False])
    obs = env._observe()[0]
    assert obs.shape == (3, 5, 5)
    assert obs[0].nonzero().tolist() == [[3, 3]] and obs[1].sum() == 0 and obs[2].nonzero().tolist() == [[1, 1]]


def test_collect_action_set():
    env = room([(1.0, 0.0, 0.0)], num_envs=2, collect_actions=True)
    assert env.single_action_space.n == 18
    place(env, cell(1, 1), [cell(1, 2)], [True])
    _, reward, _, _ = env.step(torch.tensor([4, 9 + 4]))  # walk onto it; collect to the right
    assert reward.tolist() == [0.0, 1.0]
    assert env.agent.tolist() == [cell(1, 2), cell(1, 1)]
    assert env.present[:, 0].tolist() == [True, False]


def test_rows_of_an_18_action_grid_can_follow_the_9_action_rules():
    env = room([(1.0, 0.0, 0.0)], num_envs=2, collect_actions=True)
    env.set_action_set(torch.tensor([0]), False)  # row 0: walking onto an object collects it, as with 9 actions
    assert env.collect_rows.tolist() == [False, True]
    place(env, cell(1, 1), [cell(1, 2)], [True])
    _, reward, _, _ = env.step(torch.tensor([4, 4]))  # both walk right onto it
    assert reward.tolist() == [1.0, 0.0] and env.present[:, 0].tolist() == [False, True]
    with pytest.raises(ValueError, match="built with the 9-action set"):
        room([(1.0, 0.0, 0.0)], num_envs=1).set_action_set(torch.tensor([0]), True)


def test_lifetime_positions_index_observation():
    env = room([(1.0, 1.0, 0.0), (-1.0, 0.0, 0.5)], num_envs=64, positions="lifetime", observation="index", seed=3)
    assert env.single_observation_space.n == 8 * 4
    layout = env.layout.clone()
    assert (layout[:, 0] != layout[:, 1]).all()
    for _ in range(200):
        obs, *_ = env.step(torch.randint(9, (64,)))
        assert ((env.obj_pos == layout) | ~env.present).all()  # objects come back to their own cells
    place(env, cell(3, 3), layout[0].tolist(), [False, True])
    free_index = [cell(r, c) for r in (1, 2, 3) for c in (1, 2, 3) if (r, c) != (2, 2)].index(cell(3, 3))
    assert env._observe()[0].item() == free_index * 4 + 2
    env.reset(4)
    assert not torch.equal(env.layout, layout)


@pytest.mark.parametrize(
    ("task", "shape"),
    [
        ("small_dense_short", (3, 6, 8)),
        ("small_dense_long", (3, 8, 6)),
        ("big_sparse_short", (5, 12, 14)),
        ("big_sparse_long", (5, 14, 12)),
        ("big_dense_short", (5, 11, 15)),
        ("big_dense_long", (5, 15, 11)),
        ("lpg_random_dense", (4, 11, 11)),
        ("lpg_random_small_sparse", (3, 5, 7)),
        ("lpg_random_very_dense", (2, 11, 11)),
    ],
)
def test_grid_observation_shapes(task, shape):
    env = make_task(task, 3, seed=0)
    assert env.single_observation_space.shape == shape
    assert env.reset(0).shape == (3, *shape) and env.single_action_space.n == 9


@pytest.mark.parametrize(("task", "states"), [("lpg_dense", 121 * 16), ("lpg_sparse", 169 * 4), ("lpg_longer", 63 * 2**7)])
def test_tabular_state_counts(task, states):
    assert make_task(task, 1).single_observation_space.n == states


def test_optim4rl_horizons():
    env = make_task("big_dense_short", 256, seed=0)
    lengths, t = [], torch.zeros(256, dtype=torch.long)
    for _ in range(120):
        _, _, terminated, truncated = env.step(torch.randint(9, (256,)))
        t += 1
        lengths += t[truncated].tolist()
        assert (t[terminated] <= 50).all()
        t[terminated | truncated] = 0
    assert lengths and set(lengths) == {50}


# ---------------------------------------------------------------------- Catch
def test_catch_reward():
    env = Catch(2)
    env.reset(0)
    env.ball_col = torch.tensor([4, 4])
    rewards, terms = [], []
    for step in range(9):
        action = torch.tensor([2, 0]) if step < 2 else torch.tensor([1, 1])  # right twice / left twice
        _, reward, terminated, _ = env.step(action)
        rewards.append(reward.tolist())
        terms.append(terminated.tolist())
    assert rewards[:8] == [[0.0, 0.0]] * 8 and rewards[8] == [1.0, -1.0]
    assert terms[:8] == [[False, False]] * 8 and terms[8] == [True, True]
    assert env.ball_row.tolist() == [0, 0] and env.paddle.tolist() == [2, 2]


def test_catch_observation():
    env = Catch(1)
    obs = env.reset(5)
    assert obs[0, 0].sum() == 1 and obs[0, 9, 2] == 1 and obs.sum() == 2


# --------------------------------------------------------------------- chains
def test_chain_lengths_cover_the_whole_range():
    env = make_task("chain_short", 5000, seed=0)
    counts = torch.bincount(env.length, minlength=31)[5:]
    assert env.length.min() == 5 and env.length.max() == 30 and (counts > 0).all()
    assert (counts.float() / 5000 - 1 / 26).abs().max() < 0.015
    lengths = env.length.clone()
    for _ in range(70):
        env.step(torch.randint(2, (5000,)))
    assert torch.equal(env.length, lengths)  # fixed within the lifetime


def test_chain_rewards_and_episode_length():
    env = DelayedChain(ChainSpec(low=7, high=7), 2)
    env.reset(0)
    env.correct = torch.tensor([0, 0])
    rewards, dones = [], []
    for step in range(7):
        action = torch.tensor([0, 1]) if step == 0 else torch.tensor([1, 0])
        _, reward, terminated, _ = env.step(action)
        rewards.append(reward.tolist())
        dones.append(terminated.tolist())
    assert rewards == [[0.0, 0.0]] * 6 + [[1.0, -1.0]]
    assert dones == [[False, False]] * 6 + [[True, True]]


def test_chain_index_states_are_distinct():
    env = DelayedChain(ChainSpec(low=5, high=5), 4)
    env.reset(0)
    env.correct = torch.tensor([0, 0, 1, 1])
    seen = [env._observe()]
    for step in range(4):
        seen.append(env.step(torch.tensor([0, 1, 0, 1]) if step == 0 else torch.zeros(4, dtype=torch.long))[0])
    states = torch.stack(seen).T.tolist()  # per instance: start state, then 4 states of its branch
    # start = correct action; then 2 + (2 * correct + chose_correct) * high + (t - 1)
    assert states == [[0, 7, 8, 9, 10], [0, 2, 3, 4, 5], [1, 12, 13, 14, 15], [1, 17, 18, 19, 20]]
    assert max(max(s) for s in states) < env.single_observation_space.n


def test_noisy_chain_middle_rewards():
    env = make_task("chain_short_noisy", 4000, seed=1)
    _, reward, terminated, _ = env.step(torch.zeros(4000, dtype=torch.long))
    assert not terminated.any() and set(reward.tolist()) == {-1.0, 1.0}
    assert abs(reward.mean().item()) < 0.07


def test_distractor_bits():
    env = make_task("chain_distractor", 512, seed=2)
    obs = env._observe()
    assert obs.shape == (512, 22)
    assert torch.equal(obs[:, 0], (env.correct == 0).float()) and (obs[:, 1] == 0).all()
    action = env.correct.clone()
    action[:256] = 1 - action[:256]
    obs = env.step(action)[0]
    assert obs[:256, 1].sum() == 0 and (obs[256:, 1] == 1).all()
    assert 0.4 < obs[:, 2:].mean().item() < 0.6


# ------------------------------------------------------------ Gymnasium faces
@pytest.mark.parametrize("env_id", sorted(GYM_IDS))
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)


EQUAL_TASKS = ["catch", "big_dense_short", "lpg_sparse", "lpg_random_small_sparse", "chain_short_noisy", "chain_distractor"]


@pytest.mark.parametrize("task", EQUAL_TASKS)
def test_batch_of_one_equals_single_env(task):
    options = {"collect_actions": True} if task == "lpg_random_small_sparse" else {}
    single, batch = TaskEnv(task, **options), TaskVectorEnv(task, 1, **options)
    obs, _ = single.reset(seed=11)
    bobs, _ = batch.reset(seed=11)
    actions = np.random.default_rng(0).integers(single.action_space.n, size=300)
    episodes = 0
    for a in actions:
        np.testing.assert_array_equal(obs, bobs[0].numpy())
        obs, reward, terminated, truncated, _ = single.step(a)
        bobs, breward, bterm, btrunc, info = batch.step(torch.tensor([a]))
        assert (reward, terminated, truncated) == (breward.item(), bterm.item(), btrunc.item())
        if terminated or truncated:
            np.testing.assert_array_equal(obs, info["final_obs"][0].numpy())
            obs, _ = single.reset()
            episodes += 1
    assert episodes >= 2


@pytest.mark.parametrize("env_id", ["HyperRLTasks/Catch-v0", "HyperRLTasks/BigDenseLong-v0", "HyperRLTasks/LPGDenseCollect-v0"])
def test_make_vec_gives_the_batched_vector_env(env_id):
    env = gym.make_vec(env_id, num_envs=64, vectorization_mode="vector_entry_point", device="cpu")
    assert isinstance(env, gym.vector.VectorEnv) and isinstance(env.unwrapped, TaskVectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.observation_space == batch_space(env.single_observation_space, 64)
    assert env.action_space == batch_space(env.single_action_space, 64)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.shape[0] == 64
    assert env.observation_space.contains(obs.numpy())
    obs, reward, terminated, truncated, info = env.step(torch.as_tensor(env.action_space.sample()))
    assert reward.shape == terminated.shape == truncated.shape == (64,) and reward.dtype == torch.float32
    assert info["final_obs"].shape == obs.shape


@pytest.mark.parametrize("task", ["big_sparse_long", "lpg_longer", "chain_long"])
def test_seeded_determinism(task):
    def rollout(seed):
        env, gen = make_task(task, 32, seed=seed), torch.Generator().manual_seed(0)
        out = []
        for _ in range(60):
            obs, reward, terminated, truncated = env.step(torch.randint(env.single_action_space.n, (32,), generator=gen))
            out.append(torch.cat([obs.reshape(32, -1).float(), reward[:, None], terminated[:, None], truncated[:, None]], 1))
        return torch.stack(out)

    assert torch.equal(rollout(5), rollout(5))
    assert not torch.equal(rollout(5), rollout(6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_shapes():
    env = make_task("big_dense_long", 128, device="cuda", seed=0)
    obs, reward, *_ = env.step(torch.randint(9, (128,), device="cuda"))
    assert obs.device.type == "cuda" and reward.device.type == "cuda"


# ------------------------------------------------------------------ bad input
def test_bad_input():
    with pytest.raises(ValueError, match="task"):
        make_task("big_dense_longest", 4)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_envs"):
            make_task("catch", bad)
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("HyperRLTasks/Catch-v0", num_envs=0, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="action"):
        make_task("catch", 4, seed=0).step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="action must lie in"):
        make_task("big_dense_long", 2, seed=0).step(torch.tensor([3, 9]))
    with pytest.raises(ValueError, match="action must be an integer"):
        make_task("catch", 2, seed=0).step(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="seed"):
        TaskVectorEnv("catch", 2).reset(seed=-1)
    with pytest.raises(ValueError, match="reward_scale"):
        make_task("small_dense_short", 4, reward_scale=float("nan"))
    with pytest.raises(ValueError, match="action"):
        env = TaskEnv("catch")
        env.reset(seed=0)
        env.step(3)


# ------------------------------------------------------------- more invariants
def test_episode_start_cells_distinct_and_uniform():
    n = 16000
    env = room([(1.0, 0.0, 0.0)], num_envs=n, seed=7)
    assert (env.agent != env.obj_pos[:, 0]).all()
    counts = torch.bincount(env.agent, minlength=25)
    free = [cell(r, c) for r in (1, 2, 3) for c in (1, 2, 3) if (r, c) != (2, 2)]
    assert counts[free].sum() == n  # never in a wall
    assert (counts[free] / n - 1 / 8).abs().max() < 4 * (7 / 64 / n) ** 0.5


def test_type_planes_absent_object_never_clears_a_present_one():
    objects = ((1.0, 0.0, 0.0),) * 2
    spec = GridSpec(height=3, width=3, objects=objects, max_steps=9, walls=ROOM, channels="type", border_in_obs=False)
    env = GridWorld(spec, 1)
    env.reset(0)
    place(env, cell(1, 1), [cell(3, 3), cell(3, 3)], [True, False])
    obs = env._observe()[0]
    assert obs.shape == (2, 3, 3)  # one plane for the one object type, one for the agent, over the interior
    assert obs[0].nonzero().tolist() == [[2, 2]] and obs[1].nonzero().tolist() == [[0, 0]]


def test_package_exports_and_no_torch_at_import():
    import subprocess
    import sys

    import hyperenvs.tasks as tasks

    for name in tasks.__all__:
        assert getattr(tasks, name) is not None
    code = "import sys, hyperenvs, hyperenvs.tasks; assert 'torch' not in sys.modules; print(len(hyperenvs.tasks.TASKS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "27"


@pytest.mark.parametrize("task", ["catch", "big_dense_short"])
def test_reuse_obs_same_values_one_tensor(task):
    fresh, reused = make_task(task, 64, seed=3), make_task(task, 64, seed=3, reuse_obs=True, record_final=True)
    first = reused.reset(3)
    fresh.reset(3)
    for _ in range(60):
        action = torch.randint(9 if task != "catch" else 3, (64,), generator=torch.Generator().manual_seed(_))
        a, *_rest = fresh.step(action)
        b, *_rest = reused.step(action)
        assert torch.equal(a, b) and b.data_ptr() == first.data_ptr()
    assert reused.final_obs.data_ptr() != first.data_ptr()


GROUPED_TASKS = ["catch", "big_dense_short", "lpg_sparse", "lpg_random_small_sparse", "chain_short_noisy", "chain_distractor"]


def _grouped_pair(task: str, reuse_obs: bool):
    options = {"collect_actions": True} if task == "lpg_random_small_sparse" else {}
    grouped = make_task(task, 4, lifetimes=3, record_final=True, reuse_obs=reuse_obs, **options)
    alone = [make_task(task, 4, record_final=True, **options) for _ in range(3)]
    return grouped, alone


@pytest.mark.parametrize("reuse_obs", [False, True])
@pytest.mark.parametrize("task", GROUPED_TASKS)
def test_a_task_of_three_lifetimes_is_three_lone_tasks(task, reuse_obs):
    grouped, alone = _grouped_pair(task, reuse_obs)
    seeds = [5, 6, 7]
    obs = grouped.reset(seeds)
    lone_obs = [env.reset(s) for env, s in zip(alone, seeds)]
    gen = torch.Generator().manual_seed(0)
    n = grouped.single_action_space.n
    finished = 0
    for t in range(120):
        assert torch.equal(obs, torch.cat(lone_obs))
        if t == 50:  # lifetime 1 starts afresh; lifetimes 0 and 2 go on untouched
            restarted = grouped.restart_lifetimes([1], [99])
            lone_obs[1] = alone[1].reset(99)
            assert torch.equal(restarted, lone_obs[1])
            obs = obs.clone()
            obs[4:8] = restarted
            continue
        action = torch.randint(n, (12,), generator=gen)
        obs, reward, term, trunc = grouped.step(action)
        steps = [env.step(action[4 * j : 4 * j + 4]) for j, env in enumerate(alone)]
        lone_obs = [s[0] for s in steps]
        for i, part in enumerate((reward, term, trunc), start=1):
            assert torch.equal(part, torch.cat([s[i] for s in steps]))
        done = term | trunc
        finished += int(done.sum())
        lone_final = torch.cat([env.final_obs for env in alone])
        assert torch.equal(grouped.final_obs[done], lone_final[done])
    assert finished > 0
    if task == "lpg_sparse":  # object cells fixed per lifetime: each lifetime has its own layout
        assert torch.equal(grouped.layout[:4], alone[0].layout) and not torch.equal(grouped.layout[:4], grouped.layout[8:])
    if task.startswith("chain"):
        assert torch.equal(grouped.length, torch.cat([env.length for env in alone]))


def test_lifetimes_bad_input():
    with pytest.raises(ValueError, match="lifetimes must be a positive integer"):
        make_task("catch", 4, lifetimes=0)
    with pytest.raises(ValueError, match="lifetimes must be 1 for 'cart_pole'"):
        make_task("cart_pole", 4, lifetimes=2)
    task = make_task("catch", 2, lifetimes=2)
    with pytest.raises(ValueError, match="seed must hold one seed per lifetime"):
        task.reset(3)
    task.reset([1, 2])
    with pytest.raises(ValueError, match=r"lifetimes must lie in \[0, 2\)"):
        task.restart_lifetimes([2], [0])
    with pytest.raises(AttributeError, match="generators"):
        _ = task.generator


def test_reset_rows_starts_new_episodes_in_those_rows_only():
    task = make_task("catch", 4, seed=3)
    for _ in range(3):
        task.step(torch.ones(4, dtype=torch.long))
    before = {name: getattr(task, name).clone() for name in task.row_state}
    obs = task.reset_rows(torch.tensor([3, 1]))
    assert obs.shape == (2, 10, 5)
    assert torch.equal(obs, task._observe()[[1, 3]])  # sorted order
    for name, old in before.items():
        new = getattr(task, name)
        assert torch.equal(new[[0, 2]], old[[0, 2]]), name
    assert task.ball_row[[1, 3]].tolist() == [0, 0] and task.paddle[[1, 3]].tolist() == [2, 2]
    assert task.ball_row[[0, 2]].tolist() == [3, 3]
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 4\)"):
        task.reset_rows(torch.tensor([4]))
