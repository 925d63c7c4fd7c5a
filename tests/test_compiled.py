"""The compiled update path (agents/compiled.py): the eager numbers, and no recompilation when hyperparameters move.

Every test here shares one network (CartPole's 64-64 tanh) and a few batch shapes, so the
module compiles three graphs in all (PPO minibatches of 16 and 32, A2C's 4 x 16 batch): about
55 s of CPU from an empty inductor cache, a few seconds from a warm one.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
from _helpers import assert_close, count_constructions, learner_pair, ten_updates

import hyperenvs
from agents import compiled
from agents.a2c import A2CConfig, A2CLearner
from agents.optim import SGD
from agents.ppo import PPOConfig, PPOLearner

gym.register_envs(hyperenvs)

TASK = "HyperRLTasks/CartPole-v0"
SMALL = {"task": TASK, "num_envs": 4, "num_steps": 16}
PPO_HP = {"epochs": 2, "minibatch_size": 16}


def _pair(cls, config_cls, **config):
    """An eager and a compiled learner with one seed, sharing one collected batch and generator state."""
    return learner_pair(cls, config_cls, True, **SMALL, **config)


@pytest.mark.parametrize("kind", ["ppo", "a2c"])
def test_compiled_train_step_equals_eager_overten_updates(kind):
    if kind == "ppo":
        eager, fast, batch = _pair(PPOLearner, PPOConfig)

        def schedule(k):  # every step moves lr, clip and lambda: the same graph must follow
            return {**PPO_HP, "lr": 1e-3 * (1 + k / 10), "clip": 0.1 + 0.02 * k, "gae_lambda": 0.9 + 0.005 * k}
    else:
        eager, fast, batch = _pair(A2CLearner, A2CConfig)

        def schedule(k):
            return {"lr": 7e-4 * (1 + k / 10), "ent_coef": 0.01 * k, "vf_coef": 0.25 + 0.05 * k, "gae_lambda": 0.95}

    p_eager, s_eager, m_eager = ten_updates(eager, batch, schedule)
    p_fast, s_fast, m_fast = ten_updates(fast, batch, schedule)
    assert_close(p_eager, p_fast)
    moments = [k for k, v in s_eager.items() if isinstance(v, dict)]
    assert moments  # Adam's or RMSProp's moments are compared too
    for key in moments:
        assert_close(s_eager[key], s_fast[key])
    assert s_eager["step"] == s_fast["step"]
    assert_close(m_eager, m_fast, tol=1e-4)
    assert fast.compile_seconds > 0 and eager.compile_seconds == 0
    # Not vacuous: the updates moved the parameters well beyond the tolerance.
    assert max((p_eager[k] - eager.params[k]).abs().max().item() for k in p_eager) > 1e-3


def _hyper_steps(env_id, controlled, values, steps=20, **kwargs):
    env = gym.make(env_id, hyperparameters=controlled, config={**SMALL, "compile": True}, iterations_per_step=2, **kwargs)
    env.reset(seed=0)
    space = env.unwrapped.hparam_space
    graphs, infos = [], []
    for k in range(steps):
        _, _, terminated, truncated, info = env.step(space.encode(values(k)))
        assert not (terminated or truncated)
        graphs.append(compiled.COMPILES.graphs)
        infos.append(info)
    env.close()
    return graphs, infos


def test_changing_lr_clip_and_lambda_every_hyper_step_never_recompiles():
    def values(k):
        return {"lr": 1e-4 * 1.2**k, "clip": 0.1 + 0.015 * k, "gae_lambda": 0.99 - 0.009 * k}

    graphs, infos = _hyper_steps(
        "HyperRL/PPO-CartPole-v1", ["lr", "clip", "gae_lambda"], values, total_timesteps=10**6, defaults=PPO_HP
    )
    assert len({tuple(i["hyperparameters"].values()) for i in infos}) == 20  # they did change every step
    assert graphs[1:] == [graphs[0]] * 19
    assert all(i["compile_seconds"] == 0.0 for i in infos[1:])


def test_a2c_hyperparameters_never_recompile():
    def values(k):
        return {"lr": 1e-4 * 1.2**k, "ent_coef": 0.004 * k, "vf_coef": 0.2 + 0.03 * k, "gae_lambda": 1.0 - 0.01 * k}

    graphs, _ = _hyper_steps(
        "HyperRL/A2C-CartPole-v1", ["lr", "ent_coef", "vf_coef", "gae_lambda"], values, total_timesteps=10**6
    )
    assert graphs[1:] == [graphs[0]] * 19


def test_a_minibatch_size_compiles_once():
    learner = PPOLearner(PPOConfig(**SMALL, compile=True), seed=0)
    counts = []
    for size in (16, 32, 16, 32, 16):
        learner.iterate({"epochs": 1, "minibatch_size": size})
        counts.append(compiled.COMPILES.graphs)
    assert counts[2:] == [counts[1]] * 3  # two sizes, at most two graphs, each compiled the first time only


def test_auto_waits_then_compiles(monkeypatch):
    import agents.fused
    import agents.learner

    built = count_constructions(monkeypatch, agents.learner, "CompiledSteps")
    # where the fused steps apply (CPU float32) "auto" takes them (tests/test_fused.py); here they do not
    monkeypatch.setattr(agents.fused, "fusable", lambda *args: "not here")
    learner = PPOLearner(PPOConfig(**SMALL, compile="auto"), seed=0)
    for _ in range(compiled.AUTO_AFTER):
        learner.iterate(PPO_HP)
    assert not built  # short runs stay eager
    learner.iterate(PPO_HP)
    assert len(built) == 1
    big = PPOLearner(PPOConfig(**SMALL, hidden=(512, 512), compile="auto"), seed=0)
    big.iterations = 10**6
    big.iterate({"epochs": 1, "minibatch_size": 64})
    assert len(built) == 1  # a network this size is arithmetic-bound: it stays eager


def test_compile_setting_errors():
    with pytest.raises(ValueError, match="compile must be one of"):
        PPOConfig(compile="yes")
    with pytest.raises(ValueError, match="compile must be one of"):
        PPOConfig(compile=1)

    class OwnSGD(SGD):
        pass

    with pytest.raises(ValueError, match="compile=True, but update rule OwnSGD has no compiled form"):
        PPOLearner(PPOConfig(**SMALL, update_rule=OwnSGD(), compile=True), seed=0)  # said when built
