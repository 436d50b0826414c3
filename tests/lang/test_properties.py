"""Properties of the parser over generated text: it answers a Program or a QueryError, and errors echo the right line.

Three sources of text: any unicode at all (control characters and line separators included),
a soup of the language's own tokens (which reaches deep parser states), and valid statements
built from the grammar (whose nodes must point at their own text).
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import QueryError
from engine.lang import Program, parse
from engine.lang.mistakes import KEYWORDS
from engine.lang.nodes import Assignment, IndexUnit, Selection, Statistic, Term, VarRef, walk
from engine.lang.source import caret_pad, show

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ODD = ["\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\ufeff", "\x00", "\x1b", "٣", "日"]


def check(text: str) -> None:
    """Parse ``text``; a QueryError must be three printable lines naming a line and column of ``text``."""
    try:
        program = parse(text)
    except QueryError as e:
        head, echo, caret = str(e).split("\n")  # exactly three lines: nothing raw leaks into the message
        line, column = map(int, re.match(r"<query>:(\d+):(\d+): ", head).groups())
        assert (e.line, e.column) == (line, column)
        lines = text.removeprefix("\ufeff").split("\n")  # the lexer's rule: "\n" and nothing else
        assert 1 <= line <= len(lines) and 1 <= column <= len(lines[line - 1]) + 1
        expected = lines[line - 1].removesuffix("\r")
        assert echo == "    " + show(expected, tabs=True)
        assert caret == "    " + caret_pad(expected[: column - 1]) + "^"
        assert all(c.isprintable() for c in head) and all(c.isprintable() or c == "\t" for c in echo + caret)
    else:
        assert isinstance(program, Program)


@SETTINGS
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(ODD))))
def test_any_text_parses_or_is_a_query_error_echoing_its_line(text):
    check(text)


TOKENS = (
    list(KEYWORDS)
    + ["img", "y", "shape", "heart", "dsprites", "area", "pi", "u", "x_1"]
    + ["0", "3", "0.5", "-1", "1e3", "90deg", "-pi", "1e999", "9" * 30]
    + list("=<>!()[],;:@|+-*/#'\"") + ["!=", "<=", ">=", "==", '"a.png"']
    + [" ", " ", " ", "\t", "\n", "\r\n", "\x0c", "\u2028", "\x0b", "\ufeff"]
)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_token_soup_parses_or_is_a_query_error_echoing_its_line(text):
    check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=20).map("".join), st.sampled_from(
    ["P(y > 0.5 | do(scale=1.0))", "E[area(img@do(x=1)) - 1 | u]", "given img, do(shape=square)", "img = dsprites[3]"]
))
def test_a_valid_statement_after_noise_on_its_own_line(noise, statement):
    check(noise + "\n" + statement)
    check(statement + "\n" + noise)


# ---- valid statements built from the grammar ------------------------------------------------

# Names, some of them keywords where the grammar expects a name, or keywords glued to more.
names = st.sampled_from(["y", "scale", "shape", "img", "heart", "x_1", "_u", "e", "Pn", "given_", "drawsx", "P2", "samples"])
numbers = st.sampled_from(["0", "1", "0.5", "-2", "+3", "1e-3", "2E2", ".5", "3.", "90deg", "1.5rad", "0.5pi", "-pi", "pi"])
gaps = st.sampled_from(["", " ", "  ", "\t", " \x0c"])
ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])


@st.composite
def do(draw) -> str:
    keys = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    return "do(" + ", ".join(f"{k}={draw(st.one_of(names, numbers))}" for k in keys) + ")"


@st.composite
def term(draw, at: bool) -> str:
    name = draw(names)
    return f"{name}@{draw(do())}" if at and draw(st.booleans()) else name


@st.composite
def quantity(draw, at: bool) -> str:
    t = draw(term(at))
    return f"{draw(names)}({t})" if draw(st.booleans()) else t


@st.composite
def event(draw, at: bool) -> str:
    right = draw(st.one_of(names, numbers, quantity(at))) if at else draw(st.one_of(names, numbers))
    return f"{draw(quantity(at))}{draw(gaps)}{draw(ops)}{draw(gaps)}{right}"


@st.composite
def given_part(draw, at: bool) -> str:
    items = draw(st.lists(st.one_of(event(at), names, names.map(lambda n: f"dsprites[{n}=1]")), max_size=3))
    if not at and draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), draw(do()))
    return f" | {', '.join(items)}" if items else ""


@st.composite
def query(draw, at: bool) -> str:
    kind = draw(st.sampled_from(["P", "E", "PNS"]))
    if kind == "P":
        events = draw(st.lists(event(at), min_size=1, max_size=3))
        return "P(" + draw(st.sampled_from([", ", " and ", ","])).join(events) + draw(given_part(at)) + ")"
    if kind == "E":
        parts = draw(st.lists(st.one_of(quantity(at), numbers.filter(lambda n: n[0] not in "+-")), min_size=1, max_size=3))
        signs = [draw(st.sampled_from([" + ", " - ", " * ", " / "])) for _ in parts[1:]]
        body = parts[0] + "".join(s + p for s, p in zip(signs, parts[1:]))
        return f"E[{body}{draw(given_part(at))}]"
    outcome = draw(event(False))
    units = draw(st.lists(names, max_size=2))
    return f"PNS({outcome}, {draw(do())}, {draw(do())}{' | ' + ', '.join(units) if units else ''})"


@st.composite
def numeric_statement(draw) -> str:
    at = draw(st.booleans())
    queries = draw(st.lists(query(at), min_size=1, max_size=3))
    text = draw(st.sampled_from([" - ", " + ", " * "])).join(queries)
    return text + (f" draws {draw(st.integers(1, 10_000_000))}" if draw(st.booleans()) else "")


def points_at_its_name(node, lines: list[str]) -> bool:
    name = {Term: "node", Statistic: "name", Assignment: "name", VarRef: "name", IndexUnit: "world", Selection: "world"}
    for kind, attr in name.items():
        if isinstance(node, kind):
            return lines[node.line - 1][node.column - 1 :].startswith(getattr(node, attr))
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(numeric_statement(), min_size=1, max_size=3), st.sampled_from(["\n", ";", "\r\n", " # note\n"]))
def test_valid_numeric_statements_parse_and_their_nodes_point_at_their_names(statements, separator):
    text = separator.join(statements)
    program = parse(text)
    lines = text.split("\n")
    assert [s.text for s in program.statements] == statements
    for node in walk(program.statements):
        assert points_at_its_name(node, lines), (node, text)
