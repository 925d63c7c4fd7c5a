"""The ``hyperrl`` command: list ids, run a solver on one, plot runs, and the demo."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from solvers import SOLVERS, checkpoint, is_stateful, listing, make_solver, pbt, solver_class, sweep
from solvers.base import RunLog, Solver, StepRecord, StopRun, describe_space
from solvers.command_env import make_env
from solvers.plots import plot_returns, plot_schedule
from solvers.tensorboard import TensorBoardLogger

console = Console()

DEFAULT_THREADS = 1
"""torch threads of ``run`` and ``demo``: fixed, so a command gives the same numbers on any machine with
the same software (the thread count changes a run's floating-point sums, hence its results), and one
thread is the faster choice for the small networks of the classic-control ids"""


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("env steps"),
        TimeElapsedColumn(),
        TextColumn("return {task.fields[ret]}  {task.fields[hp]}"),
        console=console,
        transient=False,
    )


def _format_hparams(hp: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in hp.items())


def run_one(
    solver_name: str,
    env: gym.Env,
    seed: int,
    progress: Progress,
    solver: Solver | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    resume: tuple[Any, RunLog] | None = None,
) -> RunLog:
    """One lifetime of ``solver`` (a new ``solver_name`` when None) with a live progress bar; returns the RunLog.

    ``stop`` is asked after every hyper-step: True ends the run there (``StopRun``, carrying the
    log so far).  ``resume=(obs, log)`` continues a restored lifetime after ``log``.
    """
    total = env.unwrapped.total_timesteps
    task = progress.add_task(f"{solver_name} seed {seed}", total=total, ret="-", hp="")
    seen = [ret for r in resume[1].records for ret in r.episode_returns] if resume else []

    def on_step(record: StepRecord) -> None:
        seen.extend(record.episode_returns)
        ret = f"{np.mean(seen[-10:]):8.1f}" if seen else "-"
        progress.update(task, completed=record.timesteps, ret=ret, hp=_format_hparams(record.hyperparameters))
        if stop is not None and stop():
            raise StopRun

    solver = solver or make_solver(solver_name)
    try:
        if resume is None:
            log = solver.run(env, seed=seed, callback=on_step)
        else:
            log = solver.resume(env, *resume, callback=on_step)
    except StopRun as stopped:
        _describe(stopped.log, env)
        raise
    return _describe(log, env)


def _describe(log: RunLog, env: gym.Env) -> RunLog:
    """The header fields a solver cannot know: the controlled space and the torch thread count it ran with."""
    import torch

    log.space, log.threads = describe_space(env), torch.get_num_threads()
    return log


def _write_plots(logs: Sequence[RunLog], out: Path, stem: str) -> list[Path]:
    return [plot_returns(logs, out / f"{stem}returns.png"), plot_schedule(logs, out / f"{stem}schedule.png")]


def cmd_list(args: argparse.Namespace) -> int:
    if args.write_readme:
        path = Path(args.write_readme)
        path.write_text(listing.readme_with_tables(path.read_text()))
        console.print(f"[green]tables rewritten[/] in {path}")
        return 0
    header, rows = (
        (listing.HPARAM_HEADER, listing.hparam_rows(args.filter))
        if args.hyperparameters
        else (listing.ID_HEADER, listing.id_rows(args.filter))
    )
    if args.markdown:
        print(listing.markdown_table(header, rows))
        return 0
    table = Table(title=f"HyperRL {'hyperparameters' if args.hyperparameters else 'ids'} ({len(rows)})")
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


PERSISTENT = ("epgt",)
"""solvers whose learned state carries over to new lifetimes (``--save-solver`` / ``--load-solver`` files)"""


def _check_persistent(args: argparse.Namespace) -> None:
    if (args.save_solver or args.load_solver) and args.solver not in PERSISTENT:
        raise ValueError(
            f"solver {args.solver!r} keeps no state across lifetimes to save or load; solvers that do: {list(PERSISTENT)}"
        )


def _solver_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--optimizer`` goes to the optim4rl solver (the learned optimizer it trains with), ``--rule`` to the
    lpg solver (the LPG its learner minimises); no other takes them."""
    for flag, solver, key in (("--optimizer", "optim4rl", "optimizer"), ("--rule", "lpg", "rule")):
        if getattr(args, key, None) is not None:
            if args.solver != solver:
                raise ValueError(f"{flag} is for the {solver} solver, not {args.solver!r}")
            return {key: getattr(args, key)}
    return {}


def _run_solver(args: argparse.Namespace) -> Solver:
    """A new solver, or the one saved in ``--load-solver`` (its memory and encoder; a new lifetime starts)."""
    if args.load_solver:
        return solver_class(args.solver).load(args.load_solver)
    if getattr(solver_class(args.solver), "population_based", False):  # pbt, pb2: --population, --address, ...
        return make_solver(args.solver, **pbt.from_arguments(args))
    return make_solver(args.solver, **_solver_kwargs(args))


def _solver_path(args: argparse.Namespace, seed: int) -> Path:
    """``--save-solver``'s path; with several seeds, one file per seed (each seed's solver is its own)."""
    path = Path(args.save_solver)
    return path if args.seeds == 1 else path.with_name(f"{path.stem}-seed{seed}{path.suffix}")


def _save_solver(args: argparse.Namespace, solver: Any, seed: int) -> None:
    if args.save_solver:
        console.print(f"[green]solver saved[/] {solver.save(_solver_path(args, seed))}")


def _start(args: argparse.Namespace, seed: int, state: dict[str, Any] | None) -> tuple[Solver, gym.Env, Any]:
    """The solver and env of one seed; restored from the checkpoint when it is that seed's (then also ``(obs, log)``)."""
    resuming = state is not None and state["seed"] == seed
    solver = make_solver(args.solver, **_solver_kwargs(args)) if resuming else _run_solver(args)
    env = make_env(args, solver=solver)
    if args.tensorboard and not getattr(solver, "population_based", False):  # population members write their own
        env = TensorBoardLogger(env, Path(args.tensorboard) / f"{args.solver}-seed{seed}")
    return solver, env, checkpoint.restore(state, solver, env, str(args.resume)) if resuming else None


def _read_checkpoint(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.resume:
        return None
    if getattr(solver_class(args.solver), "population_based", False):
        raise ValueError(f"{args.solver} runs cannot be resumed: a population-based run starts over (see solvers/pbt.py)")
    state = checkpoint.load(args.resume, solver_name=args.solver, env_id=args.env_id)
    if not args.seed <= state["seed"] < args.seed + args.seeds:
        raise ValueError(f"{args.resume} is seed {state['seed']}, outside this command's seeds")
    return state


def cmd_run(args: argparse.Namespace) -> int:
    _check_persistent(args)
    out = Path(args.out)
    state = _read_checkpoint(args)
    first = state["seed"] if state else args.seed
    logs = []
    with _progress() as progress, checkpoint.GracefulStop(_warn) as interrupt:
        for seed in range(first, args.seed + args.seeds):
            solver, env, resume = _start(args, seed, state)
            try:
                log = run_one(args.solver, env, seed, progress, solver, stop=lambda: interrupt.asked, resume=resume)
            except StopRun as stopped:
                return _stopped(args, solver, env, stopped.log)
            except KeyboardInterrupt:
                # A second Ctrl-C, mid-step: the lifetime is not at a step boundary; the solver's state still is.
                with contextlib.suppress(RuntimeError):  # interrupted before the solver saw the env: nothing to save
                    _save_solver(args, solver, seed)
                console.print("[bold red]interrupted[/]")
                return 130
            finally:
                env.close()
            _save_solver(args, solver, seed)
            path = log.save(out / f"{args.solver}-seed{seed}.jsonl")
            logs.append(log)
            console.print(f"[green]saved[/] {path}  final return {log.final_return():.1f}")
    for path in _write_plots(logs, out, f"{args.solver}-"):
        console.print(f"[green]plot[/] {path}")
    return 0


def _warn(text: str) -> None:
    console.print(f"[yellow]{text}[/]")


def _stopped(args: argparse.Namespace, solver: Any, env: gym.Env, log: RunLog) -> int:
    """After a graceful stop: the partial RunLog, and for solvers with state a checkpoint to resume from."""
    stem = Path(args.out) / f"{args.solver}-seed{log.seed}"
    partial = log.save(stem.with_name(stem.name + ".partial.jsonl"))
    console.print(f"[yellow]stopped[/] after {len(log)} hyper-steps; partial log {partial}")
    _save_solver(args, solver, log.seed)
    if not is_stateful(solver):
        console.print(f"[yellow]{args.solver} has no state_dict: this lifetime cannot be resumed[/]")
        return 130
    path = checkpoint.save(stem.with_name(stem.name + ".checkpoint.pt"), solver_name=args.solver, solver=solver, env=env, log=log)
    console.print(f"[green]checkpoint[/] {path}: run the same command with --resume {path} to continue")
    return 130


def cmd_plot(args: argparse.Namespace) -> int:
    logs = [RunLog.load(p) for p in args.runs]
    for path in _write_plots(logs, Path(args.out), ""):
        console.print(f"[green]plot[/] {path}")
    return 0


def _summary(logs: Sequence[RunLog]) -> list[tuple[str, float, float, float]]:
    """Per solver: mean final return, its std over seeds, and mean area under the return curve."""
    rows = []
    for solver in dict.fromkeys(log.solver for log in logs):
        mine = [log for log in logs if log.solver == solver]
        finals = np.array([log.final_return() for log in mine])
        aucs = np.array([np.nanmean(log.returns()) for log in mine])
        rows.append((solver, float(np.nanmean(finals)), float(np.nanstd(finals)), float(np.nanmean(aucs))))
    return rows


def _discrete_bins(env: gym.Env) -> str:
    """``lr 0.00028 ... 0.00175`` for a discrete env (the grids its solver chooses among); "" for a continuous one."""
    space = env.get_wrapper_attr("hparam_space")
    if space.action_type != "discrete":
        return ""
    return "; ".join(f"{h.name} {' '.join(f'{b:.3g}' for b in g)}" for h, g in zip(space.hyperparameters, space.grids))


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    logs: list[RunLog] = []
    console.print(f"[bold]HyperRL demo[/]: {', '.join(args.solvers)} on {args.env_id}, seeds {args.seeds}")
    bins = ""
    with _progress() as progress:
        for solver in args.solvers:
            for seed in range(args.seeds):
                agent = make_solver(solver)
                env = make_env(args, solver=agent)
                bins = bins or _discrete_bins(env)
                try:
                    logs.append(run_one(solver, env, seed, progress, agent))
                finally:
                    env.close()
                logs[-1].save(out / "runs" / f"{solver}-seed{seed}.jsonl")
    plots = _write_plots(logs, out, "")
    rows = _summary(logs)
    table = Table(title="final mean return (last 10 episodes)")
    for col in ("solver", "final return", "std over seeds", "mean over lifetime"):
        table.add_column(col)
    for solver, final, std, auc in rows:
        table.add_row(solver, f"{final:.1f}", f"{std:.1f}", f"{auc:.1f}")
    console.print(table)
    if bins:
        console.print(f"discrete solvers chose among the id's bins: {bins}")
    report = out / "report.md"
    lines = [
        f"# HyperRL demo: {args.env_id}",
        "",
        f"Solvers {', '.join(args.solvers)}; {args.seeds} seeds each; command: `hyperrl demo --out {args.out}`.",
        *([f"Discrete solvers chose among the id's default bins: {bins}."] if bins else []),
        "",
        "| solver | final return | std over seeds | mean over lifetime |",
        "| --- | --- | --- | --- |",
        *(f"| {s} | {f:.1f} | {d:.1f} | {a:.1f} |" for s, f, d, a in rows),
        "",
        *(f"![{p.stem}]({p.name})" for p in plots),
        "",
    ]
    report.write_text("\n".join(lines))
    console.print(f"[bold green]report written to {report}[/]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperrl", description="Training runs of RL agents as Gymnasium environments.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered ids with their spaces and budgets")
    p.add_argument("--filter", help="only ids (or, with --hyperparameters, algorithms) containing this text")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's)")
    p.add_argument(
        "--hyperparameters", action="store_true", help="list every algorithm's declared hyperparameters instead of the ids"
    )
    p.add_argument("--write-readme", metavar="PATH", help="rewrite the generated tables of this README in place")
    p.set_defaults(func=cmd_list)

    def env_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--total-timesteps", type=int, help="lifetime budget in inner env steps (id default)")
        p.add_argument("--iterations-per-step", type=int, help="learner iterations per hyper-step (id default)")
        p.add_argument("--num-envs", type=int, help="parallel inner environments (id default)")
        p.add_argument("--hyperparameters", help="which to control: 'lr,clip' or 'lr=1e-5:1e-2,clip'")
        p.add_argument(
            "--action-type",
            choices=("continuous", "discrete"),
            help="action space of the env (default: what the solver needs: discrete for epgt, rnd, dqn; else continuous)",
        )
        p.add_argument(
            "--bins",
            type=int,
            help="evenly spaced bins per hyperparameter for discrete actions (default: each one's declared bins, see `list`)",
        )
        p.add_argument(
            "--observe",
            help="observation parts, e.g. 'projection,statistics' (default: the id's; parts the solver needs are added)",
        )
        p.add_argument("--device", default="cpu", help="torch device of the inner learner")
        _threads_option(p)
        p.add_argument(
            "--config", action="append", metavar="KEY=VALUE", help="learner config override, e.g. num_steps=64 (repeatable)"
        )

    p = sub.add_parser("run", help="run a solver on one id", description=f"Solvers: {', '.join(sorted(SOLVERS))}.")
    p.add_argument("solver", choices=sorted(SOLVERS), help="the solver")
    p.add_argument("env_id", help="a HyperRL id, e.g. HyperRL/PPO-CartPole-v0")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="number of consecutive seeds to run")
    p.add_argument("--out", default="runs", help="directory for RunLogs (JSON lines) and plots")
    p.add_argument(
        "--save-solver",
        metavar="PATH",
        help="write the solver's state (EPGT: memory, encoder, RNG) here after the lifetime, and on Ctrl-C; "
        "with several seeds one file per seed, PATH's stem + '-seedN'",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue the lifetime saved in PATH (the checkpoint a Ctrl-C writes to OUT for solvers with state); "
        "give the same command otherwise",
    )
    p.add_argument(
        "--load-solver",
        metavar="PATH",
        help="start every lifetime from the solver state saved in PATH (a trained memory, or an interrupted run's)",
    )
    p.add_argument("--tensorboard", metavar="DIR", help="write per-hyper-step TensorBoard scalars under DIR")
    p.add_argument("--optimizer", metavar="FILE", help="optim4rl: the learned optimizer file (default: the shipped one)")
    p.add_argument("--rule", metavar="FILE", help="lpg: the LPG rule file (default: the shipped one)")
    pbt.add_arguments(p)
    env_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plot", help="draw returns and schedules from saved RunLogs")
    p.add_argument("runs", nargs="+", help="RunLog .jsonl files")
    p.add_argument("--out", default="runs", help="directory for the PNGs")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("demo", help="solvers against each other on a small id, with a report")
    p.add_argument("--env-id", default="HyperRL/A2C-CartPole-v0")
    p.add_argument("--solvers", nargs="+", default=["static", "random", "epgt"], choices=sorted(SOLVERS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="reports/demo")
    env_options(p)
    # 5 A2C iterations (400 env steps) per hyper-step: 250 decisions a lifetime, enough for EPGT's memory to matter.
    p.set_defaults(iterations_per_step=5)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sweep", help="every solver x id x seed as parallel runs (Ray), resumable, with an rliable report")
    sweep.add_arguments(p)
    env_options(p)
    p.set_defaults(func=sweep.command)

    from solvers.bierl import pretrain as bierl_pretrain  # light: torch loads only when the command runs

    p = sub.add_parser("bierl-pretrain", help="meta-train BiERL-PM's network on a simple task (warm start)")
    bierl_pretrain.add_arguments(p)
    p.set_defaults(func=bierl_pretrain.command)

    from solvers.optim4rl import cli as optim4rl_cli  # light: torch loads only when the command runs

    p = sub.add_parser("optim4rl-train", help="meta-train an Optim4RL learned optimizer (pipeline training)")
    optim4rl_cli.add_arguments(p)
    _threads_option(p)  # the compiled optimizer splits over them too: 2 threads meta-train ~1.5x faster
    p.set_defaults(func=optim4rl_cli.command)

    from solvers.lpg import cli as lpg_cli  # light: torch loads only when the command runs

    p = sub.add_parser("lpg-train", help="meta-train an LPG update rule over tabular lifetimes (Algorithm 1)")
    lpg_cli.add_arguments(p)
    p.set_defaults(func=lpg_cli.command)
    return parser


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=DEFAULT_THREADS,
        help=f"torch intra-op threads (default {DEFAULT_THREADS}); results are bit-for-bit reproducible per thread count",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _pin_threads(args: argparse.Namespace) -> None:
    """The one place the thread count is set: the library never changes it (see ``DEFAULT_THREADS``)."""
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _pin_threads(args)
    try:
        return args.func(args)
    except (ValueError, KeyError, gym.error.Error) as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}")  # escaped: "pip install 'hyperrl[distributed]'"
        return 2


if __name__ == "__main__":
    sys.exit(main())
