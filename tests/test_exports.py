"""Public names resolve, and importing hyperenvs stays cheap (no torch, no MuJoCo)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest


def packages_with_all() -> list[str]:
    names = ["agents", "hyperenvs"]
    try:
        if hasattr(importlib.import_module("solvers"), "__all__"):
            names.append("solvers")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("package", packages_with_all())
def test_every_name_in_all_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package}.__all__ is empty"
    assert len(set(module.__all__)) == len(module.__all__), f"{package}.__all__ has duplicates"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_hyperenvs_lazy_attributes_are_the_real_objects():
    import hyperenvs
    from hyperenvs.checks import check_hyperenv
    from hyperenvs.env import HyperEnv
    from hyperenvs.wrappers import RecordSchedule, flatten

    assert hyperenvs.HyperEnv is HyperEnv and hyperenvs.check_hyperenv is check_hyperenv
    assert hyperenvs.RecordSchedule is RecordSchedule and hyperenvs.flatten is flatten
    with pytest.raises(AttributeError, match="module 'hyperenvs' has no attribute 'Nope'"):
        hyperenvs.Nope  # noqa: B018


def run_fresh(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_hyperenvs_loads_no_torch_or_mujoco():
    out = run_fresh(
        """
        import sys
        import gymnasium as gym
        import hyperenvs
        gym.register_envs(hyperenvs)
        heavy = sorted(m for m in ("torch", "mujoco", "ale_py", "Box2D") if m in sys.modules)
        print(len(hyperenvs.REGISTRY), "HyperRL/PPO-CartPole-v0" in gym.registry, heavy)
        """
    )
    count, registered, heavy = out.split(maxsplit=2)
    assert int(count) > 0 and registered == "True"
    assert heavy.strip() == "[]", f"import hyperenvs loaded {heavy.strip()}"


def test_module_prefixed_make_in_a_fresh_process():
    out = run_fresh(
        """
        import gymnasium as gym
        env = gym.make("hyperenvs:HyperRL/PPO-CartPole-v0", total_timesteps=16, num_envs=2, config={"num_steps": 8})
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(type(env.unwrapped).__name__, info["timesteps"], truncated)
        """
    )
    assert out.split() == ["HyperEnv", "16", "True"]


def test_agents_loads_torch_only_when_a_learner_name_is_used():
    out = run_fresh(
        """
        import sys
        import agents
        from agents.hparams import Hyperparameter, declared
        before = "torch" in sys.modules
        agents.PPOHyperparams
        print(before, "torch" in sys.modules, "agents.ppo" in sys.modules, "agents.impala" in sys.modules)
        """
    )
    assert out.split() == ["False", "True", "True", "False"]


def test_lazy_agents_names_are_the_modules_objects():
    import agents
    from agents.hparams import declare
    from agents.ppo import PPOLearner

    assert agents.PPOLearner is PPOLearner and agents.declare is declare
    assert "PPOLearner" in dir(agents)
    with pytest.raises(AttributeError, match="module 'agents' has no attribute 'Nope'"):
        agents.Nope  # noqa: B018
