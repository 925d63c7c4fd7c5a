"""STAC / STACX: the metagradient equals a finite difference; the solvers drive IMPALA ids through their actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import make_tiny

import solvers.plots
from agents.impala import META_KEYS, IMPALAConfig, IMPALALearner, IMPALANetwork, IMPALAObjective
from solvers import SOLVERS, make_solver
from solvers.cli import build_parser, main
from solvers.plots import plot_schedule
from solvers.stac import (
    ENV_NAMES,
    Metaparameters,
    STACSolver,
    inner_update,
    meta_objective,
    metagradient,
    metagradient_of_step,
    outer_loss,
    preconditioner_of,
)

IMPALA_CARTPOLE = "HyperRL/IMPALA-CartPole-v0"
OUTER = {"gamma": 0.95, "lambda": 1.0, "g_v": 0.5, "g_p": 1.0, "g_e": 0.01, "alpha": 1.0}


def small_problem(heads: int, seed: int = 0, precondition: bool = False):
    """A float64 IMPALA network (3 -> 5 -> heads x {2 actions, value}) and an off-policy unroll of 5 x 3.

    ``precondition``: divide the step by positive per-parameter denominators, as RMSProp's would.
    """
    net = IMPALANetwork(obs_dim=3, action_dim=2, hidden=(5,), heads=heads, head_hidden=())
    g = torch.Generator().manual_seed(seed)
    theta = {k: (v.double() + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64)) for k, v in net.init(g).items()}
    t, b = 5, 3
    batch = {
        "obs": torch.randn(t, b, 3, generator=g, dtype=torch.float64),
        "actions": torch.randint(0, 2, (t, b), generator=g),
        "behaviour_log_probs": torch.log(torch.rand(t, b, generator=g, dtype=torch.float64) * 0.8 + 0.1),
        "rewards": torch.randn(t, b, generator=g, dtype=torch.float64),
        "discounts": (torch.rand(t, b, generator=g) > 0.2).double(),
        "bootstrap_obs": torch.randn(b, 3, generator=g, dtype=torch.float64),
    }
    objective = IMPALAObjective(net)
    eta = Metaparameters(OUTER, heads, 0.9)
    logits = eta.init_logits + 0.2 * torch.randn(eta.init_logits.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        old_logits = objective.forward(theta, batch)[0][0]
    outer_meta = {**OUTER}
    kwargs = dict(
        eta=eta, objective=objective, theta=theta, batch=batch, lr=0.5, outer_meta=outer_meta, g_kl=1.0, old_logits=old_logits
    )
    if precondition:
        kwargs["preconditioner"] = {k: 0.5 + torch.rand(v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    return logits, kwargs


def frozen_targets(logits, kwargs):
    """The outer loss's stop-gradient V-trace targets at theta~(eta(logits)), as constants."""
    objective, theta, batch = kwargs["objective"], kwargs["theta"], kwargs["batch"]
    meta = kwargs["eta"].values(logits, torch.float64)
    grads = torch.func.grad(lambda th: objective(th, batch, meta)[0])(theta)
    scale = kwargs.get("preconditioner") or {k: 1.0 for k in theta}
    new = {k: theta[k] - kwargs["lr"] * grads[k] / scale[k] for k in theta}
    logits_new, values, boot = objective.forward(new, batch)
    logp = torch.log_softmax(logits_new[0], -1).gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
    return objective.targets(logp, values[0], boot[0], batch, kwargs["outer_meta"])


@pytest.mark.parametrize("precondition", [False, True], ids=["sgd", "preconditioned"])
@pytest.mark.parametrize("heads", [1, 3], ids=["stac", "stacx"])
def test_metagradient_matches_central_finite_difference(heads, precondition):
    logits, kwargs = small_problem(heads, precondition=precondition)
    grad, value = metagradient(logits, backend="func", **kwargs)
    # The outer pseudo-loss stops gradients through its V-trace targets; with the targets held at
    # their value at eta it is a plain function of eta whose derivative there is the metagradient.
    returns = frozen_targets(logits, kwargs)
    torch.testing.assert_close(meta_objective(logits, **kwargs, returns=returns), value)
    fd = torch.zeros_like(logits)
    h = 1e-6
    for idx in torch.cartesian_prod(torch.arange(logits.shape[0]), torch.arange(logits.shape[1])).tolist():
        up, down = logits.clone(), logits.clone()
        up[tuple(idx)] += h
        down[tuple(idx)] -= h
        f_up, f_down = meta_objective(up, **kwargs, returns=returns), meta_objective(down, **kwargs, returns=returns)
        fd[tuple(idx)] = (f_up - f_down) / (2 * h)
    assert (grad.abs() > 1e-8).all(), f"every metaparameter should get a gradient, got {grad}"
    rel = (grad - fd).norm() / fd.norm()
    assert rel < 1e-3, f"relative error {rel:.2e}\nmetagradient {grad}\nfinite difference {fd}"
    for i in range(heads):
        per_row = (grad[i] - fd[i]).norm() / fd[i].norm()
        assert per_row < 1e-3, f"head {i}: relative error {per_row:.2e}"
    auto, auto_value = metagradient(logits, backend="autograd", **kwargs)
    torch.testing.assert_close(auto, grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(auto_value, value)


@pytest.mark.parametrize("aux_heads", [0, 2], ids=["stac", "stacx"])
def test_the_learners_own_update_is_the_inner_step(aux_heads):
    """``keep_graph``: differentiating the learner's update gives the metagradient computed from scratch."""
    learner = IMPALALearner(IMPALAConfig(task="CartPole-v1", num_envs=2, num_steps=8, aux_heads=aux_heads), seed=0)
    eta = Metaparameters(OUTER, 1 + aux_heads, 0.9)
    noise = torch.randn(eta.init_logits.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits = eta.init_logits + 0.3 * noise
    values = eta.scale * torch.sigmoid(logits)
    hp = {ENV_NAMES[k]: float(values[0, i]) for i, k in enumerate(META_KEYS)}
    if aux_heads:
        learner.aux_meta = {k: values[1:, i].float() for i, k in enumerate(META_KEYS)}
    learner.iterate(hp)  # a first update, so that RMSProp's statistics are not zero
    learner.keep_graph = True
    learner.iterate(hp)
    inner = learner.last_inner
    kwargs = dict(
        eta=eta,
        objective=learner.objective,
        theta=learner.last_params,
        batch=learner.last_batch,
        lr=1e-3,
        outer_meta=OUTER,
        g_kl=1.0,
        old_logits=learner.last_logits,
        preconditioner=preconditioner_of(learner),
    )
    reused, value = metagradient_of_step(logits, meta=inner.meta, grads=inner.grads, **kwargs)
    for backend in ("autograd", "func"):
        fresh, fresh_value = metagradient(logits, backend=backend, **kwargs)
        torch.testing.assert_close(reused, fresh, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(value, fresh_value)
    with torch.no_grad():
        torch.testing.assert_close(learner.last_logits, learner.objective.forward(learner.last_params, learner.last_batch)[0][0])
    learner.close()


def test_the_outer_loss_ignores_the_auxiliary_heads():
    logits, kwargs = small_problem(3)
    theta = {k: v.detach().requires_grad_() for k, v in kwargs["theta"].items()}
    value = outer_loss(kwargs["objective"], theta, kwargs["batch"], OUTER, kwargs["old_logits"], 1.0)
    aux = [k for k in theta if k.startswith(("head1.", "head2."))]
    assert aux
    grads = torch.autograd.grad(value, [theta[k] for k in aux], allow_unused=True, materialize_grads=True, retain_graph=True)
    for name, g in zip(aux, grads):
        assert torch.count_nonzero(g) == 0, f"the outer loss depends on {name}"
    main = [k for k in theta if k.startswith("head0.")]
    assert all(torch.count_nonzero(g) > 0 for g in torch.autograd.grad(value, [theta[k] for k in main]))


def test_inner_update_divides_by_the_preconditioner():
    theta = {"w": torch.tensor([1.0, 2.0])}
    grads = {"w": torch.tensor([0.5, -1.0])}
    torch.testing.assert_close(
        inner_update(theta, grads, 0.1, {"w": torch.tensor([2.0, 4.0])})["w"], torch.tensor([0.975, 2.025])
    )
    torch.testing.assert_close(inner_update(theta, grads, 0.1, None)["w"], torch.tensor([0.95, 2.1]))


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
        inner = self._env.learner.last_inner  # the meta the update's loss used (the autograd backend keeps it)
        self.trained.append({k: v.detach().reshape(-1).double().numpy().copy() for k, v in inner.meta.items()})
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
    assert len(solver.meta_losses) == 7  # none after the lifetime's last step
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
