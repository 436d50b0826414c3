"""Numeric statements: P(...), E[...], PN/PS/PNS, arithmetic, draws, and the checks made while parsing.

The running example is dSprites with a scalar y: shape -> scale -> y, with img the image.
"""

import pytest

from engine.errors import QueryError
from engine.lang import MAX_DRAWS, parse
from engine.lang.nodes import (
    Assignment,
    BinOp,
    Causation,
    Distribution,
    Event,
    Expectation,
    Given,
    Intervention,
    Number,
    Numeric,
    Probability,
    Statistic,
    Term,
    Value,
    VarRef,
    walk,
)


class At:
    """Columns of fragments of a one-line statement, to build the expected tree by name."""

    def __init__(self, text: str):
        self.text = text

    def __call__(self, fragment: str, nth: int = 0) -> int:
        start = -1
        for _ in range(nth + 1):
            start = self.text.index(fragment, start + 1)
        return start + 1


def numeric(text: str) -> Numeric:
    (statement,) = parse(text).statements
    assert isinstance(statement, Numeric) and statement.text == text.split("#")[0].strip()
    return statement


def do(at: At, fragment: str, nth: int = 0, **values) -> Intervention:
    """The do(...) that starts at ``fragment``, holding ``values`` (name -> Value) in that order."""
    column = at(fragment, nth)
    items, offset = [], column + 3
    for name, value in values.items():
        offset = at.text.index(name + "=", offset - 1) + 1
        items.append(Assignment(name, value, 1, offset))
    return Intervention(tuple(items), 1, column)


def test_a_bare_node_is_a_distribution():
    s = numeric("P(y)")
    assert s == Numeric(Distribution((Term("y", None, 1, 3),), None, 1, 1), None, 1, 1, "P(y)")
    joint = numeric("P(y, scale | u)").expr
    assert [q.node for q in joint.quantities] == ["y", "scale"] and joint.given.units == (VarRef("u", 1, 14),)


def test_a_probability_with_evidence():
    at = At("P(y > 0.5 | shape=heart)")
    assert numeric(at.text).expr == Probability(
        (Event(Term("y", None, 1, 3), ">", Value(0.5), 1, 3),),
        Given((Event(Term("shape", None, 1, at("shape")), "=", Value("heart"), 1, at("shape")),), None, (), 1, at("shape")),
        1,
        1,
    )
    assert numeric("P(y | shape=heart)").expr.given.evidence[0].right == Value("heart")


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_comparison(op):
    (event,) = numeric(f"P(y {op} 0.5)").expr.events
    assert event.op == op and event.right == Value(0.5)


def test_conjunctions_with_comma_or_and():
    comma = numeric("P(y > 0.5, scale = 1.0 | shape=heart)").expr
    word = numeric("P(y > 0.5 and scale = 1.0 | shape=heart and x < 0.5)").expr
    assert [(e.left.node, e.op, e.right) for e in comma.events] == [("y", ">", Value(0.5)), ("scale", "=", Value(1.0))]
    assert [(e.left.node, e.op) for e in word.events] == [("y", ">"), ("scale", "=")]
    assert [(e.left.node, e.op) for e in word.given.evidence] == [("shape", "="), ("x", "<")]


def test_an_intervention_after_the_bar():
    at = At("P(y > 0.5 | do(scale=1.0), shape=heart)")
    p = numeric(at.text).expr
    assert p.given.do == do(at, "do(", scale=Value(1.0))
    assert [e.left.node for e in p.given.evidence] == ["shape"] and p.given.units == ()
    assert numeric("P(y > 0.5 | do(scale=1.0))").expr.given.evidence == ()


def test_arithmetic_of_expectations():
    at = At("E[y | do(scale=1.0)] - E[y | do(scale=0.5)]")
    assert numeric(at.text).expr == BinOp(
        "-",
        Expectation(Term("y", None, 1, 3), Given((), do(at, "do(", scale=Value(1.0)), (), 1, at("do(")), 1, 1),
        Expectation(
            Term("y", None, 1, at("y", 1)), Given((), do(at, "do(", 1, scale=Value(0.5)), (), 1, at("do(", 1)), 1, at("E[", 1)
        ),
        1,
        1,
    )


def test_precedence_associativity_parentheses_and_numbers():
    e = numeric("1 - 2 * P(y > 0) / 4 - E[y]").expr
    # ((1 - ((2 * P) / 4)) - E)
    assert e.op == "-" and isinstance(e.right, Expectation)
    inner = e.left
    assert inner.op == "-" and inner.left == Number(Value(1.0), 1, 1)
    assert inner.right.op == "/" and inner.right.right == Number(Value(4.0), 1, 20)
    assert inner.right.left.op == "*" and isinstance(inner.right.left.right, Probability)
    grouped = numeric("(E[y] + 1) * (E[y] - E[scale])").expr
    assert grouped.op == "*" and grouped.left.op == "+" and grouped.right.op == "-"
    assert numeric("E[2 * y - (y + 1) / 3]").expr.expr.op == "-"
    assert numeric("E[y] - -1").expr.right == Number(Value(-1.0), 1, 8)


def test_counterfactual_terms():
    at = At("P(scale@do(shape=square) = 1.0 | shape=heart, scale=1.0)")
    p = numeric(at.text).expr
    assert p.events == (Event(Term("scale", do(at, "do(", shape=Value("square")), 1, 3), "=", Value(1.0), 1, 3),)
    assert [e.left.node for e in p.given.evidence] == ["shape", "scale"] and p.given.do is None

    q = numeric("P(y@do(shape=square) > 0.5 | u)").expr
    assert q.events[0].left.world.assignments[0].value == Value("square") and q.given.units == (VarRef("u", 1, 30),)

    e = numeric("E[y@do(shape=square) | shape=heart] - E[y | shape=heart]").expr
    assert e.left.expr.world is not None and e.right.expr.world is None

    two = numeric("P(scale@do(shape=heart) = 1.0, scale@do(shape=square) < 1.0)").expr
    assert [ev.left.world.assignments[0].value.value for ev in two.events] == ["heart", "square"] and two.given is None


def test_a_node_compared_with_itself_in_another_world():
    p = numeric("P(y@do(shape=square) = y | u)").expr
    # A bare name on the right is kept as a name: the executor reads 'y' as the factual node.
    assert p.events[0].right == Value("y")
    at = At("P(y@do(shape=square) = y@do(shape=heart))")
    assert numeric(at.text).expr.events[0].right == Term("y", do(at, "do(", 1, shape=Value("heart")), 1, at("y@", 1))


def test_image_statistics():
    at = At("E[area(img@do(scale=1.0)) - area(img) | u]")
    assert numeric(at.text).expr == Expectation(
        BinOp(
            "-",
            Statistic("area", Term("img", do(at, "do(", scale=Value(1.0)), 1, at("img")), 1, 3),
            Statistic("area", Term("img", None, 1, at("img", 1)), 1, at("area", 1)),
            1,
            3,
        ),
        Given((), None, (VarRef("u", 1, at("u]")),), 1, at("u]")),
        1,
        1,
    )
    assert numeric("E[area(img) | do(scale=1.0)]").expr.given.do.assignments[0].name == "scale"
    event = numeric("P(area(img@do(scale=1.0)) > area(img) | u)").expr.events[0]
    assert isinstance(event.left, Statistic) and isinstance(event.right, Statistic)


def test_values_keep_their_units():
    p = numeric("P(orientation > 90deg | do(orientation=0.5pi), x < 1.5rad)").expr
    assert p.events[0].right == Value(90.0, "deg")
    assert p.given.do.assignments[0].value == Value(0.5, "pi")
    assert p.given.evidence[0].right == Value(1.5, "rad")
    assert numeric("E[orientation] - 90deg").expr.right == Number(Value(90.0, "deg"), 1, 18)
    assert numeric("P(orientation < pi)").expr.events[0].right == Value(1.0, "pi")


def test_draws():
    assert numeric("P(y > 0.5 | do(scale=1.0)) draws 20000").draws == 20000
    assert numeric("P(y > 0.5 | do(scale=1.0))").draws is None
    assert numeric(f"E[y] draws {MAX_DRAWS}").draws == MAX_DRAWS


# ---- probabilities of causation -------------------------------------------------------------


def causation(text: str) -> Causation:
    expr = numeric(text).expr
    assert isinstance(expr, Causation)
    return expr


def shown(events) -> list[str]:
    """Events as text: 'y@shape=square <= 0.5'."""

    def side(s):
        if isinstance(s, Term):
            world = ",".join(f"{a.name}={a.value}" for a in s.world.assignments) if s.world else ""
            return s.node + (f"@{world}" if world else "")
        return str(s)

    return [f"{side(e.left)} {e.op} {side(e.right)}" for e in events]


def test_causation_nodes():
    at = At("PNS(y > 0.5, do(shape=heart), do(shape=square))")
    assert causation(at.text) == Causation(
        "PNS",
        Event(Term("y", None, 1, 5), ">", Value(0.5), 1, 5),
        do(at, "do(", shape=Value("heart")),
        do(at, "do(", 1, shape=Value("square")),
        None,
        1,
        1,
    )


def test_pns_expands_to_both_worlds():
    p = causation("PNS(y > 0.5, do(shape=heart), do(shape=square))").expand()
    assert shown(p.events) == ["y@shape=heart > 0.5", "y@shape=square <= 0.5"] and p.given is None


def test_pn_expands_to_the_alternative_world_given_what_happened():
    p = causation("PN(y > 0.5, do(shape=heart), do(shape=square))").expand()
    assert shown(p.events) == ["y@shape=square <= 0.5"]
    assert shown(p.given.evidence) == ["shape = heart", "y > 0.5"]


def test_ps_expands_to_the_cause_world_given_what_did_not_happen():
    p = causation("PS(y = 1, do(shape=heart, scale=1.0), do(shape=square, scale=0.5) | u, x < 0.5)").expand()
    assert shown(p.events) == ["y@shape=heart,scale=1 = 1"]
    assert shown(p.given.evidence) == ["shape = square", "scale = 0.5", "y != 1", "x < 0.5"]
    assert p.given.units == (VarRef("u", 1, 69),) and p.given.do is None


def test_causation_of_a_statistic_moves_its_term_into_the_world():
    p = causation("PNS(area(img) > 100, do(scale=1.0), do(scale=0.5))").expand()
    assert [e.left.term.world.assignments[0].value for e in p.events] == [Value(1.0), Value(0.5)]
    assert [e.op for e in p.events] == [">", "<="]


# ---- checks made while parsing --------------------------------------------------------------

LOCAL = [
    ("P(y@do(a=1) > 1 | do(b=2))", 1, 19, "a statement uses either '| do(...)' or '@do(...)' terms, not both"),
    ("E[y | do(b=2)] - E[y@do(a=1)]", 1, 20, "a statement uses either '| do(...)' or '@do(...)' terms"),
    ("P(y | do(a=1), do(b=2))", 1, 16, "one do(...) after '|'"),
    ("P(y > 1 | do(a=1) and shape=heart, do(b=2))", 1, 36, "one do(...) after '|'"),
    ("P(y > 1, z)", 1, 10, "P(...) holds either events (P(y > 0.5, scale=1.0)) or bare nodes (P(y, scale)), not both"),
    ("P(z, y > 1)", 1, 3, "P(...) holds either events"),
    ("P(y) - 1", 1, 1, "P(y) is a distribution, not a number"),
    ("1 + 2", 1, 1, "a numeric statement asks for P(...), E[...], PN(...), PS(...) or PNS(...)"),
    ("(3)", 1, 2, "a numeric statement asks for P(...)"),
    ("E[P(y)]", 1, 3, "P(...) cannot stand inside another query"),
    ("PN(y@do(a=1) > 1, do(a=1), do(a=2))", 1, 4, "the outcome of PN(...) is read in the worlds of its two do(...)"),
    ("PS(y > area(img@do(a=1)), do(a=1), do(a=2))", 1, 13, "the outcome of PS(...) is read in the worlds"),
    ("PNS(y > 1, do(a=1), do(a=2) | do(b=1))", 1, 31, "PNS(...) takes its interventions before '|'"),
    ("P(y | do())", 1, 7, "do() needs at least one intervention"),
    ("P(y@do(a=1, a=2))", 1, 13, "'a' is set twice in do(...)"),
    ("P(y > 1e999)", 1, 7, "'1e999' is too large a number"),
    ("E[y] draws 0", 1, 12, "draws must be a whole number from 1 to 10000000 written in digits, got '0'"),
    ("E[y] draws 1e6", 1, 12, "draws must be a whole number from 1 to 10000000 written in digits, got '1e6'"),
    ("E[y] draws 10000001", 1, 12, "draws 10000001 is more than 10000000 (MAX_DRAWS)"),
]


@pytest.mark.parametrize("text, line, column, words", LOCAL, ids=[case[0] for case in LOCAL])
def test_numeric_checks_say_where_and_what(text, line, column, words):
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    head, source, caret = str(e.value).split("\n")
    assert head.startswith(f"q.cq:{line}:{column}: {words}")
    assert source == "    " + text and len(caret) - 4 == column


SYNTAX = [
    ("P(y >)", 1, 6, "'>' needs something to compare with: a number (y > 0.5)"),
    ("P(y | shape=)", 1, 13, "'=' needs something to compare with"),
    ("1 - P(y != | u)", 1, 12, "'!=' needs something to compare with"),
    ("P(y == 1)", 1, 6, "compare with a single '=' (y = 1)"),
    ("P(y ! 1)", 1, 5, "'!' on its own is no operator; 'not equal' is written '!='"),
    ("E[y", 1, 4, "missing ']': E[...] is not closed"),
    ("E[y | do(scale=1.0)", 1, 20, "missing ']': E[...] is not closed"),
    ("E[y | do(scale=1.0) draws 5", 1, 21, "missing ']': E[...] is not closed"),
    ("P(y > 0.5", 1, 10, "missing ')': P(...) is not closed"),
    ("(E[y] - 1", 1, 10, "missing ')': the '(' is not closed"),
    ("P(y > 0.5 | do(scale=1.0), shape=heart", 1, 39, "missing ')': P(...) is not closed"),
    ("P(y | do(scale=1.0)", 1, 20, "missing ')': P(...) is not closed"),
    ("P(y | do(scale=1.0", 1, 19, "missing ')': do(...) is not closed"),
    ("E[area(img | u]", 1, 12, "missing ')': area(...) is not closed"),
    ("P(y | do(scale=1.0 shape=heart))", 1, 20, "expected ',' or ')' after an intervention (name=value)"),
    ("E[y@do(scale=)]", 1, 14, "'=' needs a value"),
    ("P()", 1, 3, "P(...) starts with a node or a statistic"),
    ("P(0.5 < y)", 1, 3, "P(...) starts with a node or a statistic"),
    ("E[]", 1, 3, "E[...] needs a node, a statistic or arithmetic over them"),
    ("P(y | )", 1, 7, "expected evidence (shape=heart), do(...) or a unit (u, data[3]) after '|'"),
    ("E[y | ]", 1, 7, "expected evidence (shape=heart), do(...) or a unit"),
    ("E(y)", 1, 2, "expected '[' after 'E': an expectation reads E[y | ...]"),
    ("P[y]", 1, 2, "expected '(' after 'P': a probability reads P(y > 0.5 | ...)"),
    ("P(y@x > 1)", 1, 5, "expected 'do(...)' after '@'"),
    ("P(y@do x > 1)", 1, 8, "expected '(' after 'do'"),
    ("PNS(y > 1)", 1, 10, "PN, PS and PNS read PNS(outcome, do(cause), do(alternative))"),
    ("PN(y > 1, do(a=1))", 1, 18, "PN, PS and PNS read PNS(outcome, do(cause), do(alternative))"),
    ("P(y) draws", 1, 11, "'draws' needs a whole number of Monte Carlo draws"),
    ("P(y) samples 3", 1, 6, "'samples' is for image statements: a numeric statement takes 'draws N'"),
    ("E[y | u] samples 3", 1, 10, "'samples' is for image statements"),
    ("do(x=1) draws 3", 1, 9, "'draws' is for numeric statements (P, E): an image statement takes 'samples N'"),
    ("P(y) draws5", 1, 6, "'draws5' is one name; put a space between 'draws' and its number: 'draws 5'"),
    ("P(y) x", 1, 6, "unexpected name 'x' after a complete statement"),
    ("E[y] -", 1, 7, "unexpected end of line; expected a number, '(' or a query (P(...), E[...], PN(...), PS(...), PNS(...))"),
]


@pytest.mark.parametrize("text, line, column, words", SYNTAX, ids=[case[0] for case in SYNTAX])
def test_numeric_syntax_errors_say_where_and_what(text, line, column, words):
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    head, source, caret = str(e.value).split("\n")
    assert head.startswith(f"q.cq:{line}:{column}: syntax error: ")
    assert words in head
    assert source == "    " + text and len(caret) - 4 == column


def test_walk_visits_every_node():
    kinds = {type(n).__name__ for n in walk(numeric("E[area(img@do(x=1)) - 2 | u, y > 1]").expr)}
    assert kinds == {
        "Expectation", "BinOp", "Statistic", "Term", "Intervention", "Assignment", "Value", "Number", "Given", "VarRef", "Event"
    }
