import pytest

from agents.seeding import derive


def test_same_keys_same_seed_and_golden_value():
    assert derive(0, "eval", 1) == derive(0, "eval", 1)
    # A golden value: derive must not change across releases, or saved runs stop reproducing.
    assert derive(0) == 1733175440
    assert derive(1, 2, 3) == 1284572418
    assert 0 <= derive(2**40, "x") < 2**31 - 1


def test_keys_separate_streams():
    seeds = {derive(s, k, i) for s in range(3) for k in ("eval", "member") for i in range(5)}
    assert len(seeds) == 30


def test_key_order_matters():
    assert derive(1, 2, 3) != derive(1, 3, 2)


def test_bad_keys_are_named():
    with pytest.raises(TypeError, match="float"):
        derive(0, 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        derive(0, -1)
