"""EPGT's episodic memory: embedding keys -> per-action hyper-return estimates (paper Eqs. 3-4).

One slot holds a key (the hyper-state embedding), a value for every joint
hyper-action, and a mask of which of those values have ever been written: a
slot is created by writing one action, so its other actions are unknown rather
than 0 (a 0 would read as pessimistic when returns are positive and optimistic
when they are negative).  Reads and writes only average known values; on a
memory whose values are all known, they are exactly the paper's Eqs. 3 and 4.

Neighbours come from an exact faiss ``IndexFlatL2`` (squared Euclidean
distances); the kernel is ``1 / (d^2 + eps)``.  Slots are a ring: past
``capacity`` the earliest inserted slot is overwritten (FIFO).  An optional
payload per slot (EPGT stores the encoder's input) lets the owner re-key the
whole memory after its encoder changes.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import torch

WRITE_RULES = ("average", "max")


class EpisodicMemory:
    """Key-value memory with kernel-weighted kNN reads and writes."""

    def __init__(
        self,
        key_dim: int,
        num_actions: int,
        *,
        capacity: int = 10_000,
        read_k: int = 5,
        write_k: int = 3,
        write_rate: float = 0.5,
        write_rule: str = "average",
        kernel_eps: float = 1e-3,
        payload_dim: int = 0,
        match_tol: float = 1e-10,
    ) -> None:
        if min(key_dim, num_actions, capacity, read_k, write_k) < 1:
            raise ValueError("key_dim, num_actions, capacity, read_k and write_k must all be >= 1")
        if not 0.0 < write_rate <= 1.0:
            raise ValueError(f"write_rate must lie in (0, 1], got {write_rate}")
        if write_rule not in WRITE_RULES:
            raise ValueError(f"write_rule must be one of {WRITE_RULES}, got {write_rule!r}")
        faiss.omp_set_num_threads(1)  # single queries: thread start-up costs more than the search
        self.key_dim, self.num_actions, self.capacity = key_dim, num_actions, capacity
        self.read_k, self.write_k, self.write_rate = read_k, write_k, write_rate
        self.write_rule, self.kernel_eps, self.match_tol = write_rule, kernel_eps, match_tol
        self.payload_dim = payload_dim
        self.clear()

    def clear(self) -> None:
        self.keys = np.zeros((0, self.key_dim), np.float32)
        self.values = np.zeros((0, self.num_actions), np.float64)
        self.known = np.zeros((0, self.num_actions), bool)
        self.payload = np.zeros((0, self.payload_dim), np.float32)
        self.size = 0
        self.head = 0  # once full: the oldest slot, overwritten next
        self.index = faiss.IndexFlatL2(self.key_dim)
        self._stale = False

    def __len__(self) -> int:
        return self.size

    # -- kNN -------------------------------------------------------------------
    def neighbours(self, key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and slots of the ``k`` nearest keys, nearest first."""
        if self._stale:
            self.index.reset()
            self.index.add(self.keys[: self.size])
            self._stale = False
        query = np.ascontiguousarray(np.asarray(key, np.float32).reshape(1, self.key_dim))
        dist, slots = self.index.search(query, min(k, self.size))
        return dist[0].astype(np.float64), slots[0]

    def _weights(self, dist: np.ndarray) -> np.ndarray:
        w = 1.0 / (np.maximum(dist, 0.0) + self.kernel_eps)
        return w / w.sum()

    # -- Eq. 3 -----------------------------------------------------------------
    def read(self, key: np.ndarray) -> np.ndarray:
        """Q(s, a) for every action: kernel-weighted mean over the K nearest slots; NaN where none knows a."""
        if self.size == 0:
            return np.full(self.num_actions, np.nan)
        dist, slots = self.neighbours(key, self.read_k)
        w = self._weights(dist)[:, None] * self.known[slots]
        num = (w * self.values[slots]).sum(0)
        den = w.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    # -- Eq. 4 (or the max rule) -----------------------------------------------
    def write(self, key: np.ndarray, action: int, value: float, payload: np.ndarray | None = None) -> int:
        """Move the neighbours' estimate of ``action`` toward ``value``; insert the key when absent. Returns its slot."""
        action, value = int(action), float(value)
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action {action} outside [0, {self.num_actions - 1}]")
        slot = None
        if self.size:
            dist, slots = self.neighbours(key, self.write_k if self.write_rule == "average" else 1)
            if self.write_rule == "average":
                w = self._weights(dist)
                mine = self.known[slots, action]
                old = self.values[slots[mine], action]
                self.values[slots[mine], action] = old + self.write_rate * w[mine] * (value - old)
            if dist[0] <= self.match_tol:
                slot = int(slots[0])
        if slot is None:
            slot = self._insert(key, payload)
        if not self.known[slot, action]:
            self.values[slot, action], self.known[slot, action] = value, True
        elif self.write_rule == "max":
            self.values[slot, action] = max(self.values[slot, action], value)
        return slot

    def _insert(self, key: np.ndarray, payload: np.ndarray | None) -> int:
        if self.size < self.capacity:
            slot = self.size
            self._grow(slot + 1)
            self.size += 1
            if not self._stale:
                self.index.add(np.asarray(key, np.float32).reshape(1, self.key_dim))
        else:
            slot, self.head = self.head, (self.head + 1) % self.capacity
            self._stale = True
        self.keys[slot] = np.asarray(key, np.float32).reshape(self.key_dim)
        self.values[slot], self.known[slot] = 0.0, False
        if self.payload_dim:
            if payload is None:
                raise ValueError("this memory stores a payload with every key: pass payload=")
            self.payload[slot] = np.asarray(payload, np.float32).reshape(self.payload_dim)
        return slot

    def _grow(self, needed: int) -> None:
        """Arrays grow by doubling up to ``capacity``, so a short run never allocates the whole memory."""
        if needed <= len(self.keys):
            return
        rows = min(self.capacity, max(needed, 2 * len(self.keys), 16))

        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((rows, *a.shape[1:]), a.dtype)
            out[: len(a)] = a
            return out

        self.keys, self.values, self.known, self.payload = map(grown, (self.keys, self.values, self.known, self.payload))

    def rekey(self, keys: np.ndarray) -> None:
        """Replace every stored key (in slot order), e.g. after the encoder was trained."""
        keys = np.asarray(keys, np.float32).reshape(self.size, self.key_dim)
        self.keys[: self.size] = keys
        self._stale = True

    def slot_order(self) -> np.ndarray:
        """Slots from oldest to newest."""
        if self.size < self.capacity:
            return np.arange(self.size)
        return (self.head + np.arange(self.size)) % self.capacity

    # -- plain state_dict ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "keys": torch.from_numpy(self.keys[:n].copy()),
            "values": torch.from_numpy(self.values[:n].copy()),
            "known": torch.from_numpy(self.known[:n].copy()),
            "payload": torch.from_numpy(self.payload[:n].copy()),
            "head": self.head,
            "capacity": self.capacity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"memory capacity {state['capacity']} in the file, {self.capacity} configured")
        keys = state["keys"].numpy()
        if keys.shape[1:] != (self.key_dim,) or state["values"].shape[1:] != (self.num_actions,):
            raise ValueError(
                f"memory file has keys {tuple(keys.shape[1:])} and {state['values'].shape[1]} actions; "
                f"this memory has keys ({self.key_dim},) and {self.num_actions} actions"
            )
        self.clear()
        n = len(keys)
        self._grow(n)
        self.keys[:n], self.values[:n] = keys, state["values"].numpy()
        self.known[:n], self.size, self.head = state["known"].numpy(), n, int(state["head"])
        if self.payload_dim:
            self.payload[:n] = state["payload"].numpy()
        self._stale = True
