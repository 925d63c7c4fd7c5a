"""The learned optimizer's compiled kernel (solvers/optim4rl/kernel.c): the torch maths' numbers forward, through
autograd and in the meta-gradient replay, and the torch path wherever it does not apply."""

from __future__ import annotations

import pytest
import torch

from solvers.optim4rl import kernel
from solvers.optim4rl.config import Optim4RLConfig
from solvers.optim4rl.optimizer import Optim4RL, weight_shapes

needs_kernel = pytest.mark.skipif(kernel.library() is None, reason="no C compiler")


def _rule(clip: bool, seed: int = 0, scale: float = 1.0, config: Optim4RLConfig | None = None) -> Optim4RL:
    """An optimizer with every weight non-zero (a fresh one's zero heads would hide the GRUs' gradients); with
    clipping it also reads the gradients scaled by 1e4 (so that the clip bites)."""
    config = config or Optim4RLConfig(clip_inputs=clip, input_scale=1e4 if clip else 1.0)
    gen = torch.Generator().manual_seed(seed)
    weights = {k: ((torch.rand(s, generator=gen) - 0.5) * scale).requires_grad_() for k, s in weight_shapes(config).items()}
    return Optim4RL(config=config, weights=weights)


def _inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, generator=gen) * torch.logspace(-7, 1, n)  # the scales RL gradients span, and beyond the clip
    g[::11] = 0.0  # sign(0) = 0: no step
    return g, torch.randn(n, 8, generator=gen) * 0.5, torch.randn(n, 8, generator=gen) * 0.5


def _torch_only(monkeypatch) -> None:
    monkeypatch.setattr(kernel, "library", lambda: None)


@needs_kernel
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000])
def test_the_kernels_step_is_the_torch_maths(clip, n, monkeypatch):
    rule = _rule(clip)
    g, h1, h2 = _inputs(n)
    with torch.no_grad():
        got = rule.flat_step(g, h1, h2)
        _torch_only(monkeypatch)
        want = rule.flat_step(g, h1, h2)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert bool((got[0][g == 0] == 0).all())


@needs_kernel
def test_large_head_outputs_stay_accurate(monkeypatch):
    """exp of the heads' outputs far from 0 (steps from 1e-8 to 1e8 times lr): the kernel's exp to float precision."""
    rule = _rule(False)
    with torch.no_grad():
        rule.weights["head1.0.bias"].fill_(18.0)
        rule.weights["head2.0.bias"].fill_(-15.0)
    g, h1, h2 = _inputs(64)
    with torch.no_grad():
        got = rule.flat_step(g, h1, h2)[0]
        _torch_only(monkeypatch)
        want = rule.flat_step(g, h1, h2)[0]
    assert float(want.abs().max()) > 1e10
    torch.testing.assert_close(got, want, rtol=2e-5, atol=0.0)


def _three_steps_gradient(rule: Optim4RL, n: int) -> list[torch.Tensor]:
    """Gradients in the start states and the weights of an objective on three chained steps' outputs."""
    g, h1, h2 = _inputs(n)
    a, b = h1.clone().requires_grad_(), h2.clone().requires_grad_()
    x, y, total = a, b, 0.0
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        step, x, y = rule.flat_step(torch.randn(n, generator=gen) * g.abs().sqrt(), x, y)
        total = total + (torch.linspace(-1.0, 1.0, n) * step).sum() + 0.1 * x.sum() + 0.2 * y.square().sum()
    return list(torch.autograd.grad(total, [a, b, *rule.weights.values()]))


@needs_kernel
@pytest.mark.parametrize("clip", [False, True])
def test_gradients_through_chained_kernel_steps_are_torchs(clip, monkeypatch):
    rule = _rule(clip)
    got = _three_steps_gradient(rule, 301)
    _torch_only(monkeypatch)
    want = _three_steps_gradient(rule, 301)
    for name, a, b in zip(["h1", "h2", *rule.weights], got, want):
        scale = float(b.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(a, b, rtol=0.0, atol=2e-5 * scale, msg=lambda m, name=name: f"{name}: {m}")


def _replay_by_autograd(rule: Optim4RL, h1, h2, grads, adjoint) -> list[torch.Tensor]:
    a, b, objective = h1, h2, 0.0
    for g in grads:
        step, a, b = rule.flat_step(g, a, b)
        objective = objective + (adjoint * step).sum()
    return list(torch.autograd.grad(objective, list(rule.weights.values())))


@needs_kernel
@pytest.mark.parametrize("clip", [False, True])
def test_the_replay_is_the_gradient_through_the_recurrent_steps(clip, monkeypatch):
    rule = _rule(clip)
    n = 5000 + 3  # several accumulation rounds (64 blocks of 16) and a partial block
    g, h1, h2 = _inputs(n)
    gen = torch.Generator().manual_seed(4)
    grads = [g * torch.rand(n, generator=gen) for _ in range(4)]
    adjoint = torch.randn(n, generator=gen) * 1e-3
    got = kernel.replay(rule.config, rule.weights, h1, h2, grads, adjoint)
    _torch_only(monkeypatch)
    want = _replay_by_autograd(rule, h1, h2, grads, adjoint)
    for name, a, b in zip(rule.weights, got, want):
        torch.testing.assert_close(a, b, rtol=0.0, atol=2e-5 * float(b.abs().max()), msg=lambda m, name=name: f"{name}: {m}")


@needs_kernel
def test_the_replay_refuses_what_it_cannot_take():
    rule = _rule(False)
    g, h1, h2 = _inputs(32)
    with pytest.raises(ValueError, match="replay takes 1 to 16 steps, got 17"):
        kernel.replay(rule.config, rule.weights, h1, h2, [g] * 17, g)
    with pytest.raises(ValueError, match="one entry per element"):
        kernel.replay(rule.config, rule.weights, h1, h2, [g[:31]], g)


def test_the_torch_maths_serve_where_the_kernel_does_not_apply():
    rule = _rule(False)
    g, h1, h2 = _inputs(40)
    mlp = _rule(False, config=Optim4RLConfig(head=(16, 16)))
    wide = _rule(False, config=Optim4RLConfig(hidden=4))
    assert not kernel.applies(mlp.config, mlp.weights, g, h1, h2)
    assert not kernel.applies(wide.config, wide.weights, g, h1[:, :4], h2[:, :4])
    assert not kernel.applies(rule.config, rule.weights, g.double(), h1, h2)
    double = Optim4RL(config=rule.config, weights={k: v.detach().double() for k, v in rule.weights.items()})
    assert not kernel.applies(double.config, double.weights, g.double(), h1.double(), h2.double())
    # and those paths still compute: an MLP head's step is finite and sign-aligned with -g
    step = mlp.flat_step(g, h1, h2)[0]
    assert bool(torch.isfinite(step).all()) and bool((step * g <= 0).all())


def test_asked_off_means_the_torch_maths(monkeypatch):
    monkeypatch.setenv("HYPERRL_NATIVE", "0")
    kernel.library.cache_clear()
    try:
        assert kernel.library() is None
        rule = _rule(False)
        g, h1, h2 = _inputs(20)
        assert not kernel.applies(rule.config, rule.weights, g, h1, h2)
    finally:
        monkeypatch.delenv("HYPERRL_NATIVE")
        kernel.library.cache_clear()


def _every_entry_point(rule: Optim4RL, n: int) -> list[torch.Tensor]:
    """The step, a step's backward (autograd through ``Step``) and the replay on n elements."""
    g, h1, h2 = _inputs(n)
    gen = torch.Generator().manual_seed(5)
    grads = [g * torch.rand(n, generator=gen) for _ in range(3)]
    adjoint = torch.randn(n, generator=gen) * 1e-3
    with torch.no_grad():
        forward = list(rule.flat_step(g, h1, h2))
    a = h1.clone().requires_grad_()
    step, x, _ = rule.flat_step(g, a, h2)
    backward = torch.autograd.grad((adjoint * step).sum() + x.sum(), [a, *rule.weights.values()])
    return [*forward, *backward, *kernel.replay(rule.config, rule.weights, h1, h2, grads, adjoint)]


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3, 7])
def test_threads_give_the_same_bits(threads, monkeypatch):
    """Work split over threads (chunks of 1024 elements a thread, weight gradients summed chunk by chunk in
    order) gives exactly one thread's numbers; 7 threads over 6 chunks: as many as there is work for."""
    rule = _rule(True)
    n = 5 * kernel.CHUNK + 333
    monkeypatch.setattr(kernel, "threads", lambda n: 1)
    one = _every_entry_point(rule, n)
    monkeypatch.setattr(kernel, "threads", lambda n: threads)
    many = _every_entry_point(rule, n)
    assert len(one) == 3 + 1 + len(rule.weights) + len(rule.weights)
    for i, (a, b) in enumerate(zip(one, many)):
        assert torch.equal(a, b), f"output {i} differs at {threads} threads"


def test_the_thread_count_follows_torch_and_the_work(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    per_thread = kernel.CHUNK * kernel.CHUNKS_PER_THREAD
    assert kernel.threads(100) == 1  # too little to share
    assert kernel.threads(2 * per_thread) == 2
    assert kernel.threads(100 * per_thread) == 4  # no more than torch may use
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert kernel.threads(100 * per_thread) == 1


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_a_step_in_place_is_the_step_into_new_buffers(threads, monkeypatch):
    """``out`` may be the old hidden states themselves (the population's steps, saving a fresh 30 MB's page
    faults): each block is read before it is written, on any number of threads."""
    monkeypatch.setattr(kernel, "threads", lambda n: threads)
    rule = _rule(False)
    g, h1, h2 = _inputs(6 * kernel.CHUNK + 5)
    want = kernel.step(rule.config, rule.weights, g, h1, h2)
    a, b = h1.clone(), h2.clone()
    got = kernel.step(rule.config, rule.weights, g, a, b, out=(a, b))
    assert torch.equal(got[0], want[0]) and torch.equal(a, want[1]) and torch.equal(b, want[2])
    assert got[1] is a and got[2] is b


@needs_kernel
def test_a_step_refuses_buffers_that_do_not_fit():
    rule = _rule(False)
    g, h1, h2 = _inputs(40)
    with pytest.raises(ValueError, match=r"out h2 must be contiguous float32 \(40, 8\), got torch.float32 \(39, 8\)"):
        kernel.step(rule.config, rule.weights, g, h1, h2, out=(h1, h2[:39]))
    with pytest.raises(ValueError, match="out h1 must be contiguous"):
        kernel.step(rule.config, rule.weights, g, h1, h2, out=(h1.t().contiguous().t(), h2))
