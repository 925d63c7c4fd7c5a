"""One meta-iteration's time and peak memory: the vectorised population on one task, any n, on a CPU or a GPU.

    python benchmarks/optim4rl/meta_iteration_cost.py --task big_dense_long --units 512 --device cuda   # the paper's n
    python benchmarks/optim4rl/meta_iteration_cost.py --task big_dense_long --units 512 --threads 2      # the same on a CPU

A meta-iteration is what ``MetaTrainer.step`` costs less its meta-Adam step: 4 inner A2C updates of every
unit with the learned optimizer, the meta-loss on a fifth rollout, and its gradient in the optimizer's
weights.  After ``--warmup`` iterations each of ``--repeats`` is timed (CUDA synchronised).  Peak memory
over an iteration, above what the process held when it began: on CUDA ``torch.cuda.max_memory_allocated``
(reset before each), on a CPU the peak resident set (Linux: ``/proc/self/clear_refs`` resets it before
each).  ``--torch-maths`` turns the compiled kernel off on a CPU (what a GPU runs: the torch maths in
blocks of ``--chunk`` elements).  Writes a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from solvers.optim4rl import kernel
from solvers.optim4rl.config import A2C_HPARAMS, TASK_SETTINGS, Optim4RLConfig
from solvers.optim4rl.optimizer import Optim4RL, weight_shapes
from solvers.optim4rl.vectorised import VectorPopulation


class PeakMemory:
    """Bytes at the start of a span and its peak, of CUDA's allocator or of the process's resident set."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.process_wide = False
        """whether the CPU peak could not be reset (then it is the process's peak so far)"""

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # the resident-set peak starts again from now
            except OSError:
                self.process_wide = True  # the peak is then the process's so far: an upper bound
            self.base = _status_kb("VmRSS") * 1024

    def peak_above_start(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        return _status_kb("VmHWM") * 1024 - self.base


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: peak memory needs Linux")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="big_dense_long", choices=sorted(TASK_SETTINGS))
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch's CPU threads (the compiled kernel follows them)")
    p.add_argument("--chunk", type=int, default=None, help="elements per call of the torch maths (default: the device's)")
    p.add_argument("--torch-maths", action="store_true", help="the compiled kernel off (as on a GPU)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON summary (default results/meta_iteration_<task>_<units>_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    if args.torch_maths:
        kernel.library = lambda: None
    torch.manual_seed(0)
    config = Optim4RLConfig(clip_inputs=TASK_SETTINGS[args.task].clip_inputs)
    # Non-zero heads: a fresh optimizer's GRU weights get no meta-gradient, which would skip work.
    weights = {k: ((torch.rand(s) - 0.5) * 0.2).to(device).requires_grad_() for k, s in weight_shapes(config).items()}
    rule = Optim4RL(config=config, weights=weights)
    memory = PeakMemory(device)
    memory.start()
    population = VectorPopulation(rule, args.task, units=args.units, seed=0, device=args.device, chunk=args.chunk)
    held = memory.peak_above_start()
    hparams = {**A2C_HPARAMS, "lr": TASK_SETTINGS[args.task].lr}
    seconds, peaks = [], []
    for r in range(args.warmup + args.repeats):
        memory.start()
        start = time.perf_counter()
        out = population.meta_loss(hparams, 4)
        torch.autograd.grad(out.loss, list(weights.values()), allow_unused=True)
        peak = memory.peak_above_start()  # synchronises on CUDA, so the time below is the device's too
        elapsed = time.perf_counter() - start
        if r >= args.warmup:
            seconds.append(elapsed)
            peaks.append(peak)
        label = "warm-up" if r < args.warmup else f"repeat {r - args.warmup}"
        print(f"{label}: {elapsed:.2f} s, peak {peak / 2**30:.2f} GiB above the iteration's start", flush=True)
    elements = args.units * sum(population.sizes)
    summary = {
        "task": args.task,
        "units": args.units,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": args.threads,
        "kernel": kernel.applies(rule.config, rule.weights, population.params),
        "chunk": population.chunk,
        "parameters_per_unit": sum(population.sizes),
        "elements": elements,
        "population_bytes": held,
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "peak_bytes_above_start": peaks,
        "peak_is_process_wide": memory.process_wide,
        "unit_updates_per_s": args.units * 4 / statistics.median(seconds),
    }
    print(json.dumps(summary, indent=2))
    name = f"meta_iteration_{args.task}_{args.units}_{device.type}{'_torch' if args.torch_maths else ''}.json"
    out_path = Path(args.out) if args.out else Path(__file__).parent / "results" / name
    out_path.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
