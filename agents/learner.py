"""The one learner shell of the actor-critic family (PPO, A2C, IMPALA).

A learner is a collector (``agents.rollout``), an objective
``loss(params, batch, hparams, meta) -> (loss, metrics)`` and an update rule
(``agents.optim.UpdateRule``, from ``config.update_rule``), met in the public

    train_step(params, opt_state, batch, hparams, meta=None, *, differentiable=False)
        -> (params, opt_state, metrics)

Subclasses supply a hyperparameter dataclass, the objective and ``_schedule``
(how one update walks over a batch: PPO's epochs x minibatches, one step for
A2C and IMPALA); this class owns construction, seeding, collection,
``iterate`` (collect + ``train_step`` + bookkeeping), divergence detection,
snapshots and evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from agents import envstate
from agents.base import Batch, IterationReport, LastUpdate, Params
from agents.compiled import CompiledSteps, check_compile, update_path
from agents.fused import FusedSteps
from agents.networks import ActorCritic, sample
from agents.optim import FlatSteps, OptState, UpdateRule, clip_grad_norm, get_update_rule
from agents.rollout import Collector, make_vector_env, task_spaces
from agents.seeding import derive
from agents.tensor_rollout import TensorCollector, is_tensor_env

Metrics = dict[str, torch.Tensor]
"""What ``train_step`` and the objectives report: 0-d tensors by name (detached unless a graph is asked for)."""


@dataclass(frozen=True, kw_only=True)
class ActorCriticConfig:
    """Structure of an actor-critic learner: fixed for a whole lifetime."""

    task: str = "CartPole-v1"
    """Gymnasium id of the inner task, or ``ALE/<Game>-v5`` for Atari"""
    num_envs: int = 8
    """parallel inner environments (one process, synchronous)"""
    num_steps: int = 128
    """vector steps per collection; a batch holds ``num_envs * num_steps`` transitions"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden widths of the actor and critic MLPs (ignored for image observations)"""
    activation: str = "tanh"
    """hidden activation of the MLPs: ``tanh`` or ``relu``"""
    update_rule: str | UpdateRule = "adam"
    """update rule: a name in ``agents.optim.UPDATE_RULES`` (``adam``, ``rmsprop``, ``sgd``) or an
    ``UpdateRule`` object (e.g. a learned optimizer)"""
    normalize_obs: bool = False
    """standardise observations with running statistics (MuJoCo PPO standard)"""
    normalize_reward: bool = False
    """divide rewards by the running std of the discounted return"""
    sign_reward: bool = False
    """clip rewards to their sign (Atari standard); reported returns stay unclipped"""
    grad_history: int = 2
    """how many recent update gradients ``gradient_history()`` keeps"""
    max_param_norm_ratio: float = 1e3
    """divergence bound: the run has diverged once the global L2 norm of the parameters exceeds this
    multiple of its initial norm (healthy runs stay within about 10x; an absurd learning rate with Adam
    and gradient clipping, which keeps every value finite, crosses it within an update or two);
    ``inf`` disables the check (non-finite values are always a divergence)"""
    objective: str = "own"
    """what the update minimises: ``own`` (the learner's loss) or a learned objective of ``agents.objectives``
    (``lpg``: the shipped LPG, ``lpg:PATH``: a rule file), which may bring parameters (LPG's prediction y)"""
    compile: bool | str = False
    """PPO's and A2C's steps: ``False`` eager (the reference, ``-v0``), ``"fused"`` by hand in NumPy (``agents.fused``),
    ``True`` compiled (``agents.compiled``), ``"auto"`` (``-v1``) the best that applies (``compiled.update_path``)"""

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.max_param_norm_ratio > 1:
            raise ValueError(f"max_param_norm_ratio must be > 1, got {self.max_param_norm_ratio}")
        get_update_rule(self.update_rule)
        check_compile(self.compile)


def _to_tensors(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively, so ``torch.load(weights_only=True)`` can read the result."""
    if isinstance(obj, np.ndarray):
        # np.array, not np.ascontiguousarray: the latter turns 0-d arrays (counters, flags) into shape (1,).
        return torch.from_numpy(np.array(obj, order="C"))
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_tensors(v) for v in obj]
    return obj


def _to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    return obj


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


def _global_norm(params: Params) -> float:
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm([v.detach() for v in params.values()]))))


class ActorCriticLearner:
    """One training run of an on-policy actor-critic on one vectorised task."""

    Hyperparams: ClassVar[type]
    """the algorithm's hyperparameter dataclass (set by subclasses)"""
    uses_vector_env: ClassVar[bool] = True

    def __init__(
        self,
        config: ActorCriticConfig,
        *,
        seed: int,
        hparams: Any = None,
        device: str = "cpu",
        envs: gym.vector.VectorEnv | None = None,
    ) -> None:
        """``envs``: an existing vector env of ``config.task`` to reuse (it is reset with ``seed``
        and left open by ``close``); by default the learner builds and owns its own."""
        self.config = config
        self.seed = int(seed)
        self.device = torch.device(device)
        self.default_hparams = hparams if hparams is not None else self.Hyperparams()
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._owns_envs = envs is None
        self.envs = make_vector_env(config.task, config.num_envs, self.device) if envs is None else envs
        if self.envs.num_envs != config.num_envs:
            raise ValueError(f"envs has {self.envs.num_envs} environments, config.num_envs is {config.num_envs}")
        self.network = self.build_network(config, self.envs.single_observation_space, self.envs.single_action_space)
        self.params: Params = {
            # Initialise on CPU so a seed gives the same network on every device.
            k: v.to(self.device).requires_grad_()
            for k, v in self.network.init(torch.Generator().manual_seed(self.seed)).items()
        }
        self.update_rule: UpdateRule = get_update_rule(config.update_rule)
        self.opt_state: OptState = self.update_rule.init(self.params)
        self.initial_param_norm = _global_norm(self.params)
        collector_cls = TensorCollector if is_tensor_env(self.envs) else Collector
        fused = update_path(config.compile, 0, self.network, self.update_rule, self.params) == "fused"  # NumPy policy
        self.collector = collector_cls(
            self.envs,
            self.network,
            self.generator,
            device=self.device,
            normalize_obs=config.normalize_obs,
            normalize_reward=config.normalize_reward,
            sign_reward=config.sign_reward,
            **({"fused_policy": fused} if collector_cls is TensorCollector else {}),
        )
        self.collector.reset(seed=self.seed)
        self.timesteps = 0
        self.iterations = 0
        self.diverged = False
        self.divergence = ""
        self.last_update: LastUpdate | None = None
        """inputs of the latest update of ``iterate`` (for white-box solvers; see ``LastUpdate``)"""
        self._grads: deque[Params] = deque(maxlen=config.grad_history)
        self._eval_env: gym.vector.VectorEnv | None = None
        self._eval_count = 0
        self.compile_seconds = 0.0
        """wall time this learner's updates spent compiling (``agents.compiled``), apart from training"""

    @classmethod
    def param_shapes(cls, config: ActorCriticConfig) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters a learner with ``config`` will have, without building it."""
        return cls.build_network(config, *task_spaces(config.task)).shapes()

    @staticmethod
    def build_network(config: ActorCriticConfig, obs_space: gym.Space, act_space: gym.Space) -> ActorCritic:
        discrete = isinstance(act_space, gym.spaces.Discrete)
        image = len(obs_space.shape) == 3
        return ActorCritic(
            obs_dim=0 if image else int(np.prod(obs_space.shape)),
            action_dim=int(act_space.n) if discrete else int(np.prod(act_space.shape)),
            discrete=discrete,
            hidden=config.hidden,
            activation=config.activation,
            cnn_channels=obs_space.shape[0] if image else 0,
        )

    # -- hyperparameters -------------------------------------------------
    def resolve_hparams(self, hparams: Mapping[str, float] | Any | None) -> Any:
        """Merge a (partial) mapping of hyperparameters into the defaults, checking names."""
        if hparams is None:
            return self.default_hparams
        if isinstance(hparams, self.Hyperparams):
            return hparams
        fields = {f.name: f.type for f in dataclasses.fields(self.Hyperparams)}
        unknown = set(hparams) - set(fields)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; known: {sorted(fields)}")
        cast = {k: int(round(float(v))) if fields[k] in (int, "int") else float(v) for k, v in hparams.items()}
        return dataclasses.replace(self.default_hparams, **cast)

    def hparam_values(self, hparams: Mapping[str, Any] | Any | None) -> dict[str, Any]:
        """``train_step``'s hyperparameters: the defaults overlaid with ``hparams`` (a partial mapping or
        the dataclass), as a dict; tensor values are kept as they are (differentiable), others cast."""
        fields = {f.name: f.type for f in dataclasses.fields(self.Hyperparams)}
        if isinstance(hparams, self.Hyperparams):
            return {k: getattr(hparams, k) for k in fields}
        values = {k: getattr(self.default_hparams, k) for k in fields}
        unknown = set(hparams or {}) - set(fields)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; known: {sorted(fields)}")
        for k, v in (hparams or {}).items():
            if isinstance(v, torch.Tensor):
                values[k] = v
            else:
                values[k] = int(round(float(v))) if fields[k] in (int, "int") else float(v)
        return values

    # -- one update: objective + update rule ------------------------------
    def train_step(
        self,
        params: Params,
        opt_state: OptState,
        batch: Batch,
        hparams: Mapping[str, Any] | Any | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        differentiable: bool = False,
    ) -> tuple[Params, OptState, Metrics]:
        """One update of ``params`` on ``batch`` (the algorithm's whole schedule), with these hyperparameters.

        Pure in its inputs (they are not modified; the learner's own ``params``/``opt_state``
        are not touched); the schedule's shuffling draws from the learner's generator.
        ``differentiable=True``: gradients are taken with ``create_graph`` and nothing is
        detached, so the returned params and state keep the graph to ``params``, to every
        tensor in ``hparams`` and ``meta``, and to the update rule's ``parameters()``; the
        stock rules' in-place fast path is then never used.  Otherwise the returned
        params are fresh leaves (requiring grad) and the metrics are detached.
        """
        # Leaves of our own for inputs that carry no graph (e.g. a detached record): the caller's tensors keep their flags.
        with torch.enable_grad():  # an update needs its gradient, whatever the caller's grad mode
            params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            return self._schedule(params, opt_state, batch, self.hparam_values(hparams), meta, differentiable, None)

    def _schedule(
        self,
        params: Params,
        opt_state: OptState,
        batch: Batch,
        hp: dict[str, Any],
        meta: Mapping[str, Any] | None,
        differentiable: bool,
        grads_out: list[Params] | None,
    ) -> tuple[Params, OptState, Metrics]:
        """``train_step``'s body; ``grads_out`` collects the clipped gradients of its steps, oldest first."""
        raise NotImplementedError

    def _fast_steps(self, kind: str, params: Params, opt_state: OptState) -> CompiledSteps | FusedSteps | FlatSteps | None:
        """The non-differentiable fast path: fused or compiled steps, else the in-place stock rules, else None."""
        path = update_path(self.config.compile, self.iterations, self.network, self.update_rule, params)
        args = (kind, self.objective, self.update_rule, params, opt_state, self.config.grad_history)
        if path == "fused":  # on in the last iteration's buffers where it left its tensors as they were
            self._fused = FusedSteps.resume(getattr(self, "_fused", None), *args)
            return self._fused
        if path != "eager":
            return CompiledSteps(*args)
        if kind != "ppo":  # A2C takes one step an update: nothing to pack for
            return None
        fast = FlatSteps(self.update_rule, params, opt_state, grads_kept=self.config.grad_history)
        return fast if fast.supported else None

    def _finish_fast(self, fast: Any, grads_out: list[Params] | None) -> tuple[Params, OptState]:
        """``fast`` (a ``_fast_steps`` result): its params and state, its gradients into ``grads_out``, its compile time."""
        self.compile_seconds += getattr(fast, "seconds_compiling", 0.0)
        if grads_out is not None:
            grads_out.extend(fast.recent_grads())
        return fast.result()

    def _gradient_step(
        self,
        params: Params,
        opt_state: OptState,
        loss: torch.Tensor,
        hp: Mapping[str, Any],
        differentiable: bool,
        grads_out: list[Params] | None,
    ) -> tuple[Params, OptState, torch.Tensor]:
        """Gradient of ``loss``, global-norm clipping, one update-rule step; returns the norm before clipping."""
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=differentiable)))
        grads, norm = clip_grad_norm(grads, float(hp["max_grad_norm"]))
        if grads_out is not None:
            grads_out.append({k: g.detach() for k, g in grads.items()})
        if differentiable:
            new, state = self.update_rule.update(grads, opt_state, params, hp)
            return new, state, norm
        with torch.no_grad():
            new, state = self.update_rule.update(grads, opt_state, params, hp)
        return {k: v.requires_grad_() for k, v in new.items()}, state, norm.detach()

    # -- the black-box path ----------------------------------------------
    def iterate(self, hparams: Mapping[str, float] | Any | None = None) -> IterationReport:
        """Collect ``num_envs * num_steps`` transitions, then ``train_step`` with ``hparams``."""
        hp = self.resolve_hparams(hparams)
        start = time.perf_counter()
        if self.diverged:
            return IterationReport(timesteps=self.timesteps, env_steps=0, diverged=True, divergence=self.divergence)
        batch, episodes = self.collector.collect(self.params, self.config.num_steps, hp.gamma)
        self.timesteps += batch.num_steps
        losses, stats = self._update(batch, self.hparam_values(hp))
        return self._report(batch.num_steps, episodes, losses, stats, start)

    def _update(self, batch: Batch, hp: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
        """``train_step`` on the learner's own state, with the bookkeeping: last update, gradients, metrics as floats."""
        self.last_update = LastUpdate(
            params={k: v.detach() for k, v in self.params.items()}, opt_state=self.opt_state, batch=batch, hparams=hp, meta=None
        )
        grads: list[Params] = []
        self.params, self.opt_state, metrics = self._schedule(self.params, self.opt_state, batch, hp, None, False, grads)
        self._grads.extendleft(grads[-self.config.grad_history :])
        self.iterations += 1
        values = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        losses = {k: values.pop(k) for k in self.loss_names}
        return losses, values

    def record_update(
        self,
        update: LastUpdate,
        grads: Params | Sequence[Params],
        steps: int,
        losses: Mapping[str, float],
        stats: Mapping[str, float],
        start: float,
    ) -> IterationReport:
        """Book one update of this learner computed outside ``iterate`` (e.g. its row of a vectorised population's
        update, whose result already sits in ``params``/``opt_state``): the last update, the gradient history
        (``grads``: the update's clipped gradients, or a list of its steps' oldest first), the counters, the
        divergence check and the report, as ``iterate`` books its own."""
        self.last_update = update
        steps_grads = [grads] if isinstance(grads, Mapping) else list(grads)
        self._grads.extendleft(steps_grads[-self.config.grad_history :])
        self.iterations += 1
        self.timesteps += steps
        return self._report(steps, (), dict(losses), dict(stats), start)

    loss_names: ClassVar[tuple[str, ...]] = ("policy", "value", "entropy")
    """the metrics ``IterationReport.losses`` holds; the others go to ``stats``"""

    def _report(self, steps: int, episodes, losses, stats, start: float) -> IterationReport:
        self.divergence = self._divergence(losses)
        self.diverged = bool(self.divergence)
        return IterationReport(
            timesteps=self.timesteps,
            env_steps=steps,
            episode_returns=tuple(e.ret for e in episodes),
            episode_lengths=tuple(e.length for e in episodes),
            losses=losses,
            stats=stats,
            diverged=self.diverged,
            divergence=self.divergence,
            wall_time=time.perf_counter() - start,
            rollout_return=self.collector.rollout_return,
        )

    def _divergence(self, losses: Mapping[str, float]) -> str:
        """Why the run has diverged ("" if it has not): a non-finite value, or parameters beyond their bound."""
        bad = [k for k, v in losses.items() if not np.isfinite(v)]
        norm = _global_norm(self.params)
        if bad or not np.isfinite(norm):
            return f"non-finite {'loss ' + ', '.join(bad) if bad else 'parameters'}"
        bound = self.config.max_param_norm_ratio * self.initial_param_norm
        if norm > bound:
            return (
                f"parameter norm {norm:.3g} exceeds max_param_norm_ratio {self.config.max_param_norm_ratio:g} "
                f"x the initial norm {self.initial_param_norm:.3g}"
            )
        return ""

    # -- white-box access -------------------------------------------------
    def parameters(self) -> Params:
        return self.params

    def gradient_history(self) -> list[Params]:
        return list(self._grads)

    # -- snapshots ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Training state as tensors and numbers: ``torch.save`` it, ``torch.load(weights_only=True)`` it.

        Inner-env state is included where the engine exposes it (classic
        control, MuJoCo), so training resumes bit-for-bit; for Box2D and Atari
        ``load_state_dict`` starts fresh inner episodes instead.
        """
        state = self.training_state() | {"collector": _to_tensors(self.collector.state_dict())}
        try:
            state["envs"] = _to_tensors(envstate.capture(self.envs))
        except NotImplementedError:
            pass
        return state

    def fresh_episode_seed(self) -> int:
        """Reset seed of the fresh inner episodes a restore starts where the engine cannot save its state.

        Distinct per lifetime and point in it; below 2**31, since ALE's vector env takes int32 seeds.
        """
        return derive(self.seed, "fresh-episodes", self.timesteps)

    def training_state(self) -> dict[str, Any]:
        """The learner's own part of ``state_dict``: parameters, update-rule state, RNG, counters, flags."""
        return {
            "seed": self.seed,  # fresh inner episodes and evaluation seeds derive from it
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "opt_state": _clone(self.opt_state),
            "generator": self.generator.get_state(),
            "timesteps": self.timesteps,
            "iterations": self.iterations,
            "diverged": self.diverged,
            "divergence": self.divergence,
            "initial_param_norm": self.initial_param_norm,
            "grad_history": [_clone(g) for g in self._grads],
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``training_state`` returned (the inner envs and collector are left alone)."""
        if set(state["params"]) != set(self.params):
            raise ValueError(f"state has parameters {sorted(state['params'])}, this learner has {sorted(self.params)}")
        self.params = {k: state["params"][k].detach().clone().to(self.device).requires_grad_() for k in self.params}
        self.opt_state = _clone(dict(state["opt_state"]))
        self.generator.set_state(state["generator"])
        self.seed = int(state.get("seed", self.seed))
        self.timesteps = int(state["timesteps"])
        self.iterations = int(state["iterations"])
        self._restore_flags(state)
        self._grads = deque((_clone(g) for g in state["grad_history"]), maxlen=self.config.grad_history)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_training_state(state)
        restored = "envs" in state or "task" in state["collector"]  # a torch task's state rides with its collector
        if "envs" in state:
            envstate.restore(self.envs, _to_numpy(state["envs"]))
        elif not restored:
            self.collector.reset(seed=self.fresh_episode_seed())
        self.collector.load_state_dict(_to_numpy(state["collector"]), episodes=restored)

    def _restore_flags(self, state: Mapping[str, Any]) -> None:
        self.diverged = bool(state["diverged"])
        self.divergence = str(state.get("divergence", "non-finite values" if self.diverged else ""))
        self.initial_param_norm = float(state.get("initial_param_norm", self.initial_param_norm))
        self.last_update = None

    # -- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int = 10) -> list[float]:
        """Returns of the deterministic policy on separate envs; training state is untouched."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if self._eval_env is None:
            self._eval_env = make_vector_env(self.config.task, 1)
        env, returns = self._eval_env, []
        obs, _ = env.reset(seed=derive(self.seed, "eval", self._eval_count))
        self._eval_count += 1
        total = 0.0
        while len(returns) < episodes:
            x = torch.as_tensor(self.collector.normalize(obs), device=self.device)
            policy_out, _ = self.network.forward(self.params, x)
            action = sample(policy_out, self.params, self.network.discrete, self.generator, deterministic=True)
            action = action.cpu().numpy()
            if self.collector._low is not None:
                action = np.clip(action, self.collector._low, self.collector._high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward[0])
            if terminated[0] or truncated[0]:
                returns.append(total)
                total = 0.0
        return returns

    def close(self) -> None:
        if self._owns_envs:
            self.envs.close()
        if self._eval_env is not None:
            self._eval_env.close()
