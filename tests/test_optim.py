"""Functional update rules: golden values against torch.optim, purity, learning-rate scaling."""

from __future__ import annotations

import pytest
import torch

from agents.optim import (
    SGD,
    UPDATE_RULES,
    Adam,
    FlatSteps,
    RMSProp,
    UpdateRule,
    adam,
    adam_init,
    clip_grad_norm,
    get_update_rule,
    rmsprop,
    rmsprop_init,
    sgd,
    sgd_init,
)


def make_params(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 4, generator=gen), "b": torch.randn(4, generator=gen)}


def make_grads(step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return {"w": torch.randn(3, 4, generator=gen), "b": torch.randn(4, generator=gen)}


def run_functional(update, init, steps: int, **hp) -> dict[str, torch.Tensor]:
    params = make_params()
    state = init(params)
    for step in range(steps):
        params, state = update(params, make_grads(step), state, **hp)
    assert state["step"] == steps
    return params


def run_torch(opt_cls, steps: int, **hp) -> dict[str, torch.Tensor]:
    params = {k: v.clone().requires_grad_() for k, v in make_params().items()}
    opt = opt_cls(list(params.values()), foreach=False, **hp)
    for step in range(steps):
        for (_name, p), g in zip(params.items(), make_grads(step).values()):
            p.grad = g.clone()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


CASES = [
    ("sgd", sgd, sgd_init, torch.optim.SGD, {"lr": 0.1}, {"lr": 0.1}),
    ("adam", adam, adam_init, torch.optim.Adam, {"lr": 1e-3}, {"lr": 1e-3}),
    (
        "adam-betas",
        adam,
        adam_init,
        torch.optim.Adam,
        {"lr": 3e-2, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4},
        {"lr": 3e-2, "betas": (0.5, 0.9), "eps": 1e-4},
    ),
    ("rmsprop", rmsprop, rmsprop_init, torch.optim.RMSprop, {"lr": 7e-4}, {"lr": 7e-4, "alpha": 0.99, "eps": 1e-5}),
    (
        "rmsprop-alpha",
        rmsprop,
        rmsprop_init,
        torch.optim.RMSprop,
        {"lr": 1e-2, "alpha": 0.9},
        {"lr": 1e-2, "alpha": 0.9, "eps": 1e-5},
    ),
]


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize(("name", "update", "init", "opt_cls", "hp", "torch_hp"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch_optim(name, update, init, opt_cls, hp, torch_hp, steps):
    ours = run_functional(update, init, steps, **hp)
    ref = run_torch(opt_cls, steps, **torch_hp)
    for k in ours:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-6, atol=1e-7)
    # and it moved: a no-op would match only at steps=0
    assert not torch.equal(ours["w"], make_params()["w"])


def test_sgd_one_step_golden():
    params = {"x": torch.tensor([1.0, -2.0])}
    new, state = sgd(params, {"x": torch.tensor([0.5, 4.0])}, sgd_init(params), lr=0.25)
    # 1 - 0.25 * 0.5 = 0.875; -2 - 0.25 * 4 = -3
    assert new["x"].tolist() == [0.875, -3.0]
    assert state == {"step": 1}


def test_adam_first_step_golden():
    params = {"x": torch.tensor([1.0, 1.0], dtype=torch.float64)}
    grads = {"x": torch.tensor([2.0, -0.001], dtype=torch.float64)}
    new, state = adam(params, grads, adam_init(params), lr=0.1, eps=1e-8)
    # m_hat = g, v_hat = g^2 on the first step -> step = lr * g / (|g| + eps) ~ lr * sign(g)
    expected = [1.0 - 0.1 * 2.0 / (2.0 + 1e-8), 1.0 + 0.1 * 0.001 / (0.001 + 1e-8)]
    torch.testing.assert_close(new["x"], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(state["exp_avg"]["x"], 0.1 * grads["x"])
    torch.testing.assert_close(state["exp_avg_sq"]["x"], 0.001 * grads["x"] ** 2)


def test_rmsprop_first_step_golden():
    params = {"x": torch.tensor([0.0], dtype=torch.float64)}
    new, state = rmsprop(params, {"x": torch.tensor([3.0], dtype=torch.float64)}, rmsprop_init(params), lr=0.01)
    # E[g^2] = 0.01 * 9 = 0.09 -> denom 0.3 + 1e-5 -> step = 0.01 * 3 / 0.30001
    assert new["x"].item() == pytest.approx(-0.01 * 3.0 / 0.30001, abs=1e-15)
    assert state["square_avg"]["x"].item() == pytest.approx(0.09, abs=1e-15)


@pytest.mark.parametrize(("update", "init"), [(sgd, sgd_init), (adam, adam_init), (rmsprop, rmsprop_init)])
def test_pure_inputs_untouched(update, init):
    params, grads = make_params(), make_grads(0)
    state = init(params)
    state = update(params, grads, state, lr=0.1)[1]  # non-zero moments
    snapshot = {k: {n: t.clone() for n, t in v.items()} if isinstance(v, dict) else v for k, v in state.items()}
    update(params, grads, state, lr=0.1)
    for k in params:
        assert torch.equal(params[k], make_params()[k])
        assert torch.equal(grads[k], make_grads(0)[k])
    for k, v in snapshot.items():
        if isinstance(v, dict):
            for n in v:
                assert torch.equal(state[k][n], v[n]), f"state[{k}][{n}] modified in place"
        else:
            assert state[k] == v


def test_sgd_step_is_exactly_proportional_to_lr():
    zero = {k: torch.zeros_like(v) for k, v in make_params().items()}
    grads = make_grads(0)
    one = sgd(zero, grads, sgd_init(zero), lr=0.01)[0]
    two = sgd(zero, grads, sgd_init(zero), lr=0.02)[0]
    for k in zero:
        assert torch.equal(two[k], 2 * one[k])
        assert not torch.equal(two[k], one[k])


def test_adam_first_step_size_is_lr():
    params, grads = make_params(), make_grads(0)
    for lr in (1e-3, 2e-3, 0.5):
        new = adam(params, grads, adam_init(params), lr=lr)[0]
        for k in params:
            step = params[k] - new[k]
            torch.testing.assert_close(step, lr * torch.sign(grads[k]), rtol=1e-4, atol=0)


def test_changed_lr_acts_on_the_next_update_with_moments():
    # Same optimizer state, different lr in the call: the step scales with lr, nothing remembers the old one.
    params = make_params()
    state = adam_init(params)
    params, state = adam(params, make_grads(0), state, lr=1e-3)
    small = adam(params, make_grads(1), state, lr=1e-3)[0]
    big = adam(params, make_grads(1), state, lr=4e-3)[0]
    for k in params:
        torch.testing.assert_close(big[k] - params[k], 4 * (small[k] - params[k]), rtol=1e-4, atol=1e-7)


def test_lr_may_be_a_tensor_and_is_differentiable():
    params, grads = make_params(), make_grads(0)
    lr = torch.tensor(0.1, requires_grad=True)
    new = sgd(params, grads, sgd_init(params), lr=lr)[0]
    (g,) = torch.autograd.grad(new["w"].sum(), lr)
    assert g.item() == pytest.approx(-grads["w"].sum().item(), rel=1e-6)


def test_clip_grad_norm_golden():
    grads = {"a": torch.tensor([3.0]), "b": torch.tensor([4.0])}  # global norm 5
    clipped, norm = clip_grad_norm(grads, 1.0)
    assert norm.item() == pytest.approx(5.0)
    scale = 1.0 / (5.0 + 1e-6)
    assert clipped["a"].item() == pytest.approx(3.0 * scale, rel=1e-6)
    assert clipped["b"].item() == pytest.approx(4.0 * scale, rel=1e-6)
    big, _ = clip_grad_norm(grads, 10.0)
    assert torch.equal(big["a"], grads["a"]) and torch.equal(big["b"], grads["b"])
    for off in (0.0, -1.0, float("inf")):
        same, norm = clip_grad_norm(grads, off)
        assert same is grads and norm.item() == pytest.approx(5.0)


def test_get_update_rule_and_key_errors():
    assert get_update_rule("adam") == Adam() and get_update_rule("rmsprop") == RMSProp() and get_update_rule("sgd") == SGD()
    mine = Adam(beta1=0.5)
    assert get_update_rule(mine) is mine
    with pytest.raises(ValueError, match=r"update_rule must be one of \['adam', 'rmsprop', 'sgd'\] or an UpdateRule, got 'lamb'"):
        get_update_rule("lamb")
    with pytest.raises(ValueError, match=r"update_rule must be one of .* \(the UpdateRule protocol\), got 3"):
        get_update_rule(3)
    params = make_params()
    with pytest.raises(ValueError, match=r"grads have keys \['w'\], params have \['b', 'w'\]"):
        sgd(params, {"w": params["w"]}, sgd_init(params), lr=0.1)


# -- FlatSteps: the learner's in-place fast path must equal clip_grad_norm + the pure rule, bit for bit --

PURE = {"sgd": (sgd_init, sgd), "adam": (adam_init, adam), "rmsprop": (rmsprop_init, rmsprop)}


@pytest.mark.parametrize("max_norm", [0.0, 0.5, 100.0])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_flat_steps_equal_the_pure_rules_bit_for_bit(name, max_norm):
    init, update = PURE[name]
    params = make_params()
    state = init(params)
    params, state = update(params, make_grads(-1), state, lr=1e-2)  # non-trivial starting moments
    frozen_params = {k: v.clone() for k, v in params.items()}
    flat = FlatSteps(name, params, state, grads_kept=2)
    ref_params, ref_state, ref_grads = params, state, []
    for step in range(4):
        grads = {k: 3.0 * v for k, v in make_grads(step).items()}  # global norm ~ 14: clipping is active at 0.5
        clipped, ref_norm = clip_grad_norm(grads, max_norm)
        ref_params, ref_state = update(ref_params, clipped, ref_state, lr=3e-3)
        ref_grads.append(clipped)
        norm = flat.step(list(grads.values()), {"lr": 3e-3}, max_norm=max_norm)
        assert torch.equal(norm, ref_norm)
    new_params, new_state = flat.result()
    for k in params:
        assert torch.equal(new_params[k], ref_params[k]), k
        assert new_params[k].requires_grad and new_params[k].is_leaf
        assert torch.equal(params[k], frozen_params[k])  # the caller's tensors are untouched
    assert new_state["step"] == ref_state["step"] == 5
    for key, value in ref_state.items():
        if isinstance(value, dict):
            for k in value:
                assert torch.equal(new_state[key][k], value[k]), (key, k)
    recent = flat.recent_grads()  # oldest first, the last grads_kept
    assert len(recent) == 2
    for got, want in zip(recent, ref_grads[-2:]):
        for k in want:
            assert torch.equal(got[k], want[k])


def test_flat_steps_result_is_independent():
    params = make_params()
    flat = FlatSteps("adam", params, adam_init(params))
    flat.step(list(make_grads(0).values()), {"lr": 1e-2}, max_norm=1.0)
    first, state = flat.result()
    kept = {k: v.detach().clone() for k, v in first.items()}
    moments = {k: v.clone() for k, v in state["exp_avg"].items()}
    flat.step(list(make_grads(1).values()), {"lr": 1e-2}, max_norm=1.0)
    for k in kept:
        assert torch.equal(first[k].detach(), kept[k])
        assert torch.equal(state["exp_avg"][k], moments[k])


# -- UpdateRule objects ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", [SGD(), Adam(), Adam(beta1=0.5, beta2=0.9, eps=1e-4), RMSProp(), RMSProp(alpha=0.9, eps=1e-3)])
def test_rule_objects_are_the_functions_and_the_fast_path_matches_over_20_steps(rule):
    """The object and its in-place twin (FlatSteps) agree with the pure path to 1e-6 over 20 steps."""
    assert isinstance(rule, UpdateRule) and rule.parameters() == {} and UPDATE_RULES[rule.name]().name == rule.name
    params = make_params()
    state = rule.init(params)
    flat = FlatSteps(rule, params, rule.init(params))
    assert flat.supported
    constants = {k: getattr(rule, k) for k in ("beta1", "beta2", "eps", "alpha") if hasattr(rule, k)}
    function = {"sgd": sgd, "adam": adam, "rmsprop": rmsprop}[rule.name]
    by_function, f_state = params, rule.init(params)
    for step in range(20):
        grads = make_grads(step)
        params, state = rule.update(grads, state, params, {"lr": 1e-2})
        by_function, f_state = function(by_function, grads, f_state, lr=1e-2, **constants)
        flat.step(list(grads.values()), {"lr": 1e-2}, max_norm=0.0)
    fast, fast_state = flat.result()
    assert fast_state["step"] == state["step"] == 20
    for k in params:
        assert torch.equal(params[k], by_function[k])
        torch.testing.assert_close(fast[k].detach(), params[k], rtol=0, atol=1e-6)


def test_a_subclass_or_a_foreign_rule_takes_the_pure_path():
    class Doubled(SGD):
        def update(self, grads, state, params, hparams):
            return super().update(grads, state, params, {"lr": 2 * hparams["lr"]})

    params = make_params()
    assert not FlatSteps(Doubled(), params, sgd_init(params)).supported


def test_rules_are_differentiable_to_second_order():
    """Through a create_graph gradient, clipping and the rule, d(loss after the step)/d(w) matches a finite difference."""
    target = {
        k: torch.randn(v.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64) for k, v in make_params().items()
    }
    start = {k: v.double() for k, v in make_params().items()}

    def after(w: torch.Tensor, rule: UpdateRule) -> torch.Tensor:
        params = {k: v.clone().requires_grad_() for k, v in start.items()}
        loss = sum(((w * p - target[k]) ** 2).sum() for k, p in params.items())
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=True)))
        grads, _ = clip_grad_norm(grads, 1.0)
        state = rule.init(params)
        state = rule.update(grads, state, params, {"lr": 0.05})[1]  # non-zero moments first
        new, _ = rule.update(grads, state, params, {"lr": 0.05})
        return sum(((w * p - target[k]) ** 2).sum() for k, p in new.items())

    for rule in (SGD(), Adam(), RMSProp()):
        w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        (analytic,) = torch.autograd.grad(after(w, rule), w)
        h = 1e-6
        numeric = (after(w.detach() + h, rule) - after(w.detach() - h, rule)) / (2 * h)
        torch.testing.assert_close(analytic, numeric.detach(), rtol=1e-5, atol=1e-8, msg=rule.name)
