"""``hyperrl sweep``: bad input refused before any run, resumable, and the report independent of backend and interruptions."""

from __future__ import annotations

import socket

import pytest

from solvers import raycluster, sweep
from solvers.cli import build_parser, main

A2C = "HyperRL/A2C-CartPole-v0"
TINY = ["--total-timesteps", "64", "--iterations-per-step", "1", "--num-envs", "2", "--config", "num_steps=8"]
"""four hyper-steps of 16 env steps"""


def _config(out, *extra: str, solvers: str = "static,random", ids: str = A2C) -> sweep.SweepConfig:
    args = build_parser().parse_args(["sweep", solvers, ids, "--seeds", "2", "--out", str(out), *TINY, *extra])
    return sweep.config_from(args)


@pytest.mark.parametrize(
    ("solvers", "ids", "message"),
    [
        ("static,nope", A2C, "unknown solver(s) ['nope']"),
        ("static", f"{A2C},HyperRL/Nope-v0", "unknown id(s) ['HyperRL/Nope-v0']"),
        ("static,pbt", A2C, "['pbt'] train a population"),
    ],
)
def test_bad_solver_or_id_is_refused_before_any_run(tmp_path, capsys, solvers, ids, message):
    assert main(["sweep", solvers, ids, "--out", str(tmp_path / "out"), *TINY]) == 2
    assert message in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_unreachable_address_and_bad_seeds_are_refused(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["sweep", "static", A2C, "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "out"), *TINY]) == 2
    assert f"--address 127.0.0.1:{port}: no Ray head node answers" in capsys.readouterr().out
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        sweep.SweepConfig(solvers=("static",), env_ids=(A2C,), seeds=0)
    with pytest.raises(ValueError, match="cannot go with backend 'process'"):
        sweep.SweepConfig(solvers=("static",), env_ids=(A2C,), backend="process", address="auto")
    assert not (tmp_path / "out").exists()


def test_without_ray_the_sweep_runs_on_a_process_pool(monkeypatch, tmp_path):
    monkeypatch.setattr(raycluster, "available", lambda: False)
    assert sweep._backend(_config(tmp_path)) is sweep._on_pool


class _Interrupt(Exception):
    pass


def test_interrupted_sweep_resumes_the_missing_runs_and_gives_the_same_report(ray_local, tmp_path):
    whole = sweep.run_sweep(_config(tmp_path / "whole", "--backend", "ray", "--workers", "2"))
    assert len(whole.ran) == 4 and not whole.skipped

    finished = []

    def stop_after_two(job: sweep.Job) -> None:
        finished.append(job)
        if len(finished) == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        sweep.run_sweep(_config(tmp_path / "parts", "--backend", "serial"), on_done=stop_after_two)
    assert not (tmp_path / "parts" / "report.md").exists()
    resumed = sweep.run_sweep(_config(tmp_path / "parts", "--backend", "process", "--workers", "2"))
    assert set(resumed.skipped) == set(finished)
    assert set(resumed.ran) == set(sweep.jobs_of(_config(tmp_path))) - set(finished)
    for name in ("report.json", "report.md"):
        assert (tmp_path / "parts" / name).read_text() == (tmp_path / "whole" / name).read_text()
    again = sweep.run_sweep(_config(tmp_path / "parts", "--backend", "serial"))
    assert again.ran == () and len(again.skipped) == 4


def test_report_has_iqm_intervals_and_probability_of_improvement(tmp_path):
    result = sweep.run_sweep(_config(tmp_path, "--backend", "serial"))
    text = (tmp_path / "report.md").read_text()
    assert "| HyperRL/A2C-CartPole-v0 | static | 2 |" in text and "| static | random |" in text
    assert {p.name for p in result.report} >= {"HyperRL_A2C-CartPole-v0-returns.png", "HyperRL_A2C-CartPole-v0-schedule.png"}
    assert len(list((tmp_path / "runs" / "HyperRL_A2C-CartPole-v0").glob("*.jsonl"))) == 4


def test_probability_of_improvement_counts_pairs_and_ties_count_half():
    import numpy as np

    from solvers.aggregate import probability_of_improvement

    p, low, high = probability_of_improvement(np.array([[1.0], [2.0], [3.0]]), np.array([[0.0], [0.5], [2.5]]), reps=200)
    assert p == pytest.approx(7 / 9) and low <= p <= high  # 7 of the 9 (x, y) pairs have x > y
    assert probability_of_improvement(np.array([[1.0], [2.0]]), np.array([[2.0], [1.0]]), reps=50)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 1)))


def test_without_ray_everything_else_works_and_pbt_says_what_to_install(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as when the extra is not installed
    assert not raycluster.available()
    assert main(["run", "pbt", A2C, "--population", "2", "--out", str(tmp_path / "pbt"), *TINY]) == 2
    printed = capsys.readouterr().out
    assert "the pbt solver needs Ray: pip install 'hyperrl[distributed]'" in printed
    assert "env steps" not in printed  # refused before any run started
    assert main(["sweep", "static", A2C, "--seeds", "1", "--out", str(tmp_path / "sw"), "--backend", "serial", *TINY]) == 0
    assert (tmp_path / "sw" / "report.md").exists()
