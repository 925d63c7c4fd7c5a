"""EPGT's episodic memory, per-action reads (the ablation): golden Eqs. 3 and 4, FIFO eviction, the max rule.

The neighbourhood reads (the default) are in test_epgt_neighbourhood.py.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from solvers.epgt import EpisodicMemory


def four_key_memory(**kwargs) -> EpisodicMemory:
    """Keys (0,0), (1,0), (0,2), (3,0) with values [1,10], [2,20], [4,40], [8,80], all known."""
    mem = EpisodicMemory(2, 2, read_mode="per_action", read_k=3, write_k=3, **kwargs)
    for i, key in enumerate([(0, 0), (1, 0), (0, 2), (3, 0)]):
        mem.write(np.array(key, np.float32), 0, 2.0**i)
        mem.write(np.array(key, np.float32), 1, 10 * 2.0**i)
    assert len(mem) == 4 and mem.known[:4].all()
    mem.values[:4] = [[1, 10], [2, 20], [4, 40], [8, 80]]  # undo the neighbour averaging of the set-up writes
    return mem


def test_read_is_eq3_kernel_average_with_round_numbers():
    # Query (0,1): squared distances 1, 2, 1, 10; K=3 keeps slots 0, 2, 1.
    # Kernel 1/(d^2 + 1): 1/2, 1/2, 1/3 -> normalised 3/8, 3/8, 1/4.
    mem = four_key_memory(kernel_eps=1.0)
    q = mem.read(np.array([0, 1], np.float32))
    np.testing.assert_allclose(q, [3 / 8 * 1 + 3 / 8 * 4 + 1 / 4 * 2, 23.75], rtol=1e-6)
    assert q[0] == pytest.approx(2.375)


def test_read_with_the_papers_kernel():
    mem = four_key_memory()  # kernel 1/(d^2 + 1e-3)
    w = np.array([1 / 1.001, 1 / 1.001, 1 / 2.001])  # slots 0, 2, 1
    expected = (w[0] * 1 + w[1] * 4 + w[2] * 2) / w.sum()
    q = mem.read(np.array([0, 1], np.float32))
    assert q[0] == pytest.approx(expected, rel=1e-6)
    assert q[0] == pytest.approx(2.39996, abs=1e-4)  # by hand: (0.999001 * 5 + 0.499750 * 2) / 2.497752


def test_write_is_eq4_on_the_taken_action_only_then_inserts_the_absent_key():
    mem = four_key_memory(kernel_eps=1.0, write_rate=0.5)
    slot = mem.write(np.array([0, 1], np.float32), action=0, value=10.0)
    # V_k <- V_k + beta * w_k * (G - V_k) with w = 3/8, 3/8, 1/4 on slots 0, 2, 1.
    np.testing.assert_allclose(mem.values[:4, 0], [1 + 0.5 * 3 / 8 * 9, 2 + 0.5 * 1 / 4 * 8, 4 + 0.5 * 3 / 8 * 6, 8])
    np.testing.assert_allclose(mem.values[:4, 0], [2.6875, 3.0, 5.125, 8.0])
    np.testing.assert_array_equal(mem.values[:4, 1], [10, 20, 40, 80])  # untaken action untouched
    assert slot == 4 and len(mem) == 5
    assert mem.values[4, 0] == 10.0 and mem.known[4].tolist() == [True, False]
    # The new slot does not know action 1: action 1's neighbours are its 3 nearest holders (slots 0, 2, 1), not 0.
    q = mem.read(np.array([0, 1], np.float32))
    assert q[1] == pytest.approx((0.5 * 10 + 0.5 * 40 + 20 / 3) / (4 / 3)) and q[1] == pytest.approx(23.75)
    assert q[0] == pytest.approx((1 * 10 + 0.5 * 2.6875 + 0.5 * 5.125) / 2.0)


def partly_known_memory() -> EpisodicMemory:
    """Five keys around the origin, each holding some of 2 actions (None = never written); K = K_w = 2, kernel 1/(d^2 + 1)."""
    mem = EpisodicMemory(2, 2, read_mode="per_action", read_k=2, write_k=2, write_rate=0.5, kernel_eps=1.0)
    rows = [((1, 0), 2, None), ((0, 1), None, 10), ((1, 1), 5, 40), ((2, 0), 8, None), ((0, 3), None, 100)]
    for key, *values in rows:
        for action, value in enumerate(values):
            if value is not None:
                mem.write(np.array(key, np.float32), action, value)
    mem.values[:5] = [[2, 0], [0, 10], [5, 40], [8, 0], [0, 100]]  # undo the set-up writes' neighbour averaging
    assert mem.known[:5].tolist() == [[True, False], [False, True], [True, True], [True, False], [False, True]]
    return mem


def test_read_and_write_share_each_actions_neighbour_set_on_a_partly_known_memory():
    # Query (0,0): squared distances 1, 1, 2, 4, 9.  The 2 nearest keys overall are slots 0 and 1, but each
    # holds only one action; N(i) for an action is its 2 nearest holders: action 0 -> slots 0, 2 (d^2 1, 2),
    # action 1 -> slots 1, 2.  Kernels 1/2 and 1/3, normalised 3/5 and 2/5 for both (Eqs. 3 and 4 alike).
    mem, query = partly_known_memory(), np.zeros(2, np.float32)
    assert mem.neighbours(query, 2, action=0)[1].tolist() == [0, 2]
    assert mem.neighbours(query, 2, action=1)[1].tolist() == [1, 2]
    q = mem.read(query)
    np.testing.assert_allclose(q, [3 / 5 * 2 + 2 / 5 * 5, 3 / 5 * 10 + 2 / 5 * 40])
    np.testing.assert_allclose(q, [3.2, 22.0])
    slot = mem.write(query, action=0, value=12.0)
    # The same two slots move, with weights summing to 1: V <- V + 0.5 * w * (12 - V).
    np.testing.assert_allclose(mem.values[:5, 0], [2 + 0.5 * 3 / 5 * 10, 0, 5 + 0.5 * 2 / 5 * 7, 8, 0])
    np.testing.assert_allclose(mem.values[[0, 2], 0], [5.0, 6.4])
    np.testing.assert_array_equal(mem.values[:5, 1], [0, 10, 40, 0, 100])  # the untaken action is untouched
    assert slot == 5 and mem.values[5, 0] == 12.0 and mem.known[5].tolist() == [True, False]
    # Action 0's neighbours are now the new key (kernel 1) and slot 0 (1/2): (12 + 5 / 2) / (3 / 2).
    assert mem.read(query)[0] == pytest.approx(29 / 3)


def test_an_action_held_only_far_away_still_reads_its_value():
    # With many actions most slots hold one; a read must not be limited to the actions of the K nearest keys.
    mem = EpisodicMemory(
        1, 4, read_mode="per_action", read_k=2, write_rule="max"
    )  # max: the set-up writes leave neighbours alone
    for i, action in enumerate([0, 0, 1, 1, 2]):
        mem.write(np.array([float(i)], np.float32), action, 10.0 * (i + 1))
    q = mem.read(np.array([0.0], np.float32))
    assert q[2] == pytest.approx(50.0) and np.isnan(q[3])  # action 2's one holder is the farthest key; 3 is untried
    assert q[1] == pytest.approx((30 / 4.001 + 40 / 9.001) / (1 / 4.001 + 1 / 9.001))


def naive_read(mem: EpisodicMemory, key: np.ndarray) -> np.ndarray:
    """Eq. 3 action by action, straight from the stored arrays."""
    slots = np.arange(len(mem))
    d2 = ((mem.keys[slots] - key) ** 2).sum(1)
    q = np.full(mem.num_actions, np.nan)
    for a in range(mem.num_actions):
        holders = slots[mem.known[slots, a]]
        near = holders[np.argsort(d2[holders], kind="stable")[: mem.read_k]]
        if len(near):
            w = 1 / (d2[near] + mem.kernel_eps)
            q[a] = (w * mem.values[near, a]).sum() / w.sum()
    return q


def test_reads_match_eq3_action_by_action_through_repeats_and_eviction():
    rng = np.random.default_rng(0)
    mem = EpisodicMemory(2, 4, read_mode="per_action", capacity=12, read_k=3)
    grid = rng.integers(0, 4, size=(60, 2)).astype(np.float32)  # a coarse grid: exact keys recur
    for key in grid:
        mem.write(key, int(rng.integers(4)), float(rng.normal()))
        query = rng.normal(size=2).astype(np.float32)
        np.testing.assert_allclose(mem.read(query), naive_read(mem, query), rtol=1e-6)
    assert len(mem) == 12 and mem.known[:12].sum(1).max() > 1  # full, and some slot holds several actions


def test_write_on_an_existing_key_updates_it_and_inserts_nothing():
    mem = four_key_memory(write_rate=0.5)
    slot = mem.write(np.array([3, 0], np.float32), action=1, value=0.0)
    assert slot == 3 and len(mem) == 4
    d2 = np.array([0.0, 4.0, 9.0])  # slots 3, 1, 0
    w = 1 / (d2 + 1e-3)
    w /= w.sum()
    np.testing.assert_allclose(mem.values[[3, 1, 0], 1], [80 - 0.5 * w[0] * 80, 20 - 0.5 * w[1] * 20, 10 - 0.5 * w[2] * 10])
    assert mem.values[2, 1] == 40  # outside K_w = 3


def test_an_unknown_action_everywhere_reads_nan_and_an_empty_memory_reads_nan():
    mem = EpisodicMemory(2, 3, read_mode="per_action")
    assert np.isnan(mem.read(np.zeros(2, np.float32))).all()
    mem.write(np.zeros(2, np.float32), 1, 5.0)
    q = mem.read(np.zeros(2, np.float32))
    assert np.isnan(q[0]) and q[1] == 5.0 and np.isnan(q[2])


def test_fifo_evicts_the_earliest_inserted_key():
    mem = EpisodicMemory(1, 5, read_mode="per_action", capacity=3)
    for i in range(4):  # each key writes its own action: no neighbour shares it
        mem.write(np.array([10.0 * i], np.float32), i, float(i))
    assert len(mem) == 3
    assert mem.keys[mem.slot_order(), 0].tolist() == [10.0, 20.0, 30.0]
    mem.write(np.array([40.0], np.float32), 4, 4.0)
    assert mem.keys[mem.slot_order(), 0].tolist() == [20.0, 30.0, 40.0]
    # The eviction took key 10 and its action 1 with it; every other action reads its one holder.
    mem.read_k = 1
    q = mem.read(np.array([10.0], np.float32))
    assert np.isnan(q[1]) and q[2:].tolist() == [2.0, 3.0, 4.0] and np.isnan(q[0])


def test_max_rule_keeps_the_best_return_and_leaves_neighbours_alone():
    mem = EpisodicMemory(1, 2, read_mode="per_action", write_rule="max")
    mem.write(np.array([0.0], np.float32), 0, 5.0)
    mem.write(np.array([1.0], np.float32), 0, 1.0)
    mem.write(np.array([0.0], np.float32), 0, 3.0)
    assert mem.values[0, 0] == 5.0 and mem.values[1, 0] == 1.0
    mem.write(np.array([0.0], np.float32), 0, 7.0)
    assert mem.values[0, 0] == 7.0 and mem.values[1, 0] == 1.0 and len(mem) == 2


def test_state_dict_round_trip_restores_reads_and_eviction_order(tmp_path):
    mem = EpisodicMemory(1, 2, read_mode="per_action", capacity=3, payload_dim=2)
    for i in range(5):
        mem.write(np.array([float(i)], np.float32), i % 2, float(i), payload=np.full(2, i, np.float32))
    torch.save(mem.state_dict(), tmp_path / "mem.pt")
    other = EpisodicMemory(1, 2, read_mode="per_action", capacity=3, payload_dim=2)
    other.load_state_dict(torch.load(tmp_path / "mem.pt", weights_only=True))
    for x in (0.0, 2.5, 9.0):
        np.testing.assert_array_equal(mem.read(np.array([x], np.float32)), other.read(np.array([x], np.float32)))
    np.testing.assert_array_equal(mem.keys[mem.slot_order()], other.keys[other.slot_order()])
    np.testing.assert_array_equal(mem.payload[:3], other.payload[:3])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="write_rule"):
        EpisodicMemory(2, 2, read_mode="per_action", write_rule="sum")
    with pytest.raises(ValueError, match="write_rate"):
        EpisodicMemory(2, 2, read_mode="per_action", write_rate=0.0)


def naive_neighbours(mem: EpisodicMemory, key: np.ndarray, k: int, action: int) -> tuple[np.ndarray, np.ndarray]:
    """N(i) for ``action`` from the stored arrays: kernels and slots of its ``k`` nearest holders, ties to the lower slot."""
    slots = np.arange(len(mem))
    d2 = ((mem.keys[slots] - key) ** 2).sum(1).astype(np.float64)
    holders = slots[mem.known[slots, action]]
    near = holders[np.argsort(d2[holders], kind="stable")[:k]]
    return 1 / (d2[near] + mem.kernel_eps), near


def test_ties_go_to_the_lower_slot_though_faiss_stores_the_keys_in_another_order():
    # Four keys at distance 1 from the origin; slots 3, 2, 1, 0 learn action 0 in that order, so action 0's faiss
    # index holds them backwards and faiss alone would answer slot 3 first.  Neighbours and reads take slots 0, 1.
    mem = EpisodicMemory(2, 2, read_mode="per_action", read_k=2, write_rule="max")
    keys = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], np.float32)
    for key in keys:
        mem.write(key, 1, 0.0)
    for slot in (3, 2, 1, 0):
        mem.write(keys[slot], 0, 10.0 * (slot + 1))
    origin = np.zeros(2, np.float32)
    assert mem.neighbours(origin, 1, action=0)[1].tolist() == [0]
    assert mem.neighbours(origin, 3, action=0)[1].tolist() == [0, 1, 2]
    assert mem.read(origin)[0] == pytest.approx(15.0)  # equal weights on slots 0 and 1: (10 + 20) / 2


def test_tied_reads_and_writes_match_eq3_and_eq4_through_repeats_and_eviction():
    # Integer keys and queries on a 4x4 grid tie often, and reused slots and late-learnt actions put keys out of slot
    # order in the faiss indexes; every read, neighbour set and write must still be the naive one.
    rng = np.random.default_rng(1)
    mem = EpisodicMemory(2, 3, read_mode="per_action", capacity=10, read_k=2, write_k=2, write_rate=0.5)
    for _ in range(80):
        query = rng.integers(0, 4, size=2).astype(np.float32)
        q = mem.read(query)
        for a in range(3):
            w, near = naive_neighbours(mem, query, 2, a)
            assert mem.neighbours(query, 2, a)[1].tolist() == near.tolist()
            np.testing.assert_allclose(q[a], (w * mem.values[near, a]).sum() / w.sum() if len(near) else np.nan, rtol=1e-12)
        key, action, value, n = rng.integers(0, 4, size=2).astype(np.float32), int(rng.integers(3)), float(rng.normal()), len(mem)
        w, near = naive_neighbours(mem, key, 2, action)
        expected = mem.values[:n, action].copy()
        expected[near] += 0.5 * w / w.sum() * (value - expected[near])
        slot = mem.write(key, action, value)
        others = np.arange(n) != slot  # the written slot also takes the value itself, or was just (re)filled
        np.testing.assert_allclose(mem.values[:n, action][others], expected[others], rtol=1e-12)
    assert len(mem) == 10


def test_rekey_reindexes_reads_and_exact_key_matches():
    mem = partly_known_memory()
    mem.rekey(mem.keys[:5] + 10)  # every key moved by (10, 10): reads move with them
    np.testing.assert_allclose(mem.read(np.full(2, 10, np.float32)), [3.2, 22.0])
    assert mem.write(np.array([12, 10], np.float32), 1, 1.0) == 3 and len(mem) == 5  # slot 3's new key
    assert mem.write(np.array([2, 0], np.float32), 1, 1.0) == 5  # slot 3's old key is gone


def test_a_write_refused_for_its_missing_payload_changes_nothing():
    mem = EpisodicMemory(1, 2, read_mode="per_action", payload_dim=1, write_k=2)
    mem.write(np.array([0.0], np.float32), 0, 1.0, payload=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="payload"):
        mem.write(np.array([1.0], np.float32), 0, 9.0)
    assert len(mem) == 1 and mem.values[0, 0] == 1.0
    assert mem.write(np.array([0.0], np.float32), 1, 2.0) == 0  # an existing key needs no payload


def test_faiss_runs_one_thread_inside_memory_calls_and_torch_keeps_its_threads(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        search = faiss.IndexIDMap.search
        monkeypatch.setattr(
            faiss.IndexIDMap, "search", lambda self, *a, **k: seen.append(faiss.omp_get_max_threads()) or search(self, *a, **k)
        )
        mem = EpisodicMemory(2, 2)
        mem.write(np.zeros(2, np.float32), 0, 1.0)
        mem.write(np.ones(2, np.float32), 1, 2.0)
        mem.read(np.zeros(2, np.float32))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == 2
    finally:
        torch.set_num_threads(before)
