"""EPGTSolver: episodic-memory control of a HyperRL lifetime (Le et al., AAAI 2022), black-box.

It talks to the env only through ``reset``/``step``, the observation,
``info`` and ``env.get_wrapper_attr("total_timesteps")``.  Any HyperRL id made
with ``action_type="discrete"`` works (PPO, A2C, IMPALA, ES) with no
id-specific code, as long as the memory fits (``MAX_MEMORY_BYTES``: IMPALA's
seven controlled hyperparameters make 5**7 joint actions; control fewer).

The hyper-state is the ``projection`` observation (the paper's).  ES ids do
not observe it by default: make them with ``gym.make(id, observe=["projection",
"fitness", "statistics"], ...)`` (the ``hyperrl`` command adds the parts named
by a solver's ``observation_parts``), or set ``EPGTConfig.hyper_state`` to
other 1-D parts the env has.

Greedy choice.  The paper starts from an empty memory (Algorithm 1, line 1)
and gives untried hyper-actions no initial value; the memory reads an action
from its own nearest holders (see ``memory``), so the greedy action is the
best of the actions tried anywhere in memory, and an action never tried is
reached only by exploration (epsilon starts at 1).  With no action tried at
all the choice is uniform.

Learning episodes and the hyper-reward (paper Eq. 1 and Algorithm 1).  One
``env.step(a_t)`` runs ``iterations_per_step`` learner iterations, each
*collect, then update with a_t*; so the episodes that finish during step t
were (mostly) produced by policies from before a_t took full effect.  The
return that follows a_t is the one measured in step t+1.  A learning episode
is ``episode_length`` (U) consecutive hyper-steps; every action in it gets the
hyper-return G = the mean return of the inner episodes that finish in the
first later step where any finish (long inner episodes can take several
steps).  The memory is written when G is known; the last learning episode of
a lifetime has no measurement after it and is not written.
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
from solvers.epgt.actions import JointActions, linear_epsilon
from solvers.epgt.encoder import HyperStateVAE
from solvers.epgt.memory import EpisodicMemory

MAX_MEMORY_BYTES = 2**30
"""Refuse a joint action space whose full memory (a float64 value and a bool per action per key) exceeds this"""


@dataclass(frozen=True, kw_only=True)
class EPGTConfig:
    """EPGT's own settings; defaults are the paper's and the reference code's."""

    hyper_state: tuple[str, ...] = ("projection",)
    """observation parts whose concatenation the encoder embeds (the paper's: the ``projection`` part)"""
    encoder: str = "vae"
    """``vae`` (trained online) or ``random`` (the same network, never trained: the paper's ablation)"""
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
    """the kernel is 1 / (squared distance + kernel_eps)"""
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
        if self.encoder not in ("vae", "random"):
            raise ValueError(f"encoder must be 'vae' or 'random', got {self.encoder!r}")
        if self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {self.episode_length}")
        if not 0.0 <= self.train_prob <= 1.0 or not 0.0 <= self.input_dropout < 1.0:
            raise ValueError("train_prob must lie in [0, 1] and input_dropout in [0, 1)")


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

    def _build(self, input_dim: int, joint: JointActions, seed: int) -> None:
        c = self.config
        self.joint = joint
        self.vae = HyperStateVAE(input_dim, latent_dim=c.latent_dim, key_dim=c.key_dim, seed=seed)
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
            payload_dim=input_dim if c.encoder == "vae" else 0,  # only re-keying after VAE training reads it
        )

    @property
    def observation_parts(self) -> tuple[str, ...]:
        """The observation parts this solver needs; the ``hyperrl`` command adds them to the id's ``observe``."""
        return self.config.hyper_state

    # -- acting ----------------------------------------------------------------
    def epsilon(self) -> float:
        c = self.config
        return linear_epsilon(self.timesteps, self.budget, start=c.eps_start, end=c.eps_end, fraction=c.eps_fraction)

    def act(self, obs: Any) -> np.ndarray:
        parts = [np.asarray(obs[name], np.float32).reshape(-1) for name in self.config.hyper_state]
        u = HyperStateVAE.prepare(torch.from_numpy(np.concatenate(parts)))
        q = self.memory.read(self.vae.key(u).numpy())
        explore = torch.rand((), generator=self.gen).item() < self.epsilon()
        if explore or np.all(np.isnan(q)):
            index = int(torch.randint(self.joint.n, (), generator=self.gen))
        else:
            index = int(np.nanargmax(q))
        self.last_q = q
        self.episode.append((u, index))
        return self.joint.to_action(index)

    def observe(self, action: Any, obs: Any, reward: float, done: bool, info: dict[str, Any]) -> None:
        self.timesteps = int(info["timesteps"])
        returns = info.get("episode_returns", ())
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
            keys = self.vae.key(states).numpy()
            payloads = states.numpy() if self.memory.payload_dim else [None] * len(episode)
            for key, payload, (_, index) in zip(keys, payloads, episode):
                self.memory.write(key, index, hyper_return, payload=payload)
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
        self.memory.rekey(self.vae.key(torch.from_numpy(self.memory.payload[:n])).numpy())

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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

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
