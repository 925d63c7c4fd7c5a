"""Cost of ``import hyperenvs`` in fresh interpreters, and what it loads.

Three kinds of fresh Python process, interleaved so that load from other jobs
hits them alike (medians are printed):
- cold: ``import hyperenvs; gym.register_envs(hyperenvs)`` timed from a bare
  interpreter, so it includes gymnasium and numpy, which hyperenvs imports;
- baseline: ``import gymnasium`` alone, which every Gymnasium user pays anyway;
- split: gymnasium first, then hyperenvs timed on its own (hyperenvs' own cost).
Each process also reports whether torch, MuJoCo, the learners or the env module
were imported: none of them may be.

    python benchmarks/import_cost.py               # 11 processes of each kind
    python benchmarks/import_cost.py --quick       # 3
    python benchmarks/import_cost.py --importtime  # plus the slowest modules (python -X importtime)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

TARGET_S = 0.5
# ``agents`` itself loads (the torch-free declarations in agents.hparams); its learners must not.
HEAVY = ("torch", "mujoco", "agents.base", "agents.ppo", "stable_baselines3", "ale_py", "hyperenvs.env")

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
if {mode!r} != "cold":
    import gymnasium
t1 = time.perf_counter()
if {mode!r} != "baseline":
    import gymnasium as gym
    import hyperenvs
    gym.register_envs(hyperenvs)
t2 = time.perf_counter()
print(json.dumps({{
    "first": t1 - t0,
    "second": t2 - t1,
    "total": t2 - t0,
    "loaded": [m for m in {heavy!r} if m in sys.modules],
    "ids": sum(1 for k in sys.modules["gymnasium"].registry if k.startswith("HyperRL/")),
}}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=11, help="fresh processes of each kind")
    p.add_argument("--importtime", action="store_true", help="also list the slowest imports (-X importtime)")
    p.add_argument("--quick", action="store_true", help="3 processes of each kind")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 3
    return args


def child(mode: str, cwd: str) -> dict:
    code = CHILD.format(mode=mode, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slowest_imports(cwd: str, top: int = 12) -> list[tuple[int, str]]:
    code = "import gymnasium as gym, hyperenvs; gym.register_envs(hyperenvs)"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=cwd)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line.split(":", 1)[1].split("|")
        rows.append((int(cum_us), name.strip()))
    best: dict[str, int] = {}
    for us, name in rows:
        best[name] = max(us, best.get(name, 0))
    return sorted(((us, name) for name, us in best.items()), reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs: dict[str, list[dict]] = {"cold": [], "baseline": [], "split": []}
    for i in range(args.repeats):
        modes = list(runs) if i % 2 == 0 else list(runs)[::-1]
        for mode in modes:
            runs[mode].append(child(mode, root))
    cold = [r["total"] for r in runs["cold"]]
    own = [r["second"] for r in runs["split"]]
    print(f"python {sys.version.split()[0]} ({sys.executable}); {args.repeats} fresh processes of each kind")
    print()
    print(f"{'seconds':<52} {'median':>8} {'min':>8} {'max':>8}")
    rows = {
        "cold: import hyperenvs (+ gymnasium, numpy)": cold,
        "baseline: import gymnasium alone": [r["total"] for r in runs["baseline"]],
        "split: gymnasium first": [r["first"] for r in runs["split"]],
        "split: then import hyperenvs + register_envs": own,
    }
    for name, values in rows.items():
        print(f"{name:<52} {statistics.median(values):>8.3f} {min(values):>8.3f} {max(values):>8.3f}")
    full = runs["cold"] + runs["split"]
    loaded = sorted({m for r in full for m in r["loaded"]})
    ids = full[0]["ids"]
    print()
    print(f"registered HyperRL ids: {ids}")
    print(f"heavy modules in sys.modules afterwards: {loaded or 'none'} (checked: {', '.join(HEAVY)})")
    if args.importtime:
        print()
        print("slowest imports by cumulative time (one run, -X importtime):")
        for us, name in slowest_imports(root):
            print(f"  {us / 1e3:8.1f} ms  {name}")
    med, own_med = statistics.median(cold), statistics.median(own)
    base_med = statistics.median(rows["baseline: import gymnasium alone"])
    clean = not any(m in loaded for m in ("torch", "mujoco"))
    print()
    print(f"target: import hyperenvs < {TARGET_S} s with neither torch nor mujoco loaded")
    print(
        f"  cold (everything it pulls in): {med:.3f} s -> {'met' if med < TARGET_S and clean else 'NOT met'}"
        f"{'' if med < TARGET_S else f' (gymnasium alone takes {base_med:.3f} s on this machine now)'}"
    )
    print(f"  hyperenvs' own share:          {own_med:.3f} s -> {'met' if own_med < TARGET_S and clean else 'NOT met'}")
    assert "torch" not in loaded, "import hyperenvs imported torch"
    assert "mujoco" not in loaded, "import hyperenvs imported mujoco"
    assert ids > 0, "no HyperRL ids registered"
    return 0


if __name__ == "__main__":
    sys.exit(main())
