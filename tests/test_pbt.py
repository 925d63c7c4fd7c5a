"""PBT and PB2 through Ray Tune: an exploit copies the source exactly and the next update uses the perturbed values.

The pitfalls peers hit: Ray Tune's PBT restored a trial's old hyperparameters with its
checkpoint (ray#62173), exploited trials that had never checkpointed (ray#27170), and
lost its mutations after ``Tuner.restore`` (ray#54755: here the scheduler is rebuilt
from the env's space on every run).  The step size is measured on the parameters, not
read from a config: with plain SGD, one update per hyper-step and no gradient clipping,
a hyper-step moves the parameters by exactly ``lr`` times the gradient.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import make_tiny

from solvers.cli import main
from solvers.pbt import PB2Solver, PBTConfig, PBTSolver

A2C = "HyperRL/A2C-CartPole-v0"
SGD_ONE_STEP = {
    "config": {"update_rule": "sgd", "num_steps": 16},
    "defaults": {"max_grad_norm": 0.0},
    "hyperparameters": {"lr": (1e-2, 1e-1)},
    "total_timesteps": 6 * 32,
}
"""six hyper-steps of 32 env steps; A2C takes one update a hyper-step and plain SGD without clipping makes it -lr * gradient"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_population_below_two_is_refused_before_anything_runs(capsys):
    with pytest.raises(ValueError, match="population must be at least 2"):
        PBTConfig(population=1)
    assert main(["run", "pbt", A2C, "--population", "1"]) == 2
    assert "population must be at least 2" in capsys.readouterr().out


def test_unreachable_address_is_refused_before_anything_runs(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ValueError, match="no Ray head node answers"):
        PB2Solver(address=address)
    assert main(["run", "pbt", A2C, "--address", address, "--out", str(tmp_path)]) == 2
    assert f"--address {address}: no Ray head node answers" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # no run started, nothing written
    with pytest.raises(ValueError, match="HOST:PORT"):
        PBTSolver(address="no-port-here")


class _Controller:
    """The two calls PBT's exploit makes on Tune's controller."""

    def __init__(self) -> None:
        self.paused: list = []

    def pause_trial(self, trial, should_checkpoint=True) -> None:
        self.paused.append(trial)

    def _schedule_trial_save(self, trial, result=None):  # pragma: no cover - only for members in the top quantile
        raise AssertionError("no member in these tests is in the top quantile when it reports")


def test_a_member_that_never_checkpointed_is_never_an_exploit_source(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray is not installed (the optional `distributed` extra)")
    from ray import tune
    from ray.tune.experiment import Trial
    from ray.tune.schedulers.pbt import _PBTTrialState

    from solvers import pbt_tune

    space = [{"name": "lr", "low": 1e-4, "high": 1e-2, "log": True}]
    member = pbt_tune.MemberSetup(env_id=A2C, env_kwargs={}, solver="pbt", coordinates="natural", space=space)
    events = tmp_path / "exploits.jsonl"
    scheduler = pbt_tune.make_scheduler(PBTSolver(population=2), member, set(), events)
    top, bottom = Trial("__fake", config={"lr": 1e-3}, stub=True), Trial("__fake", config={"lr": 5e-3}, stub=True)
    scheduler._trial_state = {t: _PBTTrialState(t) for t in (top, bottom)}
    scheduler._trial_state[top].last_score, scheduler._trial_state[bottom].last_score = 10.0, 1.0
    controller = _Controller()

    def exploit_round() -> None:
        scheduler._checkpoint_or_exploit(bottom, controller, [top], [bottom])

    exploit_round()  # the best member has never checkpointed
    empty = tmp_path / "empty"
    empty.mkdir()
    scheduler._trial_state[top].last_checkpoint = tune.Checkpoint.from_directory(str(empty))
    exploit_round()  # a checkpoint with no lifetime in it
    assert controller.paused == [] and bottom.config["lr"] == 5e-3 and not events.exists()

    full = tmp_path / "full"
    full.mkdir()
    torch.save({"lifetime": {}}, full / pbt_tune.LIFETIME_FILE)
    scheduler._trial_state[top].last_checkpoint = tune.Checkpoint.from_directory(str(full))
    exploit_round()
    assert controller.paused == [bottom]
    assert bottom.config["lr"] != 5e-3 and 1e-4 <= bottom.config["lr"] <= 1e-2
    assert f'"source": "{top.trial_id}"' in events.read_text()


def _flat(learner) -> torch.Tensor:
    return torch.cat([v.detach().flatten().double() for _, v in sorted(learner.parameters().items())])


def _replay(checkpoint: str, lr: float) -> tuple[float, str, str]:
    """From the source's checkpoint: (norm of the gradient step at lr 1, digest restored, digest after a step at ``lr``)."""
    from solvers import pbt_tune

    env = make_tiny(A2C, **SGD_ONE_STEP)
    env.reset(seed=0)
    state = torch.load(Path(checkpoint) / pbt_tune.LIFETIME_FILE, weights_only=True)
    env.unwrapped.restore(state["lifetime"])
    learner, restored = env.unwrapped.learner, pbt_tune.params_digest(env.unwrapped.learner)
    before = _flat(learner)
    learner.iterate({**env.unwrapped.defaults, "lr": 1.0})  # the very gradient the trial's step used, unscaled
    gradient_norm = float(torch.linalg.vector_norm(_flat(learner) - before))
    env.unwrapped.restore(state["lifetime"])
    env.step(env.unwrapped.hparam_space.encode({"lr": lr}))
    stepped = pbt_tune.params_digest(env.unwrapped.learner)
    env.close()
    return gradient_norm, restored, stepped


@pytest.mark.parametrize("solver_class", [PBTSolver, PB2Solver])
def test_after_an_exploit_the_next_update_uses_the_perturbed_lr_on_the_source_parameters(solver_class, ray_local, tmp_path):
    env = make_tiny(A2C, **SGD_ONE_STEP)
    fields = {"resample_probability": 0.0} if solver_class is PBTSolver else {}
    solver = solver_class(population=2, perturbation_interval=1, out=str(tmp_path), keep_checkpoints=None, **fields)
    best = solver.run(env, seed=0)
    space = env.unwrapped.hparam_space
    env.close()
    assert solver.exploits, "no exploit happened: the test shows nothing"
    assert len(best) == 6 and best.timesteps[-1] == 6 * 32
    decode = (lambda c: space.decode(np.array([c["lr"]], np.float32))["lr"]) if solver.name == "pb2" else (lambda c: c["lr"])
    checked, seen = 0, {}
    for event in solver.exploits:
        pair = (event["target"], event["source"])
        k = seen[pair] = seen.get(pair, -1) + 1  # the k-th copy of this source into this target ...
        after = [r for r in solver.results if r["trial"] == pair[0] and r.get("restored_from") == pair[1]]
        source_saved = torch.load(Path(event["checkpoint"]) / "lifetime.pt", weights_only=True)
        assert source_saved["trial"] == event["source"]  # the source wrote that checkpoint itself
        if len(after) <= k:
            continue  # the exploit came after the target's last hyper-step
        step = after[k]  # ... is followed by the target's k-th hyper-step restored from it
        lr_new, lr_old = decode(event["config"]), decode(event["source_config"])
        gradient_norm, restored, stepped = _replay(event["checkpoint"], lr_new)
        assert step["restored_digest"] == restored == source_saved["digest"]  # the source's parameters, exactly
        assert step["params_digest"] == stepped  # then one update at the perturbed lr on the same batch
        assert step["update_norm"] / gradient_norm == pytest.approx(lr_new, rel=1e-3)
        if abs(lr_new / lr_old - 1) > 0.05:
            assert step["update_norm"] / gradient_norm != pytest.approx(lr_old, rel=1e-2)
        checked += 1
    assert checked, "no exploit was followed by a hyper-step"
    assert len(list((tmp_path / "population").glob("*-member*.jsonl"))) == 2


def test_explore_perturbs_every_controlled_hyperparameter_and_stays_in_range():
    """ray#54755 lost mutations after a restore; here they come from the id's space on every run."""
    pytest.importorskip("ray.tune", reason="Ray is not installed (the optional `distributed` extra)")
    from ray.tune.experiment import Trial

    from solvers import pbt_tune
    from solvers.base import describe_space

    env = make_tiny("HyperRL/PPO-CartPole-v0")
    space, hps = describe_space(env), env.unwrapped.hparam_space.hyperparameters
    integers = {h.name for h in hps if h.integer}
    env.close()
    member = pbt_tune.MemberSetup(
        env_id="HyperRL/PPO-CartPole-v0", env_kwargs={}, solver="pbt", coordinates="natural", space=space
    )
    source = Trial("__fake", config={h.name: h.from_unit(0.0) for h in hps}, stub=True)
    for resample in (0.0, 1.0):
        scheduler = pbt_tune.make_scheduler(PBTSolver(population=2, resample_probability=resample), member, integers, None)
        assert set(scheduler._hyperparam_mutations) == {h.name for h in hps} == {"lr", "clip", "gae_lambda", "minibatch_size"}
        for _ in range(20):
            new, _ = scheduler._get_new_config(source, source)
            for h in hps:
                assert h.low <= new[h.name] <= h.high, h.name
                if resample == 0.0 and not h.integer:
                    scaled = [min(max(f * source.config[h.name], h.low), h.high) for f in (0.8, 1.2)]
                    assert new[h.name] in [pytest.approx(v) for v in scaled], h.name  # x0.8 or x1.2, clipped
            assert all(isinstance(new[n], int) for n in integers)
