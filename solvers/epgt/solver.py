"""EPGTSolver: episodic-memory control of a HyperRL lifetime (Le et al., AAAI 2022), black-box.

It talks to the env only through ``reset``/``step``, the observation,
``info`` and ``env.get_wrapper_attr("total_timesteps")``.  Any HyperRL id made
with ``action_type="discrete"`` works (PPO, A2C, IMPALA, ES) with no
id-specific code, as long as the memory fits (``MAX_MEMORY_BYTES``: IMPALA's
seven controlled hyperparameters make 5**7 joint actions; control fewer).

The hyper-state is the ``projection`` observation (the paper's).  ES ids do
not observe it by default: make them with ``gym.make(id, observe=["projection",
"fitness", "statistics"], ...)`` (the ``hyperrl`` command adds the parts named
by the solver's ``SolverSpec.observe``), or set ``EPGTConfig.hyper_state`` to
other 1-D parts the env has.

Greedy choice.  The paper starts from an empty memory (Algorithm 1, line 1);
an action the state's neighbourhood has not tried reads NaN (``memory``,
``untried="skip"``) and greedy choice takes the best of the tried ones, ties
broken uniformly at random (a constant hyper-return would otherwise always
pick the first bin).  With nothing tried nearby the choice is uniform; epsilon
starts at 1, so every action is tried early.

Learning episodes and the hyper-reward (paper Eq. 1 and Algorithm 1).  One
``env.step(a_t)`` runs ``iterations_per_step`` learner iterations, each
*collect, then update with a_t*, and ``info["rollout_return"]`` holds each
iteration's Eq. 1 return G (the discounted reward sum of its T-step rollout,
``agents.base.IterationReport.rollout_return``).  A learning episode is
``episode_length`` (U) consecutive hyper-steps; its actions all get the G of
the first rollout collected after the first update made with its last action
(``hyper_return="rollout"``, the default): the second iteration's rollout of
that hyper-step when ``iterations_per_step > 1``, else the first rollout of the
next hyper-step.  The last learning episode of a lifetime with one iteration a
step has no rollout after it and is not written.  ``hyper_return =
"finished_episodes"`` is the earlier definition, kept for the ablation: G = the
mean return of the inner episodes that finish in the first later hyper-step
where any finish, so it measures a policy several decisions old.

Keys (``encoder``): the VAE's input is the standardised projection; the
standardisation is refitted on the memory's hyper-states, and the whole memory
re-keyed, after each VAE step and whenever the memory size reaches a power of
two (so also for the random encoder).  With ``kernel_eps_scale`` set, the
kernel's epsilon follows the keys: ``kernel_eps_scale`` times the median squared
distance from a key to its nearest other key, re-estimated at every re-key, so
near neighbours keep more weight than far ones however the keys spread.

Diagnostics: ``solver.diagnostics`` holds one dict a hyper-step (the read
values per action, the choice, whether it explored, the median neighbour
distance and the kernel epsilon at that time); ``RunLog`` has no per-step field
for solver extras, so the benchmarks save them alongside.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.optim import adam_
from solvers.base import EpisodeSolver, SolverSpec
from solvers.checkpoint import write_state
from solvers.epgt.actions import JointActions, linear_epsilon
from solvers.epgt.encoder import KEY_INPUTS, HyperStateVAE
from solvers.epgt.memory import READ_MODES, UNTRIED, EpisodicMemory

HYPER_RETURNS = ("rollout", "finished_episodes")
ENCODERS = ("vae", "random", "none")
LEGACY = {
    "hyper_return": "finished_episodes",
    "read_mode": "per_action",
    "key_input": "sigmoid",
    "free_bits": 0.0,
    "kernel_eps_scale": None,
}
"""``EPGTSolver(**LEGACY)``: the definitions before issue 14, for a labelled comparison arm"""
DIAGNOSE_EVERY = 10
"""hyper-steps between re-measurements of the median neighbour distance for ``diagnostics`` (a few ms each)"""

MAX_MEMORY_BYTES = 2**30
"""Refuse a joint action space whose full memory (a float64 value and a bool per action per key) exceeds this"""


@dataclass(frozen=True, kw_only=True)
class EPGTConfig:
    """EPGT's own settings; defaults are the paper's and the reference code's."""

    hyper_state: tuple[str, ...] = ("projection",)
    """observation parts whose concatenation the encoder embeds (the paper's: the ``projection`` part)"""
    encoder: str = "vae"
    """``vae`` (trained online), ``random`` (the same network, never trained: the paper's ablation) or ``none``
    (every state has the same key: the memory is one slot, an epsilon-greedy bandit on the same bins)"""
    latent_dim: int = 32
    """h, the VAE's latent size"""
    key_dim: int = 5
    """size of the memory key: the VAE mean through a fixed random map and a tanh"""
    train_prob: float = 0.1
    """chance of one VAE Adam step at each memory update"""
    train_batch: int = 8
    """hyper-states per VAE step, sampled from those in memory"""
    vae_lr: float = 1e-3
    """Adam step size of the VAE"""
    input_dropout: float = 0.5
    """dropout on the VAE encoder's input while training"""
    capacity: int = 10_000
    """memory slots, N_mem; the earliest inserted is evicted first"""
    read_k: int = 5
    """K, neighbours of a read (Eq. 3)"""
    write_k: int = 3
    """K_w, neighbours of a write (Eq. 4)"""
    write_rate: float = 0.5
    """beta, the writing rate of Eq. 4"""
    write_rule: str = "average"
    """``average`` (the paper's Eq. 4) or ``max`` (Blundell et al.'s max rule, on the exact key only)"""
    kernel_eps: float = 1e-3
    """the kernel is 1 / (squared distance + kernel_eps); with ``kernel_eps_scale`` set, only the value until the
    memory holds two keys"""
    kernel_eps_scale: float | None = 0.1
    """epsilon = this times the median squared neighbour distance of the keys (re-estimated at each re-key);
    None keeps ``kernel_eps`` fixed (the paper's 1e-3)"""
    hyper_return: str = "rollout"
    """``rollout`` (Eq. 1: the discounted return of the first rollout after the episode's last action took effect)
    or ``finished_episodes`` (the earlier definition: the mean return of the inner episodes finishing in the first
    later hyper-step that has any)"""
    read_mode: str = "neighbourhood"
    """``neighbourhood`` (the paper's N(i): the K nearest keys of the state) or ``per_action`` (the K nearest keys
    holding each action, the earlier reading; see ``memory``)"""
    untried: str = "skip"
    """in a neighbourhood read, an entry the neighbour has not tried: ``skip`` (left out; NaN if no neighbour tried
    the action) or ``zero`` (counts as 0, the reference code's)"""
    key_input: str = "standardised"
    """the VAE's input: ``standardised`` projection (refitted on the memory) or ``sigmoid`` (the earlier one)"""
    free_bits: float = 0.25
    """KL floor per latent dimension (nats) below which the KL term stops pulling the VAE means to 0; 0 = plain ELBO"""
    eps_start: float = 1.0
    """epsilon of the epsilon-greedy policy at the start of a lifetime"""
    eps_end: float = 0.01
    """epsilon once the decay is over"""
    eps_fraction: float = 0.5
    """fraction of the lifetime's env steps over which epsilon falls linearly"""
    episode_length: int = 1
    """U, hyper-steps per learning episode"""
    total_timesteps: int | None = None
    """lifetime budget for the epsilon schedule; None reads ``total_timesteps`` from the env"""

    def __post_init__(self) -> None:
        if isinstance(self.hyper_state, str) or not self.hyper_state or not all(isinstance(p, str) for p in self.hyper_state):
            raise ValueError(f"hyper_state must be a non-empty tuple of observation part names, got {self.hyper_state!r}")
        object.__setattr__(self, "hyper_state", tuple(self.hyper_state))  # a list from JSON or a file compares equal
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {self.episode_length}")
        if not 0.0 <= self.train_prob <= 1.0 or not 0.0 <= self.input_dropout < 1.0:
            raise ValueError("train_prob must lie in [0, 1] and input_dropout in [0, 1)")
        for name, allowed in (
            ("hyper_return", HYPER_RETURNS),
            ("read_mode", READ_MODES),
            ("untried", UNTRIED),
            ("key_input", KEY_INPUTS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.kernel_eps_scale is not None and not self.kernel_eps_scale > 0:
            raise ValueError(f"kernel_eps_scale must be > 0 or None, got {self.kernel_eps_scale}")
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits}")


class EPGTSolver(EpisodeSolver):
    """Epsilon-greedy over joint discrete hyper-actions, valued by an episodic memory keyed by phi(hyper-state).

    The memory and encoder outlive a lifetime: ``run`` on a second env keeps
    them (a new solver starts empty).  ``save``/``load`` write them, with the
    lifetime's bookkeeping and the RNG, as a plain ``state_dict`` file
    (``hyperrl run --save-solver`` / ``--load-solver``).
    """

    name = "epgt"
    spec = SolverSpec(action_type="discrete", observe=EPGTConfig.hyper_state)
    """joint discrete bins; reads the default ``hyper_state`` (the command line adds it to the env's observation)"""

    def __init__(self, config: EPGTConfig | None = None, **overrides: Any) -> None:
        config = config or EPGTConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        # The parts this instance embeds: the command line builds its env from them.
        self.spec = SolverSpec(action_type="discrete", observe=tuple(self.config.hyper_state))
        self.vae: HyperStateVAE | None = None
        self.memory: EpisodicMemory | None = None
        self.joint: JointActions | None = None
        self.gen = torch.Generator().manual_seed(0)
        self.budget = 0
        self.timesteps = 0
        self.episode: list[tuple[torch.Tensor, int]] = []
        self.pending: list[list[tuple[torch.Tensor, int]]] = []
        self.last_q: np.ndarray | None = None
        self.vae_steps = 0
        self.diagnostics: list[dict[str, Any]] = []
        self.spread = float("nan")

    # -- set-up ----------------------------------------------------------------
    def begin(self, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        joint = JointActions.from_space(env.action_space)
        input_dim = _hyper_state_dim(env.observation_space, self.config.hyper_state)
        self.budget = self.config.total_timesteps or _budget(env)
        if self.vae is None:
            _check_memory_size(joint, self.config.capacity)
            self._build(input_dim, joint, seed)
        elif self.vae.input_dim != input_dim or self.joint.n != joint.n:
            raise ValueError(
                f"this solver's memory is for {self.vae.input_dim}-dim hyper-states and {self.joint.n} actions; "
                f"the env has {input_dim} and {joint.n}: use a new solver"
            )
        self.joint = joint
        self.gen.manual_seed(seed)
        self.timesteps = int(info.get("timesteps", 0))
        self.episode, self.pending = [], []
        self.diagnostics = []

    def _build(self, input_dim: int, joint: JointActions, seed: int) -> None:
        c = self.config
        self.joint = joint
        self.vae = HyperStateVAE(
            input_dim, latent_dim=c.latent_dim, key_dim=c.key_dim, seed=seed, key_input=c.key_input, free_bits=c.free_bits
        )
        # agents.optim's in-place Adam: same maths as torch.optim.Adam, without its seconds-long first import.
        self.adam_state = {
            name: {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            for name, p in self.vae.named_parameters()
        }
        self.memory = EpisodicMemory(
            c.key_dim,
            joint.n,
            capacity=c.capacity,
            read_k=c.read_k,
            write_k=c.write_k,
            write_rate=c.write_rate,
            write_rule=c.write_rule,
            kernel_eps=c.kernel_eps,
            payload_dim=input_dim if self._rekeys else 0,  # only re-keying reads it
            read_mode=c.read_mode,
            untried=c.untried,
        )

    @property
    def _rekeys(self) -> bool:
        """Whether stored keys are ever recomputed (after VAE steps, or a refit of the standardisation)."""
        return self.config.encoder == "vae" or (self.config.encoder == "random" and self.config.key_input == "standardised")

    def _key(self, raw: torch.Tensor) -> np.ndarray:
        """phi(s) of raw hyper-state(s); the no-memory ablation maps every state to the origin."""
        if self.config.encoder == "none":
            return np.zeros((*raw.shape[:-1], self.config.key_dim), np.float32)
        return self.vae.key(raw).numpy()

    # -- acting ----------------------------------------------------------------
    def epsilon(self) -> float:
        c = self.config
        return linear_epsilon(self.timesteps, self.budget, start=c.eps_start, end=c.eps_end, fraction=c.eps_fraction)

    def act(self, obs: Any) -> np.ndarray:
        parts = [np.asarray(obs[name], np.float32).reshape(-1) for name in self.config.hyper_state]
        u = torch.from_numpy(np.concatenate(parts))  # raw: the encoder prepares it (its input map may be refitted)
        q = self.memory.read(self._key(u))
        explore = torch.rand((), generator=self.gen).item() < self.epsilon()
        if explore or np.all(np.isnan(q)):
            index = int(torch.randint(self.joint.n, (), generator=self.gen))
        else:
            best = np.flatnonzero(q == np.nanmax(q))
            index = int(best[torch.randint(len(best), (), generator=self.gen)])
        self.last_q = q
        if len(self.diagnostics) % DIAGNOSE_EVERY == 0:
            self.spread = self.memory.median_neighbour_distance()
        self.diagnostics.append(
            {
                "q": q.tolist(),
                "choice": index,
                "explored": bool(explore),
                "median_nn": self.spread,
                "kernel_eps": self.memory.kernel_eps,
            }
        )
        self.episode.append((u, index))
        return self.joint.to_action(index)

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        self.timesteps = int(info["timesteps"])
        if self.config.hyper_return == "rollout":
            rollouts = tuple(info.get("rollout_return", ()))
            if not info.get("diverged", False) and not any(np.isfinite(rollouts)):
                raise ValueError(
                    "EPGTConfig.hyper_return='rollout' needs info['rollout_return'] (IterationReport.rollout_return), "
                    f"which this env's learner does not report (got {rollouts}); use hyper_return='finished_episodes'"
                )
            self._observe_rollouts(rollouts, done)
        else:
            self._observe_finished_episodes(tuple(info.get("episode_returns", ())), done)

    def _observe_rollouts(self, rollouts: tuple[float, ...], done: bool) -> None:
        """Eq. 1: a learning episode gets the G of the first rollout after its last action's first update."""
        if self.pending and rollouts:  # an episode closed last step (one iteration a step): its rollout is this one
            self._update_if_finite(self.pending, rollouts[0])
            self.pending = []
        if len(self.episode) >= self.config.episode_length:
            if len(rollouts) > 1:  # the second iteration of this step collected after the first update with a_t
                self._update_if_finite([self.episode], rollouts[1])
            else:
                self.pending = [self.episode]
            self.episode = []
        if done:  # nothing will be measured after the lifetime's last update
            self.episode, self.pending = [], []

    def _update_if_finite(self, episodes: list[list[tuple[torch.Tensor, int]]], hyper_return: float) -> None:
        if np.isfinite(hyper_return):  # NaN: the learner measured none (it had diverged)
            self._update(episodes, float(hyper_return))

    def _observe_finished_episodes(self, returns: tuple[float, ...], done: bool) -> None:
        if len(returns) and self.pending:
            self._update(self.pending, float(np.mean(returns)))
            self.pending = []
        if len(self.episode) >= self.config.episode_length:
            self.pending.append(self.episode)
            self.episode = []
        if done:  # nothing will be measured after the lifetime's last update
            self.episode, self.pending = [], []

    # -- learning --------------------------------------------------------------
    def _update(self, episodes: list[list[tuple[torch.Tensor, int]]], hyper_return: float) -> None:
        """Algorithm 1, line 10, once per learning episode; keys come from the current encoder."""
        for episode in episodes:
            states = torch.stack([u for u, _ in episode])
            keys = self._key(states)
            payloads = states.numpy() if self.memory.payload_dim else [None] * len(episode)
            for key, payload, (_, index) in zip(keys, payloads, episode):
                size = len(self.memory)
                self.memory.write(key, index, hyper_return, payload=payload)
                grew_to_power_of_two = len(self.memory) > size and len(self.memory) & (len(self.memory) - 1) == 0
                if grew_to_power_of_two and self._rekeys and self.config.key_input == "standardised":
                    self._refresh_keys()
            if self.config.encoder == "vae" and torch.rand((), generator=self.gen).item() < self.config.train_prob:
                self._train_vae()

    def _train_vae(self) -> None:
        c, n = self.config, len(self.memory)
        rows = torch.randint(n, (c.train_batch,), generator=self.gen)
        batch = torch.from_numpy(self.memory.payload[:n])[rows]
        self.vae.zero_grad(set_to_none=True)
        self.vae.loss(batch, self.gen, dropout=c.input_dropout).backward()
        with torch.no_grad():
            for name, p in self.vae.named_parameters():
                adam_(p, p.grad, self.adam_state[name], lr=c.vae_lr)
        self.vae_steps += 1
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Refit the input standardisation on the memory's hyper-states, re-key them all, re-scale the kernel."""
        states = torch.from_numpy(self.memory.payload[: len(self.memory)])
        self.vae.fit_input(states)
        self.memory.rekey(self.vae.key(states).numpy())
        spread = self.memory.median_neighbour_distance()
        if self.config.kernel_eps_scale is not None and spread > 0:
            self.memory.kernel_eps = self.config.kernel_eps_scale * spread

    # -- plain state_dict files ------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.vae is None:
            raise RuntimeError("nothing to save yet: the solver has not seen an env (call run or begin first)")
        flat = [(u, a, i) for i, ep in enumerate([*self.pending, self.episode]) for u, a in ep]
        return {
            "config": dataclasses.asdict(self.config),
            "nvec": torch.from_numpy(self.joint.nvec.copy()),
            "input_dim": self.vae.input_dim,
            "vae": self.vae.state_dict(),
            "adam": self.adam_state,
            "memory": self.memory.state_dict(),
            "generator": self.gen.get_state(),
            "budget": self.budget,
            "timesteps": self.timesteps,
            "vae_steps": self.vae_steps,
            "buffer_states": torch.stack([u for u, _, _ in flat]) if flat else torch.zeros(0, self.vae.input_dim),
            "buffer_actions": torch.tensor([a for _, a, _ in flat], dtype=torch.int64),
            "buffer_episode": torch.tensor([i for _, _, i in flat], dtype=torch.int64),
            "pending_count": len(self.pending),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if EPGTConfig(**state["config"]) != self.config:
            raise ValueError(f"the file was saved with {state['config']}; this solver has {dataclasses.asdict(self.config)}")
        joint = JointActions(state["nvec"].numpy())
        self._build(int(state["input_dim"]), joint, seed=0)
        self.vae.load_state_dict(state["vae"])
        self.adam_state = {
            name: {"step": int(st["step"]), "exp_avg": st["exp_avg"].clone(), "exp_avg_sq": st["exp_avg_sq"].clone()}
            for name, st in state["adam"].items()
        }
        self.memory.load_state_dict(state["memory"])
        self.gen.set_state(state["generator"])
        self.budget, self.timesteps, self.vae_steps = int(state["budget"]), int(state["timesteps"]), int(state["vae_steps"])
        episodes: list[list[tuple[torch.Tensor, int]]] = [[] for _ in range(int(state["pending_count"]) + 1)]
        for u, a, i in zip(state["buffer_states"], state["buffer_actions"].tolist(), state["buffer_episode"].tolist()):
            episodes[i].append((u.clone(), a))
        self.pending, self.episode = episodes[:-1], episodes[-1]

    def save(self, path: str | Path) -> Path:
        return write_state(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> EPGTSolver:
        """A solver with the memory, encoder, RNG and lifetime bookkeeping saved in ``path``.

        Continue the interrupted lifetime with ``act``/``observe`` on the env
        restored by its owner, or start new lifetimes with ``run`` (which
        keeps the memory and encoder).
        """
        state = torch.load(path, weights_only=True)
        solver = cls(EPGTConfig(**state["config"]))
        solver.load_state_dict(state)
        return solver


def _hyper_state_dim(space: gym.Space, parts: tuple[str, ...]) -> int:
    """Size of the concatenated ``parts`` of a Dict observation; a ValueError that says how to make the env otherwise."""
    have = list(space.spaces) if isinstance(space, spaces.Dict) else []
    missing = [p for p in parts if p not in have]
    if missing:
        observe = [*parts, *(p for p in have if p not in parts)]
        raise ValueError(
            f"EPGT embeds the observation parts {list(parts)} (EPGTConfig.hyper_state) but the env observes "
            f"{have or space}: make it with gym.make(env_id, observe={observe}, action_type='discrete', ...), "
            "or set hyper_state to parts it has"
        )
    bad = [p for p in parts if not isinstance(space[p], spaces.Box) or len(space[p].shape) != 1]
    if bad:
        raise ValueError(f"EPGT needs 1-D Box observation parts; {bad} are {[space[p] for p in bad]}")
    return sum(int(space[p].shape[0]) for p in parts)


def _check_memory_size(joint: JointActions, capacity: int) -> None:
    needed = capacity * joint.n * 9
    if needed > MAX_MEMORY_BYTES:
        raise ValueError(
            f"EPGT's joint action has {joint.n:,} choices (bins {joint.nvec.tolist()}): a full memory of {capacity:,} keys "
            f"would take {needed / 2**30:.1f} GiB; control fewer hyperparameters (gym.make(..., hyperparameters=[...]), "
            "hyperrl --hyperparameters) or fewer bins, or lower EPGTConfig.capacity"
        )


def _budget(env: gym.Env) -> int:
    try:
        return int(env.get_wrapper_attr("total_timesteps"))
    except AttributeError as err:
        raise ValueError(
            "EPGT needs the lifetime budget for its epsilon schedule: the env has no 'total_timesteps'; "
            "pass EPGTSolver(total_timesteps=...)"
        ) from err
