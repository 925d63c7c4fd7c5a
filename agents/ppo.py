"""Proximal Policy Optimization (Schulman et al., 2017) as collector + objective + update rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from agents.actor_critic import ActorCriticConfig, ActorCriticLearner
from agents.base import Batch, Params
from agents.hparams import declare, hyperparameter
from agents.networks import ActorCritic, entropy, log_prob
from agents.optim import FlatSteps, clip_grad_norm
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
    gamma: float = hyperparameter(
        0.99,
        low=0.9,
        high=0.999,
        bins=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
        doc="discount factor; horizon about 1 / (1 - gamma)",
    )
    ent_coef: float = hyperparameter(
        0.0, low=0.0, high=0.1, bins=(0.0, 0.001, 0.01, 0.02, 0.05), doc="entropy bonus weight (0 on MuJoCo, 0.01 on Atari)"
    )
    vf_coef: float = hyperparameter(0.5, low=0.1, high=1.0, bins=(0.25, 0.5, 0.75, 1.0), doc="value loss weight")
    max_grad_norm: float = hyperparameter(
        0.5, low=0.1, high=10.0, log=True, multipliers=(0.5, 1, 2), doc="global gradient-norm clip (0.5 in most PPO code)"
    )


class PPOObjective:
    """``loss(params, batch, meta) -> (loss, metrics)`` for one minibatch.

    ``batch`` holds flat ``obs, actions, log_probs, advantages, returns``;
    ``meta`` holds ``clip, vf_coef, ent_coef`` (floats or tensors: it is
    differentiable in all three).  ``metrics`` is a detached vector in the
    order of ``PPO_METRICS``.
    """

    def __init__(self, network: ActorCritic, normalize_advantages: bool = True) -> None:
        self.network = network
        self.normalize_advantages = normalize_advantages

    def __call__(
        self, params: Params, batch: dict[str, torch.Tensor], meta: dict[str, float | torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.network
        policy_out, value = net.forward(params, batch["obs"])
        logp = log_prob(policy_out, params, batch["actions"], net.discrete)
        log_ratio = logp - batch["log_probs"]
        ratio = log_ratio.exp()
        adv = batch["advantages"]
        if self.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clip = meta["clip"]
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
        policy_loss = -surrogate.mean()
        value_loss = 0.5 * (batch["returns"] - value).square().mean()
        ent = entropy(policy_out, params, net.discrete).mean()
        loss = policy_loss + meta["vf_coef"] * value_loss - meta["ent_coef"] * ent
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > clip).float().mean()
            metrics = torch.stack([policy_loss, value_loss, ent, approx_kl, clip_fraction])
        return loss, metrics


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

    def _update(self, batch: Batch, hp: PPOHyperparams) -> tuple[dict[str, float], dict[str, float]]:
        with torch.no_grad():
            advantages = gae(batch.rewards, batch.discounts * hp.gamma, batch.values, batch.bootstrap_value, hp.gae_lambda)
            returns = advantages + batch.values
        flat = {
            "obs": batch.obs.flatten(0, 1),
            "actions": batch.actions.flatten(0, 1),
            "log_probs": batch.log_probs.flatten(0, 1),
            "advantages": advantages.flatten(),
            "returns": returns.flatten(),
        }
        n = batch.num_steps
        size = max(1, min(hp.minibatch_size, n))
        meta = {"clip": hp.clip, "vf_coef": hp.vf_coef, "ent_coef": hp.ent_coef}
        # The black-box fast path runs the stock update rules in place on flat buffers (same
        # numbers); a replaced rule (``self._opt_update``, e.g. a learned optimizer) takes the pure path.
        fast = FlatSteps(self._opt_update, self.params, self.opt_state, grads_kept=self.config.grad_history)
        if not fast.supported:
            fast = None
        metrics, norms = [], []
        for _ in range(hp.epochs):
            perm = torch.randperm(n, generator=self.generator, device=self.device)
            # One gather per epoch; each minibatch is then a contiguous slice (the rows of flat[perm[slice]]).
            shuffled = {k: v[perm] for k, v in flat.items()}
            for start in range(0, n - size + 1, size):
                minibatch = {k: v[start : start + size] for k, v in shuffled.items()}
                if fast is not None:
                    loss, m = self.objective(fast.params, minibatch, meta)
                    norm = fast.step(torch.autograd.grad(loss, fast.leaves), max_norm=hp.max_grad_norm, lr=hp.lr)
                else:
                    loss, m = self.objective(self.params, minibatch, meta)
                    grads = dict(zip(self.params, torch.autograd.grad(loss, list(self.params.values()))))
                    grads, norm = clip_grad_norm(grads, hp.max_grad_norm)
                    self._apply(grads, hp.lr)
                metrics.append(m)
                norms.append(norm)
        if fast is not None:
            self.params, self.opt_state = fast.result()
            self._grads.extendleft(fast.recent_grads())
        mean = torch.stack(metrics).mean(0).tolist()
        with torch.no_grad():
            ev = explained_variance(batch.values.flatten(), flat["returns"]).item()
        losses = dict(zip(PPO_METRICS[:3], mean[:3]))
        stats = dict(zip(PPO_METRICS[3:], mean[3:]))
        stats |= {"explained_variance": ev, "grad_norm": torch.stack(norms).mean().item()}
        return losses, stats
