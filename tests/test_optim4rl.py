"""Optim4RL's learned optimizer: its maths (golden values), its state, its files and its selection by name."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from _helpers import assert_params_equal, make_tiny, params_of

import agents
from agents.a2c import A2CConfig, A2CLearner
from agents.optim import RULE_FACTORIES, get_update_rule, register_update_rule
from solvers.optim4rl import DEFAULT_WEIGHTS, Optim4RL, Optim4RLConfig, init_weights, load, save, weight_shapes

A2C_CARTPOLE = "HyperRL/A2C-CartPole-v0"


def random_weights(config: Optim4RLConfig, seed: int = 1, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Weights with every entry non-zero (the shipped init zeroes the heads' last layers)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.rand(s, generator=gen, dtype=torch.float64) - 0.5).to(dtype) for k, s in weight_shapes(config).items()}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_fresh_optimizer_steps_like_sign_sgd():
    rule = Optim4RL()
    params = {"w": torch.randn(3, 4), "b": torch.randn(5)}
    grads = {"w": torch.randn(3, 4), "b": torch.tensor([1e-6, -3.0, 0.0, 2.0, -1e-9])}
    new, _ = rule.update(grads, rule.init(params), params, {"lr": 0.1})
    for k in params:
        expected = params[k] - 0.1 * torch.sign(grads[k]) / math.sqrt(1 + 1e-8)
        torch.testing.assert_close(new[k], expected, rtol=0, atol=1e-7)


def hand_set_rule() -> Optim4RL:
    """Hidden size 1, linear heads: every weight is a number written here."""
    config = Optim4RLConfig(hidden=1)
    t = torch.tensor
    weights = {
        "gru1.weight_ih": t([[0.5], [-0.3], [0.8]]),
        "gru1.weight_hh": t([[0.2], [0.4], [-0.6]]),
        "gru1.bias_ih": t([0.1, -0.2, 0.05]),
        "gru1.bias_hh": t([-0.1, 0.3, 0.2]),
        "head1.0.weight": t([[1.5]]),
        "head1.0.bias": t([-0.5]),
        "gru2.weight_ih": t([[-0.4], [0.6], [1.2]]),
        "gru2.weight_hh": t([[0.3], [-0.5], [0.7]]),
        "gru2.bias_ih": t([0.0, 0.1, -0.3]),
        "gru2.bias_hh": t([0.2, -0.1, 0.4]),
        "head2.0.weight": t([[-2.0]]),
        "head2.0.bias": t([0.25]),
    }
    return Optim4RL(config=config, weights=weights)


def hand_gru(x: float, h: float, wi, wh, bi, bh) -> float:
    r = sigmoid(wi[0] * x + bi[0] + wh[0] * h + bh[0])
    z = sigmoid(wi[1] * x + bi[1] + wh[1] * h + bh[1])
    n = math.tanh(wi[2] * x + bi[2] + r * (wh[2] * h + bh[2]))
    return (1 - z) * n + z * h


def test_two_updates_of_a_hand_set_optimizer_match_a_hand_computation():
    rule = hand_set_rule()
    w = {k: v.flatten().tolist() for k, v in rule.weights.items()}
    lr, theta, h1, h2 = 0.01, 2.0, 0.0, 0.0
    state, params = rule.init({"p": torch.tensor([theta])}), {"p": torch.tensor([theta])}
    for g in (0.7, -0.2):  # the second step reads the hidden state the first one left
        h1 = hand_gru(g, h1, w["gru1.weight_ih"], w["gru1.weight_hh"], w["gru1.bias_ih"], w["gru1.bias_hh"])
        h2 = hand_gru(g * g, h2, w["gru2.weight_ih"], w["gru2.weight_hh"], w["gru2.bias_ih"], w["gru2.bias_hh"])
        o1 = w["head1.0.weight"][0] * h1 + w["head1.0.bias"][0]
        o2 = w["head2.0.weight"][0] * h2 + w["head2.0.bias"][0]
        theta -= lr * math.copysign(1.0, g) * math.exp(o1) / math.sqrt(math.exp(o2) + 1e-8)
        params, state = rule.update({"p": torch.tensor([g])}, state, params, {"lr": lr})
        assert params["p"].item() == pytest.approx(theta, rel=1e-6)
        assert state["h1"]["p"].item() == pytest.approx(h1, rel=1e-6)
        assert state["h2"]["p"].item() == pytest.approx(h2, rel=1e-6)


def test_gru_and_mlp_heads_agree_with_torch_modules():
    config = Optim4RLConfig(head=(16, 16))
    rule = Optim4RL(config=config, weights=random_weights(config))
    w = rule.weights
    cells = [torch.nn.GRUCell(1, 8) for _ in (1, 2)]
    nn = torch.nn
    heads = [nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)) for _ in (1, 2)]
    with torch.no_grad():
        for i, (cell, mlp) in enumerate(zip(cells, heads), start=1):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(w[f"gru{i}.{name}"])
            for k, layer in enumerate(m for m in mlp if isinstance(m, torch.nn.Linear)):
                layer.weight.copy_(w[f"head{i}.{k}.weight"])
                layer.bias.copy_(w[f"head{i}.{k}.bias"])
    g = torch.randn(6) * 0.3
    h = [torch.randn(6, 8) * 0.5, torch.randn(6, 8) * 0.5]
    params = {"p": torch.zeros(2, 3)}
    state = {"step": 3, "h1": {"p": h[0].view(2, 3, 8)}, "h2": {"p": h[1].view(2, 3, 8)}}
    new, out = rule.update({"p": g.view(2, 3)}, state, params, {"lr": 1.0})
    with torch.no_grad():
        h1, h2 = cells[0](g[:, None], h[0]), cells[1](g[:, None].square(), h[1])
        expected = -torch.sign(g) * heads[0](h1).squeeze(1).exp() / (heads[1](h2).squeeze(1).exp() + 1e-8).sqrt()
    torch.testing.assert_close(out["h1"]["p"].reshape(6, 8), h1)
    torch.testing.assert_close(out["h2"]["p"].reshape(6, 8), h2)
    torch.testing.assert_close(new["p"].flatten(), expected)
    assert out["step"] == 4


def test_element_clipping_bounds_what_the_gru_reads():
    config = Optim4RLConfig(clip_inputs=True)
    clipped = Optim4RL(config=config, weights=random_weights(config))
    free = Optim4RL(config=Optim4RLConfig(), weights=clipped.weights)
    params = {"p": torch.zeros(4)}
    grads = {"p": torch.tensor([1.0, 5.0, -1.0, -40.0])}
    for rule, same in ((clipped, True), (free, False)):
        new, state = rule.update(grads, rule.init(params), params, {"lr": 1.0})
        assert torch.equal(new["p"][0], new["p"][1]) is same  # 5 reads as 1 only when clipped
        assert torch.equal(state["h1"]["p"][2], state["h1"]["p"][3]) is same
        assert torch.sign(new["p"]).tolist() == [-1.0, -1.0, 1.0, 1.0]  # the sign is the raw gradient's


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the compiled kernel and the torch maths
def test_input_scale_is_what_the_grus_read_and_leaves_the_sign(dtype):
    config = Optim4RLConfig(input_scale=1e4, clip_inputs=True)
    weights = {k: v.to(dtype) for k, v in random_weights(config).items()}
    scaled, plain = Optim4RL(config=config, weights=weights), Optim4RL(config=Optim4RLConfig(clip_inputs=True), weights=weights)
    g = torch.tensor([3e-5, -2e-5, 5e-4, -1e-6, 0.0], dtype=dtype)
    h = torch.zeros(5, 8, dtype=dtype)
    step, h1, h2 = scaled.flat_step(g, h, h)
    step_ref, h1_ref, h2_ref = plain.flat_step(g * 1e4, h, h)  # 5e-4 x 1e4 = 5 reads as 1 (clipped)
    torch.testing.assert_close((step, h1, h2), (step_ref, h1_ref, h2_ref))
    assert torch.sign(step).tolist() == [-1.0, 1.0, -1.0, 1.0, 0.0]
    assert not torch.allclose(h1[0], plain.flat_step(g, h, h)[1][0])  # unscaled, 3e-5 barely moves the state


def test_gradient_inputs_are_stop_gradient_but_weights_are_not():
    rule = Optim4RL(weights=random_weights(Optim4RLConfig()))
    for v in rule.weights.values():
        v.requires_grad_()
    params = {"p": torch.zeros(5, requires_grad=True)}
    grads = {"p": torch.randn(5, requires_grad=True)}
    new, _ = rule.update(grads, rule.init(params), params, {"lr": 0.1})
    d_grads, d_head = torch.autograd.grad(new["p"].sum(), [grads["p"], rule.weights["head1.0.bias"]], allow_unused=True)
    assert d_grads is None
    assert d_head is not None and d_head.abs().sum() > 0


def test_hidden_state_starts_at_zero_and_resets_with_the_agent():
    env = make_tiny(A2C_CARTPOLE, config={"update_rule": Optim4RL(weights=random_weights(Optim4RLConfig()))})
    env.reset(seed=0)
    learner = env.unwrapped.learner
    assert all(h.abs().sum() == 0 for key in ("h1", "h2") for h in learner.opt_state[key].values())
    env.step(env.action_space.sample())
    assert all(h.abs().sum() > 0 for h in learner.opt_state["h1"].values())
    assert set(learner.opt_state["h1"]) == set(learner.params)
    env.reset(seed=1)
    fresh = env.unwrapped.learner.opt_state
    assert fresh["step"] == 0 and all(h.abs().sum() == 0 for key in ("h1", "h2") for h in fresh[key].values())


def test_snapshot_restore_holds_the_optimizer_state():
    env = make_tiny(A2C_CARTPOLE, hyper_steps=8, config={"update_rule": Optim4RL(weights=random_weights(Optim4RLConfig()))})
    env.reset(seed=0)
    acts = [env.action_space.sample() for _ in range(4)]
    env.step(acts[0])
    snap = env.unwrapped.snapshot()
    for a in acts[1:]:
        env.step(a)
    first, first_state = params_of(env), env.unwrapped.learner.opt_state
    env.unwrapped.restore(snap)
    for a in acts[1:]:
        env.step(a)
    assert_params_equal(params_of(env), first)
    second_state = env.unwrapped.learner.opt_state
    assert second_state["step"] == first_state["step"]
    for key in ("h1", "h2"):
        assert_params_equal(second_state[key], first_state[key])


def test_selected_by_name_as_the_shipped_or_a_saved_optimizer(tmp_path):
    shipped = make_tiny(A2C_CARTPOLE, config={"update_rule": "optim4rl"})
    shipped.reset(seed=0)
    rule = shipped.unwrapped.learner.update_rule
    assert isinstance(rule, Optim4RL)
    assert_params_equal(rule.weights, load(DEFAULT_WEIGHTS).weights)
    mine = Optim4RL(config=Optim4RLConfig(head=(16, 16)), weights=random_weights(Optim4RLConfig(head=(16, 16))))
    path = save(mine, tmp_path / "o.pt")
    env = make_tiny(A2C_CARTPOLE, config={"update_rule": f"optim4rl:{path}"})
    env.reset(seed=0)
    loaded = env.unwrapped.learner.update_rule
    assert loaded.config == mine.config
    assert_params_equal(loaded.weights, mine.weights)
    env.step(env.action_space.sample())


def test_bad_optimizer_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"optimizer file .*missing\.pt does not exist"):
        get_update_rule(f"optim4rl:{tmp_path / 'missing.pt'}")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(ValueError, match=r"optimizer file .*garbage\.pt is not a readable torch state_dict"):
        get_update_rule(f"optim4rl:{garbage}")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {}}, foreign)
    with pytest.raises(ValueError, match=r"optimizer file .*foreign\.pt is not an Optim4RL optimizer: format None"):
        get_update_rule(f"optim4rl:{foreign}")
    state = Optim4RL().state_dict()
    state["config"]["hidden"] = 4  # the weights are for hidden 8
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(
        ValueError,
        match=r"mismatch\.pt: weight gru1\.weight_ih is \(24, 1\), expected shape \(12, 1\) for Optim4RLConfig\(hidden=4",
    ):
        load(tmp_path / "mismatch.pt")
    state = Optim4RL().state_dict()
    del state["weights"]["head2.0.bias"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short\.pt: weights do not fit .*missing \['head2\.0\.bias'\]"):
        load(tmp_path / "short.pt")
    state = Optim4RL().state_dict()
    state["config"]["width"] = 3
    torch.save(state, tmp_path / "config.pt")
    with pytest.raises(ValueError, match=r"config\.pt: config does not fit Optim4RLConfig: .*width"):
        load(tmp_path / "config.pt")


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="Optim4RLConfig.hidden must be >= 1"):
        Optim4RLConfig(hidden=0)
    with pytest.raises(ValueError, match="Optim4RLConfig.head widths must be >= 1"):
        Optim4RLConfig(head=(16, 0))
    with pytest.raises(ValueError, match="Optim4RLConfig.input_scale must be a finite number > 0, got 0"):
        Optim4RLConfig(input_scale=0)
    with pytest.raises(ValueError, match="Optim4RL.weights: weight gru1.bias_ih is"):
        Optim4RL(weights={**init_weights(Optim4RLConfig()), "gru1.bias_ih": torch.zeros(3)})


def test_rules_registered_from_outside_are_found_by_name():
    seen = []

    def factory(arg: str) -> Optim4RL:
        seen.append(arg)
        return Optim4RL()

    register_update_rule("test-learned", factory)
    try:
        assert isinstance(get_update_rule("test-learned:abc"), Optim4RL)
        learner = A2CLearner(A2CConfig(num_envs=1, num_steps=2, hidden=(4,), update_rule="test-learned"), seed=0)
        assert isinstance(learner.update_rule, Optim4RL)
        assert seen[0] == "abc" and "" in seen
    finally:
        del RULE_FACTORIES["test-learned"]
    with pytest.raises(ValueError, match="not a stock rule; got 'adam'"):
        register_update_rule("adam", factory)
    with pytest.raises(ValueError, match=r"got 'lamb' \(learned rules: \['optim4rl'\]"):
        get_update_rule("lamb")


def test_agents_find_the_learned_rule_without_importing_solvers():
    """The registry names it by an import string; no module of agents/ imports solvers/ (or hyperenvs/)."""
    assert RULE_FACTORIES["optim4rl"] == "solvers.optim4rl.files:from_spec"
    for path in Path(agents.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("solvers", "hyperenvs") for n in names), f"{path.name} imports {names}"


def test_a_ppo_learner_trains_with_it_too():
    rule = Optim4RL(weights=random_weights(Optim4RLConfig()))
    env = make_tiny("HyperRL/PPO-CartPole-v0", config={"update_rule": rule})
    env.reset(seed=0)
    before = params_of(env)
    env.step(env.action_space.sample())
    learner = env.unwrapped.learner
    assert learner.opt_state["step"] >= 1 and learner.opt_state["h1"].keys() == learner.params.keys()
    assert all(not torch.equal(before[k], v.detach()) for k, v in learner.params.items())
