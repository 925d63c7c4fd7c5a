"""HyperparameterSpace: decoding, encoding, bins and the errors of a bad declaration or action."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium import spaces

from hyperenvs.spaces import Hyperparameter, HyperparameterSpace

LR = Hyperparameter("lr", 1e-5, 1e-2, log=True, default=3e-4)
CLIP = Hyperparameter("clip", 0.1, 0.3)
EPOCHS = Hyperparameter("epochs", 1, 30, integer=True, default=10)
MINIBATCH = Hyperparameter("minibatch_size", 16, 1024, log=True, integer=True, default=64)
ALL = [LR, CLIP, EPOCHS, MINIBATCH]


def test_ends_map_to_low_and_high():
    space = HyperparameterSpace(ALL)
    assert space.decode(-np.ones(4)) == pytest.approx({"lr": 1e-5, "clip": 0.1, "epochs": 1, "minibatch_size": 16})
    assert space.decode(np.ones(4)) == pytest.approx({"lr": 1e-2, "clip": 0.3, "epochs": 30, "minibatch_size": 1024})


def test_midpoint_is_geometric_on_log_scale_and_arithmetic_on_linear():
    space = HyperparameterSpace(ALL)
    mid = space.decode(np.zeros(4))
    assert mid["lr"] == pytest.approx(math.sqrt(1e-5 * 1e-2))  # 3.162e-4
    assert mid["clip"] == pytest.approx(0.2)
    assert mid["epochs"] == 16.0  # 15.5 rounds to even 16
    assert mid["minibatch_size"] == 128.0  # sqrt(16 * 1024) = 128 exactly
    # a quarter of the way along the log range: 10 ** (-5 + 0.25 * 3)
    assert LR.from_unit(-0.5) == pytest.approx(10**-4.25)


def test_integers_are_whole_numbers():
    for u in np.linspace(-1, 1, 41):
        for h in (EPOCHS, MINIBATCH):
            value = h.from_unit(float(u))
            assert value == round(value) and h.low <= value <= h.high


@pytest.mark.parametrize("h", [LR, CLIP, Hyperparameter("x", -3.0, 5.0), Hyperparameter("y", 0.5, 2.0, log=True)])
def test_continuous_round_trip(h):
    space = HyperparameterSpace([h])
    for value in np.linspace(h.low, h.high, 9) if not h.log else np.geomspace(h.low, h.high, 9):
        action = space.encode({h.name: value})
        assert action.dtype == np.float32 and space.action_space.contains(action)
        assert space.decode(action)[h.name] == pytest.approx(value, rel=1e-5)
    for u in np.linspace(-1, 1, 9):
        assert h.to_unit(h.from_unit(float(u))) == pytest.approx(u, abs=1e-12)


def test_integer_round_trip_of_representable_values():
    space = HyperparameterSpace([EPOCHS, MINIBATCH])
    for epochs, mb in [(1, 16), (10, 64), (30, 1024), (7, 100)]:
        assert space.decode(space.encode({"epochs": epochs, "minibatch_size": mb})) == {"epochs": epochs, "minibatch_size": mb}


def test_encode_clips_values_outside_the_range():
    space = HyperparameterSpace([CLIP])
    assert space.encode({"clip": 5.0}).tolist() == [1.0]
    assert space.encode({"clip": -5.0}).tolist() == [-1.0]


def test_defaults_round_trip():
    space = HyperparameterSpace(ALL)
    defaults = space.defaults()
    assert defaults == {"lr": 3e-4, "clip": pytest.approx(0.2), "epochs": 10, "minibatch_size": 64}
    assert space.decode(space.encode(defaults)) == pytest.approx(defaults, rel=1e-5)


def test_box_action_space():
    space = HyperparameterSpace(ALL)
    box = space.action_space
    assert isinstance(box, spaces.Box) and box.shape == (4,) and box.dtype == np.float32
    assert np.all(box.low == -1) and np.all(box.high == 1)
    assert space.names == ("lr", "clip", "epochs", "minibatch_size") and len(space) == 4
    assert repr(space) == (
        "HyperparameterSpace(lr[1e-05, 0.01, log], clip[0.1, 0.3], epochs[1, 30], minibatch_size[16, 1024, log], continuous)"
    )


def test_discrete_bins_even_on_the_scale():
    space = HyperparameterSpace([LR, CLIP], action_type="discrete", bins=4)
    assert isinstance(space.action_space, spaces.MultiDiscrete)
    assert space.action_space.nvec.tolist() == [4, 4]
    np.testing.assert_allclose(space.grids[0], [1e-5, 1e-4, 1e-3, 1e-2], rtol=1e-12)
    np.testing.assert_allclose(space.grids[1], [0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3], rtol=1e-12)
    assert space.decode([2, 3]) == pytest.approx({"lr": 1e-3, "clip": 0.3})
    assert space.decode(np.array([0, 0])) == pytest.approx({"lr": 1e-5, "clip": 0.1})


def test_discrete_bins_per_name_counts_and_values():
    space = HyperparameterSpace([LR, CLIP], action_type="discrete", bins={"lr": [1e-4, 3e-4, 1e-3], "clip": 2})
    assert space.action_space.nvec.tolist() == [3, 2]
    assert space.decode([1, 1]) == pytest.approx({"lr": 3e-4, "clip": 0.3})
    # nearest bin, on the log scale for lr: 5e-4 is nearer 3e-4 than 1e-3 in log space (ratio 1.67 vs 2)
    assert space.encode({"lr": 5e-4, "clip": 0.19}).tolist() == [1, 0]
    assert space.encode({"lr": 6e-4, "clip": 0.21}).tolist() == [2, 1]
    assert space.encode({"lr": 1e-4, "clip": 0.1}).dtype == np.int64


def test_discrete_round_trip_of_every_bin():
    space = HyperparameterSpace(ALL, action_type="discrete", bins=5)
    for idx in np.ndindex(*space.action_space.nvec):
        action = np.array(idx)
        assert space.encode(space.decode(action)).tolist() == list(idx)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "lr", "low": 1e-2, "high": 1e-5}, r"hyperparameter 'lr': low \(0.01\) must be < high \(1e-05\)"),
        ({"name": "lr", "low": 0.5, "high": 0.5}, r"low \(0.5\) must be < high \(0.5\)"),
        ({"name": "lr", "low": 0.0, "high": 1.0, "log": True}, r"'lr': a log-scale range needs low > 0, got 0.0"),
        ({"name": "x", "low": float("nan"), "high": 1.0}, r"'x': low must be finite, got nan"),
        ({"name": "x", "low": 0.0, "high": float("inf")}, r"'x': high must be finite, got inf"),
        ({"name": "x", "low": 0.0, "high": 1.0, "default": 2.0}, r"'x': default 2.0 outside \[0.0, 1.0\]"),
    ],
)
def test_bad_declarations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hyperparameter(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ([], {}, "needs at least one hyperparameter"),
        ([LR, LR], {}, r"names must be unique, got \['lr', 'lr'\]"),
        ([LR], {"action_type": "box"}, r"action_type must be 'continuous' or 'discrete', got 'box'"),
        ([LR], {"action_type": "discrete", "bins": 1}, r"'lr': bins must be >= 2, got 1"),
        ([LR], {"action_type": "discrete", "bins": {"clip": 3}}, r"bins given for unknown hyperparameters \['clip'\]"),
        ([LR], {"action_type": "discrete", "bins": {"lr": [1e-3, 1.0]}}, r"'lr': bin values .* must lie in"),
    ],
)
def test_bad_spaces(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HyperparameterSpace(args, **kwargs)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        ([0.0], r"action has shape \(1,\); expected \(2,\), one entry for each of \['lr', 'clip'\]"),
        ([[0.0, 0.0]], r"action has shape \(1, 2\); expected \(2,\)"),
        ([[0.0], [0.0, 1.0]], r"is not an array of numbers for \['lr', 'clip'\]"),
        (["a", "b"], r"action has dtype <U1; expected real numbers for \['lr', 'clip'\]"),
        (np.array([1j, 0]), r"expected real numbers"),
        ([0.0, float("nan")], r"action for hyperparameter 'clip' is nan; it must be finite"),
        ([float("-inf"), 0.0], r"action for hyperparameter 'lr' is -inf; it must be finite"),
        ([1.5, 0.0], r"action for hyperparameter 'lr' is 1.5; it must lie in \[-1, 1\]"),
        ([0.0, -1.01], r"action for hyperparameter 'clip' is -1.01; it must lie in \[-1, 1\]"),
    ],
)
def test_bad_continuous_actions(action, match):
    with pytest.raises(ValueError, match=match):
        HyperparameterSpace([LR, CLIP]).decode(action)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        ([5, 0], r"action for hyperparameter 'lr' is 5.0; it must be an integer bin in \[0, 4\]"),
        ([0, -1], r"action for hyperparameter 'clip' is -1.0; it must be an integer bin in \[0, 2\]"),
        ([0.5, 0], r"'lr' is 0.5; it must be an integer bin"),
    ],
)
def test_bad_discrete_actions(action, match):
    space = HyperparameterSpace([LR, CLIP], action_type="discrete", bins={"lr": 5, "clip": 3})
    with pytest.raises(ValueError, match=match):
        space.decode(action)


def test_with_ranges_selects_and_narrows():
    space = HyperparameterSpace(ALL)
    chosen = space.with_ranges({"clip": None, "lr": (1e-3, 1e-2)})
    assert [h.name for h in chosen] == ["clip", "lr"]
    assert chosen[0] == CLIP
    assert (chosen[1].low, chosen[1].high, chosen[1].log) == (1e-3, 1e-2, True)
    assert chosen[1].default == 1e-3  # 3e-4 clamped to the new range's nearest end
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'momentum'; this id can control \["):
        space.with_ranges({"momentum": None})
    with pytest.raises(ValueError, match=r"range for hyperparameter 'lr' must be \(low, high\) or None, got 0.1"):
        space.with_ranges({"lr": 0.1})
    with pytest.raises(ValueError, match=r"'lr': low \(0.01\) must be < high \(0.001\)"):
        space.with_ranges({"lr": (1e-2, 1e-3)})
    with pytest.raises(ValueError, match=r"values missing for hyperparameters \['clip'\]"):
        space.encode({"lr": 1e-3, "epochs": 3, "minibatch_size": 16})


# -- declared default bins -----------------------------------------------------------
def test_declared_bins_and_multipliers_are_the_default_grid():
    lr = Hyperparameter("lr", 1e-5, 1e-2, log=True, default=1e-3, multipliers=(2, 1, 0.5, 20))
    assert lr.grid().tolist() == pytest.approx([5e-4, 1e-3, 2e-3, 1e-2])  # sorted; 20x clipped to high
    mb = Hyperparameter("mb", 16, 1024, log=True, integer=True, default=48, multipliers=(0.5, 1, 1.5, 30))
    assert mb.grid().tolist() == [24, 48, 72, 1024]
    clip = Hyperparameter("clip", 0.05, 0.5, default=0.2, bins=(0.1, 0.2, 0.3))
    assert clip.grid().tolist() == [0.1, 0.2, 0.3]
    assert CLIP.grid().tolist() == pytest.approx(np.linspace(0.1, 0.3, 5))  # nothing declared: 5 evenly spaced


def test_space_bins_none_or_left_out_keep_the_declared_grids():
    lr = Hyperparameter("lr", 1e-5, 1e-2, log=True, default=1e-3, multipliers=(0.5, 1, 2))
    clip = Hyperparameter("clip", 0.05, 0.5, default=0.2, bins=(0.1, 0.2, 0.3))
    assert HyperparameterSpace([lr, clip], action_type="discrete").action_space.nvec.tolist() == [3, 3]
    space = HyperparameterSpace([lr, clip], action_type="discrete", bins={"clip": 2})
    assert space.action_space.nvec.tolist() == [3, 2] and space.grids[1].tolist() == [0.05, 0.5]
    assert HyperparameterSpace([lr, clip], action_type="discrete", bins=4).action_space.nvec.tolist() == [4, 4]


def test_a_replaced_range_drops_the_declared_bins():
    lr = Hyperparameter("lr", 1e-5, 1e-2, log=True, default=1e-3, multipliers=(0.5, 1, 2))
    (narrow,) = HyperparameterSpace([lr]).with_ranges({"lr": (1e-4, 1e-2)})
    assert narrow.multipliers is None and narrow.grid().tolist() == pytest.approx(np.geomspace(1e-4, 1e-2, 5).tolist())
    (same,) = HyperparameterSpace([lr]).with_ranges({"lr": None})
    assert same is lr


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"default": 0.25, "bins": (0.1, 0.2, 0.3)}, r"'c': default 0.25 is not one of its bins \[0.1, 0.2, 0.3\]"),
        ({"default": 0.2, "bins": (0.2, 0.7)}, r"'c': bin values \[0.2, 0.7\] must lie in \[0.05, 0.5\]"),
        ({"default": 0.2, "multipliers": (0.5, 2)}, r"'c': multipliers must be positive and contain 1"),
        ({"default": 0.2, "multipliers": (-1, 1)}, r"multipliers must be positive"),
        ({"multipliers": (1, 2)}, r"'c': bin multipliers need a default to multiply"),
        ({"default": 0.2, "bins": (0.2,), "multipliers": (1,)}, r"'c': declare bins or multipliers, not both"),
    ],
)
def test_bad_bin_declarations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hyperparameter("c", 0.05, 0.5, **kwargs)


def test_declare_reads_fields_and_refuses_undeclared_or_undocumented_ones():
    from dataclasses import dataclass

    from agents.hparams import declare, declared, hyperparameter

    @declare
    @dataclass(frozen=True, kw_only=True)
    class Good:
        """Doc."""

        lr: float = hyperparameter(0.1, low=0.01, high=1.0, log=True, doc="step size")

    assert declared(Good) == (Hyperparameter("lr", 0.01, 1.0, log=True, default=0.1, doc="step size"),)
    assert Good().lr == 0.1 and "lr: step size; [0.01, 1, log], default 0.1, bins {" in Good.__doc__

    @dataclass(frozen=True, kw_only=True)
    class Plain:
        lr: float = 0.1

    with pytest.raises(TypeError, match=r"Plain.lr is not declared: write `lr: float = hyperparameter\(...\)`"):
        declare(Plain)
    with pytest.raises(TypeError, match="Plain declares no hyperparameters"):
        declared(Plain)

    @dataclass(frozen=True, kw_only=True)
    class Mute:
        lr: float = hyperparameter(0.1, low=0.01, high=1.0, doc="")

    with pytest.raises(ValueError, match="Mute.lr: doc must say what the hyperparameter does"):
        declare(Mute)

    @dataclass(frozen=True, kw_only=True)
    class OffBins:
        clip: float = hyperparameter(0.25, low=0.1, high=0.5, bins=(0.1, 0.2), doc="clip")

    with pytest.raises(ValueError, match=r"'clip': default 0.25 is not one of its bins"):
        declare(OffBins)


def test_spaces_reexports_the_agents_declaration_type():
    import agents.hparams
    import hyperenvs

    assert Hyperparameter is agents.hparams.Hyperparameter is hyperenvs.Hyperparameter
