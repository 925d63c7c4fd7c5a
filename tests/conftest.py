"""Session-wide test settings and fixtures."""

from __future__ import annotations

import pytest
import torch
from _helpers import make_tiny


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_env():
    """A CartPole PPO lifetime of 4 hyper-steps of 16 env steps."""
    env = make_tiny()
    yield env
    env.close()
