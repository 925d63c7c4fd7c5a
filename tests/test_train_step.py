"""train_step: one update through objective + update rule; differentiable through K steps; the rule comes from config."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import hyperenvs  # noqa: F401  (registers the ids)
from agents.a2c import A2CConfig, A2CLearner
from agents.base import Batch
from agents.optim import SGD
from agents.ppo import PPOConfig, PPOLearner
from agents.unroll import unroll

TINY = dict(task="CartPole-v1", num_envs=2, num_steps=5, hidden=(8,))
K = 4


class LearnedMomentum:
    """A toy trainable rule with per-element recurrent state: ``trace = beta trace + g``,
    ``theta - lr * scale * trace``, with ``beta = sigmoid(w0)`` and ``scale = exp(w1)`` its own weights."""

    name = "learned-momentum"

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.weights = {
            "decay_logit": torch.tensor(0.3, dtype=dtype, requires_grad=True),
            "log_scale": torch.tensor(-0.2, dtype=dtype, requires_grad=True),
        }

    def init(self, params):
        return {"step": 0, "trace": {k: torch.zeros_like(v) for k, v in params.items()}}

    def update(self, grads, state, params, hparams):
        beta, scale = torch.sigmoid(self.weights["decay_logit"]), torch.exp(self.weights["log_scale"])
        trace = {k: beta * state["trace"][k] + g for k, g in grads.items()}
        new = {k: p - hparams["lr"] * scale * trace[k] for k, p in params.items()}
        return new, {"step": state["step"] + 1, "trace": trace}

    def parameters(self):
        return self.weights


def as_float64(batch: Batch) -> Batch:
    fields = {k: getattr(batch, k) for k in batch.__dataclass_fields__}
    return Batch(**{k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in fields.items()})


def collected(learner, n: int) -> list[Batch]:
    """``n`` batches from the learner's own collector, as float64."""
    return [as_float64(learner.collector.collect(learner.params, learner.config.num_steps, 0.99)[0]) for _ in range(n)]


def meta_loss_fn(learner, batches, held_out, start, rule_state):
    """The A2C loss at fixed hyperparameters on a held-out batch, after K differentiable updates."""

    def meta_loss(lr, gamma):
        out = unroll(learner, batches, {"lr": lr, "gamma": gamma}, params=start, opt_state=rule_state)
        return learner.objective(out.params, held_out, learner.hparam_values(None))[0]

    return meta_loss


@pytest.mark.parametrize("rule", ["rmsprop", "learned"])
def test_k_step_metagradient_matches_central_finite_differences(rule):
    learned = LearnedMomentum() if rule == "learned" else None
    learner = A2CLearner(A2CConfig(**TINY, update_rule=learned or rule), seed=0)
    batches = collected(learner, K + 1)
    held_out = batches.pop()
    start = {k: v.detach().double().requires_grad_() for k, v in learner.params.items()}
    rule_state = learner.update_rule.init(start)
    meta_loss = meta_loss_fn(learner, batches, held_out, start, rule_state)
    lr = torch.tensor(3e-3, dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(0.95, dtype=torch.float64, requires_grad=True)
    value = meta_loss(lr, gamma)
    inputs = {"lr": lr, "gamma": gamma} | (learned.weights if learned else {})
    analytic = dict(zip(inputs, torch.autograd.grad(value, list(inputs.values()))))

    def central(name: str, h: float) -> float:
        with torch.no_grad():
            x = inputs[name]
            x += h
            up = meta_loss(lr, gamma).item()
            x -= 2 * h
            down = meta_loss(lr, gamma).item()
            x += h
        return (up - down) / (2 * h)

    steps = {"lr": 1e-7, "gamma": 1e-6, "decay_logit": 1e-6, "log_scale": 1e-6}
    for name in inputs:
        numeric = central(name, steps[name])
        assert abs(numeric) > 1e-8, f"{name}: the meta-loss should depend on it"
        rel = abs(analytic[name].item() - numeric) / abs(numeric)
        assert rel < 1e-3, f"d meta-loss / d {name}: autograd {analytic[name].item():.6e}, finite difference {numeric:.6e}"
    learner.close()


def test_the_unroll_keeps_the_graph_to_the_starting_parameters_and_leaves_the_learner_alone():
    learner = A2CLearner(A2CConfig(**TINY), seed=0)
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    batches = [learner.collector.collect(learner.params, 5, 0.99)[0] for _ in range(2)]
    start = {k: v.detach().clone().requires_grad_() for k, v in learner.params.items()}
    out = unroll(learner, batches, None, params=start)
    assert len(out.metrics) == 2 and set(out.metrics[0]) >= {"policy", "value", "entropy", "grad_norm"}
    grads = torch.autograd.grad(sum(v.sum() for v in out.params.values()), list(start.values()))
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    for k, v in learner.params.items():
        assert torch.equal(v.detach(), before[k])
    # the same steps without a graph give the same parameters
    params, state = start, learner.update_rule.init(start)
    for batch in batches:
        params, state, _ = learner.train_step(params, state, batch, None)
    for k in params:
        torch.testing.assert_close(out.params[k].detach(), params[k].detach(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"steps must lie in \[1, 2\]"):
        unroll(learner, batches, None, steps=3)
    with pytest.raises(ValueError, match="collect function needs steps >= 1"):
        unroll(learner, lambda params, k: batches[k], None)
    learner.close()


def test_unroll_with_a_collect_function_collects_with_the_current_parameters():
    learner = A2CLearner(A2CConfig(**TINY), seed=0)
    seen = []

    def collect(params, k):
        seen.append((k, {n: v.clone() for n, v in params.items()}))
        return learner.collector.collect(params, 5, 0.99)[0]

    out = unroll(learner, collect, {"lr": 1e-2}, steps=3)
    assert [k for k, _ in seen] == [0, 1, 2] and len(out.batches) == 3
    assert not any(v.requires_grad for v in seen[1][1].values())  # collection sees detached parameters
    assert not torch.equal(seen[1][1]["actor.0.weight"], seen[0][1]["actor.0.weight"])
    learner.close()


def hand_loop(learner, iterations: int, hparams: dict) -> None:
    """What iterate does, written out: collect, then train_step on the learner's own state."""
    for _ in range(iterations):
        batch, _ = learner.collector.collect(learner.params, learner.config.num_steps, hparams.get("gamma", 0.99))
        learner.params, learner.opt_state, _ = learner.train_step(learner.params, learner.opt_state, batch, hparams)


@pytest.mark.parametrize("cls, config", [(A2CLearner, A2CConfig), (PPOLearner, PPOConfig)])
def test_iterate_is_collect_plus_train_step_with_the_configured_rule(cls, config):
    hp = {"lr": 5e-3} | ({"epochs": 2, "minibatch_size": 4} if cls is PPOLearner else {})
    finals = {}
    for rule in ("sgd", "adam"):
        a = cls(config(**TINY, update_rule=rule), seed=3)
        b = cls(config(**TINY, update_rule=rule), seed=3)
        for _ in range(3):
            a.iterate(hp)
        hand_loop(b, 3, hp)
        for k in a.params:
            assert torch.equal(a.params[k], b.params[k]), (rule, k)
        finals[rule] = a.params
        a.close()
        b.close()
    assert not torch.equal(finals["sgd"]["actor.0.weight"], finals["adam"]["actor.0.weight"])


def test_gym_make_takes_the_update_rule_by_name_or_object():
    def lifetime(config):
        env = gym.make("HyperRL/A2C-CartPole-v0", config={"num_envs": 2, "num_steps": 5, **config})
        env.reset(seed=0)
        for _ in range(2):
            env.step(env.action_space.sample() * 0)
        learner = env.unwrapped.learner
        params = {k: v.detach().clone() for k, v in learner.params.items()}
        env.close()
        return learner, params

    default, p_default = lifetime({})
    sgd, p_sgd = lifetime({"update_rule": "sgd"})
    obj, p_obj = lifetime({"update_rule": SGD()})
    assert default.update_rule.name == "rmsprop" and sgd.update_rule.name == "sgd" and obj.update_rule == SGD()
    assert not torch.equal(p_default["actor.0.weight"], p_sgd["actor.0.weight"])
    for k in p_sgd:
        assert torch.equal(p_sgd[k], p_obj[k])
    learned, p_learned = lifetime({"update_rule": LearnedMomentum(torch.float32)})
    assert isinstance(learned.update_rule, LearnedMomentum) and learned.opt_state["step"] == learned.iterations > 0
    assert not torch.equal(p_learned["actor.0.weight"], p_sgd["actor.0.weight"])


def test_ppo_differentiable_train_step_reaches_lr_through_every_minibatch():
    learner = PPOLearner(PPOConfig(**TINY, update_rule="adam"), seed=0)
    batch = learner.collector.collect(learner.params, 5, 0.99)[0]
    lr = torch.tensor(1e-3, requires_grad=True)
    hp = {"lr": lr, "epochs": 2, "minibatch_size": 5}
    shuffles = learner.generator.get_state()
    params, state, metrics = learner.train_step(learner.params, learner.opt_state, batch, hp, differentiable=True)
    assert state["step"] == 4  # 2 epochs x 2 minibatches of 5
    (g,) = torch.autograd.grad(sum(v.sum() for v in params.values()), lr)
    assert torch.isfinite(g) and g != 0
    learner.generator.set_state(shuffles)  # the same minibatches: the in-place fast path gives the same step
    plain, _, plain_metrics = learner.train_step(learner.params, learner.opt_state, batch, {**hp, "lr": 1e-3})
    for k in plain:
        torch.testing.assert_close(plain[k], params[k].detach(), rtol=1e-5, atol=1e-7)
    assert plain_metrics["policy"] == pytest.approx(metrics["policy"].item(), rel=1e-5, abs=1e-7)
    learner.close()
