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


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray of 2 CPUs for the whole session (the CI machine's cores), shut down at its end."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (the optional `distributed` extra)")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
