"""EPGT's reads from the state's neighbourhood N(i) (paper Eq. 3), the Eq. 4 write over it, untried actions."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.epgt import EpisodicMemory

KEYS = [(0, 0), (1, 0), (0, 2), (3, 0)]
QUERY = np.array([0, 1], np.float32)
# From (0, 1): squared distances 1, 2, 1, 10, so N(i) with K = 3 is slots 0, 2, 1; kernel 1/(d^2 + 1) = 1/2, 1/2, 1/3.
W = {0: 1 / 2, 1: 1 / 3, 2: 1 / 2}


def hand_built(values: dict[tuple[int, int], float], *, untried: str = "skip", **kwargs) -> EpisodicMemory:
    """Four keys and 3 actions; ``values[(slot, action)]`` are the tried entries, every other one untried."""
    mem = EpisodicMemory(2, 3, read_k=3, write_k=3, kernel_eps=1.0, untried=untried, write_rule="max", **kwargs)
    for (slot, action), value in sorted(values.items()):
        mem.write(np.array(KEYS[slot], np.float32), action, value)  # max rule: a write touches its own key only
    assert len(mem) == len({s for s, _ in values})
    return mem


def test_a_neighbourhood_read_is_eq3_over_the_k_nearest_keys_of_the_state():
    full = {(s, a): 10.0 * s + a for s in range(4) for a in range(3)}
    q = hand_built(full).read(QUERY)
    for a in range(3):
        expected = sum(W[s] * full[(s, a)] for s in W) / sum(W.values())  # Eq. 3; slot 3 is not in N(i)
        assert q[a] == pytest.approx(expected)
    assert q[0] == pytest.approx((0.5 * 0 + 0.5 * 20 + 10 / 3) / (4 / 3)) and q[0] == pytest.approx(10.0)


def test_an_action_untried_in_the_neighbourhood_reads_nan_even_when_tried_far_away():
    # action 0 everywhere; action 1 only at slot 1 (in N(i)); action 2 only at slot 3 (outside N(i))
    values = {(0, 0): 1.0, (1, 0): 2.0, (2, 0): 4.0, (3, 0): 8.0, (1, 1): 6.0, (3, 2): 100.0}
    q = hand_built(values).read(QUERY)
    assert q[0] == pytest.approx((0.5 * 1 + 0.5 * 4 + 2 / 3) / (4 / 3))
    assert q[1] == pytest.approx(6.0)  # skip: the weights renormalise over the neighbours that tried it
    assert np.isnan(q[2])  # untried in N(i): no estimate, though slot 3 holds 100
    per_action = EpisodicMemory(2, 3, read_k=3, kernel_eps=1.0, read_mode="per_action", write_rule="max")
    for (slot, action), value in sorted(values.items()):
        per_action.write(np.array(KEYS[slot], np.float32), action, value)
    assert per_action.read(QUERY)[2] == pytest.approx(100.0)  # the ablation reaches the far value at full weight


def test_the_zero_option_counts_untried_entries_as_zero_with_their_weight():
    values = {(0, 0): 1.0, (1, 0): 2.0, (2, 0): 4.0, (3, 0): 8.0, (1, 1): 6.0, (3, 2): 100.0}
    q = hand_built(values, untried="zero").read(QUERY)
    assert q[1] == pytest.approx((1 / 3 * 6.0) / (4 / 3)) and q[1] == pytest.approx(1.5)
    assert q[2] == 0.0
    assert hand_built({}, untried="zero").read(QUERY).tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(hand_built({}).read(QUERY)).all()


def test_a_neighbourhood_write_is_eq4_over_n_i_moving_only_the_holders_of_the_action():
    values = {(0, 0): 1.0, (1, 0): 2.0, (2, 1): 4.0, (3, 0): 8.0}
    mem = EpisodicMemory(2, 3, read_k=3, write_k=3, kernel_eps=1.0, write_rate=0.5)
    for (slot, action), value in sorted(values.items()):
        mem.write(np.array(KEYS[slot], np.float32), action, value)
    mem.values[:4] = 0.0
    mem.values[[0, 1, 3], 0], mem.values[2, 1] = [1.0, 2.0, 8.0], 4.0  # undo the set-up writes' averaging
    mem.write(QUERY, 0, 10.0)
    # N(i) = slots 0, 2, 1 with weights 3/8, 3/8, 1/4 (normalised over all of N(i)); slot 2 has not tried action 0.
    np.testing.assert_allclose(mem.values[:4, 0], [1 + 0.5 * 3 / 8 * 9, 2 + 0.5 * 1 / 4 * 8, 0.0, 8.0])
    assert mem.values[2, 1] == 4.0 and not mem.known[2, 0]
    assert mem.values[4, 0] == 10.0 and mem.known[4].tolist() == [True, False, False]


def test_the_median_neighbour_distance_is_that_of_the_nearest_other_key():
    mem = EpisodicMemory(1, 1)
    for x in (0.0, 1.0, 3.0, 7.0):
        mem.write(np.array([x], np.float32), 0, 0.0)
    assert mem.median_neighbour_distance() == pytest.approx(np.median([1.0, 1.0, 4.0, 16.0]))
    assert np.isnan(EpisodicMemory(1, 1).median_neighbour_distance())


def test_bad_modes_are_refused_by_name():
    with pytest.raises(ValueError, match="read_mode"):
        EpisodicMemory(2, 2, read_mode="nearest")
    with pytest.raises(ValueError, match="untried"):
        EpisodicMemory(2, 2, untried="optimistic")
    with pytest.raises(ValueError, match="kernel_eps"):
        EpisodicMemory(2, 2, kernel_eps=0.0)
