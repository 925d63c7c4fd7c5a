"""Optim4RL's meta-gradient and meta-training: finite differences, pipeline resets, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.a2c import A2CConfig, A2CLearner
from agents.base import Batch
from solvers.optim4rl import Optim4RL, Optim4RLConfig, weight_shapes
from solvers.optim4rl.meta import PopulationLoss, meta_loss
from solvers.optim4rl.train import MetaTrainConfig, MetaTrainer, due_resets, meta_train, pipeline_offsets

HP = {"lr": 0.05, "gae_lambda": 0.95, "ent_coef": 0.01}


class Replay:
    """Wraps a rule: records the gradients it is given, or (``replay``) feeds it the recorded ones instead.

    The learned optimizer reads its gradient inputs through a stop-gradient, so its meta-gradient is
    the derivative of the meta-loss with those inputs held at their values; a finite difference of
    that function replays them.
    """

    name = "replay"

    def __init__(self, rule: Optim4RL) -> None:
        self.rule, self.recorded, self.replay, self.calls = rule, [], False, 0

    def init(self, params):
        return self.rule.init(params)

    def parameters(self):
        return self.rule.parameters()

    def update(self, grads, state, params, hparams):
        if self.replay:
            grads = self.recorded[self.calls]
        else:
            self.recorded.append({k: g.detach() for k, g in grads.items()})
        self.calls += 1
        return self.rule.update(grads, state, params, hparams)


def double(batch: Batch) -> Batch:
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return Batch(**{k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in fields.items()})


@pytest.mark.parametrize("head", [(), (5,)])
def test_meta_gradient_through_four_updates_matches_central_differences(head):
    config = Optim4RLConfig(hidden=3, head=head)
    gen = torch.Generator().manual_seed(0)
    weights = {k: (torch.rand(s, generator=gen, dtype=torch.float64) - 0.5) for k, s in weight_shapes(config).items()}
    rule = Replay(Optim4RL(config=config, weights=weights))
    learner = A2CLearner(A2CConfig(num_envs=2, num_steps=6, hidden=(4,), update_rule=rule), seed=0)
    batches = [double(learner.collector.collect(learner.params, 6, 0.99)[0]) for _ in range(5)]
    params = {k: v.detach().double() for k, v in learner.params.items()}
    state = rule.init(params)
    for w in weights.values():
        w.requires_grad_()
    loss = meta_loss(learner, batches, HP, steps=4, params=params, opt_state=state).loss
    assert rule.calls == 4
    picks = [("gru1.weight_hh", (0, 1)), ("gru2.bias_ih", (5,)), ("head1.0.weight", (0, 2)), (f"head2.{len(head)}.bias", (0,))]
    analytic = torch.autograd.grad(loss, [weights[name] for name, _ in picks])
    rule.replay = True
    eps = 1e-6
    for (name, index), grad in zip(picks, analytic):
        values = []
        for sign in (1, -1):
            rule.calls = 0
            with torch.no_grad():
                weights[name][index] += sign * eps
            with torch.no_grad():
                values.append(float(meta_loss(learner, batches, HP, steps=4, params=params, opt_state=state).loss))
            with torch.no_grad():
                weights[name][index] -= sign * eps
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(grad[index].item()) > 1e-6, f"{name}{index}: a vanishing meta-gradient tests nothing"
        assert grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


def test_meta_loss_takes_steps_plus_one_batches():
    learner = A2CLearner(A2CConfig(num_envs=1, num_steps=3, hidden=(4,), update_rule="sgd"), seed=0)
    batches = [learner.collector.collect(learner.params, 3, 0.99)[0] for _ in range(4)]
    with pytest.raises(ValueError, match=r"meta_loss needs steps \+ 1 = 5 batches"):
        meta_loss(learner, batches, HP, steps=4)


def test_pipeline_offsets_and_reset_times_for_five_units_over_eight():
    offsets = pipeline_offsets(5, 8)
    assert offsets.tolist() == [0, 1, 3, 5, 7]  # linspace 0, 1.75, 3.5, 5.25, 7, truncated
    resets = {t: due_resets(t, offsets, 8) for t in range(1, 17)}
    times = {j: [t for t, units in resets.items() if j in units] for j in range(5)}
    assert times == {0: [1, 9], 1: [2, 10], 2: [4, 12], 3: [6, 14], 4: [8, 16]}
    assert all(len(units) <= 1 for units in resets.values())


class CountingPopulation:
    """A stand-in population: records the resets it is asked for; its loss is a fixed function of the weights."""

    def __init__(self, rule: Optim4RL, n: int) -> None:
        self.rule, self.num_units, self.resets = rule, n, []

    def reset(self, units):
        self.resets.append(list(units))

    def meta_loss(self, hparams, steps):
        return PopulationLoss(loss=sum((w * w).sum() for w in self.rule.parameters().values()), returns=[1.0])

    def close(self):
        pass


@pytest.mark.parametrize(
    "pipeline, expected", [(True, [[1], [], [2], [], [3], [], [4], [0]]), (False, [[]] * 7 + [[0, 1, 2, 3, 4]])]
)
def test_trainer_resets_on_the_pipeline_schedule_or_all_together(pipeline, expected):
    rule = Optim4RL()
    population = CountingPopulation(rule, 5)
    trainer = MetaTrainer(rule, population, MetaTrainConfig(units=5, reset_interval=8, pipeline=pipeline))
    for _ in range(9):
        trainer.step()
    assert population.resets == expected  # t = 2 .. 9; the fresh population needs no resets at t = 1


def test_meta_step_is_adam_on_the_clipped_meta_gradient():
    rule = Optim4RL()
    before = {k: v.detach().clone() for k, v in rule.weights.items()}
    trainer = MetaTrainer(rule, CountingPopulation(rule, 2), MetaTrainConfig(units=2, meta_lr=0.01, max_meta_grad_norm=0.5))
    report = trainer.step()
    norm = torch.linalg.vector_norm(torch.cat([2 * v.flatten() for v in before.values()]))
    assert report.grad_norm == pytest.approx(float(norm), rel=1e-5)
    for k, v in before.items():  # Adam's first step moves every weight with a non-zero gradient by lr
        moved = (rule.weights[k].detach() - v).abs()
        assert torch.allclose(moved[v != 0], torch.full_like(moved[v != 0], 0.01), rtol=1e-3)


def tiny(seed: int) -> MetaTrainConfig:
    return MetaTrainConfig(units=2, iterations=2, rollout=5, hidden=(4,), reset_interval=2, seed=seed)


def test_meta_training_is_seeded_and_deterministic():
    a, reports_a = meta_train(tiny(0))
    b, reports_b = meta_train(tiny(0))
    c, _ = meta_train(tiny(1))
    assert reports_a == reports_b
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert not all(torch.equal(a.weights[k], c.weights[k]) for k in a.weights)
    assert [r.resets for r in reports_a] == [(0,), (1,)]
    assert np.isfinite([r.grad_norm for r in reports_a]).all() and reports_a[-1].grad_norm > 0


def test_a_resumed_meta_training_ends_where_the_uninterrupted_one_does(tmp_path):
    config = dataclasses.replace(tiny(0), iterations=4)
    saved = []
    whole, reports = meta_train(
        config, checkpoint=lambda state: saved.append(torch.save(state, tmp_path / f"{len(saved)}.pt")), checkpoint_every=2
    )
    assert len(saved) == 2  # t = 2 and t = 4
    resumed, rest = meta_train(config, resume=torch.load(tmp_path / "0.pt", weights_only=True))
    assert rest == reports[2:]
    assert all(torch.equal(whole.weights[k], resumed.weights[k]) for k in whole.weights)


def test_units_carry_their_recurrent_state_on_and_a_reset_zeroes_it():
    from solvers.optim4rl.train import loop_population

    config = tiny(0)
    gen = torch.Generator().manual_seed(0)
    rule = Optim4RL(weights={k: torch.rand(s, generator=gen) - 0.5 for k, s in weight_shapes(config.optimizer).items()})
    population = loop_population(config, rule)
    unit = population.units[0]
    population.meta_loss(config.agent_hparams, steps=2)
    state = unit.learner.opt_state
    assert state["step"] == 2 and all(not h.requires_grad and h.abs().sum() > 0 for h in state["h1"].values())
    population.meta_loss(config.agent_hparams, steps=2)
    assert unit.learner.opt_state["step"] == 4  # the state carries on across meta-iterations
    population.reset([0])
    fresh = unit.learner.opt_state
    assert fresh["step"] == 0 and all(h.abs().sum() == 0 for key in ("h1", "h2") for h in fresh[key].values())
    assert population.units[1].learner.opt_state["step"] == 4 and unit.lives == 2
    population.close()
