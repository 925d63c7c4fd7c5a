"""`hyperrl list` and the README's tables derive from the declarations; `hyperrl demo` uses the declared bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hyperenvs
from solvers import cli, listing
from solvers.base import RunLog

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_are_what_the_registry_derives():
    text = README.read_text()
    assert listing.readme_with_tables(text) == text, "README tables drifted: run `hyperrl list --write-readme README.md`"


def test_write_readme_replaces_only_the_generated_blocks(tmp_path):
    stale = (
        "intro\n<!-- hyperrl list: ids -->\nold\n<!-- end -->\n"
        "middle\n<!-- hyperrl list: hyperparameters -->\n<!-- end -->\ntail\n"
    )
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert cli.main(["list", "--write-readme", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("intro\n<!-- hyperrl list: ids -->\n| id | inner task |") and text.endswith("<!-- end -->\ntail\n")
    assert "old" not in text and "\nmiddle\n" in text
    assert text.count("| HyperRL/") == len(hyperenvs.REGISTRY)
    with pytest.raises(ValueError, match="README has no '<!-- hyperrl list: ids -->' marker"):
        listing.readme_with_tables("no markers")


def test_list_rows_follow_the_declaration_and_the_rows_overrides():
    (row,) = listing.id_rows("A2C-CartPole-v0")
    assert row[:4] == ("HyperRL/A2C-CartPole-v0", "CartPole-v1", "100,000", "lr [1e-05, 0.01 log] = 0.0007")
    assert row[4] == "lr 0.00028 0.00038 0.000516 0.0007 0.00095 0.00129 0.00175"
    (pong,) = listing.id_rows("PPO-Pong")
    assert "minibatch_size [64, 2048 log] = 256" in pong[3] and "minibatch_size 128 256 512" in pong[4]
    rows = {(r[0], r[1]): r for r in listing.hparam_rows(None)}
    assert rows["PPO", "lr"][2:5] == ("[1e-05, 0.01, log]", "0.0003", "x 0.5 1 2")
    assert rows["PPO", "minibatch_size"][2] == "[16, 1024, log, integer]"
    assert ("CMAES", "sigma") in rows and ("CMAES", "lr") not in rows  # CMA-ES exposes sigma only


def test_demo_runs_discrete_solvers_on_the_declared_bins(tmp_path):
    out = tmp_path / "demo"
    argv = ["demo", "--solvers", "rnd", "--seeds", "1", "--total-timesteps", "800", "--num-envs", "2", "--out", str(out)]
    assert cli.main([*argv, "--config", "num_steps=8"]) == 0
    grid = 7e-4 * 2.5 ** (np.arange(-3, 4) / 3)  # A2C-CartPole's declared lr bins, 0.4 .. 2.5 of 7e-4
    (log,) = [RunLog.load(p) for p in (out / "runs").glob("*.jsonl")]
    chosen = [r.hyperparameters["lr"] for r in log.records]
    assert len(chosen) == 10 and all(np.isclose(grid, lr, rtol=1e-12).any() for lr in chosen)
    assert "default bins: lr 0.00028 0.00038 0.000516 0.0007 0.00095 0.00129 0.00175." in (out / "report.md").read_text()
