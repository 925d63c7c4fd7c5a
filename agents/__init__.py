"""Inner learners: what a hyper-environment trains.

A learner is a collector (``rollout``), an objective (``ppo.PPOObjective``,
``a2c.A2CObjective``) and a functional update rule (``optim``).
"""

from agents.a2c import A2CConfig, A2CHyperparams, A2CLearner, A2CObjective
from agents.actor_critic import ActorCriticConfig, ActorCriticLearner
from agents.base import Batch, IterationReport, Learner, Params
from agents.networks import ActorCritic
from agents.optim import adam, clip_grad_norm, get_optimizer, rmsprop, sgd
from agents.ppo import PPOConfig, PPOHyperparams, PPOLearner, PPOObjective
from agents.returns import gae, lambda_returns
from agents.rollout import Collector, make_vector_env

__all__ = [
    "A2CConfig",
    "A2CHyperparams",
    "A2CLearner",
    "A2CObjective",
    "ActorCritic",
    "ActorCriticConfig",
    "ActorCriticLearner",
    "Batch",
    "Collector",
    "IterationReport",
    "Learner",
    "PPOConfig",
    "PPOHyperparams",
    "PPOLearner",
    "PPOObjective",
    "Params",
    "adam",
    "clip_grad_norm",
    "gae",
    "get_optimizer",
    "lambda_returns",
    "make_vector_env",
    "rmsprop",
    "sgd",
]
