"""Gymnasium's classic-control tasks, batched: CartPole-v1, Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0, Pendulum-v1.

Each twin keeps Gymnasium's state layout (``state[i]`` is ``env.unwrapped.state``
of instance ``i``, in float64), its equations in the same order of operations,
its reset distribution, reward, termination and its registered time limit as
truncation, so from the same state and actions a twin steps like Gymnasium's
env to float64 rounding.  Where Gymnasium computes in float32 (Acrobot's reset
state, MountainCarContinuous's state after a step, the float32 action terms of
the continuous tasks) the twin rounds at the same places.

Continuous actions are clipped to the action space, as Gymnasium does, and
MountainCarContinuous's action cost uses the unclipped action, as Gymnasium's does.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from hyperenvs.tasks.base import BatchedTask

F64 = torch.float64


def _columns(xp: Any, columns: tuple) -> Any:
    """``xp.stack(columns, 1)``; in NumPy as the transpose of one ``array`` call (its ``stack`` is Python, twice the cost)."""
    return np.array(columns).T if xp is np else xp.stack(columns, 1)


def _cast(xp: Any, x: Any, like: Any) -> Any:
    """``x`` cast to ``like``'s dtype, in either array library."""
    return x.astype(like.dtype) if xp is np else x.to(like.dtype)


def _f32(x: float) -> float:
    """``x`` rounded to float32: where NumPy casts a Python float to a float32 operand's dtype."""
    return float(np.float32(x))


class ClassicControlTask(BatchedTask):
    """A classic-control twin: float64 ``state`` rows, a step counter and Gymnasium's time limit."""

    max_episode_steps: int
    """the registered id's ``max_episode_steps``: the step that truncates an episode"""
    state_size: int
    """the length of Gymnasium's ``state``"""

    def __init__(
        self, num_envs: int, *, device: str | torch.device = "cpu", record_final: bool = False, reuse_obs: bool = False
    ) -> None:
        super().__init__(num_envs, device=device, record_final=record_final, reuse_obs=reuse_obs)
        self.state = torch.zeros(self.num_envs, self.state_size, dtype=F64, device=self.device)
        """every instance's Gymnasium ``state`` (set rows of it to start from chosen states)"""
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        """steps taken in each instance's current episode"""

    def _reset_rows(self, rows: torch.Tensor) -> None:
        if not rows.numel():  # most steps end no episode: skip the five ops (an empty draw takes nothing from the generator)
            return
        self.elapsed[rows] = 0
        self.state[rows] = self._initial_state(rows.numel())

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if type(self)._step_arrays is not ClassicControlTask._step_arrays and self.device.type == "cpu":
            # On CPU a twin that writes its step against an array library runs it on NumPy views of the same
            # memory: a NumPy op costs about a microsecond here, a torch op on a few rows several.
            state, elapsed = self.state.numpy(), self.elapsed.numpy()
            new, reward, terminated = self._step_arrays(np, state, action.numpy())
            state[...] = new
            elapsed += 1
            done = np.zeros(len(state), dtype=bool) if terminated is None else terminated
            return (
                torch.from_numpy(reward.astype(np.float32)),
                torch.from_numpy(done),
                torch.from_numpy(elapsed >= self.max_episode_steps),
            )
        reward, terminated = self._dynamics(action)
        self.elapsed += 1
        return reward.float(), terminated, self.elapsed >= self.max_episode_steps

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        """One Gymnasium ``step`` of every instance written against the array library ``xp`` (``numpy`` or
        ``torch``, with ``state`` and ``action`` its arrays): ``(new_state, reward float64, terminated bool or
        None for never)``.  A twin that defines it
        gets ``_dynamics`` from it (below) and a NumPy step on CPU (``_advance``)."""
        raise NotImplementedError

    def _dynamics(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new, reward, terminated = self._step_arrays(torch, self.state, action)
        self.state = new
        return reward, torch.zeros_like(reward, dtype=torch.bool) if terminated is None else terminated

    @abstractmethod
    def _initial_state(self, n: int) -> torch.Tensor:
        """``n`` new float64 states drawn as Gymnasium's ``reset`` draws them."""

    # A twin defines ``_step_arrays`` (above) or overrides ``_dynamics``: one Gymnasium ``step`` of every instance
    # that updates ``state`` and returns ``(reward, terminated)``.

    def _uniform(self, n: int, low: float | torch.Tensor, high: float | torch.Tensor, size: int) -> torch.Tensor:
        u = torch.rand(n, size, generator=self.generator, dtype=F64, device=self.device)
        return low + (high - low) * u

    def _observe(self) -> torch.Tensor:
        if self.device.type == "cpu":  # in NumPy on views, as the step
            obs = self._observe_arrays(np, self.state.numpy())
            if not self.reuse_obs:
                return torch.from_numpy(obs.astype(np.float32))
            buf = self._slot_buffer(obs.shape)
            np.copyto(buf.numpy(), obs, casting="same_kind")
            return buf
        return self._emit(self._observe_arrays(torch, self.state))

    def _observe_arrays(self, xp: Any, state: Any) -> Any:
        """Gymnasium's float64 observation of every instance from ``state``, against the array library ``xp``
        (the state itself unless a twin says otherwise)."""
        return state

    def _emit(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.reuse_obs:
            return obs.float()
        return self._slot_buffer(tuple(obs.shape)).copy_(obs)

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        if isinstance(self.single_action_space, gym.spaces.Discrete):
            return super()._check_action(action)
        action = torch.as_tensor(action, device=self.device)
        shape = (self.num_envs, *self.single_action_space.shape)
        if action.shape != shape:
            raise ValueError(f"action must have shape {shape}, got {tuple(action.shape)}")
        if not action.dtype.is_floating_point:
            raise ValueError(f"action must be a floating-point tensor, got {action.dtype}")
        finite = np.isfinite(action.numpy()).all() if action.device.type == "cpu" else torch.isfinite(action).all()
        if not bool(finite):
            raise ValueError("action must be finite, got NaN or infinity")
        return action.float()


class CartPole(ClassicControlTask):
    """CartPole-v1: push a cart left or right to keep its pole within 12 degrees of upright; +1 a step, 500 steps."""

    max_episode_steps = 500
    state_size = 4
    GRAVITY, MASSCART, MASSPOLE, LENGTH, FORCE_MAG, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    TOTAL_MASS = MASSPOLE + MASSCART
    POLEMASS_LENGTH = MASSPOLE * LENGTH
    THETA_THRESHOLD = 12 * 2 * math.pi / 360
    X_THRESHOLD = 2.4

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        high = np.array([self.X_THRESHOLD * 2, np.inf, self.THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(2)

    def _initial_state(self, n: int) -> torch.Tensor:
        return self._uniform(n, -0.05, 0.05, 4)

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        # Gymnasium's equations in its order of operations, so the same float64 rounding (the force is +-10,
        # exact in torch's float32 default too)
        x_dot, theta, theta_dot = state[:, 1], state[:, 2], state[:, 3]
        force = xp.where(action == 1, self.FORCE_MAG, -self.FORCE_MAG)
        costheta, sintheta = xp.cos(theta), xp.sin(theta)
        temp = (force + self.POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / self.TOTAL_MASS
        thetaacc = (self.GRAVITY * sintheta - costheta * temp) / (
            self.LENGTH * (4.0 / 3.0 - self.MASSPOLE * (costheta * costheta) / self.TOTAL_MASS)
        )
        xacc = temp - self.POLEMASS_LENGTH * thetaacc * costheta / self.TOTAL_MASS
        # explicit Euler, every variable from its old rate (Gymnasium's default "euler" integrator)
        new = state + _columns(xp, (x_dot, xacc, theta_dot, thetaacc)) * self.TAU
        x, theta = new[:, 0], new[:, 2]
        terminated = (abs(x) > self.X_THRESHOLD) | (abs(theta) > self.THETA_THRESHOLD)
        return new, xp.ones_like(x), terminated


class Acrobot(ClassicControlTask):
    """Acrobot-v1: torque the middle joint of a two-link chain to swing its tip above the bar; -1 a step, 500 steps.

    The "book" dynamics of Sutton and Barto integrated over 0.2 s by one classic
    Runge-Kutta step, angles wrapped to [-pi, pi], velocities bounded.
    """

    max_episode_steps = 500
    state_size = 4
    DT = 0.2
    LINK_LENGTH_1 = LINK_MASS_1 = LINK_MASS_2 = LINK_MOI = 1.0
    LINK_COM_POS_1 = LINK_COM_POS_2 = 0.5
    MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi
    TORQUES = (-1.0, 0.0, 1.0)

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(3)

    def _initial_state(self, n: int) -> torch.Tensor:
        return self._uniform(n, -0.1, 0.1, 4).float().double()  # Gymnasium keeps the reset state in float32

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        torque = xp.asarray(action - 1, dtype=state.dtype)  # TORQUES[action], exactly
        s = xp.concatenate((state, torque[:, None]), 1)
        dt = self.DT
        k1 = self._dsdt(xp, s)
        k2 = self._dsdt(xp, s + dt / 2.0 * k1)
        k3 = self._dsdt(xp, s + dt / 2.0 * k2)
        k4 = self._dsdt(xp, s + dt * k3)
        ns = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        theta1, theta2 = _wrap(xp, ns[:, 0], -math.pi, math.pi), _wrap(xp, ns[:, 1], -math.pi, math.pi)
        dtheta1 = xp.clip(ns[:, 2], -self.MAX_VEL_1, self.MAX_VEL_1)
        dtheta2 = xp.clip(ns[:, 3], -self.MAX_VEL_2, self.MAX_VEL_2)
        terminated = -xp.cos(theta1) - xp.cos(theta2 + theta1) > 1.0
        return _columns(xp, (theta1, theta2, dtheta1, dtheta2)), xp.where(terminated, 0.0, -1.0), terminated

    def _dsdt(self, xp: Any, s_augmented: Any) -> Any:
        """The time derivative of ``[theta1, theta2, dtheta1, dtheta2, torque]`` (the torque is held)."""
        m1, m2, l1 = self.LINK_MASS_1, self.LINK_MASS_2, self.LINK_LENGTH_1
        lc1, lc2, I1, I2, g = self.LINK_COM_POS_1, self.LINK_COM_POS_2, self.LINK_MOI, self.LINK_MOI, 9.8  # noqa: N806
        theta1, theta2, dtheta1, dtheta2, a = (s_augmented[:, i] for i in range(5))
        pi = math.pi
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * xp.cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * xp.cos(theta2)) + I2
        phi2 = m2 * lc2 * g * xp.cos(theta1 + theta2 - pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * xp.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * xp.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * xp.cos(theta1 - pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * xp.sin(theta2) - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return _columns(xp, (dtheta1, dtheta2, ddtheta1, ddtheta2, xp.zeros_like(a)))

    def _observe_arrays(self, xp: Any, state: Any) -> Any:
        theta1, theta2, dtheta1, dtheta2 = (state[:, i] for i in range(4))
        return _columns(xp, (xp.cos(theta1), xp.sin(theta1), xp.cos(theta2), xp.sin(theta2), dtheta1, dtheta2))


def _wrap(xp: Any, x: Any, low: float, high: float) -> Any:
    """Gymnasium's ``wrap``: subtract or add ``high - low`` until ``x`` lies in [low, high]."""
    diff = high - low
    above = xp.clip(xp.ceil((x - high) / diff), 0, None)
    below = xp.clip(xp.ceil((low - x) / diff), 0, None)
    return x - above * diff + below * diff


class MountainCar(ClassicControlTask):
    """MountainCar-v0: rock an underpowered car (push left, none, right) up to the flag at 0.5; -1 a step, 200 steps."""

    max_episode_steps = 200
    state_size = 2
    MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION = -1.2, 0.6, 0.07, 0.5
    FORCE, GRAVITY = 0.001, 0.0025

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        low = np.array([self.MIN_POSITION, -self.MAX_SPEED], dtype=np.float32)
        high = np.array([self.MAX_POSITION, self.MAX_SPEED], dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(3)

    def _initial_state(self, n: int) -> torch.Tensor:
        position = self._uniform(n, -0.6, -0.4, 1)
        return torch.cat((position, torch.zeros_like(position)), dim=1)

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        position, velocity = state[:, 0], state[:, 1]
        push = xp.asarray(action - 1, dtype=state.dtype)
        velocity = velocity + (push * self.FORCE + xp.cos(3 * position) * -self.GRAVITY)
        velocity = xp.clip(velocity, -self.MAX_SPEED, self.MAX_SPEED)
        position = xp.clip(position + velocity, self.MIN_POSITION, self.MAX_POSITION)
        velocity = xp.where((position == self.MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.GOAL_POSITION) & (velocity >= 0)
        return _columns(xp, (position, velocity)), xp.full_like(position, -1.0), terminated


class MountainCarContinuous(ClassicControlTask):
    """MountainCarContinuous-v0: a force in [-1, 1] drives the car to 0.45; +100 there, -0.1 a^2 a step, 999 steps.

    Gymnasium keeps this state in float32 after a step (the reset state is
    float64), so a row's first step is float64 arithmetic and later ones round
    to float32 where NumPy does: ``_fresh`` marks the rows still in their reset state.
    """

    max_episode_steps = 999
    state_size = 2
    MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION, POWER = -1.2, 0.6, 0.07, 0.45, 0.0015

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        low = np.array([self.MIN_POSITION, -self.MAX_SPEED], dtype=np.float32)
        high = np.array([self.MAX_POSITION, self.MAX_SPEED], dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self._fresh = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        super()._reset_rows(rows)
        self._fresh[rows] = True

    def _initial_state(self, n: int) -> torch.Tensor:
        position = self._uniform(n, -0.6, -0.4, 1)
        return torch.cat((position, torch.zeros_like(position)), dim=1)

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        fresh = self._fresh.numpy() if xp is np else self._fresh
        position, velocity = state[:, 0], state[:, 1]
        a = action[:, 0]

        def bound(value: float) -> Any:  # a float64 row operand: exact on fresh rows, rounded to float32 on the others
            return xp.where(fresh, xp.full_like(position, value), _f32(value))

        def rounded(x: Any) -> Any:  # rounded to float32 on the rows whose state is float32 (exact for + and *)
            return xp.where(fresh, x, _cast(xp, _cast(xp, x, a), x))

        slope = 0.0025 * xp.cos(rounded(3 * position))
        # Gymnasium clips with min/max: an action inside [-1, 1] stays a float32 scalar and the
        # velocity change is float32 arithmetic; a clipped one becomes the Python float -1.0 or 1.0
        # and the change is float64, rounded to float32 only when added to a float32 velocity
        inside = (a >= -1.0) & (a <= 1.0)
        change_inside = _cast(xp, a * self.POWER - _cast(xp, slope, a), position)
        change_clipped = rounded(_cast(xp, xp.sign(a), position) * self.POWER - slope)
        velocity = rounded(velocity + xp.where(inside, change_inside, change_clipped))
        velocity = xp.clip(velocity, -bound(self.MAX_SPEED), bound(self.MAX_SPEED))
        position = rounded(position + velocity)
        low = bound(self.MIN_POSITION)
        position = xp.clip(position, low, bound(self.MAX_POSITION))
        velocity = xp.where((position == low) & (velocity < 0), 0.0, velocity)
        terminated = (position >= bound(self.GOAL_POSITION)) & (velocity >= 0)
        new = _cast(xp, _cast(xp, _columns(xp, (position, velocity)), a), position)  # the state is float32 from now on
        reward = xp.where(terminated, 100.0, 0.0) - _cast(xp, a, position) ** 2 * 0.1
        return new, reward, terminated

    def _advance(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = super()._advance(action)
        self._fresh.zero_()
        return out


class Pendulum(ClassicControlTask):
    """Pendulum-v1: a torque in [-2, 2] swings a pendulum up and holds it; reward -(angle^2 + 0.1 w^2 + 0.001 u^2), 200 steps."""

    max_episode_steps = 200
    state_size = 2
    MAX_SPEED, MAX_TORQUE, DT, G, M, L = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        high = np.array([1.0, 1.0, self.MAX_SPEED], dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-self.MAX_TORQUE, self.MAX_TORQUE, (1,), dtype=np.float32)
        self._high = torch.tensor([math.pi, 1.0], dtype=F64, device=self.device)

    def _initial_state(self, n: int) -> torch.Tensor:
        return self._uniform(n, -self._high, self._high, 2)

    def _step_arrays(self, xp: Any, state: Any, action: Any) -> tuple[Any, Any, Any]:
        th, thdot = state[:, 0], state[:, 1]
        g, m, l, dt = self.G, self.M, self.L, self.DT  # noqa: E741
        u = xp.clip(action[:, 0], -self.MAX_TORQUE, self.MAX_TORQUE)  # float32, as NumPy keeps it
        normalized = xp.remainder(th + math.pi, 2 * math.pi) - math.pi
        costs = normalized**2 + 0.1 * thdot**2 + 0.001 * u**2  # the float32 term joins the float64 sum
        newthdot = thdot + (3 * g / (2 * l) * xp.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = xp.clip(newthdot, -self.MAX_SPEED, self.MAX_SPEED)
        return _columns(xp, (th + newthdot * dt, newthdot)), -costs, None

    def _observe_arrays(self, xp: Any, state: Any) -> Any:
        th, thdot = state[:, 0], state[:, 1]
        return _columns(xp, (xp.cos(th), xp.sin(th), thdot))
