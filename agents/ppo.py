"""Proximal Policy Optimization (Schulman et al., 2017) as collector + objective + update rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from agents.actor_critic import ActorCriticConfig, ActorCriticLearner
from agents.base import Batch, Params
from agents.networks import ActorCritic, entropy, log_prob
from agents.optim import FlatSteps, clip_grad_norm
from agents.returns import explained_variance, gae

PPO_METRICS = ("policy", "value", "entropy", "approx_kl", "clip_fraction")


@dataclass(frozen=True, kw_only=True)
class PPOHyperparams:
    """What a hyper-agent may change between PPO iterations."""

    lr: float = 3e-4
    """Adam step size; usual range 1e-5 .. 1e-3, searched on a log scale"""
    clip: float = 0.2
    """surrogate clipping range epsilon; usual range 0.1 .. 0.3"""
    gae_lambda: float = 0.95
    """GAE bias-variance trade-off; usual range 0.9 .. 0.99"""
    minibatch_size: int = 64
    """transitions per gradient step; usual range 32 .. 4096.  A remainder smaller than one minibatch
    is left out of that epoch; the batch is reshuffled every epoch, so it is rarely the same rows"""
    epochs: int = 10
    """passes over each batch; usual range 3 .. 30"""
    gamma: float = 0.99
    """discount factor; usual range 0.9 .. 0.999"""
    ent_coef: float = 0.0
    """entropy bonus weight; usual range 0 .. 0.05"""
    vf_coef: float = 0.5
    """value loss weight; usual range 0.25 .. 1"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip; usual range 0.3 .. 5"""


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
