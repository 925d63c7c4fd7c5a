"""What a learned optimizer's step has become: median |step| / lr from the zero state on Gaussian gradients.

    python benchmarks/optim4rl/step_probe.py runs/a/optimizer.pt runs/b/optimizer.pt

For each file and gradient scale s (1e-4, 1e-2, 1), 4,096 elements get 30 steps of N(0, s^2) gradients; the
median |step| / lr at steps 1, 10 and 30 is printed (sign-SGD, an untrained Optim4RL: 1.0 everywhere).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def probe(path: str, scales: tuple[float, ...] = (1e-4, 1e-2, 1.0), steps: int = 30) -> dict[float, list[float]]:
    """``{scale: [median |step|/lr at step 1, 10, steps]}`` of the optimizer in ``path``."""
    import torch

    from solvers.optim4rl.files import load

    rule, out = load(path), {}
    generator = torch.Generator().manual_seed(0)
    for s in scales:
        h1 = torch.zeros(4096, rule.config.hidden)
        h2, medians = h1.clone(), []
        for k in range(1, steps + 1):
            step, h1, h2 = rule.flat_step(s * torch.randn(4096, generator=generator), h1, h2)
            if k in (1, 10, steps):
                medians.append(round(float(step.abs().median()), 3))
        out[s] = medians
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("optimizers", nargs="+")
    args = parser.parse_args(argv)
    import torch

    with torch.no_grad():
        for path in args.optimizers:
            print(path, "  ".join(f"s={s:g}: {m}" for s, m in probe(path).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
