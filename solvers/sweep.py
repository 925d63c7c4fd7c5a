"""``hyperrl sweep``: every solver x id x seed as independent runs, resumable, then one report.

Runs go to Ray tasks (a local Ray by default, a cluster with ``address``), to a
process pool when Ray is not installed, or stay in this process (``serial``).
Each run's RunLog comes back to this process, which writes it atomically to
``OUT/runs/<id>/<solver>-seed<N>.jsonl``; a restarted sweep skips every run whose
file is there, so an interrupted sweep loses at most the runs in flight.  A run's
result depends only on its solver, id, seed and env options (CPU, one torch
thread per run), so the report does not depend on the backend or on interruptions.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("ray", "process", "serial")


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """What to run and where; checked in full before any run starts."""

    solvers: tuple[str, ...]
    """registered solver names (``hyperrl run``'s); population solvers (pbt, pb2) run with ``hyperrl run``"""
    env_ids: tuple[str, ...]
    """HyperRL ids"""
    seeds: int = 3
    """seeds 0 .. seeds-1 of every solver on every id"""
    out: str = "sweep"
    """directory for the RunLogs, the report and its plots"""
    backend: str | None = None
    """``ray``, ``process`` or ``serial``; None: Ray when installed, else a process pool"""
    address: str | None = None
    """a Ray cluster to join (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None starts Ray on this machine"""
    workers: int | None = None
    """runs at once on this machine (a local Ray's CPUs, or the pool's processes); all cores when None"""
    env_args: argparse.Namespace = field(default_factory=argparse.Namespace)
    """the env options of ``hyperrl run`` (``--total-timesteps``, ``--config``, ...), applied to every run"""
    tensorboard: str | None = None
    """directory for every run's TensorBoard scalars (none when None; on a cluster, each worker node's own disk)"""

    def __post_init__(self) -> None:
        import hyperenvs
        from solvers import SOLVERS, solver_class

        if not self.solvers or not self.env_ids:
            raise ValueError("a sweep needs at least one solver and one id")
        unknown = [s for s in self.solvers if s not in SOLVERS]
        if unknown:
            raise ValueError(f"unknown solver(s) {unknown} in the sweep; known: {sorted(SOLVERS)}")
        population = [s for s in self.solvers if getattr(solver_class(s), "population_based", False)]
        if population:
            raise ValueError(f"{population} train a population through Ray Tune themselves: run them with `hyperrl run`")
        missing = [i for i in self.env_ids if i.split(":")[-1] not in hyperenvs.REGISTRY]
        if missing:
            raise ValueError(f"unknown id(s) {missing} in the sweep; `hyperrl list` shows the ids")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.address is not None and self.backend not in (None, "ray"):
            raise ValueError(f"--address joins a Ray cluster; it cannot go with backend {self.backend!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True)
class Job:
    """One run of the sweep."""

    solver: str
    env_id: str
    seed: int

    def path(self, out: Path) -> Path:
        return out / "runs" / self.env_id.split(":")[-1].replace("/", "_") / f"{self.solver}-seed{self.seed}.jsonl"


@dataclass(frozen=True)
class SweepResult:
    """What a call did: the runs it ran, those it found done, and the report's files."""

    ran: tuple[Job, ...]
    skipped: tuple[Job, ...]
    report: tuple[Path, ...]


def jobs_of(config: SweepConfig) -> list[Job]:
    return [Job(s, i, seed) for i in config.env_ids for s in config.solvers for seed in range(config.seeds)]


def run_job(job: Job, env_args: argparse.Namespace, tensorboard: str | None) -> str:
    """Run one lifetime; returns its RunLog as text (the caller writes it: on a cluster, the worker's disk is not ours)."""
    import torch

    from solvers import make_solver
    from solvers.base import describe_space
    from solvers.command_env import make_env
    from solvers.tensorboard import TensorBoardLogger

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one run per core: the same numbers whatever the backend
    try:
        solver = make_solver(job.solver)
        env = make_env(env_args, env_id=job.env_id, solver=solver)
        if tensorboard:
            env = TensorBoardLogger(env, Path(tensorboard) / job.path(Path("")).with_suffix("").relative_to("runs"))
        try:
            log = solver.run(env, seed=job.seed)
            log.space = describe_space(env)
        finally:
            env.close()
    finally:
        torch.set_num_threads(threads)
    return log.dumps()


def save(job: Job, text: str, out: Path) -> Path:
    """Write a finished run's RunLog atomically: a run is either wholly there or absent."""
    path = job.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def done(job: Job, out: Path) -> bool:
    """True when the run's RunLog is there and reads back."""
    from solvers.base import RunLog

    path = job.path(out)
    if not path.exists():
        return False
    try:
        RunLog.load(path)
    except (ValueError, KeyError, TypeError):
        return False
    return True


def run_sweep(
    config: SweepConfig,
    *,
    progress: Any = None,
    on_done: Callable[[Job], None] | None = None,
) -> SweepResult:
    """Run the missing runs of ``config``, then write the report; ``on_done`` is called as each run finishes."""
    from solvers.report import write_report

    out = Path(config.out)
    jobs = jobs_of(config)
    todo = [job for job in jobs if not done(job, out)]
    skipped = tuple(job for job in jobs if job not in todo)
    ran: list[Job] = []
    if todo:
        backend = _backend(config)
        task = progress.add_task("sweep", total=len(jobs), completed=len(skipped), last="") if progress else None
        for job, text in backend(todo, config):
            save(job, text, out)
            ran.append(job)
            if progress is not None:
                progress.update(task, advance=1, last=f"{job.solver} {job.env_id} seed {job.seed}")
            if on_done is not None:
                on_done(job)
    report = write_report(jobs, out, seeds=config.seeds)
    return SweepResult(ran=tuple(ran), skipped=skipped, report=tuple(report))


def _backend(config: SweepConfig) -> Callable[[Sequence[Job], SweepConfig], Any]:
    from solvers import raycluster

    name = config.backend or ("ray" if raycluster.available() else "process")
    return {"ray": _on_ray, "process": _on_pool, "serial": _in_process}[name]


def _in_process(jobs: Sequence[Job], config: SweepConfig) -> Any:
    for job in jobs:
        yield job, run_job(job, config.env_args, config.tensorboard)


def _on_pool(jobs: Sequence[Job], config: SweepConfig) -> Any:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver: a fresh interpreter per pool, not a fork of this process with torch's threads in it
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=config.workers or os.cpu_count(), mp_context=mp.get_context(method)) as pool:
        futures = {pool.submit(run_job, job, config.env_args, config.tensorboard): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _on_ray(jobs: Sequence[Job], config: SweepConfig) -> Any:
    from solvers import raycluster

    ray = raycluster.connect(config.address, num_cpus=config.workers, what="a Ray sweep")
    remote = ray.remote(num_cpus=1)(run_job)
    pending = {remote.remote(job, config.env_args, config.tensorboard): job for job in jobs}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            text = ray.get(ready[0])  # raises the run's error here
            yield pending.pop(ready[0]), text
    finally:
        for ref in pending:  # interrupted: what is in flight is lost, what finished is on disk
            ray.cancel(ref, force=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("solvers", help="comma-separated solver names, e.g. static,random,epgt")
    parser.add_argument("env_ids", help="comma-separated HyperRL ids")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of every solver on every id")
    parser.add_argument("--out", default="sweep", help="directory for RunLogs, report.md and plots")
    parser.add_argument("--backend", choices=BACKENDS, help="default: ray when installed, else process")
    parser.add_argument("--address", help="Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto)")
    parser.add_argument("--workers", type=int, help="runs at once on this machine (default: all cores)")
    parser.add_argument("--tensorboard", metavar="DIR", help="write every run's TensorBoard scalars under DIR")


def config_from(args: argparse.Namespace) -> SweepConfig:
    """The sweep of ``hyperrl sweep``'s arguments; the env options travel as they are to every run."""
    if args.address is not None:
        from solvers import raycluster

        raycluster.check_address(args.address)  # before any run starts
    return SweepConfig(
        solvers=tuple(s.strip() for s in args.solvers.split(",") if s.strip()),
        env_ids=tuple(i.strip() for i in args.env_ids.split(",") if i.strip()),
        seeds=args.seeds,
        out=args.out,
        backend=args.backend,
        address=args.address,
        workers=args.workers,
        env_args=argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"}),
        tensorboard=args.tensorboard,
    )


def command(args: argparse.Namespace) -> int:
    """``hyperrl sweep``: run what is missing with one progress bar, then print and write the report."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    config = config_from(args)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("last: {task.fields[last]}"), console=console) as progress:
        result = run_sweep(config, progress=progress)
    console.print(f"ran {len(result.ran)} run(s), {len(result.skipped)} already done")
    console.print(Markdown(Path(config.out, "report.md").read_text()))
    console.print(f"[bold green]report written to {result.report[0]}[/]")
    return 0
