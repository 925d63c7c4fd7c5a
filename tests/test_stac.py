"""STAC / STACX: the metagradient equals a finite difference; the solvers drive IMPALA ids through their actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import make_tiny

import solvers.plots
from agents.base import Batch, LastUpdate
from agents.impala import META_KEYS, IMPALAConfig, IMPALALearner
from agents.impala_objective import Steps
from agents.unroll import unroll
from solvers import SOLVERS, make_solver
from solvers.cli import build_parser, main
from solvers.plots import plot_schedule
from solvers.stac import ENV_NAMES, Metaparameters, STACConfig, STACSolver, meta_objective, metagradient, outer_loss

IMPALA_CARTPOLE = "HyperRL/IMPALA-CartPole-v0"
OUTER = {"gamma": 0.95, "lambda": 1.0, "g_v": 0.5, "g_p": 1.0, "g_e": 0.01, "alpha": 1.0}


def as_float64(batch: Batch) -> Batch:
    fields = {k: getattr(batch, k) for k in batch.__dataclass_fields__}
    return Batch(**{k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in fields.items()})


def small_problem(heads: int, seed: int = 0, rule: str = "rmsprop"):
    """A tiny float64 IMPALA learner (CartPole, 4 -> 5 -> heads x {2 actions, value}), an off-policy
    unroll of 6 x 3 (collected with other parameters) and update-rule statistics from one earlier step."""
    cfg = IMPALAConfig(task="CartPole-v1", num_envs=3, num_steps=6, hidden=(5,), aux_heads=heads - 1, update_rule=rule)
    learner = IMPALALearner(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    behaviour = {k: v.detach() + 0.3 * torch.randn(v.shape, generator=g) for k, v in learner.params.items()}
    batch = as_float64(learner.collector.collect(behaviour, 6, 0.99)[0])
    theta = {
        k: v.detach().double() + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in learner.params.items()
    }
    hp = {**learner.hparam_values(None), "lr": 0.05, "max_grad_norm": 40.0}
    _, state, _ = learner.train_step(theta, learner.update_rule.init(theta), batch, hp)  # non-zero RMSProp statistics
    update = LastUpdate(params=theta, opt_state=state, batch=batch, hparams=hp, meta=None)
    eta = Metaparameters(OUTER, heads, 0.9)
    logits = eta.init_logits + 0.2 * torch.randn(eta.init_logits.shape, generator=g, dtype=torch.float64)
    return logits, dict(eta=eta, learner=learner, update=update, outer_meta={**OUTER}, g_kl=1.0)


def frozen_targets(logits, kwargs):
    """The outer loss's stop-gradient V-trace targets at theta~(eta(logits)) on the scored batch, as constants."""
    learner, update = kwargs["learner"], kwargs["update"]
    scored = kwargs.get("outer_batch") or update.batch
    meta = kwargs["eta"].values(logits, torch.float64)
    new = unroll(learner, [update.batch], update.hparams, meta, params=update.params, opt_state=update.opt_state).params
    logits_new, values, boot = learner.objective.forward(new, scored)
    steps = Steps.of(scored)
    logp = torch.log_softmax(logits_new[0], -1).gather(-1, steps.actions.unsqueeze(-1)).squeeze(-1)
    returns = learner.objective.targets(logp, values[0], boot[0], steps, kwargs["outer_meta"])
    return type(returns)(*(x.detach() for x in returns))


def next_batch(kwargs, seed: int = 7) -> Batch:
    """A second, independent unroll of the small problem's learner (other behaviour parameters, later env states)."""
    learner = kwargs["learner"]
    g = torch.Generator().manual_seed(seed)
    behaviour = {k: v.detach() + 0.3 * torch.randn(v.shape, generator=g) for k, v in learner.params.items()}
    return as_float64(learner.collector.collect(behaviour, 6, 0.99)[0])


def central_difference(logits, kwargs, returns, h=1e-6):
    fd = torch.zeros_like(logits)
    for idx in torch.cartesian_prod(torch.arange(logits.shape[0]), torch.arange(logits.shape[1])).tolist():
        up, down = logits.clone(), logits.clone()
        up[tuple(idx)] += h
        down[tuple(idx)] -= h
        f_up, f_down = meta_objective(up, **kwargs, returns=returns), meta_objective(down, **kwargs, returns=returns)
        fd[tuple(idx)] = (f_up - f_down).detach() / (2 * h)
    return fd


@pytest.mark.parametrize("outer", ["same", "next"])
@pytest.mark.parametrize("rule", ["sgd", "rmsprop"])
@pytest.mark.parametrize("heads", [1, 3], ids=["stac", "stacx"])
def test_metagradient_matches_central_finite_difference(heads, rule, outer):
    logits, kwargs = small_problem(heads, rule=rule)
    if outer == "next":
        kwargs["outer_batch"] = next_batch(kwargs)
    grad, value = metagradient(logits, **kwargs)
    # The outer pseudo-loss stops gradients through its V-trace targets; with the targets held at
    # their value at eta it is a plain function of eta whose derivative there is the metagradient.
    returns = frozen_targets(logits, kwargs)
    torch.testing.assert_close(meta_objective(logits, **kwargs, returns=returns), value)
    assert torch.equal(metagradient(logits, **kwargs, returns=returns)[0], grad)
    fd = central_difference(logits, kwargs, returns)
    assert (grad != 0).all(), f"every metaparameter should get a gradient, got {grad}"
    rel = (grad - fd).norm() / fd.norm()
    assert rel < 1e-3, f"relative error {rel:.2e}\nmetagradient {grad}\nfinite difference {fd}"
    for i in range(heads):
        per_row = (grad[i] - fd[i]).norm() / fd[i].norm()
        assert per_row < 1e-3, f"head {i}: relative error {per_row:.2e}"
    kwargs["learner"].close()


def test_same_batch_and_next_unroll_metagradients_differ_on_a_fixed_pair_of_batches():
    logits, kwargs = small_problem(1)
    second = next_batch(kwargs)
    same, same_value = metagradient(logits, **kwargs)
    assert torch.equal(metagradient(logits, **kwargs, outer_batch=kwargs["update"].batch)[0], same)  # None is the own batch
    nxt, next_value = metagradient(logits, **kwargs, outer_batch=second)
    assert torch.equal(metagradient(logits, **kwargs, outer_batch=second)[0], nxt)  # deterministic
    assert not torch.isclose(same_value, next_value)
    cosine = torch.nn.functional.cosine_similarity(same.flatten(), nxt.flatten(), dim=0)
    assert (nxt - same).norm() > 0.1 * same.norm() and cosine < 0.99, (same, nxt)
    kwargs["learner"].close()


@pytest.mark.parametrize("aux_heads", [0, 2], ids=["stac", "stacx"])
def test_the_replayed_inner_step_is_the_learners_own_update(aux_heads):
    """At the eta the learner trained with, the unroll's theta~ is the learner's new parameters."""
    learner = IMPALALearner(IMPALAConfig(task="CartPole-v1", num_envs=2, num_steps=8, aux_heads=aux_heads), seed=0)
    eta = Metaparameters(OUTER, 1 + aux_heads, 0.9)
    noise = torch.randn(eta.init_logits.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits = eta.init_logits + 0.3 * noise
    values = eta.scale * torch.sigmoid(logits)
    hp = {ENV_NAMES[k]: float(values[0, i]) for i, k in enumerate(META_KEYS)}
    if aux_heads:
        learner.aux_meta = {k: values[1:, i].float() for i, k in enumerate(META_KEYS)}
    learner.iterate(hp)  # a first update, so that RMSProp's statistics are not zero
    learner.iterate(hp)
    last = learner.last_update
    meta = eta.values(logits, torch.float32)
    replayed = unroll(learner, [last.batch], last.hparams, meta, params=last.params, opt_state=last.opt_state)
    for k, v in learner.parameters().items():
        torch.testing.assert_close(replayed.params[k].detach(), v.detach(), rtol=1e-5, atol=1e-6)
    grad, value = metagradient(logits, eta=eta, learner=learner, update=last, outer_meta=OUTER, g_kl=1.0)
    assert grad.shape == logits.shape and torch.isfinite(grad).all() and (grad != 0).all() and torch.isfinite(value)
    learner.close()


def test_the_outer_loss_ignores_the_auxiliary_heads():
    logits, kwargs = small_problem(3)
    learner, update = kwargs["learner"], kwargs["update"]
    theta = {k: v.detach().requires_grad_() for k, v in update.params.items()}
    with torch.no_grad():
        old_logits = learner.objective.forward(theta, update.batch)[0][0]
    value = outer_loss(learner.objective, theta, update.batch, OUTER, old_logits, 1.0)
    aux = [k for k in theta if k.startswith(("head1.", "head2."))]
    assert aux
    grads = torch.autograd.grad(value, [theta[k] for k in aux], allow_unused=True, materialize_grads=True, retain_graph=True)
    for name, g in zip(aux, grads):
        assert torch.count_nonzero(g) == 0, f"the outer loss depends on {name}"
    main = [k for k in theta if k.startswith("head0.")]
    assert all(torch.count_nonzero(g) > 0 for g in torch.autograd.grad(value, [theta[k] for k in main]))
    learner.close()


def test_projection_keeps_eta_in_the_envs_ranges():
    ranges = {"gamma": (0.8, 0.9999), "lambda": (0.0, 1.0), "g_v": (0.0, 2.0), "g_e": (0.0, 0.1)}
    eta = Metaparameters({**OUTER, "gamma": 0.99}, 2, 0.99, ranges)
    # nothing binds at the start
    assert torch.equal(eta.init_logits, Metaparameters({**OUTER, "gamma": 0.99}, 2, 0.99).init_logits)
    far = torch.full_like(eta.init_logits, 30.0)
    values = eta.values(eta.project(far), torch.float64)
    torch.testing.assert_close(values["gamma"], torch.full((2,), 0.9999, dtype=torch.float64))
    # a loss weight's sigmoid range, (0, outer), lies inside the env's: nothing binds
    torch.testing.assert_close(values["g_v"], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-12, rtol=0)
    low = eta.values(eta.project(-far), torch.float64)
    torch.testing.assert_close(low["gamma"], torch.full((2,), 0.8, dtype=torch.float64))


class Scoring(STACSolver):
    """STAC that records the arguments of each metagradient step."""

    def begin(self, env, obs, info, seed):
        super().begin(env, obs, info, seed)
        self.updates, self.batches = [], []

    def observe(self, action, obs, reward, done, info):
        self.batches.append(self._env.learner.last_update)
        super().observe(action, obs, reward, done, info)

    def update(self, learner, last, *, outer_batch=None, at=None, graph=None):
        self.updates.append((last, outer_batch, None if at is None else at.clone(), self.logits.clone()))
        return super().update(learner, last, outer_batch=outer_batch, at=at, graph=graph)


@pytest.mark.parametrize("form", ["same", "next"])
def test_the_solver_scores_each_update_on_the_batch_its_form_names(form):
    env, solver, log = run_stac("stac", solver=Scoring(outer_batch=form, meta_lr=0.05))
    updates, seen = solver.updates, solver.batches
    assert len(updates) == (7 if form == "same" else 6)
    for i, (last, outer_batch, at, logits) in enumerate(updates):
        if form == "same":  # hyper-step i + 1: its own update, on its own batch, at the current logits
            assert last is seen[i] and outer_batch is None and at is None
        else:  # hyper-step i + 2: update i + 1, on update i + 2's batch, at the logits update i + 1 trained with
            assert last is seen[i] and outer_batch is seen[i + 1].batch
            assert torch.equal(at, logits) == (i == 0)  # one meta step behind: the logits moved since update i + 1
        trained = log.records[i].hyperparameters  # what update i + 1 trained with
        eta = solver.eta.scale * torch.sigmoid(logits if at is None else at)
        for j, k in enumerate(META_KEYS):
            assert float(eta[0, j]) == pytest.approx(trained[ENV_NAMES[k]], rel=1e-6, abs=1e-7), k
    env.close()


@pytest.mark.parametrize("form", ["same", "next"])
def test_the_update_s_own_graph_gives_the_replay_s_metagradient(form):
    """replay=False differentiates the learner's own update (graph_meta); replay=True redoes it through
    agents.unroll.  The metagradient is the same; the learner's own update then runs the differentiable
    path rather than the fused in-place one, which rounds differently in the last bit."""
    runs = [run_stac("stac", solver=make_solver("stac", outer_batch=form, replay=r, meta_lr=0.05)) for r in (False, True)]
    (env_g, graph, log_g), (env_r, replay, log_r) = runs
    assert len(graph.meta_losses) == (7 if form == "same" else 6)
    assert graph.meta_losses[0] == replay.meta_losses[0]  # the first update: the same inputs on both paths
    assert graph.meta_losses == pytest.approx(replay.meta_losses, rel=1e-5)
    torch.testing.assert_close(graph.logits, replay.logits, rtol=1e-5, atol=1e-6)
    assert not torch.equal(graph.logits, graph.eta.init_logits)
    for a, b in zip(log_g.records, log_r.records):
        assert a.hyperparameters == pytest.approx(b.hyperparameters, rel=1e-5)
    assert env_g.unwrapped.learner.graph_meta is None and env_r.unwrapped.learner.last_graph is None
    env_g.close()
    env_r.close()


def test_graph_meta_keeps_the_graph_of_one_update():
    learner = IMPALALearner(IMPALAConfig(task="CartPole-v1", num_envs=2, num_steps=8), seed=0)
    learner.iterate()
    eta = Metaparameters(OUTER, 1, 0.9)
    leaf = eta.init_logits.clone().requires_grad_()
    learner.graph_meta = eta.values(leaf)
    learner.iterate()
    assert learner.graph_meta is None and learner.last_graph is not None  # held for one update
    last = learner.last_update
    replayed = unroll(learner, [last.batch], last.hparams, eta.values(leaf), params=last.params, opt_state=last.opt_state)
    for k, v in learner.last_graph.items():
        assert torch.equal(v, replayed.params[k]) and torch.equal(v.detach(), learner.params[k].detach())
        assert learner.params[k].is_leaf and v.grad_fn is not None
    g = torch.autograd.grad(sum(v.sum() for v in learner.last_graph.values()), leaf)[0]
    assert torch.isfinite(g).all() and (g != 0).any()
    learner.iterate()
    assert learner.last_graph is None
    learner.close()


def test_outer_batch_and_init_are_checked():
    with pytest.raises(ValueError, match="outer_batch must be 'next' or 'same', got 'previous'"):
        STACConfig(outer_batch="previous")
    with pytest.raises(ValueError, match=r"init has unknown meta keys \['lr'\]"):
        STACConfig(init={"lr": 0.1})
    with pytest.raises(ValueError, match=r"init\['gamma'\] must lie in \(0, 1\), got 1.2"):
        Metaparameters(OUTER, 1, 0.99, init={"gamma": 1.2})
    with pytest.raises(ValueError, match=r"init\['gamma'\] = 0.7 lies outside the env's range \[0.8, 0.9999\]"):
        Metaparameters(OUTER, 1, 0.99, {"gamma": (0.8, 0.9999)}, init={"gamma": 0.7})


def test_a_metaparameter_initialised_away_from_its_outer_value_starts_exactly_there():
    init = {"gamma": 0.9, "lambda": 0.5, "g_v": 0.05, "g_e": 0.03}  # g_e above its outer value 0.01
    eta = Metaparameters(OUTER, 3, 0.99, init=init)
    values = eta.values(eta.init_logits, torch.float64)
    for k, v in init.items():
        torch.testing.assert_close(values[k], torch.full((3,), v, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(values["g_p"], torch.full((3,), 0.99, dtype=torch.float64))  # the rule of thumb elsewhere
    assert float(eta.scale[META_KEYS.index("g_e")]) == pytest.approx(0.03 / 0.99)  # room above the start
    # through the env: the first update trains with it, and the outer loss keeps the env's defaults
    env, solver, log = run_stac("stac", solver=Recording(init={"gamma": 0.95, "g_v": 0.2}))
    assert solver.emitted[0]["gamma"][0] == pytest.approx(0.95, abs=1e-12)
    assert log.records[0].hyperparameters["gamma"] == pytest.approx(0.95, abs=1e-6)
    assert log.records[0].hyperparameters["g_v"] == pytest.approx(0.2, abs=1e-6)
    assert solver.outer_meta["gamma"] == 0.99 and solver.outer_meta["g_v"] == 0.5
    assert_trained_with_what_was_emitted(solver, log)
    env.close()


def test_metaparameters_start_at_the_outer_values():
    eta = Metaparameters(OUTER, 3, 0.99)
    values = eta.values(eta.init_logits, torch.float64)
    torch.testing.assert_close(values["gamma"], torch.full((3,), 0.95, dtype=torch.float64))
    torch.testing.assert_close(values["lambda"], torch.full((3,), 0.99, dtype=torch.float64))
    torch.testing.assert_close(values["g_v"], torch.full((3,), 0.5 * 0.99, dtype=torch.float64))
    assert list(values) == list(META_KEYS)


class Recording(STACSolver):
    """STAC that records what it emitted and what the learner's updates then trained with."""

    def begin(self, env, obs, info, seed):
        super().begin(env, obs, info, seed)
        self.emitted, self.trained = [], []

    def act(self, obs):
        self.emitted.append(self.current())
        return super().act(obs)

    def observe(self, action, obs, reward, done, info):
        learner = self._env.learner
        meta = learner.meta(learner.last_update.hparams)  # the meta the update's loss used
        self.trained.append({k: torch.as_tensor(v).reshape(-1).double().numpy().copy() for k, v in meta.items()})
        super().observe(action, obs, reward, done, info)


def run_stac(name, solver=None, **make):
    env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8, **make)
    solver = solver or make_solver(name)
    log = solver.run(env, seed=0)
    return env, solver, log


def assert_trained_with_what_was_emitted(solver, log):
    """The learner trained with the eta the solver chose, through the env's encode/decode (float32 actions)."""
    assert len(solver.emitted) == len(solver.trained) == len(log)
    for emitted, trained, record in zip(solver.emitted, solver.trained, log.records):
        for k in META_KEYS:
            np.testing.assert_allclose(trained[k], emitted[k], rtol=1e-6, atol=1e-7, err_msg=k)
            assert record.hyperparameters[ENV_NAMES[k]] == pytest.approx(emitted[k][0], rel=1e-6, abs=1e-7)


def test_stac_tunes_eta_through_the_env_action():
    env, solver, log = run_stac("stac", solver=Recording())
    schedule = log.schedule()
    assert set(schedule) == {"gamma", "lambda_", "g_v", "g_p", "g_e", "alpha", "lr"}
    assert len(log) == 8  # STAC sets one learner iteration per hyper-step: a metagradient step per update
    # outer_batch "next": update u is scored on update u+1's batch, so the first step comes after
    # hyper-step 2, and none after the lifetime's last step (no later update would use eta)
    assert len(solver.meta_losses) == 6
    assert schedule["gamma"][0] == pytest.approx(0.99, abs=1e-6)
    assert schedule["alpha"][0] == pytest.approx(0.99, abs=1e-6)
    assert schedule["lr"][0] == pytest.approx(1e-3, rel=1e-5)  # the id's default, untouched
    moved = [k for k in ("gamma", "lambda_", "g_v", "g_p", "alpha") if abs(schedule[k][-1] - schedule[k][0]) > 1e-5]
    assert moved, f"no metaparameter moved: {schedule}"
    assert solver.eta.heads == 1 and solver.current()["gamma"].shape == (1,)
    assert_trained_with_what_was_emitted(solver, log)
    env.close()


def test_eta_stays_in_the_envs_range_and_trains_unclipped():
    # A narrow gamma range and a large meta step: gamma reaches its bound, where the env would clip silently.
    ranges = {"gamma": (0.985, 0.995), **{n: None for n in ("lambda_", "g_v", "g_p", "g_e", "alpha", "lr")}}
    env, solver, log = run_stac("stac", solver=Recording(meta_lr=0.3), hyperparameters=ranges)
    gammas = log.schedule()["gamma"]
    assert np.all((gammas >= 0.985 - 1e-7) & (gammas <= 0.995 + 1e-7)), gammas
    assert np.isclose(gammas, 0.985, atol=1e-6).any() or np.isclose(gammas, 0.995, atol=1e-6).any(), f"no bound reached: {gammas}"
    assert_trained_with_what_was_emitted(solver, log)
    env.close()


def test_stac_refuses_discrete_actions():
    env = make_tiny(IMPALA_CARTPOLE, action_type="discrete")
    with pytest.raises(ValueError, match=r"continuous metaparameters; this env has action_type='discrete'"):
        make_solver("stac").run(env, seed=0)
    env.close()


def test_meta_interval_spaces_the_metagradient_steps():
    env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8)
    solver = make_solver("stac", meta_interval=3)
    solver.run(env, seed=0)
    assert len(solver.meta_losses) == 2  # after hyper-steps 3 and 6; none after the last (8)
    env.close()


def test_stacx_tunes_18_metaparameters_and_checks_the_network():
    env, solver, log = run_stac("stacx", solver=Recording(aux_heads=2), config={"aux_heads": 2})
    names = set(log.schedule())
    assert {f"{n}/aux{h}" for n in ("gamma", "lambda_", "g_v", "g_p", "g_e", "alpha") for h in (1, 2)} <= names
    assert len(names) == 7 + 12
    learner = env.unwrapped.learner
    assert learner.aux_meta["gamma"].shape == (2,) and learner.aux_meta["gamma"].device == learner.device
    assert_trained_with_what_was_emitted(solver, log)
    env.close()
    bare = make_tiny(IMPALA_CARTPOLE)
    with pytest.raises(ValueError, match=r"needs an IMPALA learner with 2 auxiliary heads.*config=\{'aux_heads': 2\}"):
        make_solver("stacx").run(bare, seed=0)
    bare.close()


def test_stac_refuses_a_non_impala_env():
    env = make_tiny("HyperRL/PPO-CartPole-v0")
    with pytest.raises(ValueError, match="needs a HyperRL IMPALA id"):
        make_solver("stac").run(env, seed=0)
    env.close()


def test_cli_lists_and_runs_stac(tmp_path, capsys):
    assert {"stac", "stacx"} <= set(SOLVERS)
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for name in SOLVERS:
        assert name in help_text
    code = main(["run", "stac", IMPALA_CARTPOLE, "--total-timesteps", "48", "--num-envs", "2", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "stac-seed0.jsonl").exists() and (tmp_path / "stac-schedule.png").exists()


def test_schedule_plot_of_stacx(tmp_path, monkeypatch):
    env, _, log = run_stac("stacx", config={"aux_heads": 2})
    env.close()
    drawn = {}
    save = solvers.plots._save

    def spy(fig, path):
        drawn.update({ax.get_ylabel(): [line.get_ydata() for line in ax.lines] for ax in fig.axes})
        return save(fig, path)

    monkeypatch.setattr(solvers.plots, "_save", spy)
    assert plot_schedule([log], tmp_path / "s.png").exists()
    schedule = log.schedule()
    assert set(drawn) == set(schedule) and len(drawn) == 7 + 12  # one panel per metaparameter of every head, and lr
    for name, lines in drawn.items():
        assert len(lines) == 1, f"{name}: {len(lines)} series for one run"
        np.testing.assert_array_equal(lines[0], schedule[name])


def test_stac_state_dict_round_trips_and_resumes_the_same_run(tmp_path):
    """A run stopped after 4 hyper-steps and resumed from a checkpoint (solver state + lifetime snapshot,
    through torch.save and a weights-only load) ends where the uninterrupted run ends."""
    from solvers.base import StopRun

    whole_env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8)
    whole = make_solver("stac")
    whole_log = whole.run(whole_env, seed=0)

    def stop_after_4(record):
        if record.step == 3:
            raise StopRun

    env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8)
    first = make_solver("stac")
    with pytest.raises(StopRun) as stopped:
        first.run(env, seed=0, callback=stop_after_4)
    torch.save({"solver": first.state_dict(), "lifetime": env.unwrapped.snapshot()}, tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert set(state["solver"]) == {"logits", "adam", "steps", "meta_losses", "pending"} and state["solver"]["steps"] == 4
    assert state["solver"]["pending"] is not None  # update 4 awaits its score on update 5's batch
    resumed = make_solver("stac")
    resumed.load_state_dict(state["solver"])
    assert torch.equal(resumed.logits, first.logits) and resumed.meta_losses == first.meta_losses
    other = make_tiny(IMPALA_CARTPOLE, hyper_steps=8)
    other.reset(seed=0)
    obs = other.unwrapped.restore(state["lifetime"])
    log = resumed.resume(other, obs, stopped.value.log)
    assert len(log) == len(whole_log) == 8
    assert resumed.meta_losses == pytest.approx(whole.meta_losses, rel=1e-6)
    torch.testing.assert_close(resumed.logits, whole.logits)
    assert [r.hyperparameters for r in log.records] == [r.hyperparameters for r in whole_log.records]  # bit for bit
    with pytest.raises(ValueError, match=r"state has logits of shape \(1, 6\); STACXSolver needs \(3, 6\)"):
        make_solver("stacx").load_state_dict(state["solver"])
    for e in (whole_env, env, other):
        e.close()
