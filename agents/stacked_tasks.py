"""N A2C (or PPO) lifetimes on a batched task run as ONE program: one task of N x B instances, one network call,
one update.  ``StackedTaskPPO`` is the same runner with PPO's update (``agents.stacked.StackedPPO``).

``StackedTaskA2C(learners)`` takes N ``TaskA2CLearner``\\ s of one config and from
then on lives their lifetimes together:

* the task: one batched task of N groups of B instances (``lifetimes=N``), each
  group with its own generator, loaded with each learner's own task state
  (``BatchedTask.load_lifetime``), so group ``j`` goes on exactly as learner
  ``j``'s task would;
* the actions: one uniform per instance and step from each learner's own
  generator (N draws of ``[T, B]`` per collection into one buffer), one
  inverse-CDF draw for all lifetimes per step, as
  ``agents.task_rollout.TaskCollector`` draws for a lone learner;
* the network: ``TaskActorCritic.stacked_forward``, batched matmuls over the
  stacked parameters ``[N, ...]``; the update: ``agents.stacked.StackedA2C.train_step``
  (``torch.func.vmap`` of the objective's gradient, the stock rules stepped on
  the stacked tensors).

So lifetime ``j`` equals what ``learners[j].iterate`` would have done alone:
bit for bit where the batched kernels give the lone kernels' bits (Catch's
Dense256 network: tested), else to float rounding (the big grids' gradients
differ by ~1e-9 once episodes end, which Adam amplifies where a gradient is
near zero), with the same actions unless a uniform falls within that rounding
of a CDF step.

State and views.  ``params`` and ``opt_state`` (stacked, ``[N, ...]``) are the
truth; after every ``iterate`` each learner's ``params``/``opt_state`` are
views of lifetime ``j``'s slice (read them, do not train them alone), and its
``timesteps``, ``iterations``, ``last_update``, gradient history, ``diverged``
are kept as ``iterate`` keeps them.  The learners' own tasks and collectors are
not stepped; ``sync(j)`` copies lifetime ``j``'s task rows, generator and
running episode state back into learner ``j`` (before a ``state_dict``), and
``replace({j: learner})`` puts a new lifetime (e.g. a restarted one) in slot ``j``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.base import Batch, IterationReport, LastUpdate
from agents.stacked import StackedA2C, StackedBatch, StackedPPO
from agents.task_networks import categorical_from_uniforms
from agents.task_rollout import make_task_envs


def _set_row(stacked: Any, j: int, value: Any) -> None:
    """Write lifetime ``j``'s ``value`` into a stacked (nested dict of ``[N, ...]`` tensors) state."""
    if isinstance(stacked, Mapping):
        for k in stacked:
            _set_row(stacked[k], j, value[k])
    else:
        stacked[j] = torch.as_tensor(value)


class StackedTaskA2C:
    """N A2C lifetimes of one task config as one vectorised program (see the module docstring)."""

    Update: type = StackedA2C
    """the stacked update of the learners' algorithm"""

    def __init__(self, learners: Sequence[Any]) -> None:
        if not learners:
            raise ValueError("learners must hold at least one learner")
        self.learners = list(learners)
        first = self.learners[0]
        for lr in self.learners:
            if not hasattr(lr, "collector") or not hasattr(lr.collector, "envs") or lr.config != first.config:
                raise ValueError("learners must be task A2C learners of one config (task, num_envs, network, update rule)")
        self.update = self.Update(first)
        self.network = first.network
        self.device = first.device
        self.config = first.config
        n, b = len(self.learners), self.config.num_envs
        self.envs = make_task_envs(self.config.task, b, self.device, lifetimes=n)
        """the one task of ``N * B`` instances (``envs.unwrapped.task``), lifetime-major rows"""
        self.task = self.envs.unwrapped.task
        if not self.task.groups_lifetimes:
            raise ValueError(f"task {self.config.task} cannot hold several lifetimes")
        self.params, self.opt_state = self.update.stack(self.learners)
        obs = first.collector.running[0]
        self.obs = torch.empty((n, *obs.shape), dtype=obs.dtype, device=self.device)
        """each lifetime's current observations ``[N, B, ...]``"""
        self.ep_return = torch.zeros((n, b), dtype=torch.float64, device=self.device)
        self.ep_length = torch.zeros((n, b), dtype=torch.long, device=self.device)
        self._forward = self.network.stacked_forward
        for j, lr in enumerate(self.learners):
            self._load(j, lr)
        self._publish(range(n))

    @property
    def num_lifetimes(self) -> int:
        return len(self.learners)

    # -- slots ------------------------------------------------------------------------
    def _load(self, j: int, learner: Any) -> None:
        self.task.load_lifetime(j, learner.envs.unwrapped.task)
        col = learner.collector
        self.obs[j], self.ep_return[j], self.ep_length[j] = col.running
        for k, v in learner.params.items():
            self.params[k][j] = v.detach()
        _set_row(self.opt_state, j, learner.opt_state)

    def replace(self, learners: Mapping[int, Any]) -> None:
        """Slot ``j`` lives ``learners[j]``'s lifetime from its current state (e.g. a restarted lifetime's first)."""
        for j, learner in learners.items():
            if learner.config != self.config:
                raise ValueError("learners must have the population's config")
            # in place: only the replaced learner's own views (row j) change, and it is done with
            self.learners[j] = learner
            self._load(j, learner)
        self._publish(list(learners))

    def sync(self, j: int) -> None:
        """Copy lifetime ``j``'s task rows, generator and running episodes into learner ``j``'s own task and collector."""
        lr = self.learners[j]
        self.task.store_lifetime(j, lr.envs.unwrapped.task)
        lr.collector.set_running(self.obs[j], self.ep_return[j], self.ep_length[j])

    def _publish(self, rows: Sequence[int] | range) -> None:
        params, state = _rows(self.params), _rows(self.opt_state)
        for j in rows:
            self.learners[j].params, self.learners[j].opt_state = params[j], state[j]

    # -- one iteration of every lifetime ------------------------------------------------
    def _hparams(self, hparams: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        if hparams is None or isinstance(hparams, Mapping):
            hparams = [hparams] * self.num_lifetimes
        if len(hparams) != self.num_lifetimes:
            raise ValueError(f"hparams must be one mapping or one per lifetime ({self.num_lifetimes}), got {len(hparams)}")
        return [lr.hparam_values(lr.resolve_hparams(h)) for lr, h in zip(self.learners, hparams)]

    @staticmethod
    def _stack_hparams(hps: list[dict[str, Any]]) -> dict[str, Any]:
        """Shared values as numbers, values that differ between lifetimes as ``[N]`` tensors."""
        out = {}
        for k in hps[0]:
            values = [h[k] for h in hps]
            same = all(v == values[0] for v in values)
            out[k] = values[0] if same else torch.tensor([float(v) for v in values], dtype=torch.float64)
        return out

    def iterate(
        self, hparams: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None, active: Sequence[bool] | None = None
    ) -> list[IterationReport]:
        """One collection and one A2C update of every lifetime, each with its own hyperparameters.

        ``hparams``: one mapping for all, or one per lifetime.  ``active``: lifetimes to train
        (default all that have not diverged); an inactive or diverged lifetime keeps its parameters
        and reports no steps, but its task rows and generators still move (their draws are discarded).
        Returns each lifetime's ``IterationReport``, as its learner's ``iterate`` would.
        """
        start = time.perf_counter()
        hps = self._hparams(hparams)
        n = self.num_lifetimes
        active = [True] * n if active is None else [bool(a) for a in active]
        if len(active) != n:
            raise ValueError(f"active must hold one flag per lifetime ({n}), got {len(active)}")
        live = [a and not lr.diverged for a, lr in zip(active, self.learners)]
        gammas = [float(h["gamma"]) for h in hps]
        batch, raw, done, rets, lens = self.collect(self.config.num_steps, gammas)
        old = (self.params, self.opt_state)
        # each learner's published views are its rows of ``old``: they are its last update's inputs (fewer new views)
        before = [(lr.params, lr.opt_state) for lr in self.learners]
        new_params, new_state, metrics, grads = self._train(batch, hps, live)
        if all(live):
            self.params, self.opt_state = new_params, new_state
        else:
            mask = torch.tensor(live, device=self.device)
            self.params = {k: _where(mask, v, old[0][k]) for k, v in new_params.items()}
            self.opt_state = _where_state(mask, new_state, old[1])
        self._publish([j for j in range(n) if live[j]])
        return self._reports(batch, raw, done, rets, lens, metrics, grads, before, hps, gammas, live, start)

    def _train(self, batch: StackedBatch, hps: list[dict[str, Any]], live: list[bool]) -> tuple:
        """The update of every lifetime: new stacked params and state, ``[N]`` metrics, and per lifetime its
        clipped gradients to book, oldest first (A2C: one vmapped step for all, the idle rows masked after)."""
        stepped = self.update.train_step(self.params, self.opt_state, batch, self._stack_hparams(hps), return_grads=True)
        new_params, new_state, metrics, grads = stepped
        return new_params, new_state, metrics, [[row] for row in _rows(grads)]

    @torch.no_grad()
    def collect(
        self, num_steps: int, gamma: float | Sequence[float]
    ) -> tuple[StackedBatch, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``num_steps`` steps of every lifetime: the stacked batch ``[N, T, B, ...]``, and ``[N, T, B]`` raw rewards,
        episode ends, running returns and lengths at each step."""
        n, b, t_max = self.num_lifetimes, self.config.num_envs, num_steps
        gens = [lr.generator for lr in self.learners]
        g = torch.as_tensor(gamma, dtype=torch.float32, device=self.device).expand(n).unsqueeze(1)
        obs_buf = torch.empty((n, t_max + 1, *self.obs.shape[1:]), dtype=self.obs.dtype, device=self.device)
        obs_buf[:, 0] = self.obs
        zeros = {"device": self.device}
        act = torch.empty((n, t_max, b), dtype=torch.long, **zeros)
        logp, value, rew, raw = (torch.empty((n, t_max, b), **zeros) for _ in range(4))
        done = torch.empty((n, t_max, b), dtype=torch.bool, **zeros)
        rets = torch.empty((n, t_max, b), dtype=torch.float64, **zeros)
        lens = torch.empty((n, t_max, b), dtype=torch.long, **zeros)
        obs_shape = self.obs.shape[2:]
        u = torch.empty((n, t_max, b), device=self.device)
        for block, gen in zip(u, gens):  # each lifetime's uniforms from its own generator, as its lone collector draws
            block.uniform_(generator=gen)
        for t in range(t_max):
            logits, value[:, t] = self._forward(self.params, obs_buf[:, t])
            action = categorical_from_uniforms(logits, u[:, t])
            act[:, t] = action
            logp[:, t] = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            next_obs, reward, term, trunc, info = self.envs.step(action.view(-1))
            obs_buf[:, t + 1] = next_obs.view(n, b, *obs_shape)
            reward, term, trunc = reward.view(n, b), term.view(n, b), trunc.view(n, b)
            d = term | trunc
            self.ep_return += reward
            self.ep_length += 1
            done[:, t], rets[:, t], lens[:, t] = d, self.ep_return, self.ep_length
            self.ep_return.masked_fill_(d, 0.0)
            self.ep_length.masked_fill_(d, 0)
            raw[:, t] = reward
            bootstrap = trunc & ~term
            if bool(bootstrap.any()):
                final = self._forward(self.params, info["final_obs"].view(n, b, *obs_shape))[1]
                reward = reward + g * torch.where(bootstrap, final, 0.0)
            rew[:, t] = reward
        self.obs.copy_(obs_buf[:, t_max])
        batch = {
            "obs": obs_buf[:, :t_max],
            "actions": act,
            "log_probs": logp,
            "values": value,
            "rewards": rew,
            "discounts": (~done).float(),
            "bootstrap_value": self._forward(self.params, self.obs)[1],
            "bootstrap_obs": obs_buf[:, t_max],
        }
        return batch, raw, done, rets, lens

    def _reports(self, batch, raw, done, rets, lens, metrics, grads, before, hps, gammas, live, start) -> list[IterationReport]:
        n, t_max, b = raw.shape
        counts = done.sum((1, 2)).tolist()
        ended_returns, ended_lengths = rets[done].tolist(), lens[done].tolist()
        weights = torch.tensor(gammas, dtype=torch.float64, device=self.device).unsqueeze(1) ** torch.arange(
            t_max, dtype=torch.float64, device=self.device
        )
        rollout = (weights.unsqueeze(2) * raw.double()).sum(1).mean(1).tolist()
        values = {k: v.tolist() for k, v in metrics.items()}  # NaN for the idle rows of a PPO update
        # per-lifetime views by one unbind per tensor (indexing each lifetime in turn costs N times the ops)
        rows = _rows(batch)
        reports, first = [], 0
        for j, lr in enumerate(self.learners):
            count, first = counts[j], first + counts[j]
            if not live[j]:
                idle = IterationReport(timesteps=lr.timesteps, env_steps=0, diverged=lr.diverged, divergence=lr.divergence)
                reports.append(idle)
                continue
            update = LastUpdate(params=before[j][0], opt_state=before[j][1], batch=Batch(**rows[j]), hparams=hps[j], meta=None)
            lr.collector.rollout_return = rollout[j]
            losses = {k: values[k][j] for k in lr.loss_names}
            stats = {k: values[k][j] for k in values if k not in losses}
            report = lr.record_update(update, grads[j], t_max * b, losses, stats, start)
            ended = slice(first - count, first)
            reports.append(
                dataclasses.replace(
                    report, episode_returns=tuple(ended_returns[ended]), episode_lengths=tuple(ended_lengths[ended])
                )
            )
        return reports


def _rows(tree: Any) -> list[Any]:
    """The N per-lifetime views of a stacked tree (dicts of ``[N, ...]`` tensors), one ``unbind`` per tensor."""
    if isinstance(tree, Mapping):
        parts = {k: _rows(v) for k, v in tree.items()}
        n = len(next(iter(parts.values())))
        return [{k: v[j] for k, v in parts.items()} for j in range(n)]
    return list(tree.unbind(0))


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, *[1] * (new.dim() - 1)), new, old.to(new.dtype))


def _where_state(mask: torch.Tensor, new: Any, old: Any) -> Any:
    if isinstance(new, Mapping):
        return {k: _where_state(mask, v, old[k]) for k, v in new.items()}
    return _where(mask, new, torch.as_tensor(old))


class StackedTaskPPO(StackedTaskA2C):
    """N PPO lifetimes of one task config as one program: the same collection, and ``agents.stacked.StackedPPO``'s
    epochs x minibatches schedule, each lifetime's minibatch order from its own generator as alone."""

    Update = StackedPPO

    def _train(self, batch: StackedBatch, hps: list[dict[str, Any]], live: list[bool]) -> tuple:
        # only the live lifetimes run their schedule: an idle lifetime's generator must not move
        rows = [j for j in range(self.num_lifetimes) if live[j]]
        if not rows:
            return self.params, self.opt_state, {}, [[] for _ in live]
        if len(rows) == self.num_lifetimes:
            gens = [lr.generator for lr in self.learners]
            return self.update.train_step(self.params, self.opt_state, batch, hps, gens)
        idx = torch.tensor(rows, device=self.device)
        pick = {k: v[idx] for k, v in batch.items()}
        params, state = {k: v[idx] for k, v in self.params.items()}, _take_state(self.opt_state, idx)
        gens = [self.learners[j].generator for j in rows]
        new_p, new_s, metrics, grads = self.update.train_step(params, state, pick, [hps[j] for j in rows], gens)
        out_p = {k: v.clone() for k, v in self.params.items()}
        out_s = _take_state(self.opt_state, None)
        for k, v in new_p.items():
            out_p[k][idx] = v
        _put_state(out_s, new_s, idx)
        out_m = {
            k: torch.full((self.num_lifetimes,), float("nan"), dtype=v.dtype).index_copy(0, idx.cpu(), v.cpu())
            for k, v in metrics.items()
        }
        out_g: list[list[Any]] = [[] for _ in live]
        for i, j in enumerate(rows):
            out_g[j] = grads[i]
        return out_p, out_s, out_m, out_g


def _take_state(state: Any, idx: torch.Tensor | None) -> Any:
    """Rows ``idx`` of a stacked state (a copy of all of it for None)."""
    if isinstance(state, Mapping):
        return {k: _take_state(v, idx) for k, v in state.items()}
    state = torch.as_tensor(state)
    return state.clone() if idx is None else state[idx]


def _put_state(out: Any, rows: Any, idx: torch.Tensor) -> None:
    for k, v in rows.items():
        if isinstance(v, Mapping):
            _put_state(out[k], v, idx)
        else:
            out[k][idx] = v
