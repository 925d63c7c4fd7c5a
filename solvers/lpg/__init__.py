"""LPG, the learned policy gradient (Oh et al., 2020): an update rule discovered by meta-gradients.

``network``: the LPG network (backward LSTM over a trajectory -> targets pi_hat and y_hat);
``objective``: the agent update of the paper's Eq. 2 as an objective over a ``Batch``;
``meta``: the meta-gradient through K agent updates via the shared differentiable unroll.
"""
