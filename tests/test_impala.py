"""IMPALA: the objective's metaparameters, the lagging behaviour policy, snapshots, and the asynchronous actors."""

from __future__ import annotations

import importlib.util
import os
import signal
import time

import numpy as np
import pytest
import torch
from _helpers import make_tiny, obs_equal, strip_timing
from gymnasium.utils.env_checker import data_equivalence

from agents.base import Batch
from agents.impala import (
    IMPALA_METRICS,
    META_KEYS,
    ActorError,
    IMPALAConfig,
    IMPALALearner,
    IMPALANetwork,
    IMPALAObjective,
    head_meta,
)
from agents.networks import log_prob

IMPALA_CARTPOLE = "HyperRL/IMPALA-CartPole-v0"
TINY = dict(task="CartPole-v1", num_envs=2, num_steps=8)


def random_batch(t: int, b: int, obs_dim: int, actions: int, g: torch.Generator, dtype=torch.float32, ends=False) -> Batch:
    """An off-policy unroll (behaviour log-probs unrelated to any network: alpha matters)."""
    return Batch(
        obs=torch.randn(t, b, obs_dim, generator=g, dtype=dtype),
        actions=torch.randint(0, actions, (t, b), generator=g),
        log_probs=torch.log(torch.rand(t, b, generator=g, dtype=dtype) * 0.8 + 0.1),
        values=torch.zeros(t, b, dtype=dtype),
        rewards=torch.randn(t, b, generator=g, dtype=dtype),
        discounts=(torch.rand(t, b, generator=g) > 0.2).to(dtype) if ends else torch.ones(t, b, dtype=dtype),
        bootstrap_value=torch.zeros(b, dtype=dtype),
        bootstrap_obs=torch.randn(b, obs_dim, generator=g, dtype=dtype),
    )


def batch_to(batch: Batch, device: torch.device) -> Batch:
    fields = {k: getattr(batch, k) for k in batch.__dataclass_fields__}
    return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fields.items()})


def test_network_heads_share_a_torso_and_head_zero_acts():
    net = IMPALANetwork(obs_dim=4, action_dim=2, hidden=(16,), heads=3)
    params = net.init(torch.Generator().manual_seed(0))
    assert {k.split(".")[0] for k in params} == {"torso", "head0", "head1", "head2"}
    assert set(net.shapes()) == set(params)
    obs = torch.randn(5, 4)
    logits, values = net.forward_heads(params, obs)
    assert logits.shape == (3, 5, 2) and values.shape == (3, 5)
    main_logits, main_value = net.forward(params, obs)
    torch.testing.assert_close(main_logits, logits[0])
    torch.testing.assert_close(main_value, values[0])
    torch.testing.assert_close(net.value(params, obs), values[0])


def test_objective_is_differentiable_in_every_metaparameter():
    net = IMPALANetwork(obs_dim=4, action_dim=2, hidden=(8,), heads=2)
    g = torch.Generator().manual_seed(1)
    params = net.init(g)
    batch = random_batch(6, 3, 4, 2, g)
    meta = {k: torch.tensor([v, v * 0.9], requires_grad=True) for k, v in zip(META_KEYS, (0.99, 0.9, 0.5, 1.0, 0.01, 0.7))}
    loss, metrics = IMPALAObjective(net)(params, batch, None, meta)
    loss.backward()
    for k, v in meta.items():
        assert v.grad is not None and (v.grad.abs() > 0).all(), f"{k}: {v.grad}"
    assert tuple(metrics) == IMPALA_METRICS and not any(v.requires_grad for v in metrics.values())


def test_meta_defaults_to_the_hyperparameters():
    net = IMPALANetwork(obs_dim=4, action_dim=2, hidden=(8,))
    g = torch.Generator().manual_seed(4)
    params, batch = net.init(g), random_batch(5, 2, 4, 2, g)
    hp = {"gamma": 0.9, "lambda_": 0.8, "g_v": 0.4, "g_p": 1.0, "g_e": 0.02, "alpha": 0.5}
    meta = {"gamma": 0.9, "lambda": 0.8, "g_v": 0.4, "g_p": 1.0, "g_e": 0.02, "alpha": 0.5}
    objective = IMPALAObjective(net)
    assert torch.equal(objective(params, batch, hp)[0], objective(params, batch, None, meta)[0])
    assert not torch.equal(objective(params, batch, hp)[0], objective(params, batch, hp, {**meta, "alpha": 1.0})[0])


@pytest.mark.parametrize("shared", [False, True], ids=["per-head-meta", "shared-meta"])
def test_all_heads_in_one_pass_equal_the_sum_of_head_losses(shared):
    net = IMPALANetwork(obs_dim=4, action_dim=3, hidden=(8,), heads=3)
    g = torch.Generator().manual_seed(2)
    params = {k: v.double() for k, v in net.init(g).items()}
    batch = random_batch(6, 4, 4, 3, g, torch.float64, ends=True)
    meta = {k: (0.6 if shared else torch.rand(3, generator=g, dtype=torch.float64)) for k in META_KEYS}
    objective = IMPALAObjective(net)
    loss, metrics = objective(params, batch, None, meta)
    logits, values, boot = objective.forward(params, batch)
    per_head = [objective.head_loss(logits[h], values[h], boot[h], batch, head_meta(meta, h)) for h in range(3)]
    torch.testing.assert_close(loss, sum(x[0] for x in per_head), rtol=1e-12, atol=1e-12)
    for k in IMPALA_METRICS:
        torch.testing.assert_close(metrics[k], per_head[0][1][k], rtol=1e-12, atol=1e-12)


def test_behaviour_policy_lags_by_policy_lag_updates():
    learner = IMPALALearner(IMPALAConfig(**TINY, policy_lag=2), seed=0)
    history = [{k: v.detach().clone() for k, v in learner.parameters().items()}]
    for n in range(5):
        report = learner.iterate()
        assert report.stats["policy_lag"] == min(n, 2)
        batch = learner.last_update.batch
        for k, v in learner.last_update.params.items():
            assert torch.equal(v, history[n][k])  # the update started from the current parameters
        behaviour = history[max(0, n - 2)]
        logits, _ = learner.network.forward(behaviour, batch.obs.flatten(0, 1))
        mu = log_prob(logits, behaviour, batch.actions.flatten(0, 1), True).reshape(batch.actions.shape)
        torch.testing.assert_close(batch.log_probs, mu, rtol=1e-5, atol=1e-6)
        history.append({k: v.detach().clone() for k, v in learner.parameters().items()})
    learner.close()


def test_policy_lag_zero_is_on_policy():
    learner = IMPALALearner(IMPALAConfig(**TINY, policy_lag=0), seed=0)
    for _ in range(3):
        report = learner.iterate()
        assert report.stats["policy_lag"] == 0 and abs(report.stats["approx_kl"]) < 1e-6
    learner.close()


def test_config_checks_the_trace_thresholds():
    with pytest.raises(ValueError, match=r"clip_c must lie in \(0, clip_rho\].*clip_c=2.0, clip_rho=1.0"):
        IMPALAConfig(**TINY, clip_c=2.0)
    IMPALAConfig(**TINY, clip_rho=2.0, clip_c=1.0)


def test_last_update_replays_to_the_learners_parameters_and_differentiates_in_meta():
    learner = IMPALALearner(IMPALAConfig(**TINY, aux_heads=2), seed=0)
    learner.aux_meta = {k: torch.tensor([0.9, 0.8]) for k in META_KEYS}
    learner.iterate()
    learner.iterate()
    last = learner.last_update
    replayed, state, _ = learner.train_step(last.params, last.opt_state, last.batch, last.hparams)
    for k, v in learner.parameters().items():
        assert torch.equal(replayed[k], v), k  # the record is exactly the update's input
    assert torch.equal(state["square_avg"]["torso.0.weight"], learner.opt_state["square_avg"]["torso.0.weight"])
    meta = {k: v.detach().requires_grad_() for k, v in learner.meta(last.hparams).items()}
    assert all(v.shape == (3,) for v in meta.values()) and meta["gamma"][1:].tolist() == pytest.approx([0.9, 0.8])
    params, _, _ = learner.train_step(last.params, last.opt_state, last.batch, last.hparams, meta, differentiable=True)
    for k, v in params.items():
        torch.testing.assert_close(v.detach(), replayed[k], rtol=1e-6, atol=1e-7)
    probe = sum(v.square().sum() for v in params.values())
    grads = torch.autograd.grad(probe, [meta[k] for k in META_KEYS])
    assert all(torch.count_nonzero(g) > 0 for g in grads)  # the graph reaches every metaparameter of every head
    learner.close()


# A device no tensor can reach by accident: a CPU tensor created inside the objective makes it fail.
META_DEVICE = torch.device("meta")


def test_objective_and_meta_follow_the_learners_device():
    learner = IMPALALearner(IMPALAConfig(**TINY, aux_heads=2), seed=0)
    learner.aux_meta = {k: torch.tensor([0.9, 0.8]) for k in META_KEYS}  # a solver's, on the CPU
    learner.iterate()
    learner.device = META_DEVICE
    hp = learner.hparam_values(None)
    assert all(v.device == META_DEVICE for v in learner.meta(hp).values())
    params = {k: v.detach().to(META_DEVICE) for k, v in learner.last_update.params.items()}
    batch = batch_to(learner.last_update.batch, META_DEVICE)
    for meta in (learner.meta(hp), {**learner.meta(hp), "g_v": 0.5}):
        loss, metrics = learner.objective(params, batch, hp, meta)  # a shared scalar weight takes the other path
        assert loss.device == META_DEVICE and all(v.device == META_DEVICE for v in metrics.values())
    learner.device = torch.device("cpu")
    learner.close()


def test_rejects_continuous_actions():
    with pytest.raises(ValueError, match="discrete actions only"):
        IMPALALearner(IMPALAConfig(task="Pendulum-v1", num_envs=1, num_steps=4), seed=0)


def _play(env, k, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append((obs, reward, terminated, truncated, strip_timing(info)))
    return out


def _needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"needs {module}")


@pytest.mark.parametrize(
    ("env_id", "engine_state"),
    [
        (IMPALA_CARTPOLE, True),
        pytest.param("HyperRL/IMPALA-LunarLander-v0", False, marks=_needs("Box2D")),
        pytest.param("HyperRL/IMPALA-Pong-v0", False, marks=_needs("ale_py")),
    ],
)
def test_snapshot_restore_forks_the_lifetime_bit_for_bit(env_id, engine_state):
    env = make_tiny(env_id, hyper_steps=8, config={"policy_lag": 2})
    env.reset(seed=0)
    _play(env, 3)
    snap = env.unwrapped.snapshot()
    at_snapshot = env.unwrapped._observe()
    first = _play(env, 3, seed=1)
    assert obs_equal(env.unwrapped.restore(snap), at_snapshot)
    second = _play(env, 3, seed=1)
    env.unwrapped.restore(snap)
    assert data_equivalence(second, _play(env, 3, seed=1), exact=True)  # every fork replays the same
    # With the engine's state in the snapshot a fork continues the original lifetime exactly; Box2D and
    # ALE cannot save theirs, so there a restore starts fresh inner episodes (agents.envstate).
    assert ("envs" in snap["learner"]) == engine_state
    if engine_state:
        assert data_equivalence(first, second, exact=True)
    env.close()


def test_same_seed_same_lifetime_other_seed_differs():
    a, b = make_tiny(IMPALA_CARTPOLE), make_tiny(IMPALA_CARTPOLE)
    a.reset(seed=3), b.reset(seed=3)
    assert data_equivalence(_play(a, 3), _play(b, 3), exact=True)
    a.reset(seed=4)
    b.reset(seed=3)
    assert not data_equivalence(_play(a, 3), _play(b, 3), exact=True)
    a.close(), b.close()


def test_state_dict_round_trip_through_weights_only_load(tmp_path):
    config = IMPALAConfig(**TINY, policy_lag=2)
    original = IMPALALearner(config, seed=1)
    for _ in range(3):
        original.iterate()
    torch.save(original.state_dict(), tmp_path / "impala.pt")
    fresh = IMPALALearner(config, seed=2)
    fresh.load_state_dict(torch.load(tmp_path / "impala.pt", weights_only=True))
    for _ in range(3):
        a, b = original.iterate(), fresh.iterate()
        assert a.losses == b.losses and a.episode_returns == b.episode_returns
    for k, v in original.parameters().items():
        assert torch.equal(v, fresh.parameters()[k])
    original.close(), fresh.close()


# -- asynchronous actors --------------------------------------------------------------------


def _gone(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
                    if f.read().split()[2] != "Z":
                        alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


ASYNC = IMPALAConfig(**TINY, asynchronous=True, num_actors=2, actor_timeout=60.0)
# The failure tests fork their actors: the same code path, without paying two interpreter start-ups.
FORKED = IMPALAConfig(**TINY, asynchronous=True, num_actors=2, actor_timeout=60.0, start_method="fork")


def test_async_runs_and_close_stops_the_actors():
    learner = IMPALALearner(ASYNC, seed=0)
    pids = learner._actors.alive()
    assert len(pids) == 2
    steps = 0
    for _ in range(4):
        report = learner.iterate()
        assert not report.diverged and report.env_steps == 16
        steps += report.env_steps
    assert learner.timesteps == steps
    assert learner.state_dict()["iterations"] == 4
    learner.close()
    assert _gone(pids), "actor processes survived close()"


def test_async_actor_crash_raises_a_clear_error_and_stops_the_rest():
    learner = IMPALALearner(FORKED, seed=0)
    learner.iterate()
    pids = learner._actors.alive()
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(ActorError, match=r"IMPALA actor impala-actor-0 died with exit code -9; all actors stopped"):
        for _ in range(50):  # unrolls already queued may still arrive first
            learner.iterate()
    assert _gone(pids)
    learner.close()  # idempotent after an error


def test_async_learner_error_stops_the_actors():
    learner = IMPALALearner(FORKED, seed=0)
    pids = learner._actors.alive()

    def broken(*args, **kwargs):
        raise FloatingPointError("boom")

    learner.objective.forward = broken
    with pytest.raises(FloatingPointError, match="boom"):
        learner.iterate()
    assert _gone(pids)


def test_async_actor_exception_is_reported_with_its_traceback(monkeypatch):
    import agents.actors

    def no_env(*args, **kwargs):
        raise OSError("simulator missing")

    monkeypatch.setattr(agents.actors, "make_vector_env", no_env)  # forked actors inherit the patch
    learner = IMPALALearner(FORKED, seed=0)
    pids = learner._actors.alive()
    with pytest.raises(
        ActorError, match=r"(?s)impala-actor-\d failed; all actors stopped. Its traceback:.*OSError: simulator missing"
    ):
        learner.iterate()
    assert _gone(pids)


@pytest.mark.parametrize("scaling", [{}, {"normalize_reward": True}, {"sign_reward": True}], ids=["raw", "normalized", "sign"])
def test_rollout_return_is_the_discounted_raw_reward_of_the_window(scaling):
    """CartPole pays 1 per step, episode ends included: sum_{t<8} 0.9^t whatever the learner's reward scaling."""
    learner = IMPALALearner(IMPALAConfig(**TINY, **scaling), seed=0)
    for _ in range(3):
        report = learner.iterate({"gamma": 0.9})
        assert report.rollout_return == pytest.approx((1 - 0.9**8) / (1 - 0.9), rel=1e-12)
    if scaling.get("normalize_reward"):
        assert not torch.allclose(learner.last_update.batch.rewards, torch.ones(8, 2))  # the learner saw other rewards
    learner.close()
