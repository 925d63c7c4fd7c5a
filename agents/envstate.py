"""Save and restore the state of inner vector environments as plain arrays.

``copy.deepcopy`` of a MuJoCo or Box2D env does not reproduce its future
(MuJoCo's copy drifts, Box2D's breaks), so state is read through each
engine's own API instead: ``mj_getState`` for MuJoCo, the ``state`` attribute
for classic control, plus the episode step counter and the reset RNG.
Engines without such an API (Box2D, ALE's vector env) raise
``NotImplementedError`` naming the environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_UNSUPPORTED = "{name} cannot save its internal state, so lifetimes on it cannot be snapshotted or resumed mid-episode"


def _unwrap_chain(env: Any) -> list[Any]:
    chain = [env]
    while hasattr(chain[-1], "env"):
        chain.append(chain[-1].env)
    return chain


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's 128-bit integers do not fit int64 tensors: keep them as bytes.
    state = rng.bit_generator.state
    return {
        "state": np.frombuffer(state["state"]["state"].to_bytes(16, "little"), dtype=np.uint8).copy(),
        "inc": np.frombuffer(state["state"]["inc"].to_bytes(16, "little"), dtype=np.uint8).copy(),
        "has_uint32": np.array(state["has_uint32"]),
        "uinteger": np.array(state["uinteger"]),
    }


def _set_rng_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {
            "state": int.from_bytes(np.asarray(saved["state"], dtype=np.uint8).tobytes(), "little"),
            "inc": int.from_bytes(np.asarray(saved["inc"], dtype=np.uint8).tobytes(), "little"),
        },
        "has_uint32": int(saved["has_uint32"]),
        "uinteger": int(saved["uinteger"]),
    }


def _physics_state(base: Any) -> dict[str, np.ndarray]:
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(base.model, spec))
        mujoco.mj_getState(base.model, base.data, buf, spec)
        return {"mujoco": buf}
    if getattr(base, "state", None) is not None and not hasattr(base, "world"):
        out = {"state": np.array(base.state, dtype=np.float64)}
        if hasattr(base, "steps_beyond_terminated"):
            steps = base.steps_beyond_terminated
            out["steps_beyond_terminated"] = np.array(-1 if steps is None else steps)
        return out
    raise NotImplementedError(_UNSUPPORTED.format(name=type(base).__name__))


def _set_physics_state(base: Any, saved: dict[str, np.ndarray]) -> None:
    if "mujoco" in saved:
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.asarray(saved["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
        return
    state = np.asarray(saved["state"])
    base.state = state.astype(np.asarray(base.state).dtype) if isinstance(base.state, np.ndarray) else tuple(state)
    if "steps_beyond_terminated" in saved:
        steps = int(saved["steps_beyond_terminated"])
        base.steps_beyond_terminated = None if steps < 0 else steps


def capture(envs: Any) -> list[dict[str, Any]]:
    """State of every sub-environment of a gymnasium ``SyncVectorEnv``."""
    if not hasattr(envs, "envs"):
        raise NotImplementedError(_UNSUPPORTED.format(name=type(envs).__name__))
    saved = []
    for env in envs.envs:
        chain = _unwrap_chain(env)
        entry: dict[str, Any] = {"physics": _physics_state(chain[-1]), "rng": _rng_state(chain[-1].np_random)}
        entry["elapsed"] = np.array([getattr(w, "_elapsed_steps", 0) or 0 for w in chain if hasattr(w, "_max_episode_steps")])
        saved.append(entry)
    return saved


def restore(envs: Any, saved: list[dict[str, Any]]) -> None:
    """Inverse of ``capture`` on an env built the same way."""
    if len(saved) != len(envs.envs):
        raise ValueError(f"saved state has {len(saved)} environments, the vector env has {len(envs.envs)}")
    for env, entry in zip(envs.envs, saved):
        chain = _unwrap_chain(env)
        _set_physics_state(chain[-1], entry["physics"])
        _set_rng_state(chain[-1].np_random, entry["rng"])
        limits = [w for w in chain if hasattr(w, "_max_episode_steps")]
        for wrapper, steps in zip(limits, np.asarray(entry["elapsed"]).tolist()):
            wrapper._elapsed_steps = int(steps)
        for wrapper in chain:
            if hasattr(wrapper, "_has_reset"):
                wrapper._has_reset = True
