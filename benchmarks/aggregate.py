"""The aggregates every reproduction reports (IQM with a 95% bootstrap CI, AUC: the library's, in
solvers/aggregate.py, so sweeps share them) and the per-run summary each reproduction commits.

Scores are one number per run (seed) of one task, so rliable's stratified
bootstrap reduces to resampling runs (percentile interval, seeded).

The raw RunLogs of a reproduction stay out of git (``runs/`` folders are
ignored); what is committed is the per-run summary this module writes, one CSV
row a run.  Regenerate it from raw logs on disk:

    python benchmarks/aggregate.py benchmarks/epgt/results/table2_hopper/runs --out benchmarks/epgt/results/table2_hopper/runs.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvers.aggregate import CI_METHOD, auc, iqm_ci, probability_of_improvement  # noqa: E402

__all__ = ["CI_METHOD", "RUN_FIELDS", "auc", "iqm_ci", "probability_of_improvement", "run_row", "write_run_summary"]

RUN_FIELDS = ("solver", "env_id", "seed", "threads", "hyper_steps", "env_steps", "final_return", "auc")
"""the columns of a reproduction's committed per-run summary (``final_return``: last 10 episodes; ``auc``: see ``auc``)"""


def run_row(log) -> dict:
    """One RunLog as a row of ``RUN_FIELDS``."""
    return {
        "solver": log.solver,
        "env_id": log.env_id,
        "seed": log.seed,
        "threads": "" if log.threads is None else log.threads,
        "hyper_steps": len(log),
        "env_steps": int(log.timesteps[-1]) if len(log) else 0,
        "final_return": log.final_return(),
        "auc": auc(log),
    }


def write_run_summary(logs: Sequence, path: str | Path) -> Path:
    """The per-run summary of ``logs`` as CSV, sorted by (env id, solver, seed) so reruns diff cleanly."""
    rows = sorted(map(run_row, logs), key=lambda r: (r["env_id"], r["solver"], r["seed"]))
    return write_csv(rows, path, RUN_FIELDS)


def write_csv(rows: Sequence[dict], path: str | Path, fields: Sequence[str]) -> Path:
    """``rows`` (dicts with at least ``fields``) as CSV; floats to 6 significant digits (summaries, not raw data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the per-run summary CSV of a reproduction from its raw RunLogs.")
    parser.add_argument("runs", nargs="+", type=Path, help="RunLog .jsonl files, or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args(argv)
    from solvers.base import RunLog

    missing = [str(p) for p in args.runs if not p.exists()]
    paths = sorted(p for arg in args.runs if arg.exists() for p in (arg.glob("*.jsonl") if arg.is_dir() else [arg]))
    if missing:
        parser.error(f"{missing} do not exist: regenerate the raw logs with the reproduction's command (its README)")
    if not paths:
        parser.error(f"no RunLogs (.jsonl) in {[str(p) for p in args.runs]}: regenerate them with the reproduction's command")
    print(write_run_summary([RunLog.load(p) for p in paths], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
