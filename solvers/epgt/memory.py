"""EPGT's episodic memory: embedding keys -> per-action hyper-return estimates (paper Eqs. 3-4).

Two neighbour sets, chosen by ``read_mode``:

- ``neighbourhood`` (default, the paper's N(i)): a read or a write for state
  key phi(s_i) uses the K nearest stored keys of phi(s_i), whatever actions they
  hold.  Eq. 3 reads action a as the kernel-weighted mean of M[k, a] over N(i).
  A slot holds values only for the actions written at it, so an entry M[k, a]
  may be untried; ``untried`` says what it counts as:
  ``skip`` (default) leaves it out and renormalises the weights over the
  neighbours that tried a, and an action no neighbour tried reads NaN (no
  estimate: greedy choice skips it, epsilon-exploration reaches it).  That is
  Eq. 3 exactly wherever N(i) tried a, and it does not depend on the sign of the
  returns.  ``zero`` is the reference code's: an untried entry counts as 0 with
  its full weight, so an action tried by few neighbours is pulled toward 0 (read
  as pessimistic when returns are positive and optimistic when negative).
  Eq. 4 moves, for the taken action, each neighbour in N(i) that holds it by
  ``beta * w_k * (G - V_k)`` with the weights normalised over all of N(i).
- ``per_action`` (the earlier reading, kept for the ablation): the neighbour set
  of a read or write for action a is the K nearest keys that hold a value for a
  (Pritzel et al.'s one key set per action), however far away; Eq. 3 and Eq. 4
  normalise over that set; an action no slot holds reads NaN.

Storage: a slot is one key with a value for every joint action and a mask
of the values written.  A slot is created by writing one action (the paper's
tuple); another action joins it only when the exact key is written again.

Neighbours come from faiss (exact ``IndexFlatL2``, squared Euclidean
distances, ids = slot numbers): one index per action holding the keys of the
slots that know it (Pritzel et al.'s layout), created when the action is
first written, plus one index of every key for the exact-key match of a
write.  A read searches each action's index once; a write searches the taken
action's index and the all-keys index.  A slot joins an action's index when
it learns the action and leaves every index on FIFO eviction; ``rekey`` and
``load_state_dict`` rebuild them all.  Ties are broken toward the lower slot
(faiss breaks them by position in the index, which is not slot order once
slots are reused or learn an action late, so searches look one past the K-th
key and re-sort).  The kernel is ``1 / (d^2 + eps)``.

Measured at 10,000 keys, key_dim 32, 225 actions (one random action a key),
K = 5, K_w = 3, full (every write evicts), side by side in one run with the
numpy distance scan + sort this replaced, on a loaded 2-core machine: a read
1.4-1.7 ms (numpy 2.2-2.4 ms), a write 0.09-0.24 ms (numpy 0.4-0.5 ms).  A
read is ~225 faiss calls of a few microseconds each, mostly call overhead.
Rejected: one all-keys index searched per action through an
``IDSelectorBatch`` of the action's holders scans all 10,000 keys each time
(~76 us a search, ~17 ms a read).

Slots are a ring: past ``capacity`` keys the earliest inserted slot is
overwritten (FIFO).  An optional payload per slot (EPGT's VAE stores the
encoder's input) lets the owner re-key the whole memory after its encoder
changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import faiss
import numpy as np
import torch

WRITE_RULES = ("average", "max")
READ_MODES = ("neighbourhood", "per_action")
UNTRIED = ("skip", "zero")
NN_SAMPLE = 256
"""keys sampled (evenly over the slots) to estimate the median neighbour distance"""
_F = TypeVar("_F", bound=Callable[..., Any])


def _one_faiss_thread(method: _F) -> _F:
    """Run ``method`` with OpenMP at one thread, then restore the caller's count (torch's too: they share it)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            faiss.omp_set_num_threads(before)

    return wrapped  # type: ignore[return-value]


_NO_NEIGHBOURS = (np.zeros(0), np.zeros(0, np.int64))


def _slot_index(key_dim: int) -> faiss.IndexIDMap:
    """An exact L2 index whose ids are slot numbers.

    ``IndexIDMap`` rather than ``IndexIDMap2``: nothing is reconstructed by id,
    and ``IndexIDMap2`` rebuilds its whole id map on every ``remove_ids``, i.e.
    on every eviction.
    """
    return faiss.IndexIDMap(faiss.IndexFlatL2(key_dim))


class EpisodicMemory:
    """Key-value memory with kernel-weighted kNN reads and writes (the state's neighbourhood, or per action)."""

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
        read_mode: str = "neighbourhood",
        untried: str = "skip",
    ) -> None:
        if min(key_dim, num_actions, capacity, read_k, write_k) < 1:
            raise ValueError("key_dim, num_actions, capacity, read_k and write_k must all be >= 1")
        if not 0.0 < write_rate <= 1.0:
            raise ValueError(f"write_rate must lie in (0, 1], got {write_rate}")
        if write_rule not in WRITE_RULES:
            raise ValueError(f"write_rule must be one of {WRITE_RULES}, got {write_rule!r}")
        if read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {READ_MODES}, got {read_mode!r}")
        if untried not in UNTRIED:
            raise ValueError(f"untried must be one of {UNTRIED}, got {untried!r}")
        if not kernel_eps > 0:
            raise ValueError(f"kernel_eps must be > 0, got {kernel_eps}")
        self.read_mode, self.untried = read_mode, untried
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
        self._reindex()

    def _reindex(self) -> None:
        """Build the faiss indexes afresh from the stored keys and masks."""
        n = self.size
        self._all = _slot_index(self.key_dim)  # every slot's key: the exact-key match of a write
        self._holders: dict[int, faiss.IndexIDMap] = {}  # action -> keys of the slots holding it; never empty
        if n:
            self._all.add_with_ids(self.keys[:n], np.arange(n))
        for action in np.flatnonzero(self.known[:n].any(0)):
            slots = np.flatnonzero(self.known[:n, action])
            self._holders[int(action)] = index = _slot_index(self.key_dim)
            index.add_with_ids(self.keys[slots], slots)

    def __len__(self) -> int:
        return self.size

    # -- kNN -------------------------------------------------------------------
    @_one_faiss_thread
    def neighbours(self, key: np.ndarray, k: int, action: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and slots of the ``k`` nearest keys holding a value for ``action``, nearest first."""
        index = self._holders.get(int(action))
        return _NO_NEIGHBOURS if index is None else _knn(index, self._query(key), k)

    def _query(self, key: np.ndarray) -> np.ndarray:
        return np.asarray(key, np.float32).reshape(1, self.key_dim)

    def _read_neighbours(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every held action, and its ``read_k`` nearest holders as rows of distances and slots (padded with slot -1).

        One faiss search per action index, straight into a shared array, so the rest of a read is vectorised.
        """
        k, actions = self.read_k, np.fromiter(self._holders, np.int64, len(self._holders))
        dist = np.empty((len(actions), k + 1), np.float32)
        slots = np.empty((len(actions), k + 1), np.int64)
        for row, index in enumerate(self._holders.values()):
            index.search(query, k + 1, D=dist[row : row + 1], I=slots[row : row + 1])  # one past the K-th: see _knn
        for row in np.flatnonzero((slots[:, k] >= 0) & (dist[:, k - 1] == dist[:, k])):  # a tie at the boundary
            dist[row, :k], slots[row, :k] = _knn(self._holders[int(actions[row])], query, k)
        dist, slots = dist[:, :k], slots[:, :k]
        order = np.lexsort((slots, dist), axis=1)  # by slot within ties, so a sum is the same however faiss stored them
        return actions, np.take_along_axis(dist, order, 1).astype(np.float64), np.take_along_axis(slots, order, 1)

    def _kernel(self, dist: np.ndarray) -> np.ndarray:
        return 1.0 / (np.maximum(dist, 0.0) + self.kernel_eps)

    # -- Eq. 3 -----------------------------------------------------------------
    @_one_faiss_thread
    def read(self, key: np.ndarray) -> np.ndarray:
        """Q(s, a) for every action (Eq. 3 over ``read_mode``'s neighbour set); see the module for untried actions."""
        if self.read_mode == "neighbourhood":
            return self._read_neighbourhood(self._query(key))
        q = np.full(self.num_actions, np.nan)
        if not self._holders:
            return q
        actions, dist, slots = self._read_neighbours(self._query(key))
        held = slots >= 0
        w = np.where(held, self._kernel(dist), 0.0)
        v = np.where(held, self.values[np.where(held, slots, 0), actions[:, None]], 0.0)
        q[actions] = (w * v).sum(1) / w.sum(1)
        return q

    def _read_neighbourhood(self, query: np.ndarray) -> np.ndarray:
        dist, slots = _knn(self._all, query, self.read_k)
        if len(slots) == 0:
            return np.full(self.num_actions, 0.0 if self.untried == "zero" else np.nan)
        w = self._kernel(dist)
        known = self.known[slots]
        num = w @ np.where(known, self.values[slots], 0.0)
        if self.untried == "zero":
            return num / w.sum()
        den = w @ known
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    @_one_faiss_thread
    def median_neighbour_distance(self) -> float:
        """Median squared distance from a key to its nearest other key (up to NN_SAMPLE keys sampled); NaN below 2."""
        n = self.size
        if n < 2:
            return float("nan")
        rows = np.unique(np.linspace(0, n - 1, min(n, NN_SAMPLE)).round().astype(np.int64))
        dist, slots = self._all.search(self.keys[rows], 2)
        other = np.where(slots[:, 0] == rows, dist[:, 1], dist[:, 0])  # the query's own slot is at distance 0
        return float(np.median(np.maximum(other, 0.0)))

    # -- Eq. 4 (or the max rule) -----------------------------------------------
    @_one_faiss_thread
    def write(self, key: np.ndarray, action: int, value: float, payload: np.ndarray | None = None) -> int:
        """Move the K_w nearest holders of ``action`` toward ``value``; insert the key when absent. Returns its slot."""
        action, value = int(action), float(value)
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action {action} outside [0, {self.num_actions - 1}]")
        query = self._query(key)
        slot = self._match(query)  # the neighbour update below moves values, not keys: the match stands
        if slot is None and self.payload_dim and payload is None:  # refused before anything changes
            raise ValueError("this memory stores a payload with every key: pass payload=")
        if self.write_rule == "average":
            if self.read_mode == "neighbourhood":
                d, near = _knn(self._all, query, self.write_k)
                w = self._kernel(d)
                w, near = (w / w.sum())[self.known[near, action]], near[self.known[near, action]]  # N(i)'s holders of a
            else:
                d, near = self.neighbours(query, self.write_k, action)
                w = self._kernel(d) / self._kernel(d).sum() if len(near) else d
            if len(near):
                old = self.values[near, action]
                self.values[near, action] = old + self.write_rate * w * (value - old)
        if slot is None:
            slot = self._insert(query, payload)
        if not self.known[slot, action]:
            self.values[slot, action], self.known[slot, action] = value, True
            if action not in self._holders:
                self._holders[action] = _slot_index(self.key_dim)
            self._holders[action].add_with_ids(self.keys[slot : slot + 1], np.array([slot]))
        elif self.write_rule == "max":
            self.values[slot, action] = max(self.values[slot, action], value)
        return slot

    def _match(self, query: np.ndarray) -> int | None:
        """The slot whose key is the query itself (within ``match_tol``; any actions), if one is stored."""
        dist, slots = _knn(self._all, query, 1)
        return int(slots[0]) if len(slots) and dist[0] <= self.match_tol else None

    def _insert(self, query: np.ndarray, payload: np.ndarray | None) -> int:
        if self.size < self.capacity:
            slot = self.size
            self._grow(slot + 1)
            self.size += 1
        else:
            slot, self.head = self.head, (self.head + 1) % self.capacity
            self._evict(slot)
        self.keys[slot] = query[0]
        self.values[slot], self.known[slot] = 0.0, False
        if self.payload_dim:
            self.payload[slot] = np.asarray(payload, np.float32).reshape(self.payload_dim)
        self._all.add_with_ids(self.keys[slot : slot + 1], np.array([slot]))
        return slot

    def _evict(self, slot: int) -> None:
        """Take ``slot``'s key out of every index: its values go with it."""
        ids = np.array([slot], np.int64)
        self._all.remove_ids(ids)
        for action in np.flatnonzero(self.known[slot]).tolist():
            index = self._holders[action]
            index.remove_ids(ids)
            if index.ntotal == 0:  # reads skip actions no slot holds
                del self._holders[action]

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

    @_one_faiss_thread
    def rekey(self, keys: np.ndarray) -> None:
        """Replace every stored key (in slot order), e.g. after the encoder was trained."""
        self.keys[: self.size] = np.asarray(keys, np.float32).reshape(self.size, self.key_dim)
        self._reindex()

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
            "kernel_eps": self.kernel_eps,
        }

    @_one_faiss_thread
    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"memory capacity {state['capacity']} in the file, {self.capacity} configured")
        keys = state["keys"].numpy()
        if keys.shape[1:] != (self.key_dim,) or state["values"].shape[1:] != (self.num_actions,):
            raise ValueError(
                f"memory file has keys {tuple(keys.shape[1:])} and {state['values'].shape[1]} actions; "
                f"this memory has keys ({self.key_dim},) and {self.num_actions} actions"
            )
        if self.payload_dim and state["payload"].shape[1:] != (self.payload_dim,):
            raise ValueError(f"memory file has a {state['payload'].shape[1]}-dim payload; this memory stores {self.payload_dim}")
        self.clear()
        self.kernel_eps = float(state.get("kernel_eps", self.kernel_eps))  # it follows the key spread (EPGTConfig)
        n = len(keys)
        self._grow(n)
        self.keys[:n], self.values[:n] = keys, state["values"].numpy()
        self.known[:n], self.size, self.head = state["known"].numpy(), n, int(state["head"])
        if self.payload_dim:  # a memory without payload ignores one in the file (written before it was dropped)
            self.payload[:n] = state["payload"].numpy()
        self._reindex()


def _knn(index: faiss.IndexIDMap, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and slots of the ``k`` nearest keys in ``index``, ordered by distance, then slot.

    faiss orders equal distances by position in the index, which is not slot
    order once slots are reused or learn an action late.  So search one past
    the k-th key, widening while the k-th ties the last one found, until every
    key tied at the boundary is in hand; then re-sort.
    """
    n = index.ntotal
    k = min(k, n)
    if k == 0:
        return _NO_NEIGHBOURS
    m = min(k + 1, n)
    while True:
        dist, slots = (a[0] for a in index.search(query, m))
        if m == n or dist[k - 1] < dist[m - 1]:
            break
        m = min(2 * m, n)
    order = np.lexsort((slots, dist))[:k]
    return dist[order].astype(np.float64), slots[order]
