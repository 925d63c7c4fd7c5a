"""STAC / STACX: the metagradient equals a finite difference; the solvers drive IMPALA ids through their actions."""

from __future__ import annotations

import pytest
import torch
from _helpers import make_tiny

from agents.impala import META_KEYS, IMPALANetwork, IMPALAObjective
from solvers import SOLVERS, make_solver
from solvers.cli import build_parser, main
from solvers.plots import plot_schedule
from solvers.stac import Metaparameters, meta_objective, metagradient

IMPALA_CARTPOLE = "HyperRL/IMPALA-CartPole-v0"
OUTER = {"gamma": 0.95, "lambda": 1.0, "g_v": 0.5, "g_p": 1.0, "g_e": 0.01, "alpha": 1.0}


def small_problem(heads: int, seed: int = 0):
    """A float64 IMPALA network (3 -> 5 -> heads x {2 actions, value}) and an off-policy unroll of 5 x 3."""
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
    return logits, kwargs


def frozen_targets(logits, kwargs):
    """The outer loss's stop-gradient V-trace targets at theta~(eta(logits)), as constants."""
    objective, theta, batch = kwargs["objective"], kwargs["theta"], kwargs["batch"]
    meta = kwargs["eta"].values(logits, torch.float64)
    grads = torch.func.grad(lambda th: objective(th, batch, meta)[0])(theta)
    new = {k: theta[k] - kwargs["lr"] * grads[k] for k in theta}
    logits_new, values, boot = objective.forward(new, batch)
    logp = torch.log_softmax(logits_new[0], -1).gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
    return objective.targets(logp, values[0], boot[0], batch, kwargs["outer_meta"])


@pytest.mark.parametrize("heads", [1, 3], ids=["stac", "stacx"])
def test_metagradient_matches_central_finite_difference(heads):
    logits, kwargs = small_problem(heads)
    grad, value = metagradient(logits, **kwargs)
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


def test_metaparameters_start_at_the_outer_values():
    eta = Metaparameters(OUTER, 3, 0.99)
    values = eta.values(eta.init_logits, torch.float64)
    torch.testing.assert_close(values["gamma"], torch.full((3,), 0.95, dtype=torch.float64))
    torch.testing.assert_close(values["lambda"], torch.full((3,), 0.99, dtype=torch.float64))
    torch.testing.assert_close(values["g_v"], torch.full((3,), 0.5 * 0.99, dtype=torch.float64))
    assert list(values) == list(META_KEYS)


def run_stac(name, **make):
    env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8, **make)
    solver = make_solver(name)
    seen = []

    def spy(record):
        seen.append(record)

    log = solver.run(env, seed=0, callback=spy)
    return env, solver, log


def test_stac_tunes_eta_through_the_env_action():
    env, solver, log = run_stac("stac")
    schedule = log.schedule()
    assert set(schedule) == {"gamma", "lambda_", "g_v", "g_p", "g_e", "alpha", "lr"}
    assert len(log) == 8  # STAC sets one learner iteration per hyper-step: a metagradient step per update
    assert len(solver.meta_losses) == 7  # none after the lifetime's last step
    assert schedule["gamma"][0] == pytest.approx(0.99, abs=1e-6)
    assert schedule["alpha"][0] == pytest.approx(0.99, abs=1e-6)
    assert schedule["lr"][0] == pytest.approx(1e-3, rel=1e-5)  # the id's default, untouched
    moved = [k for k in ("gamma", "lambda_", "g_v", "g_p", "alpha") if abs(schedule[k][-1] - schedule[k][0]) > 1e-5]
    assert moved, f"no metaparameter moved: {schedule}"
    # what the env trained with is what the solver chose (through encode/decode)
    eta = solver.current()
    assert solver.eta.heads == 1 and eta["gamma"].shape == (1,)
    env.close()


def test_meta_interval_spaces_the_metagradient_steps():
    env = make_tiny(IMPALA_CARTPOLE, hyper_steps=8)
    solver = make_solver("stac", meta_interval=3)
    solver.run(env, seed=0)
    assert len(solver.meta_losses) == 2  # after hyper-steps 3 and 6; none after the last (8)
    env.close()


def test_stacx_tunes_18_metaparameters_and_checks_the_network():
    env, solver, log = run_stac("stacx", config={"aux_heads": 2})
    names = set(log.schedule())
    assert {f"{n}/aux{h}" for n in ("gamma", "lambda_", "g_v", "g_p", "g_e", "alpha") for h in (1, 2)} <= names
    assert len(names) == 7 + 12
    learner = env.unwrapped.learner
    assert learner.aux_meta["gamma"].shape == (2,)
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


def test_schedule_plot_of_stacx(tmp_path):
    env, _, log = run_stac("stacx", config={"aux_heads": 2})
    env.close()
    assert plot_schedule([log], tmp_path / "s.png").exists()
