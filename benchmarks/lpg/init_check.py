"""Did meta-training improve the LPG?  The same fresh lifetimes as ``compare.py`` (same seeds, updates and the
lr ``compare.py`` chose for the trained rule), trained by the LPG as meta-training started (its initial weights,
drawn from the run's seed) instead of the trained one.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lpg/init_check.py \\
        --compare benchmarks/lpg/results/compare/compare.json --out benchmarks/lpg/results/init_check.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.seeding import derive
from solvers.aggregate import iqm_ci
from solvers.lpg.evaluate import train_lifetimes
from solvers.lpg.files import load_rule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--compare", required=True)
    p.add_argument("--seed", type=int, default=0, help="the meta-training run's seed (its initial LPG derives from it)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    done = json.loads(Path(args.compare).read_text())
    network, _, hparams = load_rule(done["rule"])
    init = network.init(torch.Generator().manual_seed(derive(args.seed, "lpg-init")))
    a = done["args"]
    rows = {}
    for env, r in done["envs"].items():
        if a.get("score", "return") != "return" or env in done["held_out"]:
            continue
        out = train_lifetimes(
            env,
            list(range(a["seeds"])),
            rule=(network, init),
            lr=r["lpg"]["lr"],
            kl_coef=done["kl_coef"],
            gamma=a["gamma"],
            updates=a["updates"],
            envs_per_lifetime=a["envs_per_lifetime"],
        )
        iqm, low, high = iqm_ci(out.final.numpy(), seed=0)
        rows[env] = {"init_iqm": iqm, "init_ci": [low, high], "trained_iqm": r["lpg"]["iqm"], "a2c_iqm": r["a2c"]["iqm"]}
        print(env, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[env].items()}, flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
