"""The learned optimizer's step in compiled code (``kernel.c``): forward, backward and the meta-gradient replay.

``Optim4RL.flat_step`` and ``VectorPopulation``'s meta-gradient use it where it applies (``applies``: float32
CPU tensors, linear heads, hidden 8, a C compiler; ``HYPERRL_NATIVE=0`` turns it off), else the torch maths,
which stay the reference (tested equal to 1e-5, gradients too).  ``Step`` is the autograd function: a graph
through a step (the loop population's, a per-unit meta-gradient) calls ``o4rl_step_backward``.  Each call
splits its elements over ``threads(n)`` threads (torch's count), with the same numbers for any count.  Built
once per machine by ``agents.native.compiled`` (about a second; ``make`` does it at install).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from agents import native
from solvers.optim4rl.config import Optim4RLConfig

SOURCE = Path(__file__).with_name("kernel.c")
HIDDEN = 8
"""the hidden width the kernel is written for (``Optim4RLConfig.hidden``'s default)"""
MAX_STEPS = 16
"""the most recurrent steps ``replay`` takes at once (kernel.c's MAX_STEPS)"""
CHUNK = 1024
"""elements a chunk (kernel.c's SUPER x B): the unit of work a thread takes"""
CHUNKS_PER_THREAD = 4
"""the fewest chunks worth a thread of their own (a chunk is tens of microseconds, starting a thread a few)"""

_P = ctypes.c_void_p


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (no C compiler, not Linux, ``HYPERRL_NATIVE=0``)."""
    lib = native.compiled(SOURCE)
    if lib is None:
        return None
    lib.o4rl_step.restype = lib.o4rl_step_backward.restype = lib.o4rl_replay.restype = None
    reading = [ctypes.c_float, ctypes.c_float, ctypes.c_int]  # eps, input_scale, clip_inputs
    count = ctypes.c_int  # the threads that may share the work
    lib.o4rl_step.argtypes = [ctypes.c_int64, _P, _P, _P, _P, *reading, _P, _P, _P, count]
    lib.o4rl_step_backward.argtypes = [ctypes.c_int64, _P, _P, _P, _P, *reading, _P, _P, _P, _P, _P, _P, count]
    lib.o4rl_replay.argtypes = [ctypes.c_int64, ctypes.c_int64, _P, _P, _P, _P, *reading, _P, _P, count]
    return lib


def applies(config: Optim4RLConfig, weights: Mapping[str, torch.Tensor], *tensors: torch.Tensor) -> bool:
    """Whether the kernel computes this rule on these tensors: linear heads, hidden 8, float32 on the CPU."""
    if config.head or config.hidden != HIDDEN:
        return False
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in (*weights.values(), *tensors)):
        return False
    return library() is not None


def _reading(config: Optim4RLConfig) -> tuple[float, float, int]:
    """How the kernel reads a gradient: eps, input_scale, clip_inputs (kernel.c's argument order)."""
    return config.eps, config.input_scale, int(config.clip_inputs)


def threads(n: int) -> int:
    """Threads the kernel splits ``n`` elements over: torch's intra-op thread count (``torch.set_num_threads``,
    ``OMP_NUM_THREADS``), fewer where the work is too small to share.  The result is the same for any count."""
    return max(1, min(torch.get_num_threads(), n // (CHUNK * CHUNKS_PER_THREAD)))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _flat(weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Both GRUs' and heads' weights in one float32 buffer, ``weight_shapes`` order (the kernel's layout)."""
    return torch.cat([w.detach().reshape(-1) for w in weights.values()]).contiguous()


def _split(flat: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    sizes = [w.numel() for w in weights.values()]
    return [part.view_as(w).to(w.dtype) for part, w in zip(flat.split(sizes), weights.values())]


def step(
    config: Optim4RLConfig,
    weights: Mapping[str, torch.Tensor],
    g: torch.Tensor,
    h1: torch.Tensor,
    h2: torch.Tensor,
    *,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``flat_step``'s numbers without a graph: the step per unit of lr ``[N]`` and the new hidden states.

    ``out``: contiguous float32 ``[N, 8]`` buffers for the new hidden states, which may be ``h1`` and ``h2``
    themselves (each block is read before it is written).  ``VectorPopulation`` steps its units this way:
    a fresh ~30 MB pair per step costs its page faults and a second copy of the states (at n = 64 on
    Catch in place is ~10% faster a meta-iteration, with a third less memory on top of the population's)."""
    g, h1, h2 = g.detach().contiguous(), h1.detach().contiguous(), h2.detach().contiguous()
    if out is None:
        a, b = torch.empty_like(h1), torch.empty_like(h2)
    else:
        a, b = out
        for name, buffer in zip(("h1", "h2"), out):
            if buffer.shape != h1.shape or buffer.dtype != torch.float32 or not buffer.is_contiguous():
                got = f"{buffer.dtype} {tuple(buffer.shape)}"
                raise ValueError(f"step: out {name} must be contiguous float32 {tuple(h1.shape)}, got {got}")
    out = torch.empty_like(g)
    flat = _flat(weights)
    n = g.numel()
    library().o4rl_step(n, *map(_ptr, (g, h1, h2, flat)), *_reading(config), *map(_ptr, (out, a, b)), threads(n))
    return out, a, b


class Step(torch.autograd.Function):
    """One step of the rule as an autograd node: inputs ``(config, names, g, h1, h2, *weights)`` (the
    weights' names in order; ``g`` enters through a stop-gradient), outputs the step and the new hidden
    states; the backward gives the hidden states' and the weights' gradients."""

    @staticmethod
    def forward(ctx, config: Optim4RLConfig, names: tuple[str, ...], g, h1, h2, *weights):
        ctx.config, ctx.names = config, names
        g, h1, h2 = g.detach().contiguous(), h1.detach().contiguous(), h2.detach().contiguous()
        ctx.save_for_backward(g, h1, h2, *weights)
        return step(config, dict(zip(names, weights)), g, h1, h2)

    @staticmethod
    def backward(ctx, dstep, dh1, dh2):
        g, h1, h2, *weights = ctx.saved_tensors
        named = dict(zip(ctx.names, weights))
        flat, dw = _flat(named), torch.zeros(flat_size(named), dtype=torch.float64)
        upstream = [None if d is None else d.contiguous().to(torch.float32) for d in (dstep, dh1, dh2)]
        wants = ctx.needs_input_grad[3], ctx.needs_input_grad[4]
        out1, out2 = (torch.empty_like(h) if want else None for h, want in zip((h1, h2), wants))
        inputs = map(_ptr, (g, h1, h2, flat))
        outputs = map(_ptr, (*upstream, out1, out2, dw))
        library().o4rl_step_backward(g.numel(), *inputs, *_reading(ctx.config), *outputs, threads(g.numel()))
        return (None, None, None, out1, out2, *_split(dw.to(torch.float32), named))


def replay(
    config: Optim4RLConfig, weights: Mapping[str, torch.Tensor], h1, h2, grads: Sequence[torch.Tensor], adjoint
) -> list[torch.Tensor]:
    """``sum_k adjoint . d step_k / d weights`` for the steps that read ``grads`` in turn from the hidden
    states ``h1, h2`` (``VectorPopulation``'s meta-gradient), in one pass: per block of elements, the steps
    forward and back in cache.  One tensor per weight, in ``weights``' order."""
    if not 1 <= len(grads) <= MAX_STEPS:
        raise ValueError(f"replay takes 1 to {MAX_STEPS} steps, got {len(grads)}")
    grads = [g.detach().reshape(-1).contiguous() for g in grads]
    h1, h2 = h1.detach().reshape(-1, HIDDEN).contiguous(), h2.detach().reshape(-1, HIDDEN).contiguous()
    adjoint = adjoint.detach().reshape(-1).to(torch.float32).contiguous()
    n = adjoint.numel()
    if any(g.numel() != n for g in grads) or h1.shape[0] != n or h2.shape[0] != n:
        sizes = f"gradients {[g.numel() for g in grads]}, hidden states {h1.shape[0]} and {h2.shape[0]}, adjoint {n}"
        raise ValueError(f"replay: {sizes}: each must have one entry per element")
    pointers = (ctypes.c_void_p * len(grads))(*[g.data_ptr() for g in grads])
    flat, dw = _flat(weights), torch.zeros(flat_size(weights), dtype=torch.float64)
    states, out = map(_ptr, (h1, h2, flat)), map(_ptr, (adjoint, dw))
    library().o4rl_replay(n, len(grads), pointers, *states, *_reading(config), *out, threads(n))
    return _split(dw.to(torch.float32), weights)


def flat_size(weights: Mapping[str, torch.Tensor]) -> int:
    """Entries of ``_flat(weights)``: 546 for hidden 8 with linear heads."""
    return sum(w.numel() for w in weights.values())
