"""Interrupting and resuming a run: a graceful Ctrl-C, and checkpoints of plain data.

A checkpoint holds what continues a lifetime exactly: the solver's ``state_dict``
(any ``solvers.base.Stateful`` solver), the lifetime's ``snapshot()`` and the
RunLog so far, all tensors, numbers and strings, so ``torch.load(...,
weights_only=True)`` reads it.  Every file of saved tensors in ``solvers`` is
written by ``write_state``, so a run killed mid-write keeps its previous file.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import gymnasium as gym

from solvers.base import EpisodeSolver, RunLog, Stateful

FORMAT = 1
"""bumped when the checkpoint's layout changes"""


class GracefulStop:
    """The first Ctrl-C asks the run to stop after the current hyper-step; a second one stops it at once."""

    def __init__(self, announce: Any = print) -> None:
        self.asked = False
        self._announce = announce

    def __enter__(self) -> GracefulStop:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        self._announce("stopping after this hyper-step; Ctrl-C again stops now (no checkpoint)")


def save(path: Path, *, solver_name: str, solver: Stateful, env: gym.Env, log: RunLog) -> Path:
    """Write the checkpoint of a lifetime stopped on a hyper-step boundary (after ``log``'s last step)."""
    state = {
        "format": FORMAT,
        "solver_name": solver_name,
        "env_id": log.env_id,
        "seed": log.seed,
        "solver": solver.state_dict(),
        "lifetime": env.unwrapped.snapshot(),
        "log": log.dumps(),
    }
    return write_state(state, path)


def write_state(state: Any, path: str | Path) -> Path:
    """``torch.save(state, path)`` that never leaves half a file: written beside ``path``, then renamed over it.

    A run killed or out of disk mid-write keeps the file it had (the previous checkpoint,
    the user's rule); a rename within one directory is atomic.  Parents are created.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_state(path: str | Path, what: str) -> Any:
    """The tensors saved in ``path`` (``weights_only=True``), or a ValueError naming ``what`` and the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for a damaged or foreign file
        raise ValueError(f"{what} {path} is not a readable torch state_dict: {type(err).__name__}: {err}") from err


def load(path: str | Path, *, solver_name: str, env_id: str) -> dict[str, Any]:
    """A checkpoint, checked to be a ``solver_name`` run on ``env_id``."""
    state = read_state(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a hyperrl run checkpoint (format {FORMAT})")
    if state["solver_name"] != solver_name or state["env_id"] != env_id.split(":")[-1]:
        raise ValueError(
            f"{path} holds a {state['solver_name']} run on {state['env_id']}; "
            f"this command runs {solver_name} on {env_id}: resume with the command that made it"
        )
    return state


def restore(state: dict[str, Any], solver: Stateful, env: gym.Env, source: str) -> tuple[Any, RunLog]:
    """Load the lifetime and the solver from ``state``; returns ``(obs, log)`` for ``solver.resume``.

    The order is the one ``Stateful`` documents: the env is reset with the run's seed and the
    solver's ``begin`` sees that reset, as at the lifetime's start (it binds to the env there);
    then the snapshot puts the lifetime back, and ``load_state_dict`` the solver.
    """
    seed = int(state["seed"])
    obs, info = env.reset(seed=seed)
    if isinstance(solver, EpisodeSolver):
        solver.begin(env, obs, info, seed)
    obs = env.unwrapped.restore(state["lifetime"])
    solver.load_state_dict(state["solver"])
    return obs, RunLog.loads(state["log"], source=source)
