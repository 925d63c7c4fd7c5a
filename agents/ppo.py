"""Proximal Policy Optimization (Schulman et al., 2017) as collector + objective + update rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from agents.actor_critic_hparams import (
    ent_coef_hyperparameter,
    gamma_hyperparameter,
    max_grad_norm_hyperparameter,
    vf_coef_hyperparameter,
)
from agents.base import Batch, Params
from agents.compiled import CompiledSteps
from agents.fused import FusedSteps
from agents.hparams import declare, hyperparameter
from agents.learner import ActorCriticConfig, ActorCriticLearner
from agents.networks import ActorCritic, entropy, log_prob
from agents.objectives import use_config_objective
from agents.returns import explained_variance, gae

PPO_METRICS = ("policy", "value", "entropy", "approx_kl", "clip_fraction")


@declare
@dataclass(frozen=True, kw_only=True)
class PPOHyperparams:
    """What a hyper-agent may change between PPO iterations."""

    lr: float = hyperparameter(
        3e-4, low=1e-5, high=1e-2, log=True, multipliers=(0.5, 1, 2), doc="Adam step size (3e-4 in Schulman et al., 2017)"
    )
    clip: float = hyperparameter(
        0.2, low=0.05, high=0.5, bins=(0.1, 0.2, 0.3, 0.4, 0.5), doc="surrogate clipping range epsilon (0.2; 0.1 on Atari)"
    )
    gae_lambda: float = hyperparameter(
        0.95,
        low=0.8,
        high=1.0,
        bins=(0.9, 0.925, 0.95, 0.975, 0.99),
        doc="GAE lambda: 1 is Monte Carlo advantages (high variance), 0 one-step TD (high bias)",
    )
    minibatch_size: int = hyperparameter(
        64,
        low=16,
        high=1024,
        log=True,
        integer=True,
        multipliers=(0.5, 1, 2),
        doc="transitions per gradient step; a remainder smaller than one minibatch is left out of that epoch "
        "(the batch is reshuffled every epoch, so it is rarely the same rows)",
    )
    epochs: int = hyperparameter(
        10, low=1, high=30, integer=True, multipliers=(0.5, 1, 2), doc="passes over each batch (10 on MuJoCo, 4 on Atari)"
    )
    gamma: float = gamma_hyperparameter()
    ent_coef: float = ent_coef_hyperparameter("entropy bonus weight (0 on MuJoCo, 0.01 on Atari)")
    vf_coef: float = vf_coef_hyperparameter()
    max_grad_norm: float = max_grad_norm_hyperparameter("global gradient-norm clip (0.5 in most PPO code)")


class PPOObjective:
    """``loss(params, batch, hparams, meta=None) -> (loss, metrics)``: the clipped surrogate of one ``Batch``.

    The targets are GAE advantages and ``advantages + values`` returns, computed here
    from the batch (``targets``) with ``hparams["gamma"]`` and ``hparams["gae_lambda"]``;
    a batch that already carries them (``Batch.advantages``/``returns``: a minibatch
    of the learner's schedule, cut from a batch whose targets were computed by this
    same ``targets``) uses those.  ``hparams`` also holds ``clip``, ``vf_coef`` and
    ``ent_coef``; every one of these may be a tensor and the loss is differentiable
    in all of them.  ``meta`` is unused (PPO has no metaparameters beyond its
    hyperparameters).  ``metrics``: ``PPO_METRICS`` as detached 0-d tensors.
    """

    def __init__(self, network: ActorCritic, normalize_advantages: bool = True) -> None:
        self.network = network
        self.normalize_advantages = normalize_advantages

    @staticmethod
    def targets(batch: Batch, hparams: Mapping[str, Any]) -> Batch:
        """``batch`` with its GAE advantages and returns (from the collection-time values: no gradient to params)."""
        discounts = batch.discounts * hparams["gamma"]
        advantages = gae(batch.rewards, discounts, batch.values, batch.bootstrap_value, hparams["gae_lambda"])
        return batch.with_targets(advantages, advantages + batch.values)

    def __call__(
        self, params: Params, batch: Batch, hparams: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if batch.advantages is None:
            batch = self.targets(batch, hparams)
        net = self.network
        policy_out, value = net.forward(params, batch.obs.flatten(0, 1))
        logp = log_prob(policy_out, params, batch.actions.flatten(0, 1), net.discrete)
        log_ratio = logp - batch.log_probs.flatten()
        ratio = log_ratio.exp()
        adv = batch.advantages.flatten()
        if self.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clip = hparams["clip"]
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
        policy_loss = -surrogate.mean()
        value_loss = 0.5 * (batch.returns.flatten() - value).square().mean()
        ent = entropy(policy_out, params, net.discrete).mean()
        loss = policy_loss + hparams["vf_coef"] * value_loss - hparams["ent_coef"] * ent
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > clip).float().mean()
            values = torch.stack([policy_loss, value_loss, ent, approx_kl, clip_fraction])
        return loss, dict(zip(PPO_METRICS, values))


@dataclass(frozen=True, kw_only=True)
class PPOConfig(ActorCriticConfig):
    """Structure of a PPO learner (hyperparameters live in ``PPOHyperparams``)."""

    normalize_advantages: bool = True
    """standardise advantages within each minibatch"""


class PPOLearner(ActorCriticLearner):
    """PPO with clipped surrogate, GAE, minibatch epochs and gradient-norm clipping."""

    Hyperparams: ClassVar[type] = PPOHyperparams

    def __init__(self, config: PPOConfig | None = None, **kwargs) -> None:
        super().__init__(config or PPOConfig(), **kwargs)
        self.objective = PPOObjective(self.network, self.config.normalize_advantages)
        self.learned_objective = use_config_objective(self, "ppo")

    def _schedule(self, params, opt_state, batch, hp, meta, differentiable, grads_out):
        """``epochs`` passes over the batch in shuffled minibatches of ``minibatch_size``, a clipped step each.

        The targets are computed once, on the whole batch (GAE needs its time axis); each
        minibatch is a ``[1, M]`` ``Batch`` carrying its rows of them (``Batch.flat``/``rows``).
        The stock rules run compiled (``config.compile``, ``agents.compiled``) or in place on flat
        buffers (``FlatSteps``): the same numbers, fewer ops; a replaced rule, or
        ``differentiable=True``, takes the pure path.
        """
        if self.learned_objective:
            return self._sequence_schedule(params, opt_state, batch, hp, meta, differentiable, grads_out)
        with torch.set_grad_enabled(differentiable):
            full = self.objective.targets(batch, hp)
        flat = full.flat()
        n = flat.num_steps
        size = max(1, min(int(hp["minibatch_size"]), n))
        fast = None if differentiable else self._fast_steps("ppo", params, opt_state)
        metrics, norms = [], []
        for _ in range(int(hp["epochs"])):
            perm = torch.randperm(n, generator=self.generator, device=self.device)
            if isinstance(fast, FusedSteps):  # it gathers the rows it reads, in NumPy
                m, norm = fast.epoch(flat, size, hp, order=perm)
                metrics.append(m)
                norms.append(norm)
                continue
            shuffled = flat.rows(perm)  # one gather per epoch; each minibatch is then a contiguous slice
            for start in range(0, n - size + 1, size):
                minibatch = shuffled.rows(slice(start, start + size))
                if isinstance(fast, CompiledSteps):
                    m, norm = fast.step(minibatch, hp)
                elif fast is not None:
                    loss, m = self.objective(fast.params, minibatch, hp, meta)
                    norm = fast.step(torch.autograd.grad(loss, fast.leaves), hp, max_norm=float(hp["max_grad_norm"]))
                else:
                    loss, m = self.objective(params, minibatch, hp, meta)
                    params, opt_state, norm = self._gradient_step(params, opt_state, loss, hp, differentiable, grads_out)
                metrics.append((m if isinstance(m, torch.Tensor) else torch.stack(list(m.values())))[None])
                norms.append(norm[None])
        if fast is not None:
            params, opt_state = self._finish_fast(fast, grads_out)
        mean = torch.cat(metrics).mean(0) if metrics else torch.full((len(PPO_METRICS),), float("nan"))
        with torch.no_grad():
            ev = explained_variance(batch.values.flatten(), full.returns.detach().flatten())
        grad_norm = torch.cat(norms).mean() if norms else torch.tensor(float("nan"))
        return params, opt_state, {**dict(zip(PPO_METRICS, mean)), "explained_variance": ev, "grad_norm": grad_norm}

    def _sequence_schedule(self, params, opt_state, batch, hp, meta, differentiable, grads_out):
        """PPO's epochs for a learned objective, which reads whole trajectories (LPG's backward LSTM): each
        minibatch is ``minibatch_size // num_steps`` environments (at least one) with their full time axis."""
        t, b = batch.rewards.shape
        envs = max(1, min(b, int(hp["minibatch_size"]) // t))
        metrics, norms = [], []
        for _ in range(int(hp["epochs"])):
            perm = torch.randperm(b, generator=self.generator, device=self.device)
            for start in range(0, b - envs + 1, envs):
                loss, m = self.objective(params, batch.columns(perm[start : start + envs]), hp, meta)
                params, opt_state, norm = self._gradient_step(params, opt_state, loss, hp, differentiable, grads_out)
                metrics.append(m)
                norms.append(norm)
        mean = {k: torch.stack([m[k] for m in metrics]).mean() for k in metrics[0]}
        return params, opt_state, {**mean, "grad_norm": torch.stack(norms).mean()}
