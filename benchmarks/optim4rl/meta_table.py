"""Windows of one or more ``optim4rl-train`` logs as a CSV: mean meta-loss, mean unit return (with its
standard error over the finished episodes) and median meta-gradient norm per ``--window`` iterations.

    python benchmarks/optim4rl/meta_table.py runs/a/meta.jsonl runs/b/meta.jsonl --window 10 --out table.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import numpy as np

    rows = []
    for log in args.logs:
        entries = [json.loads(line) for line in Path(log).read_text().splitlines()]
        for start in range(0, len(entries), args.window):
            chunk = entries[start : start + args.window]
            returns = np.array([x for e in chunk for x in e["returns"]])
            rows.append({
                "run": Path(log).parent.name,
                "iterations": f"{chunk[0]['iteration']}-{chunk[-1]['iteration']}",
                "meta_loss": round(float(np.mean([e["loss"] for e in chunk])), 4),
                "unit_return": round(float(returns.mean()), 4) if returns.size else "",
                "return_se": round(float(returns.std() / np.sqrt(returns.size)), 4) if returns.size else "",
                "episodes": int(returns.size),
                "meta_grad_norm": round(float(np.median([e["grad_norm"] for e in chunk])), 5),
            })  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(",".join(str(v) for v in r.values()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
