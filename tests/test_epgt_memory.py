"""EPGT's episodic memory: golden values for the paper's Eqs. 3 and 4, FIFO eviction, the max rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solvers.epgt import EpisodicMemory


def four_key_memory(**kwargs) -> EpisodicMemory:
    """Keys (0,0), (1,0), (0,2), (3,0) with values [1,10], [2,20], [4,40], [8,80], all known."""
    mem = EpisodicMemory(2, 2, read_k=3, write_k=3, **kwargs)
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
    # The new slot does not know action 1: it is left out of that action's average, not read as 0.
    q = mem.read(np.array([0, 1], np.float32))
    assert q[1] == pytest.approx((0.5 * 10 + 0.5 * 40) / 1.0)
    assert q[0] == pytest.approx((1 * 10 + 0.5 * 2.6875 + 0.5 * 5.125) / 2.0)


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
    mem = EpisodicMemory(2, 3)
    assert np.isnan(mem.read(np.zeros(2, np.float32))).all()
    mem.write(np.zeros(2, np.float32), 1, 5.0)
    q = mem.read(np.zeros(2, np.float32))
    assert np.isnan(q[0]) and q[1] == 5.0 and np.isnan(q[2])


def test_fifo_evicts_the_earliest_inserted_key():
    mem = EpisodicMemory(1, 5, capacity=3)
    for i in range(4):  # each key writes its own action: no neighbour shares it
        mem.write(np.array([10.0 * i], np.float32), i, float(i))
    assert len(mem) == 3
    assert mem.keys[mem.slot_order(), 0].tolist() == [10.0, 20.0, 30.0]
    mem.write(np.array([40.0], np.float32), 4, 4.0)
    assert mem.keys[mem.slot_order(), 0].tolist() == [20.0, 30.0, 40.0]
    # The index follows the eviction: the nearest key to 10 is now 20, whose action 2 holds 2.0.
    mem.read_k = 1
    q = mem.read(np.array([10.0], np.float32))
    assert q[2] == 2.0 and np.isnan(q[1])


def test_max_rule_keeps_the_best_return_and_leaves_neighbours_alone():
    mem = EpisodicMemory(1, 2, write_rule="max")
    mem.write(np.array([0.0], np.float32), 0, 5.0)
    mem.write(np.array([1.0], np.float32), 0, 1.0)
    mem.write(np.array([0.0], np.float32), 0, 3.0)
    assert mem.values[0, 0] == 5.0 and mem.values[1, 0] == 1.0
    mem.write(np.array([0.0], np.float32), 0, 7.0)
    assert mem.values[0, 0] == 7.0 and mem.values[1, 0] == 1.0 and len(mem) == 2


def test_state_dict_round_trip_restores_reads_and_eviction_order(tmp_path):
    mem = EpisodicMemory(1, 2, capacity=3, payload_dim=2)
    for i in range(5):
        mem.write(np.array([float(i)], np.float32), i % 2, float(i), payload=np.full(2, i, np.float32))
    torch.save(mem.state_dict(), tmp_path / "mem.pt")
    other = EpisodicMemory(1, 2, capacity=3, payload_dim=2)
    other.load_state_dict(torch.load(tmp_path / "mem.pt", weights_only=True))
    for x in (0.0, 2.5, 9.0):
        np.testing.assert_array_equal(mem.read(np.array([x], np.float32)), other.read(np.array([x], np.float32)))
    np.testing.assert_array_equal(mem.keys[mem.slot_order()], other.keys[other.slot_order()])
    np.testing.assert_array_equal(mem.payload[:3], other.payload[:3])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="write_rule"):
        EpisodicMemory(2, 2, write_rule="sum")
    with pytest.raises(ValueError, match="write_rate"):
        EpisodicMemory(2, 2, write_rate=0.0)
