"""The .cq language: every statement form, positions, and the words and caret of every user error."""

import dataclasses
import math
import re

import pytest
from lark.exceptions import LarkError

from engine.errors import QueryError
from engine.lang import Program, parse, parse_file
from engine.lang.nodes import (
    Assignment,
    Bind,
    Counterfactual,
    IndexUnit,
    Interventional,
    Observational,
    PngUnit,
    Value,
    VarRef,
)
from engine.lang.mistakes import _MISTAKES, KEYWORDS
from engine.lang.parser import _LARK


def one(text: str):
    (statement,) = parse(text).statements
    return statement


def name(n: str, v: str, line: int, column: int) -> Assignment:
    return Assignment(n, Value(v), line, column)


def num(n: str, v: float, line: int, column: int, unit: str | None = None) -> Assignment:
    return Assignment(n, Value(v, unit), line, column)


# ---- statement forms -------------------------------------------------------------------------


def test_bind_dsprites():
    assert one("img = dsprites[245760]") == Bind("img", IndexUnit("dsprites", 245760, 1, 7), 1, 1, "img = dsprites[245760]")


def test_bind_png_with_labels():
    text = 'pic = png("queries/data/heart.png", shape=heart, scale=1.0, orientation=0.0, x=0.5, y=0.5)'
    labels = (
        name("shape", "heart", 1, 37),
        num("scale", 1.0, 1, 50),
        num("orientation", 0.0, 1, 61),
        num("x", 0.5, 1, 78),
        num("y", 0.5, 1, 85),
    )
    assert one(text) == Bind("pic", PngUnit("queries/data/heart.png", labels, 1, 7), 1, 1, text)


def test_bind_png_without_labels_single_quotes_and_trailing_comma():
    assert one('raw = png("queries/data/heart.png")').unit == PngUnit("queries/data/heart.png", (), 1, 7)
    assert one("raw = png('a b.png')").unit.path == "a b.png"
    assert one('raw = png("a.png", shape=heart,)').unit.labels == (name("shape", "heart", 1, 20),)


def test_counterfactual_on_a_variable_defaults_to_one_sample():
    assert one("given img, do(shape=square)") == Counterfactual(
        VarRef("img", 1, 7), (name("shape", "square", 1, 15),), 1, 1, 1, "given img, do(shape=square)"
    )


def test_counterfactual_several_interventions_and_samples():
    text = "given pic, do(shape=square, x=0.25, y=0.75) samples 8"
    s = one(text)
    assert isinstance(s, Counterfactual)
    assert s.interventions == (name("shape", "square", 1, 15), num("x", 0.25, 1, 29), num("y", 0.75, 1, 37))
    assert (s.samples, s.line, s.column, s.text) == (8, 1, 1, text)


def test_counterfactual_on_an_inline_unit():
    assert one("given dsprites[1234], do(shape=heart)").unit == IndexUnit("dsprites", 1234, 1, 7)
    s = one('given png("a.png", shape=heart), do(scale=0.5) samples 2')
    assert s.unit == PngUnit("a.png", (name("shape", "heart", 1, 20),), 1, 7)
    assert s.interventions == (num("scale", 0.5, 1, 37),) and s.samples == 2


def test_interventional():
    assert one("do(shape=heart) samples 16") == Interventional(
        (name("shape", "heart", 1, 4),), 16, 1, 1, "do(shape=heart) samples 16"
    )
    assert one("do(x=-0.5)").samples == 1


def test_observational():
    assert one("given shape=heart samples 16") == Observational(
        (name("shape", "heart", 1, 7),), 16, 1, 1, "given shape=heart samples 16"
    )
    s = one("given shape=heart, scale=1.0 samples 4")
    assert s.evidence == (name("shape", "heart", 1, 7), num("scale", 1.0, 1, 20)) and s.samples == 4
    assert one("given shape=heart").samples == 1


def test_numbers_and_angle_units():
    s = one("do(a=90deg, b=1.5rad, c=0.5pi, d=pi, e=-pi, f=-2, g=1e-3, h=.5, i=3.)")
    values = [item.value for item in s.interventions]
    assert values == [
        Value(90.0, "deg"),
        Value(1.5, "rad"),
        Value(0.5, "pi"),
        Value(1.0, "pi"),
        Value(-1.0, "pi"),
        Value(-2.0),
        Value(0.001),
        Value(0.5),
        Value(3.0),
    ]
    assert values[0].number() == pytest.approx(math.pi / 2)
    assert values[2].number() == pytest.approx(math.pi / 2)
    assert values[5].number() == -2.0
    assert str(values[0]) == "90deg" and str(Value("square")) == "square"
    with pytest.raises(TypeError):
        Value("square").number()


def test_names_that_start_like_keywords_or_units_are_names():
    s = one("given pink=pin, dox=given_ samples 2")
    assert [(a.name, a.value) for a in s.evidence] == [("pink", Value("pin")), ("dox", Value("given_"))]


# ---- programs: separators, comments, lines --------------------------------------------------

PROGRAM = """\
# comments run to the end of the line
img = dsprites[245760]   # a unit

given img, do(shape=square)  ; do(shape=heart) samples 16
\tgiven shape=heart, scale=1.0 samples 4   # evidence"""


def test_program_lines_columns_and_text():
    program = parse(PROGRAM, "queries/demo.cq")
    assert program.path == "queries/demo.cq"
    where = [(type(s).__name__, s.line, s.column, s.text) for s in program.statements]
    assert where == [
        ("Bind", 2, 1, "img = dsprites[245760]"),
        ("Counterfactual", 4, 1, "given img, do(shape=square)"),
        ("Interventional", 4, 32, "do(shape=heart) samples 16"),
        ("Observational", 5, 2, "given shape=heart, scale=1.0 samples 4"),
    ]
    assert program.statements[3].evidence[1] == num("scale", 1.0, 5, 21)


def test_empty_programs_and_stray_separators():
    assert parse("").statements == ()
    assert parse("# nothing\n\n;;\n").statements == ()
    assert len(parse(";do(x=1);;do(x=2);\r\ndo(x=3)\r\n").statements) == 3


def test_parse_file(tmp_path):
    path = tmp_path / "q.cq"
    path.write_text("img = dsprites[3]\ngiven img, do(x=0.5 y=1)\n")
    with pytest.raises(QueryError) as e:
        parse_file(path)
    assert str(e.value).startswith(f"{path}:2:21: syntax error: expected ',' or ')' after an intervention")
    (tmp_path / "ok.cq").write_text("do(x=1)")
    assert parse_file(tmp_path / "ok.cq").statements[0].interventions == (num("x", 1.0, 1, 4),)
    with pytest.raises(QueryError, match=r"missing\.cq: cannot read the query file"):
        parse_file(tmp_path / "missing.cq")
    (tmp_path / "latin1.cq").write_bytes(b"do(shape=c\xe9ur)")
    with pytest.raises(QueryError, match=r"latin1\.cq: the query file is not UTF-8 text .* at byte 10"):
        parse_file(tmp_path / "latin1.cq")


def test_program_error_points_at_a_node():
    program = parse("img = dsprites[3]\ngiven img, do(shap=heart)", "q.cq")
    item = program.statements[1].interventions[0]
    error = program.error(item, "unknown node 'shap'")
    assert str(error) == "q.cq:2:15: unknown node 'shap'\n    given img, do(shap=heart)\n                  ^"
    assert isinstance(error, QueryError) and (error.line, error.column) == (2, 15)


# ---- errors ---------------------------------------------------------------------------------


def error(text: str) -> tuple[str, str, str]:
    """The three lines of the QueryError raised for ``text``: the message, the source line, the caret."""
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    head, line, caret = str(e.value).split("\n")
    return head, line, caret


def caret_column(line: str, caret: str) -> int:
    assert line.startswith("    ") and caret.startswith("    ") and caret.endswith("^")
    return len(caret) - 4


# (text, line, column, words the first line of the message must contain)
SYNTAX = [
    # missing closing parenthesis / bracket
    ("do(shape=square", 1, 16, "missing ')': do(...) is not closed"),
    ("given img, do(shape=square, x=0.5 samples 3", 1, 35, "missing ')': do(...) is not closed"),
    ('pic = png("a.png", shape=heart', 1, 31, "missing ')': png(...) is not closed"),
    ('pic = png("a.png"', 1, 18, "missing ')': png(...) is not closed"),
    ("img = dsprites[3", 1, 17, "missing ']': dsprites[...] is not closed"),
    # a stray token inside a list
    ("given img, do(shape=square x=0.5)", 1, 28, "expected ',' or ')' after an intervention (name=value)"),
    ('pic = png("a.png", shape=heart scale=1)', 1, 32, "expected ',' or ')' after a label (name=value)"),
    ("given shape=heart scale=1.0", 1, 19, "expected ',' between evidence items"),
    # missing do
    ("given img samples 4", 1, 11, "after 'given img' expected '=' for evidence"),
    ("given img", 1, 10, "after 'given img' expected '=' for evidence"),
    ("given img, shape=square", 1, 12, "expected 'do(...)' after the unit"),
    ("given dsprites[3] samples 2", 1, 19, "expected 'do(...)' after the unit"),
    ("given img do(shape=heart)", 1, 11, "expected ',' between the unit and do(...)"),
    ("given shape=heart, do(x=1)", 1, 20, "evidence and do(...) cannot be mixed"),
    # samples without a number
    ("do(shape=heart) samples", 1, 24, "'samples' needs a whole number of draws"),
    ("given shape=heart samples many", 1, 27, "'samples' needs a whole number of draws"),
    # '=' without a value
    ("do(shape=)", 1, 10, "'=' needs a value"),
    ("given img, do(shape=, x=1)", 1, 21, "'=' needs a value"),
    ("img =", 1, 6, "expected a unit: world[index] (data[3])"),
    # a unit without given
    ("dsprites[3]", 1, 1, "a unit on its own is not a statement"),
    ('png("a.png"), do(x=1)', 1, 1, "a unit on its own is not a statement"),
    ("img, do(shape=square)", 1, 1, "a statement starts with 'given', 'do(', 'name =' or a query"),
    # misspelt keywords
    ("giv img, do(shape=square)", 1, 1, "(did you mean 'given' instead of 'giv'?)"),
    ("dp(shape=heart)", 1, 1, "(did you mean 'do' instead of 'dp'?)"),
    ("do(shape=heart) sample 8", 1, 17, "(did you mean 'samples' instead of 'sample'?)"),
    ("img = pgn('a.png')", 1, 10, "(did you mean 'png' instead of 'pgn'?)"),
    # unterminated string
    ('pic = png("queries/heart.png)', 1, 11, 'unterminated string: add the closing "'),
    ("pic = png('queries/heart.png, shape=heart)", 1, 11, "unterminated string: add the closing '"),
    # index not an integer
    ("img = dsprites[x]", 1, 17, "a condition compares a label with a value"),
    ("img = dsprites[]", 1, 16, "expected an index (dsprites[3]), a slice (dsprites[0:100]) or conditions"),
    # stray tokens and characters
    ("do(shape=heart) )", 1, 17, "unexpected ')' after a complete statement"),
    ("do(x=1) samples 3 4", 1, 19, "unexpected number '4' after a complete statement"),
    ("do(x=1) do(x=2)", 1, 9, "put the next statement on a new line or after ';'"),
    ("do(x=$)", 1, 6, "unexpected character '$'; expected a name or a number"),
    ("do(orientation=90degrees)", 1, 16, "'90degrees' is not a number"),
    (")", 1, 1, "a statement starts with 'given', 'do(', 'name =' or a query (P(...), E[...]), not with ')'"),
    ("given img, do x=1)", 1, 15, "expected '(' after 'do'"),
    ('img = png "a.png"', 1, 11, "expected '(' after 'png'"),
    ("given dsprites 3", 1, 16, "after 'given dsprites' expected '=' for evidence"),
]


@pytest.mark.parametrize("text, line, column, words", SYNTAX, ids=[case[0] for case in SYNTAX])
def test_syntax_errors_say_where_and_what(text, line, column, words):
    head, source, caret = error(text)
    assert head.startswith(f"q.cq:{line}:{column}: syntax error: ")
    assert words in head
    assert source == "    " + text.splitlines()[line - 1]
    assert caret_column(source, caret) == column


def test_the_example_caret_matches_the_documentation():
    head, source, caret = error("img = dsprites[1]\n\ngiven img, do(shape=square x=0.5)")
    assert head == "q.cq:3:28: syntax error: expected ',' or ')' after an intervention (name=value)"
    assert source == "    given img, do(shape=square x=0.5)"
    assert caret == "                               ^"


LOCAL = [
    ("do(shape=heart) samples 0", 1, 25, "samples must be a whole number from 1 to 1000 written in digits, got '0'"),
    ("given img, do(x=1) samples -3", 1, 28, "samples must be a whole number from 1 to 1000 written in digits, got '-3'"),
    ("given shape=heart samples 2.5", 1, 27, "samples must be a whole number from 1 to 1000 written in digits, got '2.5'"),
    ("img = dsprites[1.5]", 1, 16, "the dsprites index must be a whole number (0 or more) written in digits, got '1.5'"),
    ("img = dsprites[-1]", 1, 16, "the dsprites index must be a whole number (0 or more) written in digits, got '-1'"),
    ("img = dsprites[3deg]", 1, 16, "the dsprites index must be a whole number (0 or more) written in digits, got '3deg'"),
    ("do(shape=heart, x=1, shape=square)", 1, 22, "'shape' is set twice in do(...)"),
    ("given shape=heart, shape=square", 1, 20, "'shape' is set twice in the evidence"),
    ('p = png("a.png", x=1, x=2)', 1, 23, "'x' is set twice in the png(...) labels"),
    ("given img, do()", 1, 12, "do() needs at least one intervention"),
    ("do( ) samples 3", 1, 1, "do() needs at least one intervention"),
    ("png = dsprites[3]", 1, 1, "'png' is a keyword and cannot name a unit"),
]


@pytest.mark.parametrize("text, line, column, words", LOCAL, ids=[case[0] for case in LOCAL])
def test_local_checks_say_where_and_what(text, line, column, words):
    head, source, caret = error(text)
    assert head.startswith(f"q.cq:{line}:{column}: {words}")
    assert caret_column(source, caret) == column


def test_errors_name_the_right_line_in_a_program():
    program = "img = dsprites[3]  # ok\n\n# still ok\ngiven img, do(shape=heart)\ndo(x=1); do(shape=heart samples 2\n"
    head, source, caret = error(program)
    assert head.startswith("q.cq:5:25: syntax error: missing ')': do(...) is not closed")
    assert source == "    do(x=1); do(shape=heart samples 2"
    assert caret_column(source, caret) == 25
    head, _, _ = error("do(x=1)\n\ndo(x=1) samples 0\n")
    assert head.startswith("q.cq:3:17: samples must be")
    head, _, _ = error("do(x=1)\nx = dsprites[1]; giv x, do(x=1)")
    assert head.startswith("q.cq:2:18: syntax error: a statement starts with") and "'given'" in head


def test_tabs_keep_the_caret_under_the_column():
    _, source, caret = error("\tdo(x=1 y=2)")
    assert source == "    \tdo(x=1 y=2)" and caret == "    \t       ^"


def test_every_labelled_mistake_fails_and_gets_its_own_words():
    # Guards the examples in parser.py: one that parses or lands on another label is dead weight.
    for label, mistakes in _MISTAKES.items():
        for mistake in mistakes:
            with pytest.raises(QueryError) as e:
                parse(mistake)
            head = str(e.value).split("\n")[0]
            key = label.split("{")[0][:25]
            assert key in head or "a unit on its own" in head, (mistake, head, label)


MORE = """\
pic = png('queries/data/heart.png', shape=heart, scale=1.0, orientation=90deg, x=-0.5, y=.5e0)
given pic, do(orientation=0.5pi, shape=square,) samples 8; given dsprites[1234], do(x=pi)
"""


NUMERIC = """\
hearts = dsprites[shape=heart, scale>=0.5]; first = pendulum[0:100]
P(y > 0.5, scale=1.0 | do(scale=1.0), shape=heart) draws 100
E[area(img@do(scale=1.0)) - area(img) | u] - 2 * P(y@do(x=1) != y | hearts)
PNS(y > 0.5, do(shape=heart), do(shape=square) | first)
"""


def test_no_lark_exception_escapes_from_a_prefix_or_a_deletion():
    # Every prefix of a valid program, and the program with any one character deleted.
    programs = (PROGRAM, MORE, NUMERIC)
    texts = [t[:end] for t in programs for end in range(len(t) + 1)]
    texts += [t[:i] + t[i + 1 :] for t in programs for i in range(len(t))]
    for text in texts:
        try:
            assert isinstance(parse(text), Program)
        except QueryError as e:
            head, source, caret = str(e).split("\n")
            assert re.match(r"<query>:\d+:\d+: ", head) and caret.endswith("^"), text
        except LarkError as e:  # pragma: no cover - the failure message names the text
            pytest.fail(f"lark error escaped for {text!r}: {e!r}")


def test_keywords_are_the_grammars():
    strings = {t.pattern.value for t in _LARK.terminals if t.pattern.type == "str"}
    assert {word for word in strings if word.isalpha()} == set(KEYWORDS)


def test_nodes_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        one("do(x=1)").samples = 2


def test_the_documented_examples_parse():
    import engine.lang

    examples = [line.split("#")[0].strip() for line in engine.lang.__doc__.split("\n") if line.startswith("    ")]
    examples = [e for e in examples if e and not e.startswith((">>>", "Value("))]
    assert len(examples) > 15
    for example in examples:
        parse(example)
