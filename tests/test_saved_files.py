"""Files of saved tensors are written whole or not at all: an interrupted write keeps the previous file."""

from __future__ import annotations

import pytest
import torch

from solvers.checkpoint import read_state, write_state
from solvers.lpg.files import load_rule, save_rule
from solvers.lpg.network import LPGConfig, LPGNetwork


def test_write_state_round_trips_through_weights_only_loading(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "name": "x", "nested": [torch.ones(2)]}
    path = write_state(state, tmp_path / "deep" / "state.pt")
    back = read_state(path, "state")
    assert torch.equal(back["w"], state["w"]) and back["step"] == 7 and back["name"] == "x"
    assert torch.equal(back["nested"][0], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]  # nothing left beside it


def test_a_write_that_fails_midway_keeps_the_previous_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = write_state({"version": torch.tensor(1)}, tmp_path / "checkpoint.pt")

    def dies_halfway(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half a zip")  # what a kill or a full disk leaves behind
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        write_state({"version": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(read_state(path, "checkpoint")["version"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_saving_a_rule_over_an_existing_one_replaces_it_whole(tmp_path):
    config = LPGConfig(hidden=8, embed=4, m=3)
    net = LPGNetwork(config)
    first = save_rule(tmp_path / "rule.pt", config, net.init(torch.Generator().manual_seed(0)), {"kl_coef": 0.5})
    second_weights = net.init(torch.Generator().manual_seed(1))
    save_rule(first, config, second_weights, {"kl_coef": 1.0})
    _, weights, hparams = load_rule(first)
    assert hparams == {"kl_coef": 1.0}
    assert all(torch.equal(weights[k], v.float()) for k, v in second_weights.items())
