"""Optim4RL's population of training units, vectorised over one batched task (paper section 5.1).

``n`` units, each one A2C agent with its own parameters, learned-optimizer state and environment
rows, live as stacked tensors: parameters ``[n, *shape]``, the two GRUs' hidden states ``[n, P, H]``
(``P`` parameter elements per agent) and one batched task of ``n * envs_per_unit`` rows, unit ``j``
owning rows ``j * E .. (j + 1) * E - 1``.  A collection step is one forward of the task network for
every unit by batched matmuls (``TaskActorCritic.stacked_forward``) and one task step; an inner update
is one vmapped A2C loss (``torch.func.vmap``), one backward for the ``n`` unit gradients (unit losses
are independent, so the gradient of their sum is each unit's own), a per-unit global-norm clip and the
learned optimizer on all ``n * P`` elements together (it is coordinate-wise; the compiled kernel,
``solvers.optim4rl.kernel``, where it applies).  The meta-loss is the mean over units of the A2C loss
of the 4th parameters on a fresh rollout; its gradient in the optimizer's weights is the one a graph
through the 4 updates and the recurrent states gives (``LoopPopulation``'s, unit by unit), computed by
replaying the recurrent steps block by block (``_Replay``; in one compiled pass where the kernel applies).

A unit's life ``L`` starts from ``network.init(Generator().manual_seed(derive(derive(seed, "unit",
j), "life", L)))``, the parameters ``TaskA2CLearner(seed=...)`` would draw with that seed, so a
loop population over the same units starts from the same agents.  Resetting unit ``j`` draws new
parameters, zeroes its hidden states and starts new episodes in its rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.func import vmap

from agents.a2c import A2CObjective
from agents.base import Batch, Params
from agents.seeding import derive
from agents.task_networks import TaskActorCritic
from hyperenvs.tasks import make_task
from solvers.optim4rl import kernel
from solvers.optim4rl.config import TASK_SETTINGS
from solvers.optim4rl.meta import PopulationLoss
from solvers.optim4rl.optimizer import Optim4RL

CHUNK = 16384
"""parameter elements per call of the learned optimizer's torch maths on a CPU (a block of its GRU state stays
in cache)"""
DEVICE_CHUNK = 1 << 21
"""the same on an accelerator, where each call's ~30 small kernels cost launches rather than cache: 2M
elements a block, whose 4-step replay graph peaks at ~4-5 GB (benchmarks/optim4rl/meta_iteration_cost.py)"""

_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "discounts", "bootstrap_value")
"""A stacked batch: these ``Batch`` fields with a leading unit axis, ``[n, T, E, ...]`` (bootstrap ``[n, E]``)"""


class VectorPopulation:
    """``units`` Optim4RL training units on the batched task ``task`` (see the module docstring).

    ``envs_per_unit`` env rows a unit (the paper: 1), ``rollout`` steps a collection (20), ``reward_scale``
    the task's reward multiplier (the grid mix's scales; returns are reported unscaled), ``device`` and
    ``dtype`` of every tensor.  ``chunk``: parameter elements per call of the learned optimizer's torch
    maths (where the compiled kernel does not apply): ``CHUNK`` on a CPU, ``DEVICE_CHUNK`` elsewhere by
    default; 1e4-1e5 keeps a CPU's blocks in cache, 1e6-1e7 amortises a GPU's launches (memory grows with it).
    """

    def __init__(
        self,
        rule: Optim4RL,
        task: str,
        *,
        units: int,
        envs_per_unit: int = 1,
        rollout: int = 20,
        reward_scale: float = 1.0,
        seed: int = 0,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        chunk: int | None = None,
    ) -> None:
        if task not in TASK_SETTINGS:
            raise ValueError(f"task must be one of Optim4RL's batched tasks {sorted(TASK_SETTINGS)}, got {task!r}")
        sizes = {"units": units, "envs_per_unit": envs_per_unit, "rollout": rollout, "chunk": 1 if chunk is None else chunk}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"VectorPopulation {name} must be >= 1, got {value}")
        setting = TASK_SETTINGS[task]
        self.rule, self.task_name, self.num_units = rule, task, int(units)
        self.envs_per_unit, self.rollout, self.seed = int(envs_per_unit), int(rollout), int(seed)
        self.reward_scale, self.dtype, self.device = float(reward_scale), dtype, torch.device(device)
        self.chunk = int(chunk) if chunk is not None else (CHUNK if self.device.type == "cpu" else DEVICE_CHUNK)
        options = {} if task == "catch" else {"reward_scale": self.reward_scale}
        self.task = make_task(task, self.num_units * self.envs_per_unit, device=device, record_final=True, **options)
        self.obs = self.task.reset(derive(self.seed, "task")).clone()
        space = self.task.single_observation_space
        self.network = TaskActorCritic(
            obs_shape=tuple(space.shape),
            action_dim=int(self.task.single_action_space.n),
            hidden=setting.hidden,
            conv_channels=setting.conv_channels,
        )
        self.objective = A2CObjective(self.network)
        self.shapes = self.network.shapes()
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes.values()]
        self.generator = torch.Generator(device=self.device).manual_seed(derive(self.seed, "actions"))
        self.lives = [0] * self.num_units
        n, p, h = self.num_units, sum(self.sizes), rule.config.hidden
        self.params = torch.zeros(n, p, dtype=dtype, device=self.device)
        """the units' parameters, flat ``[n, P]`` in ``network.shapes()`` order"""
        self.h1 = torch.zeros(n, p, h, dtype=dtype, device=self.device)
        """GRU1's hidden state of every parameter element of every unit (the compiled steps update it in place)"""
        self.h2 = torch.zeros_like(self.h1)
        self.ep_return = torch.zeros(n * self.envs_per_unit, dtype=torch.float64, device=self.device)
        self._forward = self.network.stacked_forward  # batched matmuls: ~3x vmap(forward) here, the same bits
        self._losses = vmap(self._unit_loss, in_dims=(0, 0, None))
        self.record = False
        """keep ``last_start`` and ``last_batches`` of each ``meta_loss`` (for checks against the loop)"""
        self.last_batches: list[dict[str, torch.Tensor]] = []
        """with ``record``: the stacked batches of the latest ``meta_loss`` (the M inner ones, then the validation one)"""
        self.last_start: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        """with ``record``: ``(params, h1, h2)`` the latest ``meta_loss`` started from"""
        self._init_units(range(n))

    # -- units -----------------------------------------------------------------------------
    def unit_seed(self, j: int, life: int) -> int:
        """The seed of unit ``j``'s life ``life`` (``Unit``'s derivation: the same agent as the loop's)."""
        return derive(derive(self.seed, "unit", j), "life", life)

    def _init_units(self, units: Sequence[int]) -> None:
        for j in units:
            init = self.network.init(torch.Generator().manual_seed(self.unit_seed(j, self.lives[j])))
            self.params[j] = torch.cat([v.reshape(-1) for v in init.values()]).to(self.params)
            self.lives[j] += 1
        index = torch.as_tensor(list(units), dtype=torch.long, device=self.device)
        self.h1[index] = 0.0
        self.h2[index] = 0.0

    def reset(self, units: Sequence[int]) -> None:
        """New agents (parameters, zero optimizer state) and new episodes in the rows of ``units`` only."""
        units = sorted({int(j) for j in units})
        if not units:
            return
        if min(units) < 0 or max(units) >= self.num_units:
            raise ValueError(f"units must lie in [0, {self.num_units}), got {units}")
        self._init_units(units)
        e = self.envs_per_unit
        rows = torch.cat([torch.arange(j * e, (j + 1) * e) for j in units]).to(self.device)
        self.obs[rows] = self.task.reset_rows(rows)
        self.ep_return[rows] = 0.0

    def unflatten(self, flat: torch.Tensor) -> Params:
        """Flat ``[n, P]`` parameters as the network's dict of ``[n, *shape]`` tensors (views, graph kept)."""
        return {k: v.view(self.num_units, *s) for (k, s), v in zip(self.shapes.items(), flat.split(self.sizes, dim=1))}

    # -- collection ------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, params: Params, gamma: float) -> tuple[dict[str, torch.Tensor], list[float]]:
        """One ``rollout``-step collection of every unit with its own ``params`` (``[n, ...]``): the stacked
        batch and the (unscaled) returns of the episodes that ended in it."""
        n, e = self.num_units, self.envs_per_unit
        shape = self.network.obs_shape
        steps: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "actions", "log_probs", "values", "rewards", "dones")}
        ended: list[torch.Tensor] = []
        obs = self.obs
        for _ in range(self.rollout):
            logits, value = self._forward(params, obs.view(n, e, *shape))
            logits = logits.reshape(n * e, -1)
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator).squeeze(-1)
            logp = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            next_obs, reward, terminated, truncated = self.task.step(action)
            done = terminated | truncated
            self.ep_return += reward
            ended.append(self.ep_return[done] / self.reward_scale)
            self.ep_return.masked_fill_(done, 0.0)
            reward = reward.to(self.dtype)
            bootstrap = truncated & ~terminated  # a time limit, not an end: bootstrap from its last observation
            if bool(bootstrap.any()):
                final = self._forward(params, self.task.final_obs.view(n, e, *shape))[1].reshape(n * e)
                reward = reward + gamma * torch.where(bootstrap, final, 0.0)
            for k, v in zip(steps, (obs, action, logp, value.reshape(n * e), reward, done)):
                steps[k].append(v)
            obs = next_obs.clone()  # the task may reuse its observation buffer
        self.obs = obs
        stacked = {k: torch.stack(v).view(self.rollout, n, e, *v[0].shape[1:]).transpose(0, 1) for k, v in steps.items()}
        dones = stacked.pop("dones")
        stacked["discounts"] = (~dones).to(self.dtype)
        stacked["bootstrap_value"] = self._forward(params, obs.view(n, e, *shape))[1]
        stacked["obs"] = stacked["obs"].to(self.dtype)
        return stacked, torch.cat(ended).tolist()

    # -- the loss and the update -------------------------------------------------------------
    def _unit_loss(self, params: Params, batch: Mapping[str, torch.Tensor], hp: Mapping[str, Any]) -> torch.Tensor:
        return self.objective(params, Batch(**{k: batch[k] for k in _FIELDS}), hp)[0]

    def _agent_grads(self, flat: torch.Tensor, batch: Mapping[str, torch.Tensor], hp: Mapping[str, Any]) -> torch.Tensor:
        """Every unit's A2C gradient at its ``[n, P]`` parameters, clipped per unit as ``train_step`` clips."""
        leaf = flat.detach().requires_grad_()
        with torch.enable_grad():
            losses = self._losses(self.unflatten(leaf), batch, hp)
            (grad,) = torch.autograd.grad(losses.sum(), [leaf])  # unit losses are independent: each unit's own
        max_norm = float(hp["max_grad_norm"])
        if 0 < max_norm < float("inf"):  # agents.optim.clip_grad_norm, per unit
            norm = torch.stack([g.norm(dim=1) for g in grad.split(self.sizes, dim=1)], 1).norm(dim=1, keepdim=True)
            grad = grad * torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        return grad

    def _optimizer_step(self, grad: torch.Tensor) -> torch.Tensor:
        """The learned optimizer on every element of every unit (the compiled kernel in one call, else the torch
        maths ``chunk`` elements at a time: it is coordinate-wise): the step per unit of lr ``[n, P]``; the
        hidden states move on (in place where the kernel applies)."""
        hidden = self.rule.config.hidden
        g, a, b = grad.reshape(-1), self.h1.view(-1, hidden), self.h2.view(-1, hidden)
        if kernel.applies(self.rule.config, self.rule.weights, g, a, b):  # compiled: blocks of its own, in cache
            step, _, _ = kernel.step(self.rule.config, self.rule.weights, g, a, b, out=(a, b))
            return step.view_as(grad)
        c = self.chunk
        parts = [self.rule.flat_step(g[i : i + c], a[i : i + c], b[i : i + c]) for i in range(0, g.numel(), c)]
        step, a, b = (torch.cat([part[k] for part in parts]) for k in range(3))
        self.h1, self.h2 = a.view_as(self.h1).to(self.dtype), b.view_as(self.h2).to(self.dtype)
        return step.view_as(grad).to(self.dtype)

    def meta_loss(self, hparams: Mapping[str, Any], steps: int) -> PopulationLoss:
        """``steps`` inner updates of every unit, then the mean A2C loss of their last parameters on a fresh
        rollout, differentiable in the optimizer's weights; the units carry on from there.

        The updates run without a graph; the loss's backward replays them (``_replay``), which gives the
        gradient a graph kept through all of them would, without holding ``n * P`` elements' GRU
        activations for 4 steps at once (4 GB at n = 64 on Catch, and 3x slower for it).
        """
        hp = self.objective_hparams(hparams)
        h1, h2 = self.h1.clone(), self.h2.clone()  # the replay's start (the steps move the units' states on in place)
        flat, returns, batches, grads = self.params, [], [], []
        with torch.no_grad():
            for k in range(steps + 1):
                batch, ended = self.collect(self.unflatten(flat), float(hp["gamma"]))
                returns.extend(ended)
                batches.append(batch)
                if k < steps:
                    grads.append(self._agent_grads(flat, batch, hp))
                    flat = flat + hp["lr"] * self._optimizer_step(grads[-1])
        last = flat.clone().requires_grad_()
        with torch.enable_grad():
            loss = self._losses(self.unflatten(last), batch, hp).mean()
            (adjoint,) = torch.autograd.grad(loss, [last])
        if self.record:
            self.last_start, self.last_batches = (self.params.clone(), h1, h2), batches
        else:
            self.last_start, self.last_batches = None, []
        self.params = flat
        weights = [w for w in self.rule.parameters().values() if w.requires_grad]
        replay = _Replay(self, h1, h2, grads, adjoint * hp["lr"], weights)
        return PopulationLoss(loss=_ReplayedLoss.apply(replay, loss.detach(), *weights), returns=returns)

    @staticmethod
    def objective_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
        """A2C's hyperparameters for the units: ``hparams`` must give lr, gamma, gae_lambda, vf_coef,
        ent_coef and max_grad_norm (``solvers.optim4rl.config.A2C_HPARAMS`` plus an lr)."""
        needed = ("lr", "gamma", "gae_lambda", "vf_coef", "ent_coef", "max_grad_norm")
        missing = [k for k in needed if k not in hparams]
        if missing:
            raise ValueError(f"VectorPopulation hparams lack {missing} (needed: {list(needed)})")
        return {k: hparams[k] for k in needed}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        task = {k: v.clone() for k, v in vars(self.task).items() if isinstance(v, torch.Tensor) and k != "_obs_buffer"}
        return {
            "params": self.params.clone(),
            "h1": self.h1.clone(),
            "h2": self.h2.clone(),
            "lives": list(self.lives),
            "obs": self.obs.clone(),
            "ep_return": self.ep_return.clone(),
            "generator": self.generator.get_state(),
            "task": task,
            "task_generator": self.task.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if tuple(state["params"].shape) != tuple(self.params.shape):
            raise ValueError(f"state has parameters {tuple(state['params'].shape)}, this population {tuple(self.params.shape)}")
        self.params, self.h1, self.h2 = (state[k].clone().to(self.device, self.dtype) for k in ("params", "h1", "h2"))
        self.lives = [int(x) for x in state["lives"]]
        self.obs, self.ep_return = state["obs"].clone().to(self.device), state["ep_return"].clone().to(self.device)
        self.generator.set_state(state["generator"])
        for k, v in state["task"].items():
            setattr(self.task, k, v.clone().to(self.device))
        self.task.generator.set_state(state["task_generator"])

    def close(self) -> None:
        """Nothing to release: the batched task is tensors."""

    def loop_twin(self) -> Any:
        """A ``LoopPopulation`` of the same units, one ``TaskA2CLearner`` each with the seeds these units'
        lives draw (the same agents; their environments and action draws are their own)."""
        from agents.task_learners import TaskA2CConfig, TaskA2CLearner
        from hyperenvs.tasks.registration import GYM_IDS
        from solvers.optim4rl.meta import LoopPopulation, Unit

        task_id = next(i for i, (name, options) in GYM_IDS.items() if name == self.task_name and not options)
        setting = TASK_SETTINGS[self.task_name]
        config = TaskA2CConfig(
            task=task_id,
            num_envs=self.envs_per_unit,
            num_steps=self.rollout,
            hidden=(setting.hidden,),
            conv_channels=setting.conv_channels,
            update_rule=self.rule,
        )

        def make(seed: int) -> TaskA2CLearner:
            return TaskA2CLearner(config, seed=seed)

        return LoopPopulation([Unit(make, derive(self.seed, "unit", j)) for j in range(self.num_units)])


class _Replay:
    """The meta-gradient of one ``meta_loss``: the optimizer's M steps replayed with a graph, a block at a time.

    The agent-gradients enter the learned optimizer through a stop-gradient, so the last parameters
    are ``theta_M = theta_0 + lr * sum_k d_k(w)`` with every ``d_k`` a function of the weights ``w``
    alone (through the recurrent state), given the recorded gradients.  Hence
    ``dL/dw = sum_k (lr * dL/dtheta_M) . dd_k/dw``: one backward per block of elements through the M
    recurrent steps, with the adjoint ``lr * dL/dtheta_M`` fixed.
    """

    def __init__(self, population: VectorPopulation, h1, h2, grads, adjoint, weights) -> None:
        self.population, self.h1, self.h2, self.grads, self.adjoint, self.weights = population, h1, h2, grads, adjoint, weights

    def __call__(self) -> list[torch.Tensor]:
        rule, dtype, c = self.population.rule, self.population.dtype, self.population.chunk
        if kernel.applies(rule.config, rule.weights, self.h1, *self.grads) and len(self.grads) <= kernel.MAX_STEPS:
            every = kernel.replay(rule.config, rule.weights, self.h1, self.h2, self.grads, self.adjoint)
            return [part for name, part in zip(rule.weights, every) if rule.weights[name].requires_grad]
        hidden = rule.config.hidden
        h1, h2, adjoint = self.h1.reshape(-1, hidden), self.h2.reshape(-1, hidden), self.adjoint.reshape(-1)
        grads = [g.reshape(-1) for g in self.grads]
        total = [torch.zeros_like(w) for w in self.weights]
        with torch.enable_grad():
            for i in range(0, adjoint.numel(), c):
                a, b, block = h1[i : i + c], h2[i : i + c], adjoint[i : i + c]
                objective = block.new_zeros(())
                for g in grads:
                    step, a, b = rule.flat_step(g[i : i + c], a, b)
                    objective = objective + (block * step.to(dtype)).sum()
                parts = torch.autograd.grad(objective, self.weights, allow_unused=True)
                for acc, part in zip(total, parts):
                    if part is not None:
                        acc += part
        return total


class _ReplayedLoss(torch.autograd.Function):
    """The meta-loss's value, with ``_Replay``'s meta-gradient as its backward in the optimizer's weights."""

    @staticmethod
    def forward(ctx, replay: _Replay, value: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        ctx.replay = replay
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return (None, None, *(grad_output * g for g in ctx.replay()))
