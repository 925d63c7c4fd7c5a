"""The Optim4RL command line: ``hyperrl optim4rl-train`` and ``hyperrl run optim4rl ID --optimizer FILE``."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from solvers.cli import main
from solvers.optim4rl import load

A2C_CARTPOLE = "HyperRL/A2C-CartPole-v0"
TINY_RUN = ["--num-envs", "2", "--config", "num_steps=8", "--iterations-per-step", "1", "--total-timesteps", "48"]


def test_every_public_name_resolves():
    package = importlib.import_module("solvers.optim4rl")
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018


def test_train_writes_a_loadable_optimizer_and_a_log(tmp_path):
    out, log = tmp_path / "o.pt", tmp_path / "meta.jsonl"
    argv = ["optim4rl-train", "--units", "2", "--iterations", "2", "--reset-interval", "2", "--hidden", "4", "--head", "3"]
    assert main([*argv, "--out", str(out), "--log", str(log), "--no-pipeline"]) == 0
    rule = load(out)
    assert rule.config.head == (3,)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["grad_norm"] > 0 for r in rows)
    assert [r["resets"] for r in rows] == [[0, 1], []]  # no pipeline: every unit on the same schedule


def test_run_trains_with_the_given_optimizer_file(tmp_path):
    from solvers.optim4rl import Optim4RL, save

    path = save(Optim4RL(), tmp_path / "o.pt")
    assert main(["run", "optim4rl", A2C_CARTPOLE, *TINY_RUN, "--optimizer", str(path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "optim4rl-seed0.jsonl").is_file()
    assert main(["run", "static", A2C_CARTPOLE, *TINY_RUN, "--optimizer", str(path), "--out", str(tmp_path)]) == 2
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    assert main(["run", "optim4rl", A2C_CARTPOLE, *TINY_RUN, "--config", "update_rule=adam", "--out", str(tmp_path)]) == 2
    bad = str(tmp_path / "bad.pt")
    assert main(["run", "optim4rl", A2C_CARTPOLE, *TINY_RUN, "--optimizer", bad, "--out", str(tmp_path)]) == 2


def test_resume_refuses_a_checkpoint_of_other_options(tmp_path, capsys):
    argv = ["optim4rl-train", "--units", "2", "--iterations", "1", "--hidden", "4", "--out", str(tmp_path / "o.pt")]
    assert main(argv) == 0
    checkpoint = tmp_path / "o.pt.checkpoint.pt"
    assert checkpoint.is_file()
    assert main([*argv, "--resume", str(checkpoint), "--meta-lr", "0.5"]) == 2
    assert "was written by a run with other options" in capsys.readouterr().out
    assert main([*argv, "--resume", str(checkpoint)]) == 0  # the same options: it was done already


def test_train_takes_the_thread_count_that_decides_its_numbers(tmp_path, capsys):
    """``--threads`` (default 1, as ``run``) pins torch's threads, which the compiled optimizer follows; a
    thread count below 1 is refused by name."""
    from solvers.cli import build_parser

    argv = ["optim4rl-train", "--task", "catch", "--out", str(tmp_path)]
    assert build_parser().parse_args(argv).threads == 1
    assert build_parser().parse_args([*argv, "--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--threads", "0"])
    assert "--threads: must be >= 1, got 0" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        tiny = ["optim4rl-train", "--units", "2", "--iterations", "1", "--reset-interval", "2", "--hidden", "4"]
        assert main([*tiny, "--out", str(tmp_path / "o.pt"), "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
