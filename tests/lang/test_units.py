"""Units and populations: ``world[index]`` for any world, selections by condition and by slice."""

import pytest

from engine.errors import QueryError
from engine.lang import parse
from engine.lang.nodes import Bind, Counterfactual, Event, IndexUnit, Numeric, PngUnit, Selection, Term, Value, VarRef


def one(text: str):
    (statement,) = parse(text).statements
    return statement


def cond(name: str, op: str, value, column: int, unit: str | None = None) -> Event:
    return Event(Term(name, None, 1, column), op, Value(value, unit), 1, column)


@pytest.mark.parametrize("world", ["dsprites", "pendulum", "data", "dsprite", "given_", "P_"])
def test_any_world_name_takes_an_index(world):
    text = f"u = {world}[12]"
    assert one(text) == Bind("u", IndexUnit(world, 12, 1, 5), 1, 1, text)


def test_an_index_unit_inline_in_a_counterfactual():
    s = one("given pendulum[0], do(length=1.5)")
    assert isinstance(s, Counterfactual) and s.unit == IndexUnit("pendulum", 0, 1, 7)


def test_leading_zeros_are_the_same_index():
    assert one("u = data[007]").unit.index == 7


def test_selection_by_conditions_with_every_operator():
    text = "s = dsprites[shape=heart, scale!=1.0, x<0.5, y<=0.5, orientation>90deg and scale>=0.5]"
    assert one(text).unit == Selection(
        "dsprites",
        (
            cond("shape", "=", "heart", 14),
            cond("scale", "!=", 1.0, 27),
            cond("x", "<", 0.5, 39),
            cond("y", "<=", 0.5, 46),
            cond("orientation", ">", 90.0, 54, "deg"),
            cond("scale", ">=", 0.5, 76),
        ),
        None,
        None,
        1,
        5,
    )


@pytest.mark.parametrize(
    "text, start, stop",
    [
        ("s = pendulum[0:10000]", 0, 10000),
        ("s = data[5:]", 5, None),
        ("s = data[:100]", None, 100),
        ("s = data[:]", None, None),
        ("s = data[ 3 : 4 ]", 3, 4),
    ],
)
def test_selection_by_slice(text, start, stop):
    unit = one(text).unit
    assert isinstance(unit, Selection) and (unit.start, unit.stop, unit.conditions) == (start, stop, ())


def test_a_slice_and_conditions_together():
    assert one("s = data[:100, shape=heart]").unit == Selection("data", (cond("shape", "=", "heart", 16),), None, 100, 1, 5)


def test_a_selection_stands_wherever_a_unit_may():
    s = one("given dsprites[shape=heart], do(shape=square) samples 3")
    assert s.unit == Selection("dsprites", (cond("shape", "=", "heart", 16),), None, None, 1, 7) and s.samples == 3
    p = one("P(y > 0.5 | dsprites[shape=heart], pendulum[3], png('a.png'), u)").expr
    assert p.given.units == (
        Selection("dsprites", (cond("shape", "=", "heart", 22),), None, None, 1, 13),
        IndexUnit("pendulum", 3, 1, 36),
        PngUnit("a.png", (), 1, 49),
        VarRef("u", 1, 63),
    )


def test_a_bare_name_after_bar_is_a_unit_and_an_item_with_an_operator_is_evidence():
    p = one("E[y | u, shape=heart]").expr
    assert p.given.units == (VarRef("u", 1, 7),)
    assert p.given.evidence == (cond("shape", "=", "heart", 10),)
    assert isinstance(one("E[y | u]"), Numeric)


LOCAL = [
    ("s = data[5:5]", 1, 12, "the slice 5:5 is empty: its stop must be greater than its start"),
    ("s = data[7:2]", 1, 12, "the slice 7:2 is empty"),
    ("s = data[-1:]", 1, 10, "a slice bound must be a whole number (0 or more) written in digits, got '-1'"),
    ("s = data[:2.5]", 1, 11, "a slice bound must be a whole number (0 or more) written in digits, got '2.5'"),
    ("u = pendulum[1e3]", 1, 14, "the pendulum index must be a whole number (0 or more) written in digits, got '1e3'"),
    ("u = data[+3]", 1, 10, "the data index must be a whole number (0 or more) written in digits, got '+3'"),
    ("u = data[3.0]", 1, 10, "the data index must be a whole number (0 or more) written in digits, got '3.0'"),
    ("u = data[9223372036854775808]", 1, 10, "the data index 9223372036854775808 is more than 9223372036854775807"),
    ("u = data[" + "9" * 5000 + "]", 1, 10, "the data index 9999"),
]


@pytest.mark.parametrize("text, line, column, words", LOCAL, ids=[case[0][:40] for case in LOCAL])
def test_unit_checks_say_where_and_what(text, line, column, words):
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    assert str(e.value).split("\n")[0].startswith(f"q.cq:{line}:{column}: {words}")


def test_the_largest_index_is_kept():
    assert one("u = data[9223372036854775807]").unit.index == 2**63 - 1
