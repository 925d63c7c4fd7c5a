"""Inner learners: what a hyper-environment trains.

A learner is a collector (``rollout``), an objective (``ppo.PPOObjective``,
``a2c.A2CObjective``, ``impala_objective.IMPALAObjective``) and an update rule
(``optim.UpdateRule``), met in ``learner.train_step``; ``unroll`` differentiates
through K of those steps.
"""

from agents.a2c import A2CConfig, A2CHyperparams, A2CLearner, A2CObjective
from agents.base import Batch, IterationReport, Learner, Params
from agents.es import ESConfig, ESHyperparams, ESLearner
from agents.impala import IMPALAConfig, IMPALAHyperparams, IMPALALearner, IMPALANetwork, IMPALAObjective
from agents.learner import ActorCriticConfig, ActorCriticLearner
from agents.networks import ActorCritic
from agents.optim import SGD, Adam, RMSProp, UpdateRule, adam, adam_init, clip_grad_norm, get_update_rule, rmsprop, sgd
from agents.ppo import PPOConfig, PPOHyperparams, PPOLearner, PPOObjective
from agents.returns import gae, lambda_returns
from agents.rollout import Collector, make_vector_env
from agents.unroll import Unrolled, unroll
from agents.vtrace import leaky_vtrace, vtrace

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
    "ESConfig",
    "ESHyperparams",
    "ESLearner",
    "IMPALAConfig",
    "IMPALAHyperparams",
    "IMPALALearner",
    "IMPALANetwork",
    "IMPALAObjective",
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
    "get_update_rule",
    "adam_init",
    "SGD",
    "Adam",
    "RMSProp",
    "UpdateRule",
    "unroll",
    "Unrolled",
    "lambda_returns",
    "leaky_vtrace",
    "make_vector_env",
    "rmsprop",
    "sgd",
    "vtrace",
]
