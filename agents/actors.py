"""IMPALA's asynchronous actor pool: processes that collect unrolls with the latest published parameters.

``num_actors`` processes (``torch.multiprocessing``) each run their own vector
env and collector, read the learner's parameters from a shared buffer under a
lock, and feed unrolls through a bounded queue; the learner turns each into a
``Batch``.  A dead or failing actor stops them all with an ``ActorError``.
"""

from __future__ import annotations

import math
import os
import queue as queue_lib
import time
import traceback
import weakref
from typing import Any

import torch

from agents.base import Batch, Params
from agents.impala_network import build_impala_network
from agents.rollout import Collector, Episode, make_vector_env
from agents.seeding import derive


class ActorError(RuntimeError):
    """An IMPALA actor process failed or died; the learner has shut the others down."""


def _flat(params: Params) -> torch.Tensor:
    return torch.cat([v.detach().reshape(-1).cpu().float() for v in params.values()])


def _unflat(flat: torch.Tensor, shapes: list[tuple[str, tuple[int, ...]]]) -> Params:
    out, offset = {}, 0
    for name, shape in shapes:
        n = math.prod(shape)
        out[name] = flat[offset : offset + n].view(shape)
        offset += n
    return out


def _actor_main(index, config, seed, shared, shapes, version, gamma, lock, out, stop, parent_pid) -> None:
    """One actor process: collect unrolls with the latest published parameters, forever."""
    torch.set_num_threads(1)
    envs = None
    try:
        envs = make_vector_env(config.task, config.num_envs)
        network = build_impala_network(config, envs.single_observation_space, envs.single_action_space)
        collector = Collector(
            envs,
            network,
            torch.Generator().manual_seed(seed),
            device=torch.device("cpu"),
            normalize_obs=config.normalize_obs,
            normalize_reward=config.normalize_reward,
            sign_reward=config.sign_reward,
        )
        collector.reset(seed=seed)
        while not stop.is_set() and os.getppid() == parent_pid:
            if not lock.acquire(timeout=1.0):  # a sibling killed while holding it must not hang us
                continue
            try:
                params, ver, g = _unflat(shared.clone(), shapes), version.value, gamma.value
            finally:
                lock.release()
            batch, episodes = collector.collect(params, config.num_steps, g)
            item = (
                "unroll",
                index,
                ver,
                {
                    "obs": batch.obs.numpy(),
                    "actions": batch.actions.numpy(),
                    "log_probs": batch.log_probs.numpy(),
                    "values": batch.values.numpy(),
                    "rewards": batch.rewards.numpy(),
                    "discounts": batch.discounts.numpy(),
                    "bootstrap_value": batch.bootstrap_value.numpy(),
                    "bootstrap_obs": batch.bootstrap_obs.numpy(),
                },
                collector.last_raw_rewards,
                [(e.ret, e.length) for e in episodes],
            )
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue_lib.Full:
                    if os.getppid() != parent_pid:
                        return
    except BaseException:  # report anything, then exit: the learner raises it
        try:
            out.put(("error", index, traceback.format_exc()), timeout=5)
        except BaseException:
            pass
    finally:
        if envs is not None:
            envs.close()


def _stop_actors(procs: list, stop: Any, out: Any) -> None:
    """Stop, drain, join, then terminate whatever is left (also the finaliser of a pool)."""
    stop.set()
    deadline = time.monotonic() + 5.0
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        try:
            while True:
                out.get_nowait()  # free actors blocked on a full queue
        except (queue_lib.Empty, OSError, ValueError):
            pass
        for p in procs:
            p.join(timeout=0.05)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
    try:
        out.cancel_join_thread()
        out.close()
    except (OSError, ValueError):
        pass


def _failure(item: tuple) -> str:
    return f"IMPALA actor impala-actor-{item[1]} failed; all actors stopped. Its traceback:\n{item[2]}"


class ActorPool:
    """Actor processes, a shared parameter buffer they read, and the queue they fill."""

    def __init__(self, config: Any, seed: int, params: Params) -> None:
        """``config``: the learner's ``IMPALAConfig`` (task, envs, queue, start method, timeout)."""
        import torch.multiprocessing as tmp

        ctx = tmp.get_context(config.start_method)
        self.config = config
        self.shapes = [(k, tuple(v.shape)) for k, v in params.items()]
        self.shared = _flat(params).share_memory_()
        self.version = ctx.Value("l", 0)
        self.gamma = ctx.Value("d", 0.99)
        self.lock = ctx.Lock()
        self.stop = ctx.Event()
        self.queue = ctx.Queue(maxsize=config.queue_size)
        self.procs = [
            ctx.Process(
                target=_actor_main,
                args=(
                    i,
                    config,
                    derive(seed, "actor", i),
                    self.shared,
                    self.shapes,
                    self.version,
                    self.gamma,
                    self.lock,
                    self.queue,
                    self.stop,
                    os.getpid(),
                ),
                daemon=True,
                name=f"impala-actor-{i}",
            )  # fmt: skip
            for i in range(config.num_actors)
        ]
        for p in self.procs:
            p.start()
        self._finalizer = weakref.finalize(self, _stop_actors, self.procs, self.stop, self.queue)

    def publish(self, params: Params) -> None:
        flat = _flat(params)
        if not self.lock.acquire(timeout=10.0):
            dead = [p.name for p in self.procs if not p.is_alive()]
            self.shutdown()
            raise ActorError(f"cannot publish parameters: the lock is held (dead actors: {dead}); all actors stopped")
        try:
            self.shared.copy_(flat)
            self.version.value += 1
        finally:
            self.lock.release()

    def get(self, device: torch.device, gamma: float, learner_version: int) -> tuple[Batch, Any, list[Episode], dict]:
        """The next unroll, its raw rewards ``[T, B]``, its finished episodes and its policy lag;
        ``ActorError`` when an actor failed or died."""
        self.gamma.value = float(gamma)
        deadline = time.monotonic() + self.config.actor_timeout
        while True:
            # Checked on every call: the other actors would otherwise hide a dead one for ever.
            dead = [(p.name, p.exitcode) for p in self.procs if not p.is_alive()]
            if dead:
                report = self._pending_error()
                self.shutdown()
                raise ActorError(report or f"IMPALA actor {dead[0][0]} died with exit code {dead[0][1]}; all actors stopped")
            try:
                item = self.queue.get(timeout=0.2)
            except queue_lib.Empty:
                if time.monotonic() > deadline:
                    self.shutdown()
                    timeout = self.config.actor_timeout
                    raise ActorError(f"no unroll from the IMPALA actors in {timeout:g} s; all actors stopped") from None
                continue
            if item[0] == "error":
                self.shutdown()
                raise ActorError(_failure(item))
            _, _, version, arrays, raw_rewards, episodes = item
            batch = Batch(**{k: torch.as_tensor(v, device=device) for k, v in arrays.items()})
            lag = {"policy_lag": float(learner_version - version)}
            return batch, raw_rewards, [Episode(ret=r, length=n) for r, n in episodes], lag

    def _pending_error(self) -> str | None:
        """The report of an actor that failed with an exception, if one is waiting in the queue."""
        # Bounded: the surviving actors keep filling the queue, and a fast one would keep it from ever draining.
        deadline = time.monotonic() + 1.0
        try:
            while time.monotonic() < deadline:
                item = self.queue.get(timeout=0.05)
                if item[0] == "error":
                    return _failure(item)
        except (queue_lib.Empty, OSError, ValueError):
            pass
        return None

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.is_alive()]

    def shutdown(self) -> None:
        self._finalizer()
