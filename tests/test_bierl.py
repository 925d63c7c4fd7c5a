"""BiERL: the look-ahead leaves no trace, NPM's BO proposes in range, PM's meta-network learns and round-trips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _helpers import make_tiny, obs_equal

from solvers import SOLVERS, StopRun, make_solver
from solvers.bierl import BiERLNPM, BiERLPM, bo_propose

ES_ID = "HyperRL/ES-InvertedPendulum-v0"


def _env(hyper_steps: int = 6):
    config = {"population": 4, "max_episode_steps": 10}
    return make_tiny(ES_ID, config=config, total_timesteps=hyper_steps * 5 * 10)


def _state(env) -> dict:
    return env.unwrapped.learner.state_dict()


def _assert_state_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], list):
            assert len(a[key]) == len(b[key]) and all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key
        else:
            assert a[key] == b[key], key


def test_registered():
    assert SOLVERS["bierl-pm"] == "solvers.bierl:BiERLPM" and SOLVERS["bierl-npm"] == "solvers.bierl:BiERLNPM"


def test_look_ahead_leaves_no_trace():
    env, reference = _env(), _env()
    for e in (env, reference):
        e.reset(seed=3)
        e.step(e.action_space.sample() * 0)
    solver = BiERLNPM(interval=1)
    solver.begin(env, None, {}, seed=0)
    before, obs_before = _state(env), env.unwrapped._observe()
    scores = [solver.score({"sigma": s}) for s in (0.02, 0.08)]
    assert all(np.isfinite(scores)) and solver.meta_env_steps > 0
    _assert_state_equal(before, _state(env))
    assert obs_equal(obs_before, env.unwrapped._observe())
    action = env.unwrapped.hparam_space.encode({"sigma": 0.05})
    a, b = env.step(action), reference.step(action)
    assert obs_equal(a[0], b[0]) and a[1:4] == b[1:4]
    env.close()
    reference.close()


def test_bo_propose_stays_in_the_unit_cube_and_is_seeded():
    x = np.linspace(0, 1, 6)[:, None]
    y = -((x[:, 0] - 0.3) ** 2)
    p = bo_propose(x, y, seed=0, restarts=2, raw_samples=16)
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
    np.testing.assert_array_equal(p, bo_propose(x, y, seed=0, restarts=2, raw_samples=16))


def test_npm_sets_the_best_look_ahead_point_and_logs_it():
    env = _env(hyper_steps=3)
    solver = make_solver("bierl-npm", interval=2, init_points=2, bo_points=1)
    log = solver.run(env, seed=0)
    sigmas = log.schedule()["sigma"]
    assert len(log) >= 3 and np.all((sigmas >= 0.02) & (sigmas <= 0.08))
    assert solver.updates >= 1 and abs(sigmas[0] - solver.history[0]["sigma"]) < 1e-6  # float32 action round trip
    env.close()


def test_pm_meta_update_moves_the_network_and_round_trips(tmp_path):
    env = _env(hyper_steps=3)
    solver = BiERLPM(interval=2, meta_pairs=1, pretrained=None)
    env.reset(seed=0)
    solver.begin(env, None, {}, seed=0)
    assert solver.representation().shape == (1, 10, 20)
    env.step(solver.act(None))  # meta-update skipped: no population yet
    before = torch.nn.utils.parameters_to_vector(solver.net.parameters()).clone()
    env.step(solver.act(None))
    solver.steps = 2
    action = solver.act(None)  # step 2: a meta-update
    after = torch.nn.utils.parameters_to_vector(solver.net.parameters())
    assert not torch.equal(before, after)
    sigma = env.unwrapped.hparam_space.decode(action)["sigma"]
    assert 0.02 <= sigma <= 0.08
    path = solver.save(tmp_path / "pm.pt")
    other = BiERLPM(pretrained=path)
    other.begin(env, None, {}, seed=1)
    assert torch.equal(torch.nn.utils.parameters_to_vector(other.net.parameters()), after)
    env.close()


def test_fitness_observer_layout():
    from hyperenvs.observers import FitnessObserver, zscore_sorted

    z = zscore_sorted(np.array([3.0, 1.0, 2.0]), 3)
    np.testing.assert_allclose(z, [-1.224745, 0.0, 1.224745], atol=1e-6)
    assert np.allclose(zscore_sorted(np.ones(4), 5), 0.0)  # a flat population is all zeros, not NaN
    env = _env()
    obs, _ = env.reset(seed=0)
    assert obs["fitness"].shape == (10 * 20 + 2,) and not obs["fitness"].any()
    obs = env.step(env.action_space.sample())[0]
    learner = env.unwrapped.learner
    np.testing.assert_allclose(obs["fitness"][:20], zscore_sorted(learner.fitness_history()[0], 20), atol=1e-6)
    assert not obs["fitness"][20:200].any()
    assert obs["fitness"][-2] == np.float32(learner.centre_return) and 0 <= obs["fitness"][-1] <= 1
    assert isinstance(env.unwrapped.observers["fitness"], FitnessObserver)
    env.close()


def test_pm_loads_the_packaged_warm_start_by_default():
    from solvers.bierl.pm import pretrained_path

    path = pretrained_path()
    assert path is not None, "solvers/bierl/pretrained_pm.pt is missing from the package"
    env = _env()
    env.reset(seed=0)
    solver = BiERLPM()
    solver.begin(env, None, {}, seed=0)
    state = torch.load(path, weights_only=True)
    assert all(torch.equal(v, solver.net.state_dict()[k]) for k, v in state.items())
    env.close()


def test_es_ids_also_serve_the_projection_observer():
    config = {"population": 4, "max_episode_steps": 10}
    env = make_tiny(ES_ID, config=config, total_timesteps=500, observe=["projection", "statistics", "fitness"])
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs = env.step(env.action_space.sample())[0]
    assert env.observation_space.contains(obs) and np.abs(obs["projection"]).sum() > 0
    env.close()


def _manual_look_ahead(env, values: dict, stream: int) -> tuple[float, int, np.ndarray]:
    """One look-ahead by hand: (score, env steps it cost, theta after the inner step); restores the lifetime."""
    unwrapped = env.unwrapped
    learner, snap = unwrapped.learner, unwrapped.snapshot()
    before = learner.timesteps
    with learner.noise_stream(stream):
        learner.iterate({**unwrapped.defaults, **values})
        [(ret, length)] = learner.evaluate_episodes(1)
    theta = learner.theta.copy()
    cost = learner.timesteps - before + length
    unwrapped.restore(snap)
    return ret, cost, theta


def test_look_ahead_repeats_eq5_and_counts_its_evaluation_episodes():
    # HalfCheetah: real-valued returns, so distinct repeats give distinct scores.
    env = make_tiny("HyperRL/ES-HalfCheetah-v0", config={"population": 4, "max_episode_steps": 10}, total_timesteps=300)
    env.reset(seed=3)
    env.step(env.action_space.sample() * 0)
    values = {"sigma": 0.03}
    first, second = (_manual_look_ahead(env, values, stream) for stream in (0, 1))
    assert first[0] != second[0] and not np.array_equal(first[2], second[2])  # independent repeats
    before = _state(env)
    one = BiERLNPM(interval=1)
    one.begin(env, None, {}, seed=0)
    assert one.score(values) == first[0]  # repeat 0 is the lifetime's own next draw
    assert one.meta_env_steps == first[1]  # the inner iteration and the scoring episode
    two = BiERLNPM(interval=1, lookahead_repeats=2)
    two.begin(env, None, {}, seed=0)
    assert two.score(values) == np.mean([first[0], second[0]])
    assert two.meta_env_steps == first[1] + second[1]
    _assert_state_equal(before, _state(env))
    env.close()


def test_pm_warns_when_the_packaged_warm_start_does_not_fit():
    from solvers.bierl.pm import pretrained_path

    config = {"population": 4, "max_episode_steps": 10}
    env = make_tiny(ES_ID, config=config, total_timesteps=300, hyperparameters=["sigma", "lr"])
    env.reset(seed=0)
    with pytest.warns(UserWarning, match=r"without its warm start.*sigma, lr"):
        BiERLPM().begin(env, None, {}, seed=0)
    with pytest.raises(ValueError, match="does not fit"):  # a file asked for by name still fails loudly
        BiERLPM(pretrained=pretrained_path()).begin(env, None, {}, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BiERLPM(pretrained=None).begin(env, None, {}, seed=0)  # no warm start asked for: no warning
    env.close()


@pytest.mark.parametrize("scorer", ["lookahead", "perturbed"])
def test_both_scorers_leave_no_trace_and_use_common_random_numbers(scorer):
    # HalfCheetah: real-valued returns, so a different sigma gives a different score.
    env = make_tiny("HyperRL/ES-HalfCheetah-v0", config={"population": 4, "max_episode_steps": 10}, total_timesteps=300)
    env.reset(seed=3)
    env.step(env.action_space.sample() * 0)
    solver = BiERLNPM(interval=1, scorer=scorer, lookahead_repeats=2, perturbed_samples=4)
    solver.begin(env, None, {}, seed=0)
    before = env.unwrapped.snapshot()
    first = solver.score({"sigma": 0.05})
    other = solver.score({"sigma": 0.02})
    again = solver.score({"sigma": 0.05})
    assert first == again and first != other  # equal sigma, equal score, whatever was scored in between
    assert solver.meta_env_steps > 0
    after = env.unwrapped.snapshot()
    _assert_state_equal(before["learner"], after["learner"])
    assert {k: v for k, v in before.items() if k != "learner"} == {k: v for k, v in after.items() if k != "learner"}
    env.close()


def test_perturbed_scorer_is_the_mean_of_mirrored_copies():
    env = make_tiny("HyperRL/ES-HalfCheetah-v0", config={"population": 4, "max_episode_steps": 10}, total_timesteps=300)
    env.reset(seed=1)
    learner = env.unwrapped.learner
    from agents.es.workers import Job, evaluate_jobs, process_cache
    from agents.seeding import derive

    jobs = [Job(pair=0, sign=1), Job(pair=0, sign=-1), Job(pair=1, sign=1)]
    direct = evaluate_jobs(
        process_cache(), "HalfCheetah-v5", 10, learner.spec, learner.theta, 0.03, derive(learner.seed, "probe"), 0, jobs
    )
    solver = BiERLNPM(interval=1, scorer="perturbed", perturbed_samples=3)
    solver.begin(env, None, {}, seed=0)
    assert solver.score({"sigma": 0.03}) == np.mean([r[0] for r in direct]) and solver.meta_env_steps == 30
    env.close()


def test_perturbed_scorer_refuses_hyperparameters_it_cannot_see():
    config = {"population": 4, "max_episode_steps": 10}
    env = make_tiny(ES_ID, config=config, total_timesteps=300, hyperparameters=["sigma", "lr"])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="perturbed scorer sees sigma only"):
        BiERLNPM(scorer="perturbed").begin(env, None, {}, seed=0)
    with pytest.raises(ValueError, match="scorer must be one of"):
        BiERLNPM(scorer="oracle")
    env.close()


def test_charged_and_uncharged_accounting_differ_exactly_by_the_scoring_steps():
    logs = {}
    for charge in (False, True):
        env = make_tiny(ES_ID, config={"population": 4, "max_episode_steps": 10}, total_timesteps=10_000)
        solver = BiERLNPM(interval=2, init_points=2, bo_points=0, lookahead_repeats=2, charge_budget=charge)
        stop = _stop_after(4)
        with pytest.raises(StopRun) as run:
            solver.run(env, seed=0, callback=stop)
        logs[charge] = run.value.log
        assert env.unwrapped.learner.charged_env_steps == (solver.meta_env_steps if charge else 0)
        env.close()
    plain, charged = logs[False], logs[True]
    assert [r.meta_env_steps for r in plain.records] == [r.meta_env_steps for r in charged.records]
    assert plain.records[-1].meta_env_steps > plain.records[0].meta_env_steps > 0  # two meta-updates in four steps
    assert [r.hyperparameters for r in plain.records] == [r.hyperparameters for r in charged.records]  # the same lifetime
    diff = charged.timesteps - plain.timesteps
    np.testing.assert_array_equal(diff, [r.meta_env_steps for r in charged.records])


def _stop_after(steps: int):
    def callback(record):
        if record.step + 1 == steps:
            raise StopRun

    return callback


@pytest.mark.parametrize(
    "name, kwargs, stop",
    [
        ("bierl-pm", {"meta_pairs": 1, "pretrained": None}, 3),
        ("bierl-npm", {"init_points": 2, "bo_points": 1}, 3),
        ("bierl-pm", {"meta_pairs": 1, "pretrained": None, "init": {"sigma": 0.08}}, 1),  # stopped while on init
    ],
)
def test_solver_restored_mid_run_makes_the_same_next_decisions(tmp_path, name, kwargs, stop):
    from solvers import checkpoint

    def fresh():
        return make_solver(name, interval=2, **kwargs), _env(hyper_steps=6)

    solver, env = fresh()
    whole = solver.run(env, seed=0)
    env.close()
    solver, env = fresh()
    with pytest.raises(StopRun) as stopped:
        solver.run(env, seed=0, callback=_stop_after(stop))
    path = checkpoint.save(tmp_path / "run.pt", solver_name=name, solver=solver, env=env, log=stopped.value.log)
    env.close()
    solver, env = fresh()  # a new process, say: nothing carried over but the file
    solver.init = {}  # the start is the lifetime's, so it comes back from the file
    state = checkpoint.load(path, solver_name=name, env_id=ES_ID)
    obs, log = checkpoint.restore(state, solver, env, str(path))
    resumed = solver.resume(env, obs, log)
    env.close()
    assert len(resumed) == len(whole) > stop
    assert [r.hyperparameters for r in resumed.records] == [r.hyperparameters for r in whole.records]
    assert [r.meta_env_steps for r in resumed.records] == [r.meta_env_steps for r in whole.records]
    assert [r.episode_returns for r in resumed.records] == [r.episode_returns for r in whole.records]


@pytest.mark.parametrize(
    "name, kwargs", [("bierl-pm", {"meta_pairs": 1, "pretrained": None}), ("bierl-npm", {"init_points": 2, "bo_points": 0})]
)
def test_a_lifetime_started_at_init_holds_it_until_the_first_meta_update(name, kwargs):
    env = _env(hyper_steps=5)
    solver = make_solver(name, interval=2, init={"sigma": 0.08}, **kwargs)
    log = solver.run(env, seed=0)
    env.close()
    sigmas = [r.hyperparameters["sigma"] for r in log.records]
    assert sigmas[:2] == pytest.approx([0.08, 0.08])
    assert [r.meta_env_steps for r in log.records[:2]] == [0, 0]  # no meta-update before step `interval`
    assert log.records[2].meta_env_steps > 0
    assert sigmas[2] != pytest.approx(0.08)


def test_init_naming_an_uncontrolled_hyperparameter_is_refused_by_name():
    env = _env()
    with pytest.raises(ValueError, match=r"init names \['lr'\].*controls \['sigma'\]"):
        BiERLNPM(init={"lr": 0.1}).run(env, seed=0)
    with pytest.raises(ValueError, match=r"init sigma=0.5 is outside its range \[0.02, 0.08\]"):
        BiERLNPM(init={"sigma": 0.5}).run(env, seed=0)
    env.close()
