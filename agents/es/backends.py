"""Where candidates run: in this process, in a pool of worker processes, or on Ray.

Every backend gives the same results (see ``agents.es.workers``).  The process
pool is a ``concurrent.futures.ProcessPoolExecutor``: a worker that dies (killed,
out of memory, a crashing simulator) breaks the pool at once, and the parent gets
a clear error instead of waiting for a result that never comes.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agents.es.policy import PolicySpec, Rollout
from agents.es.workers import EnvCache, Job, evaluate_jobs, evaluate_thetas, process_cache


def _worker_call(item: tuple[Callable, tuple]) -> list[Rollout]:
    fn, args = item
    return fn(process_cache(), *args)


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """Contiguous, deterministic chunks (results are re-joined in input order)."""
    parts = max(1, min(parts, len(items)))
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class SerialBackend:
    """Evaluates in the calling process, on the process-wide env cache (simulators load once)."""

    name = "serial"

    def __init__(self) -> None:
        self.cache: EnvCache = process_cache()
        self.workers = 1

    def map(self, fn: Callable, chunks: list[tuple]) -> list[list[Any]]:
        return [fn(self.cache, *c) for c in chunks]

    def close(self) -> None:
        pass  # the shared cache outlives a learner


PRELOAD = ("mujoco",)
"""what the fork server imports up front besides this module: MuJoCo's ~0.2 s import would
otherwise be paid by every pool's workers.  Only plain imports whose absence raises
ImportError (which the fork server skips): gymnasium's env modules raise other errors."""


def start_method() -> str:
    """``forkserver`` (``spawn`` where it is missing), with this module preloaded in the server.

    Not ``fork``: the parent has usually imported torch and often run it (BiERL-PM's
    LSTM, a PPO learner in the same process), and a child forked from a process whose
    OpenMP or other threads hold locks can deadlock.  The fork server is a fresh
    interpreter that imports this module (so ``agents`` and torch, but runs no torch op
    and starts no threads) once per parent process; every later pool forks from it.
    Measured on two shared cores (a 2-worker pool, InvertedPendulum): the first learner
    takes 2.6 s to its first iteration (fork: 0.3 s), every later one 0.1 s (fork:
    0.07 s); throughput once the workers run is the same.
    Like ``spawn``, it re-imports the parent's ``__main__`` in each worker, so scripts
    that build process-backend learners need an ``if __name__ == "__main__":`` guard,
    and a parent whose ``__main__`` cannot be re-imported gets the serial backend
    (``main_is_importable``).
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return "spawn"
    mp.get_context("forkserver").set_forkserver_preload([__name__, *PRELOAD])
    return "forkserver"


def main_is_importable() -> bool:
    """Whether fresh workers can re-import the parent's ``__main__``, as ``forkserver`` and ``spawn`` do.

    A script read from standard input (``python - < script.py``) has ``__file__ ==
    "<stdin>"``, which a worker cannot run; it would die on start-up.  Notebooks, ``-c``
    and the REPL have no ``__file__`` and nothing to re-import, ``-m`` has a module spec.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


class WorkerDied(RuntimeError):
    """A population worker process ended while the parent waited for its candidates."""


class ProcessBackend:
    """A pool of worker processes, one per core by default; each worker keeps its envs."""

    name = "process"

    def __init__(self, workers: int | None) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = int(workers or os.cpu_count() or 1)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context(start_method()))

    def map(self, fn: Callable, chunks: list[tuple]) -> list[list[Any]]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return list(self.pool.map(_worker_call, [(fn, c) for c in chunks]))
        except BrokenProcessPool as error:
            self.close()
            raise WorkerDied(
                "an ES population worker process died before returning its candidates (killed, out of "
                "memory, or crashed in the simulator); this lifetime's pool is closed. Restore a snapshot "
                "into a fresh env to go on, or use config={'backend': 'serial'} to evaluate in this process"
            ) from error

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class RayBackend:
    """Ray tasks (the ``distributed`` extra); ``ray.init()`` is called when Ray is not running."""

    name = "ray"

    def __init__(self, workers: int | None) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.workers = int(workers or ray.cluster_resources().get("CPU", 1))
        self.remote = ray.remote(_worker_call)

    def map(self, fn: Callable, chunks: list[tuple]) -> list[list[Any]]:
        return self.ray.get([self.remote.remote((fn, c)) for c in chunks])

    def close(self) -> None:
        pass  # Ray's lifetime belongs to whoever started it; its worker processes are reused.


Backend = SerialBackend | ProcessBackend | RayBackend


def make_backend(name: str, workers: int | None) -> Backend:
    if name == "serial" or (name == "process" and workers == 0):
        return SerialBackend()
    if name == "process":
        if not main_is_importable():
            warnings.warn(
                "ES population runs in this process (serial backend): worker processes cannot re-import "
                f"this script's __main__ ({getattr(sys.modules['__main__'], '__file__', None)!r}, e.g. a script "
                "read from standard input). Run it as a file (python script.py) to use the process pool.",
                RuntimeWarning,
                stacklevel=3,
            )
            return SerialBackend()
        return ProcessBackend(workers)
    if name == "ray":
        return RayBackend(workers)
    raise ValueError(f"unknown ES backend {name!r}; use 'serial', 'process' or 'ray'")


class Evaluator:
    """The parent's side of evaluation: one backend call per population, split over its workers, in input order."""

    def __init__(self, backend: Backend, task: str, max_steps: int | None, spec: PolicySpec) -> None:
        self.backend, self.task, self.max_steps, self.spec = backend, task, max_steps, spec

    def jobs(self, theta: np.ndarray, sigma: float, seed: int, key: int, jobs: Sequence[Job]) -> list[Rollout]:
        """Keyed candidates around ``theta`` (``agents.es.workers.evaluate_jobs``)."""
        args = (self.task, self.max_steps, self.spec, theta, sigma, seed, key)
        results = self.backend.map(evaluate_jobs, [(*args, chunk) for chunk in split(list(jobs), self.backend.workers)])
        return [r for chunk in results for r in chunk]

    def policies(self, thetas: np.ndarray, seeds: Sequence[tuple[int, int | None]]) -> list[Rollout]:
        """Explicit policies, each with its (env seed, action seed or None for the mean action)."""
        chunks = split(list(range(len(thetas))), self.backend.workers)
        args = [(self.task, self.max_steps, self.spec, thetas[c], [seeds[i] for i in c]) for c in chunks]
        results = self.backend.map(evaluate_thetas, args)
        return [r for chunk in results for r in chunk]

    def close(self) -> None:
        self.backend.close()
