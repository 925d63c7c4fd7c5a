"""The vectorised Optim4RL population: its meta-gradient equals the loop's over the same units; resets,
pipeline schedule, determinism, resume, the multi-task rescaling and the command line."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from agents.base import Batch
from solvers.cli import main
from solvers.optim4rl import Optim4RL, Optim4RLConfig, load, weight_shapes
from solvers.optim4rl.config import A2C_HPARAMS, MetaTrainConfig
from solvers.optim4rl.meta import meta_loss
from solvers.optim4rl.train import MetaTrainer, mean_of_normalised, meta_train
from solvers.optim4rl.vectorised import CHUNK, DEVICE_CHUNK, VectorPopulation


def random_rule(dtype=torch.float64, hidden=3) -> Optim4RL:
    """An optimizer with non-zero heads (a fresh one is sign-SGD, whose GRU weights get no meta-gradient)."""
    config = Optim4RLConfig(hidden=hidden)
    gen = torch.Generator().manual_seed(1)
    weights = {k: (torch.rand(s, generator=gen, dtype=dtype) - 0.5) for k, s in weight_shapes(config).items()}
    rule = Optim4RL(config=config, weights=weights)
    for w in rule.weights.values():
        w.requires_grad_()
    return rule


def unit_state(population: VectorPopulation, flat, h1, h2, j: int):
    """Unit ``j``'s parameters (float64 leaves) and optimizer state as an ``Optim4RL`` state dict."""
    params = {k: v[j].clone().requires_grad_() for k, v in population.unflatten(flat).items()}
    split = dict(zip(population.shapes, zip(h1[j].split(population.sizes), h2[j].split(population.sizes))))
    hidden = population.rule.config.hidden
    state = {"step": 4}
    for i in (0, 1):
        state[f"h{i + 1}"] = {k: split[k][i].reshape(*population.shapes[k], hidden) for k in population.shapes}
    return params, state


@pytest.mark.parametrize("max_grad_norm", [float("inf"), 0.05])
def test_meta_gradient_equals_the_loop_over_the_same_units(max_grad_norm):
    rule = random_rule()
    population = VectorPopulation(rule, "catch", units=3, envs_per_unit=2, rollout=4, seed=0, dtype=torch.float64)
    hp = {**A2C_HPARAMS, "lr": 0.01, "max_grad_norm": max_grad_norm}
    twin = population.loop_twin()
    learners = [unit.learner for unit in twin.units]
    assert learners[0].config.num_envs == 2 and learners[0].config.num_steps == 4 and learners[0].update_rule is rule
    fresh = population.unflatten(population.params)
    for j, learner in enumerate(learners):  # the same agents: the loop's unit j draws what the vectorised one does
        assert all(torch.equal(learner.params[k].detach().double(), fresh[k][j]) for k in fresh)
    population.meta_loss(hp, 4)  # carry on once, so the recurrent states are not zero
    population.record = True
    out = population.meta_loss(hp, 4)
    names = list(rule.weights)
    vectorised = torch.autograd.grad(out.loss, [rule.weights[k] for k in names])

    flat, h1, h2 = population.last_start
    losses = []
    for j, learner in enumerate(learners):
        params, state = unit_state(population, flat, h1, h2, j)
        batches = [Batch(**{k: v[j] for k, v in b.items()}) for b in population.last_batches]
        with torch.no_grad():  # each batch was collected with the unit's own parameters of that step
            assert torch.allclose(batches[0].values, learner.network.value(params, batches[0].obs.flatten(0, 1)).view(4, 2))
        one = meta_loss(learner, batches, hp, steps=4, params=params, opt_state=state)
        losses.append(one.loss)
        after = torch.cat([one.params[k].detach().reshape(-1) for k in population.shapes])
        assert torch.allclose(after, population.params[j], rtol=1e-10, atol=1e-12)
        assert torch.allclose(torch.cat([one.opt_state["h1"][k].reshape(-1, 3) for k in population.shapes]), population.h1[j])
    loop = torch.autograd.grad(torch.stack(losses).mean(), [rule.weights[k] for k in names])
    assert float(out.loss.detach()) == pytest.approx(float(torch.stack(losses).mean().detach()), rel=1e-10)
    for name, a, b in zip(names, vectorised, loop):
        assert b.abs().max() > 0, name
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12), name
    twin.close()


def test_a_reset_renews_only_those_units():
    rule = random_rule(torch.float32)
    population = VectorPopulation(rule, "catch", units=3, envs_per_unit=2, rollout=3, seed=0)
    population.meta_loss({**A2C_HPARAMS, "lr": 0.01}, 2)
    before = {k: getattr(population, k).clone() for k in ("params", "h1", "h2")}
    ball_before = population.task.ball_row.clone()
    population.reset([1])
    init = population.network.init(torch.Generator().manual_seed(population.unit_seed(1, 1)))
    assert torch.equal(population.params[1], torch.cat([v.reshape(-1) for v in init.values()]))
    assert population.h1[1].abs().sum() == 0 and population.h2[1].abs().sum() == 0
    for k in ("params", "h1", "h2"):  # units 0 and 2 carry on
        assert torch.equal(getattr(population, k)[[0, 2]], before[k][[0, 2]])
    assert population.task.ball_row[2:4].tolist() == [0, 0]  # unit 1's rows start new episodes
    assert torch.equal(population.task.ball_row[[0, 1, 4, 5]], ball_before[[0, 1, 4, 5]])
    assert population.lives == [1, 2, 1]
    with pytest.raises(ValueError, match=r"units must lie in \[0, 3\)"):
        population.reset([3])


def catch(**changes) -> MetaTrainConfig:
    return dataclasses.replace(MetaTrainConfig(task="catch", units=2, rollout=3, reset_interval=2, iterations=2), **changes)


@pytest.mark.parametrize("pipeline, lives", [(True, [[1, 2, 1, 1, 1], [2, 2, 2, 2, 2]]), (False, [[1] * 5, [2] * 5])])
def test_pipeline_resets_units_on_the_schedule_or_all_at_once(pipeline, lives):
    rule = random_rule(torch.float32)
    population = VectorPopulation(rule, "catch", units=5, rollout=2, seed=0)
    trainer = MetaTrainer(rule, population, catch(units=5, reset_interval=8, pipeline=pipeline), [{**A2C_HPARAMS, "lr": 1e-3}])
    seen = []
    for t in range(1, 10):
        report = trainer.step()
        if t in (3, 9):
            seen.append(list(population.lives))
        if not pipeline:
            assert report.resets == ((0, 1, 2, 3, 4) if t in (1, 9) else ())
    assert seen == lives  # offsets 0, 1, 3, 5, 7: unit j resets at t = offset_j + 1 + 8k


def test_vectorised_meta_training_is_seeded_and_deterministic():
    a, reports_a = meta_train(catch())
    b, reports_b = meta_train(catch())
    c, _ = meta_train(catch(seed=1))
    assert reports_a == reports_b and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert not all(torch.equal(a.weights[k], c.weights[k]) for k in a.weights)
    assert reports_a[-1].grad_norm > 0


def test_a_resumed_vectorised_run_ends_where_the_uninterrupted_one_does(tmp_path):
    config = catch(iterations=4, reset_interval=3)
    saved = []
    whole, reports = meta_train(
        config, checkpoint=lambda state: saved.append(torch.save(state, tmp_path / f"{len(saved)}.pt")), checkpoint_every=2
    )
    resumed, rest = meta_train(config, resume=torch.load(tmp_path / "0.pt", weights_only=True))
    assert rest == reports[2:]
    assert all(torch.equal(whole.weights[k], resumed.weights[k]) for k in whole.weights)


def test_each_task_meta_gradient_is_rescaled_to_the_same_norm_before_the_mean():
    big = {"a": torch.tensor([30.0, 40.0])}  # norm 50
    small = {"a": torch.tensor([0.0, 0.1])}  # norm 0.1
    mixed = mean_of_normalised([big, small], 0.5)
    assert torch.allclose(mixed["a"], (torch.tensor([0.3, 0.4]) + torch.tensor([0.0, 0.5])) / 2)
    assert torch.equal(mean_of_normalised([{"a": torch.zeros(2)}], 0.5)["a"], torch.zeros(2))


def test_the_six_grid_mix_builds_one_scaled_population_per_task():
    from solvers.optim4rl.train import default_optimizer_config, vector_populations

    config = MetaTrainConfig(task="grids", units=2, rollout=2)
    assert default_optimizer_config(config).clip_inputs  # the paper clips gradient inputs on the grids
    populations, hparams = vector_populations(config, random_rule(torch.float32))
    scales = {p.task_name: p.reward_scale for p in populations}
    assert scales == {
        "small_dense_long": 1000.0,
        "small_dense_short": 100.0,
        "big_sparse_short": 100.0,
        "big_dense_short": 10.0,
        "big_sparse_long": 10.0,
        "big_dense_long": 1.0,
    }
    assert [h["lr"] for h in hparams] == [1e-3, 3e-3, 3e-3, 3e-3, 1e-3, 3e-3]
    assert populations[5].network.conv_channels == 16 and populations[0].network.hidden == 32


def test_only_optim4rl_tasks_and_full_hyperparameters_are_accepted():
    with pytest.raises(ValueError, match="task must be one of Optim4RL's batched tasks"):
        VectorPopulation(Optim4RL(), "cart_pole", units=2)
    with pytest.raises(ValueError, match="VectorPopulation units must be >= 1"):
        VectorPopulation(Optim4RL(), "catch", units=0)
    with pytest.raises(ValueError, match="VectorPopulation chunk must be >= 1, got 0"):
        VectorPopulation(Optim4RL(), "catch", units=1, chunk=0)
    with pytest.raises(ValueError, match=r"hparams lack \['gamma'"):
        VectorPopulation(Optim4RL(), "catch", units=1, rollout=2).meta_loss({"lr": 1e-3}, 1)


def test_command_line_trains_on_catch_into_a_folder(tmp_path):
    argv = ["optim4rl-train", "--task", "catch", "--units", "2", "--reset-interval", "2", "--steps", "400"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0  # 400 // (2 units x 20 x 5) = 2 meta-iterations
    rule = load(tmp_path / "run" / "optimizer.pt")
    assert not rule.config.clip_inputs
    rows = [json.loads(line) for line in (tmp_path / "run" / "meta.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["returns"] for r in rows)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert main([*argv[:-2], "--steps", "100", "--out", str(tmp_path / "x")]) == 2  # under one meta-iteration


def test_gridworld_units_train_through_the_conv_torso_and_time_limits():
    rule = random_rule(torch.float32)
    big = VectorPopulation(rule, "big_dense_long", units=2, rollout=3, seed=0)
    out = big.meta_loss({**A2C_HPARAMS, "lr": 3e-3}, 2)
    grads = torch.autograd.grad(out.loss, list(rule.weights.values()))
    assert all(torch.isfinite(g).all() for g in grads) and big.network.conv_channels == 16
    short = VectorPopulation(rule, "small_dense_short", units=2, rollout=26, seed=0)
    short.record = True
    out = short.meta_loss({**A2C_HPARAMS, "lr": 3e-3}, 1)  # 52 steps: each unit's 50-step episode ends once
    assert len(out.returns) == 2
    validation = short.last_batches[1]
    assert validation["discounts"][:, 23, 0].tolist() == [0.0, 0.0]  # step 50, the time limit
    assert validation["discounts"][:, 22, 0].tolist() == [1.0, 1.0]


def test_command_line_trains_on_the_six_grid_mix(tmp_path):
    argv = ["optim4rl-train", "--task", "grids", "--units", "1", "--reset-interval", "2", "--steps", "100"]
    assert main([*argv, "--out", str(tmp_path / "mix")]) == 0  # 100 // (1 unit x 20 x 5), per task: one iteration
    assert load(tmp_path / "mix" / "optimizer.pt").config.clip_inputs  # the grids clip the optimizer's inputs
    (row,) = [json.loads(line) for line in (tmp_path / "mix" / "meta.jsonl").read_text().splitlines()]
    assert row["iteration"] == 1 and row["grad_norm"] > 0


def _meta_iteration(population: VectorPopulation, rule: Optim4RL) -> list[torch.Tensor]:
    out = population.meta_loss({**A2C_HPARAMS, "lr": 0.01}, 4)
    return list(torch.autograd.grad(out.loss, list(rule.weights.values())))


def test_the_torch_maths_in_blocks_give_the_whole_tensors_numbers(monkeypatch):
    """Blocks of ``chunk`` elements (the torch maths, where the kernel does not apply: the GPU's path): the same
    steps and states as one block of everything; the meta-gradient is the sum of the blocks' (to rounding)."""
    monkeypatch.setattr("solvers.optim4rl.kernel.library", lambda: None)
    runs = []
    for chunk in (1000, 1 << 20):  # 1,000 does not divide the 2 x 14,084 elements: a short last block
        rule = random_rule(torch.float32, hidden=8)
        population = VectorPopulation(rule, "catch", units=2, rollout=4, seed=0, chunk=chunk)
        assert population.chunk == chunk
        grads = [_meta_iteration(population, rule) for _ in range(2)]
        runs.append((grads, population.params, population.h1, population.h2))
    (small, *state_small), (whole, *state_whole) = runs
    for a, b in zip(state_small, state_whole):
        assert torch.equal(a, b)
    for a, b in zip(small[-1], whole[-1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert VectorPopulation(Optim4RL(), "catch", units=1).chunk == CHUNK


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_population_meta_trains_on_a_gpu():
    """The GPU path: the torch maths in ``DEVICE_CHUNK`` blocks, the units' tensors on the device, the optimizer's
    weights (and so their meta-gradient) where they live; finite, and the recurrent states moved on."""
    rule = random_rule(torch.float32, hidden=8)
    population = VectorPopulation(rule, "catch", units=4, rollout=4, seed=0, device="cuda")
    assert population.chunk == DEVICE_CHUNK
    grads = _meta_iteration(population, rule)
    assert all(g.device.type == "cpu" and bool(torch.isfinite(g).all()) for g in grads)
    assert population.params.device.type == "cuda" and population.h1.device.type == "cuda"
    assert float(population.h1.abs().sum()) > 0


def test_the_meta_iteration_cost_benchmark_reports_time_and_memory(tmp_path, monkeypatch):
    from solvers.optim4rl import kernel

    script = Path(__file__).parents[1] / "benchmarks" / "optim4rl" / "meta_iteration_cost.py"
    out = tmp_path / "cost.json"
    argv = [str(script), "--task", "catch", "--units", "2", "--repeats", "2", "--threads", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(kernel, "library", kernel.library)  # restored afterwards, whatever the script sets
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    summary = json.loads(out.read_text())
    assert summary["units"] == 2 and summary["elements"] == 2 * summary["parameters_per_unit"] == 2 * 14084
    assert len(summary["seconds"]) == 2 and all(s > 0 for s in summary["seconds"])
    assert summary["unit_updates_per_s"] == pytest.approx(8 / summary["median_seconds"])
    assert len(summary["peak_bytes_above_start"]) == 2 and summary["chunk"] == CHUNK
