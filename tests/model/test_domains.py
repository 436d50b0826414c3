"""Domains: the one place a value changes form (written -> encoded -> shown)."""

import math

import numpy as np
import pytest
import torch

from engine.model import domains
from engine.model.domains import DomainError, Grid, Image, Names, Real


def parse(spec):
    return domains.parse(spec, float)


def test_names_encode_by_position_and_list_the_valid_ones():
    d = parse(["square", "ellipse", "heart"])
    assert d.encode("heart") == 2 and d.decode(2) == "heart" and d.is_discrete and not d.is_numeric
    with pytest.raises(DomainError, match="valid: square, ellipse, heart"):
        d.encode("circle")
    assert not d.contains(1.0)


def test_grids_snap_to_the_nearest_value_and_ties_go_down():
    d = parse({"linspace": [0, 1, 3]})
    assert [d.encode(v) for v in (0.0, 0.24, 0.26, 0.7, 1.0)] == [0, 0, 1, 1, 2]
    assert d.snap(0.25) == 0  # halfway: the lower value
    assert d.decode(1) == 0.5
    with pytest.raises(DomainError, match="outside the grid of 3 from 0 to 1"):
        d.encode(1.3)
    assert torch.equal(d.values_of(torch.tensor([0, 2])), torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_only_angle_domains_take_angle_units_converted_to_their_own_unit():
    rad = parse({"linspace": [0, 2 * math.pi, 5], "unit": "rad"})
    deg = parse({"real": [-40, 44], "unit": "deg"})
    plain = parse({"linspace": [0, 1, 32]})
    assert rad.encode(90, "deg") == 1 and rad.encode(0.5, "pi") == 1 and rad.encode(1.5708, "rad") == 1
    assert deg.encode(0.1, "pi") == pytest.approx(18.0) and deg.encode(30) == 30.0
    for unit in ("deg", "rad", "pi"):
        with pytest.raises(DomainError, match="is for angles"):
            plain.encode(0.3, unit)


def test_real_bounds_check_written_values_and_non_finite_numbers_are_refused():
    d = parse({"real": [0, 10]})
    assert d.encode(2.5) == 2.5 and d.decode(2.5) == 2.5 and d.dtype == torch.float64
    for bad in (10.5, -1, math.nan, math.inf, True, "x"):
        assert not d.contains(bad)
    assert parse("real").contains(1e300)


def test_images_binary_or_gray_and_their_size_is_checked():
    assert parse({"image": [4, 6]}) == Image((4, 6), "binary") and parse({"image": [4, 6]}).levels() == 2
    gray = parse({"image": [4, 6], "pixels": "gray"})
    assert gray.levels() == 256 and gray.encode(np.zeros((4, 6))).dtype == torch.float32
    with pytest.raises(DomainError, match="6 wide, 4 high"):
        gray.encode(np.zeros((6, 4)))


@pytest.mark.parametrize("spec, message", [
    ({"linspace": [0, 1, 10**12]}, "from 2 to 100,000"),
    ({"linspace": [1, 0, 3]}, "stop > start"),
    ({"image": [100000, 100000]}, "from 1 to 1024"),
    ({"image": [64, 64], "pixels": "rgb"}, "binary or gray"),
    ({"real": [3, 1]}, "high > low"),
    ({"real": [0, 1], "unit": "grad"}, "rad or deg"),
    ({"linspace": [0, 1, 3], "pixels": "gray"}, "unknown domain key"),
    ([True, False], "quote such names"),
    (["a", "a"], "distinct"),
])
def test_malformed_domains_say_what_is_valid(spec, message):
    with pytest.raises(DomainError, match=message):
        parse(spec)


def test_kinds():
    assert isinstance(parse(["a"]), Names) and isinstance(parse({"linspace": [0, 1, 2]}), Grid) and isinstance(parse("real"), Real)
