"""EPGT's keys keep their spread, and its memory leaves torch's threads alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import make_tiny

from solvers.epgt import EPGTSolver, HyperStateVAE
from solvers.epgt.solver import LEGACY

A2C = "HyperRL/A2C-CartPole-v0"


@pytest.fixture(scope="module")
def recorded_states() -> np.ndarray:
    """The projection hyper-states of a short A2C CartPole lifetime with random lr bins."""
    env = make_tiny(A2C, 16, action_type="discrete", iterations_per_step=1)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    states = [obs["projection"]]
    for _ in range(15):
        obs, *_ = env.step(rng.integers(env.action_space.nvec))
        states.append(obs["projection"])
    env.close()
    return np.stack(states)


def train_on(states: np.ndarray, steps: int, **config) -> EPGTSolver:
    """Write the states (one action each) and take ``steps`` VAE steps, as EPGT does at its memory updates."""
    solver = EPGTSolver(**config)
    from solvers.epgt.actions import JointActions

    solver._build(states.shape[1], JointActions([3]), seed=0)
    solver._update([[(torch.from_numpy(s), i % 3) for i, s in enumerate(states)]], 1.0)
    for _ in range(steps):
        solver._train_vae()
    return solver


def test_median_neighbour_distance_stays_above_the_kernel_epsilon_after_vae_training(recorded_states):
    solver = train_on(recorded_states, 10)
    spread = solver.memory.median_neighbour_distance()
    assert spread > solver.memory.kernel_eps == pytest.approx(0.1 * spread)
    assert spread > 1e-3  # also above the paper's fixed epsilon: near and far neighbours weigh differently
    legacy = train_on(recorded_states, 10, **LEGACY)  # sigmoid input, no free bits: the keys collapse
    assert legacy.memory.median_neighbour_distance() < 1e-3 == legacy.memory.kernel_eps
    assert legacy.memory.median_neighbour_distance() < spread / 100


def test_the_standardised_input_is_refitted_on_the_states_in_memory():
    vae = HyperStateVAE(3, latent_dim=2, key_dim=2)
    raw = torch.tensor([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0]])
    vae.fit_input(raw)
    torch.testing.assert_close(vae.prepare(raw), torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="key_input"):
        HyperStateVAE(3, key_input="raw")


def test_building_epgts_memory_and_acting_leave_torchs_thread_count_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        env = make_tiny(A2C, 2, action_type="discrete")
        obs, info = env.reset(seed=0)
        solver = EPGTSolver()
        solver.begin(env, obs, info, seed=0)
        solver.act(obs)
        assert torch.get_num_threads() == 2
        env.close()
    finally:
        torch.set_num_threads(before)
