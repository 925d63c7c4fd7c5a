"""``hyperrl lpg-train`` (progress, rule file, --resume) and ``hyperrl run lpg ID --rule FILE``."""

from __future__ import annotations

import json

import torch

from solvers.cli import main

TRAIN = [
    "lpg-train",
    "--envs",
    "chain_short,lpg_sparse",
    "--lifetimes",
    "2",
    "--envs-per-lifetime",
    "2",
    "--hidden",
    "4",
    "--lifetime-updates",
    "10",
    "--unroll",
    "2",
    "--checkpoint-every",
    "1",
]


def _fails(args, capsys, message: str) -> None:
    assert main(args) != 0
    assert message in " ".join(capsys.readouterr().out.split())


def test_lpg_train_writes_a_rule_and_resume_equals_uninterrupted(tmp_path, capsys):
    assert main([*TRAIN, "--iterations", "3", "--out", str(tmp_path / "a")]) == 0
    assert main([*TRAIN, "--iterations", "2", "--out", str(tmp_path / "b")]) == 0
    assert main([*TRAIN, "--iterations", "3", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = torch.load(tmp_path / "a" / "rule.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "rule.pt", weights_only=True)
    assert a["format"] == "lpg-v1" and a["config"]["hidden"] == 4
    for k in a["weights"]:
        torch.testing.assert_close(b["weights"][k], a["weights"][k], rtol=0, atol=0)
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3] and set(rows[0]["envs"]) == {"chain_short", "lpg_sparse"}
    _fails([*TRAIN, "--seed", "9", "--iterations", "4", "--out", str(tmp_path / "b"), "--resume"], capsys, "other options")
    _fails([*TRAIN, "--iterations", "4", "--out", str(tmp_path / "none"), "--resume"], capsys, "checkpoint.pt does not exist")
    (tmp_path / "b" / "checkpoint.pt").write_bytes(b"junk")
    _fails([*TRAIN, "--iterations", "4", "--out", str(tmp_path / "b"), "--resume"], capsys, "is not a readable torch state_dict")


def test_run_lpg_with_a_rule_file_and_a_bad_one(tmp_path, capsys):
    assert main([*TRAIN, "--iterations", "1", "--out", str(tmp_path / "r")]) == 0
    rule = str(tmp_path / "r" / "rule.pt")
    out = tmp_path / "runs"
    args = ["run", "lpg", "HyperRL/A2C-CartPole-v0", "--rule", rule, "--total-timesteps", "800", "--out", str(out)]
    assert main(args) == 0
    assert (out / "lpg-seed0.jsonl").is_file()
    (tmp_path / "bad.pt").write_bytes(b"junk")
    _fails([*args[:4], str(tmp_path / "bad.pt"), *args[5:]], capsys, "bad.pt is not a readable torch state_dict")
    _fails(["run", "static", *args[2:]], capsys, "--rule is for the lpg solver")


def test_rule_snapshots_are_the_rule_of_that_iteration(tmp_path):
    assert main([*TRAIN, "--iterations", "3", "--rule-every", "2", "--out", str(tmp_path / "long")]) == 0
    assert main([*TRAIN, "--iterations", "2", "--rule-every", "0", "--out", str(tmp_path / "short")]) == 0
    assert sorted(p.name for p in (tmp_path / "long" / "rules").iterdir()) == ["rule_00002.pt"]
    assert not (tmp_path / "short" / "rules").exists()
    snapshot = torch.load(tmp_path / "long" / "rules" / "rule_00002.pt", weights_only=True)
    stopped = torch.load(tmp_path / "short" / "rule.pt", weights_only=True)
    final = torch.load(tmp_path / "long" / "rule.pt", weights_only=True)
    assert snapshot["hparams"] == stopped["hparams"]
    for k in snapshot["weights"]:
        torch.testing.assert_close(snapshot["weights"][k], stopped["weights"][k], rtol=0, atol=0)
    assert any(not torch.equal(snapshot["weights"][k], final["weights"][k]) for k in final["weights"])
