"""The batched classic-control twins step exactly like Gymnasium's own envs, and their Gymnasium faces."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import hyperenvs  # noqa: F401  (registers HyperRLTasks/*)
from hyperenvs.tasks import make_task

TWINS = {
    "cart_pole": ("CartPole-v1", "HyperRLTasks/CartPole-v0"),
    "acrobot": ("Acrobot-v1", "HyperRLTasks/Acrobot-v0"),
    "mountain_car": ("MountainCar-v0", "HyperRLTasks/MountainCar-v0"),
    "mountain_car_continuous": ("MountainCarContinuous-v0", "HyperRLTasks/MountainCarContinuous-v0"),
    "pendulum": ("Pendulum-v1", "HyperRLTasks/Pendulum-v0"),
}


def _random(rng, space, state):
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    # half again past the bounds, so Gymnasium's clipping is exercised too
    return (rng.uniform(-1.5, 1.5, size=space.shape) * space.high).astype(np.float32)


def _pump(rng, space, state):
    """Push along a velocity (Acrobot's second joint's, the car's): reaches the goal (a clipped push when continuous)."""
    velocity = state[3] if len(state) == 4 else state[1]
    if isinstance(space, gym.spaces.Discrete):
        return 2 if velocity > 0 else 0
    return np.array([1.3 if velocity > 0 else -1.3], dtype=np.float32)


def _balance(rng, space, state):
    """A PD controller that holds CartPole up for its whole 500 steps."""
    x, x_dot, theta, theta_dot = state
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot > 0)


# task -> (policy per row, steps): the runs end episodes by truncation and (but Pendulum) by termination
RUNS = {
    "cart_pole": ((_random, _random, _balance), 560),
    "acrobot": ((_random, _pump, _pump), 560),
    "mountain_car": ((_random, _pump, _pump), 450),
    "mountain_car_continuous": ((_random, _pump), 1050),
    "pendulum": ((_random, _random), 450),
}


STATE_TOL = 1e-9  # torch and NumPy may round float64 sin and cos apart by an ulp; Acrobot amplifies it


def _sync_row(twin, row: int, env: gym.Env) -> None:
    twin.state[row] = torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64))


@pytest.mark.parametrize("task", list(TWINS))
def test_twin_equals_gymnasium_step_for_step(task):
    gym_id, _ = TWINS[task]
    policies, steps = RUNS[task]
    envs = [gym.make(gym_id) for _ in policies]
    twin = make_task(task, len(envs), seed=0, record_final=True)
    rng = np.random.default_rng(1)
    for row, env in enumerate(envs):
        env.reset(seed=100 + row)
        _sync_row(twin, row, env)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        actions = [policy(rng, env.action_space, env.unwrapped.state) for policy, env in zip(policies, envs, strict=True)]
        batch = torch.as_tensor(np.stack(actions))
        _, reward, terminated, truncated = twin.step(batch)
        for row, (env, action) in enumerate(zip(envs, actions, strict=True)):
            obs, gym_reward, gym_terminated, gym_truncated, _ = env.step(action)
            np.testing.assert_allclose(twin.final_obs[row].numpy(), obs, rtol=0, atol=1e-5)
            assert float(reward[row]) == pytest.approx(gym_reward, rel=1e-6, abs=1e-6)
            assert (bool(terminated[row]), bool(truncated[row])) == (gym_terminated, gym_truncated)
            if not (gym_terminated or gym_truncated):  # the float64 state itself
                want = np.asarray(env.unwrapped.state, dtype=np.float64)
                np.testing.assert_allclose(twin.state[row].numpy(), want, rtol=STATE_TOL, atol=STATE_TOL)
            ends["terminated"] += gym_terminated
            ends["truncated"] += gym_truncated
            if gym_terminated or gym_truncated:
                env.reset()
                _sync_row(twin, row, env)
    # Pendulum never terminates; every other task's runs end episodes both ways
    assert ends["truncated"] > 0 and (ends["terminated"] == 0 if task == "pendulum" else ends["terminated"] > 0), ends


def test_twin_time_limits_are_the_registered_ones():
    for task, (gym_id, _) in TWINS.items():
        assert make_task(task, 1).max_episode_steps == gym.spec(gym_id).max_episode_steps


@pytest.mark.parametrize("task", list(TWINS))
def test_reset_draws_like_gymnasium(task):
    twin = make_task(task, 4096, seed=0)
    state = twin.state
    assert twin.elapsed.eq(0).all()
    if task == "cart_pole":
        low, high = torch.full((4,), -0.05), torch.full((4,), 0.05)
    elif task == "acrobot":
        low, high = torch.full((4,), -0.1), torch.full((4,), 0.1)
        assert torch.equal(state, state.float().double())  # Gymnasium keeps Acrobot's reset state in float32
    elif task == "pendulum":
        low, high = torch.tensor([-math.pi, -1.0]), torch.tensor([math.pi, 1.0])
    else:
        low, high = torch.tensor([-0.6, 0.0]), torch.tensor([-0.4, 0.0])
    low, high = low.double(), high.double()
    assert bool((state >= low).all() and (state <= high).all())
    width = high - low
    # uniform on [low, high]: the extremes come within 1 % of the ends, the mean sits in the middle
    assert torch.allclose(state.min(0).values, low, atol=0.01 * float(width.max()))
    assert torch.allclose(state.max(0).values, high, atol=0.01 * float(width.max()))
    assert torch.allclose(state.mean(0), (low + high) / 2, atol=0.03 * float(width.max()))


@pytest.mark.parametrize("task", list(TWINS))
def test_single_instance_id_passes_check_env(task):
    _, twin_id = TWINS[task]
    env = gym.make(twin_id)
    check_env(env.unwrapped, skip_render_check=True)
    gym_env = gym.make(TWINS[task][0])
    assert env.observation_space == gym_env.observation_space
    assert env.action_space == gym_env.action_space


@pytest.mark.parametrize("task", list(TWINS))
def test_make_vec_is_the_batched_twin(task):
    gym_id, twin_id = TWINS[task]
    envs = gym.make_vec(twin_id, num_envs=6, vectorization_mode="vector_entry_point")
    single = gym.make(gym_id)
    assert isinstance(envs, gym.vector.VectorEnv)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space.shape == (6, *single.observation_space.shape)
    assert envs.action_space.shape == (6, *single.action_space.shape)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (6, *single.observation_space.shape) and obs.dtype == torch.float32
    actions = torch.as_tensor(envs.action_space.sample())
    obs, reward, terminated, truncated, info = envs.step(actions)
    assert obs.shape[0] == reward.shape[0] == terminated.shape[0] == truncated.shape[0] == 6
    assert "final_obs" in info


def _rollout(task: str, seed: int, steps: int = 300) -> list[torch.Tensor]:
    twin = make_task(task, 16, seed=seed)
    space = twin.single_action_space
    gen = torch.Generator().manual_seed(7)
    out = [twin.reset(seed)]
    for _ in range(steps):
        if isinstance(space, gym.spaces.Discrete):
            action = torch.randint(space.n, (16,), generator=gen)
        else:
            action = (torch.rand(16, 1, generator=gen) * 2 - 1) * float(space.high[0])
        obs, reward, terminated, truncated = twin.step(action)
        out += [obs, reward, terminated, truncated]
    return out


@pytest.mark.parametrize("task", list(TWINS))
def test_seeded_determinism(task):
    first, again, other = _rollout(task, 3), _rollout(task, 3), _rollout(task, 4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("task", ["cart_pole", "acrobot", "mountain_car"])
def test_discrete_action_errors_name_the_field(task):
    twin = make_task(task, 4, seed=0)
    n = twin.single_action_space.n
    with pytest.raises(ValueError, match=r"action must have shape \(4,\)"):
        twin.step(torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="action must be an integer tensor"):
        twin.step(torch.zeros(4))
    with pytest.raises(ValueError, match=rf"action must lie in \[0, {n}\)"):
        twin.step(torch.tensor([0, 1, n, 0]))
    with pytest.raises(ValueError, match=r"action must lie in \[0, "):
        twin.step(torch.tensor([0, -1, 0, 0]))
    env = gym.make(TWINS[task][1])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be in Discrete"):
        env.step(n)


@pytest.mark.parametrize("task", ["mountain_car_continuous", "pendulum"])
def test_continuous_action_errors_name_the_field(task):
    twin = make_task(task, 4, seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(4, 1\)"):
        twin.step(torch.zeros(4))
    with pytest.raises(ValueError, match="action must be a floating-point tensor"):
        twin.step(torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="action must be finite"):
        twin.step(torch.tensor([[0.0], [math.nan], [0.0], [0.0]]))
    env = gym.make(TWINS[task][1])
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(1, 1\)"):
        env.step(np.zeros(2, dtype=np.float32))


def test_bad_num_envs_is_a_value_error():
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        make_task("pendulum", 0)


@pytest.mark.parametrize("task", ["pendulum", "mountain_car_continuous"])
def test_single_instance_face_clips_like_gymnasium_and_truncates_at_the_limit(task):
    gym_id, twin_id = TWINS[task]
    ours, theirs = gym.make(twin_id), gym.make(gym_id)
    ours.reset(seed=0)
    theirs.reset(seed=5)
    ours.unwrapped.task.state[0] = torch.as_tensor(np.asarray(theirs.unwrapped.state, dtype=np.float64))
    high = float(theirs.action_space.high[0])
    for t in range(theirs.spec.max_episode_steps):
        action = np.array([3.0 * high if t % 3 else -2.0 * high], dtype=np.float32)  # always out of range
        obs, reward, terminated, truncated, _ = ours.step(action)
        want = theirs.step(action)
        np.testing.assert_allclose(obs, want[0], rtol=0, atol=1e-5)
        assert reward == pytest.approx(want[1], rel=1e-6) and (terminated, truncated) == want[2:4]
        if terminated:
            break
    assert terminated or truncated


@pytest.mark.parametrize("task", list(TWINS))
def test_reuse_obs_gives_the_same_values_in_one_tensor(task):
    fresh, reused = make_task(task, 32, seed=2), make_task(task, 32, seed=2, reuse_obs=True)
    first = reused.reset(2)
    assert torch.equal(fresh.reset(2), first)
    space = fresh.single_action_space
    action = torch.ones(32, dtype=torch.long) if isinstance(space, gym.spaces.Discrete) else torch.full((32, 1), 0.5)
    for _ in range(5):
        obs = reused.step(action)[0]
        assert torch.equal(fresh.step(action)[0], obs) and obs.data_ptr() == first.data_ptr()


@pytest.mark.parametrize("task", list(TWINS))
def test_array_step_is_the_same_in_numpy_and_torch(task):
    # On CPU the twin steps in NumPy; the torch form (any other device) must give the same numbers.
    twin = make_task(task, 64, seed=3)
    rng = np.random.default_rng(0)
    state = twin.state.clone() + torch.as_tensor(rng.normal(0, 0.3, twin.state.shape))
    space = twin.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        action = torch.as_tensor(rng.integers(0, space.n, 64))
    else:  # some beyond the action bound
        action = torch.as_tensor(rng.uniform(-3 * space.high[0], 3 * space.high[0], (64, 1)), dtype=torch.float32)
    if task == "mountain_car_continuous":  # rows in their float64 reset state and rows stepped before
        twin._fresh[::2] = False
    ours = twin._step_arrays(np, state.numpy(), action.numpy())
    theirs = twin._step_arrays(torch, state, action)
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-12, atol=1e-12)
    assert (ours[2] is None and theirs[2] is None) or np.array_equal(ours[2], theirs[2].numpy())
    assert ours[0].dtype == np.float64 and theirs[0].dtype == torch.float64
    np.testing.assert_allclose(
        twin._observe_arrays(np, state.numpy()), twin._observe_arrays(torch, state).numpy(), rtol=0, atol=1e-12
    )
