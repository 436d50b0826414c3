"""Syntax errors in plain words: what the parser expected, said the way a user would say it.

A syntax error is matched against the labelled example mistakes in ``_MISTAKES`` with lark's
``match_examples``, which compares the parser's state where the error and each example stop;
an error that matches none says which bracket is left open, if one is, or else lists the
tokens the parser would have accepted, in words. The message names the file, line and column,
and shows the line (as the lexer counts lines) with a caret under the column.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from typing import Callable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from engine.errors import QueryError
from engine.lang.source import error_at, source_line

Parse = Callable[[str], object]

# The grammar's keywords, for hints. A keyword is one only where the grammar accepts it: `given`
# is a fine value name in `do(mood=given)`.
KEYWORDS = ("given", "do", "samples", "draws", "png", "and", "P", "E", "PN", "PS", "PNS")

# How a terminal reads in a message; the order is the order in which expected tokens are listed.
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a quoted path ("...")',
    "EQUAL": "'='",
    "NE": "'!='",
    "LESSTHAN": "'<'",
    "LE": "'<='",
    "MORETHAN": "'>'",
    "GE": "'>='",
    "COMMA": "','",
    "AND": "'and'",
    "VBAR": "'|'",
    "AT": "'@'",
    "COLON": "':'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "GIVEN": "'given'",
    "DO": "'do'",
    "P": "P(...)",
    "E": "E[...]",
    "PN": "PN(...)",
    "PS": "PS(...)",
    "PNS": "PNS(...)",
    "SAMPLES": "'samples'",
    "DRAWS": "'draws'",
    "PNG": "'png'",
    "_SEP": "the end of the statement",
    "$END": "the end of the statement",
}
# Terminals that read as one phrase when two or more of them are expected.
_GROUPS = {
    "a comparison (=, !=, <, <=, >, >=)": {"EQUAL", "NE", "LESSTHAN", "LE", "MORETHAN", "GE"},
    "an operator (+, -, *, /)": {"PLUS", "MINUS", "STAR", "SLASH"},
    "a query (P(...), E[...], PN(...), PS(...), PNS(...))": {"P", "E", "PN", "PS", "PNS"},
}
_CLOSERS = {"(": ")", "[": "]"}


def _variants(*mistakes: str) -> list[str]:
    """Each mistake at the first, second and a later place in its list, after a name and after a number.

    The parser stops in one state after a name and in another after a number, and lark's
    ``match_examples`` also compares the depth of the parser's stack, which grows over a list's
    first two items.
    """
    places, values = ("", "a=1, ", "a=1, b=2, "), ("heart", "0.5")
    return list(dict.fromkeys(m.format(pre=pre, v=v) for m in mistakes for pre in places for v in values))


# Where a do(...) stands in a numeric query, and where an event stands: the parser's stack is as
# deep as the brackets around the mistake, so each place is an example of its own. "1 - " and "("
# put a query inside arithmetic.
_NUMERIC = ("", "1 - ", "(")
_DO_PLACES = tuple(
    f"{arith}{place}"
    for arith in _NUMERIC
    for place in ("P(a | do({d}", "P(a | b=1, do({d}", "P(a@do({d}", "P(b=1, a@do({d}", "E[a@do({d}", "E[a | do({d}")
) + ("PNS(a > 1, do({d}", "PNS(a > 1, do(b=1), do({d}")
_EVENT_PLACES = tuple(
    f"{arith}{place}"
    for arith in _NUMERIC
    for place in ("P({e}", "P(b=1, {e}", "P(b=1, c=2, {e}", "P(a | {e}", "P(a | b=1, {e}", "P(a | b=1, c=2, {e}")
) + ("E[a | {e}", "E[a | b=1, {e}", "E[a | b=1, c=2, {e}", "PNS({e}", "PNS(a > 1, do(b=1), do(b=2) | {e}")


def _in_do(*mistakes: str) -> list[str]:
    """Each mistake (the inside of a ``do(``) in every do(...) of a numeric query, at each place in its list."""
    return _variants(*(place.format(d=m) for m in mistakes for place in _DO_PLACES))


def _in_event(*mistakes: str) -> list[str]:
    """Each mistake (written as an event) at every place where an event may stand."""
    return list(dict.fromkeys(place.format(e=m) for m in mistakes for place in _EVENT_PLACES))


def _at_query(*mistakes: str) -> list[str]:
    """Each mistake (a whole query) as a statement and inside arithmetic."""
    return [arith + m for m in mistakes for arith in _NUMERIC]


_STATEMENT_START = "a statement starts with 'given', 'do(', 'name =' or a query (P(...), E[...])"
_MIXED = (
    "evidence and do(...) cannot be mixed: use 'given img, do(...)' for a counterfactual, "
    "'do(...)' for an intervention, 'given name=value' for evidence"
)
_RIGHT = (
    "'{op}' needs something to compare with: a number (y > 0.5), a value (shape=heart) "
    "or a node in a world (y@do(shape=square) = y)"
)

# Labelled example mistakes; a syntax error that stops where one of these stops gets its words.
# {expected} lists what would have been accepted, {construct} names the innermost open bracket
# (do(...), png(...), P(...), data[...]), {item} what a do(...) or png(...) holds, {op} the
# comparison before the error; in the examples, {pre} and {v} are filled in by _variants.
_MISTAKES = {
    "expected ',' or ')' after {item} (name=value)": _variants(
        "do({pre}shape={v} x=0.5)",
        "given img, do({pre}shape={v} x=0.5)",
        "given data[1], do({pre}shape={v} x=0.5)",
        'img = png("a.png", {pre}shape={v} scale=1.0)',
        'given png("a.png", {pre}shape={v} scale=1.0), do(x=0.5)',
    )
    + _in_do("{pre}shape={v} x=0.5)"),
    "missing ')': {construct} is not closed": _variants(
        "do(",
        "do({pre}shape={v}",
        "do({pre}shape={v} samples 4",
        "do({pre}shape={v},",
        "given img, do(",
        "given img, do({pre}shape={v}",
        "given img, do({pre}shape={v} samples 4",
        "given img, do({pre}shape={v},",
        'img = png("a.png"',
        'img = png("a.png", {pre}shape={v}',
        'img = png("a.png", {pre}shape={v},',
        'given png("a.png"',
        'given png("a.png", {pre}shape={v}',
    ),
    "missing ']': {construct} is not closed": ["img = data[3", "given data[3, do(shape=heart)"],
    "expected 'do(...)' after the unit: a counterfactual reads 'given img, do(name=value)'": _variants(
        "given img,",
        "given img, shape=square",
        "given img, samples 3",
        "given data[3]",
        "given data[3] samples 2",
        "given data[3],",
        "given data[3], shape=square",
        "given data[shape=heart]",
        "given data[0:10]",
        'given png("a.png", {pre}shape={v})',
        'given png("a.png", {pre}shape={v}) samples 2',
        'given png("a.png", {pre}shape={v}),',
        'given png("a.png", {pre}shape={v}), shape=square',
    ),
    "after 'given {word}' expected '=' for evidence (given shape=heart), ', do(...)' for a counterfactual "
    "(given img, do(shape=square)) or '[' for a unit (given data[3], do(shape=square))": [
        "given img",
        "given img samples 3",
        "given img x",
    ],
    "expected ',' between the unit and do(...): 'given img, do(name=value)'": _variants(
        "given img do(shape=heart)",
        "given data[3] do(shape=heart)",
        'given png("a.png", {pre}shape={v}) do(shape=heart)',
    ),
    "'samples' needs a whole number of draws, e.g. 'samples 8'": _variants(
        "do(shape=heart) samples",
        "do(shape=heart) samples x",
        "given img, do(shape=heart) samples",
        "given img, do(shape=heart) samples x",
        "given {pre}shape={v} samples",
        "given {pre}shape={v} samples x",
    ),
    "'draws' needs a whole number of Monte Carlo draws, e.g. 'draws 100000'": ["P(a) draws", "P(a) draws x"],
    "'=' needs a value: a name (shape=square) or a number (x=0.5, orientation=90deg)": _variants(
        "do({pre}shape=)",
        "given img, do({pre}shape=)",
        "given {pre}shape=",
        'img = png("a.png", {pre}shape=)',
    )
    + _in_do("{pre}shape=)"),
    "expected a name=value item, e.g. shape=heart": _variants(
        "do({pre}3)",
        "do({pre}shape)",
        "given img, do({pre}3)",
        "given img, do({pre}shape)",
        "given {pre}3",
        "given {pre}shape=heart, scale",
        'img = png("a.png", {pre}3)',
        'img = png("a.png", {pre}shape)',
    )
    + _in_do("{pre}3)", "{pre}shape)"),
    "expected ',' between evidence items (given shape=heart, scale=1.0), 'samples' or the end of the statement": (
        _variants("given {pre}shape={v} x=0.5", "given {pre}shape={v} 3")
    ),
    _MIXED: _variants("given {pre}shape={v}, do(scale=0.5)"),
    # Each comparison stops in a state of its own; "a == 1" stops where "a = )" does, on another token.
    _RIGHT: _in_event(*(f"a {op} {end}" for op in ("=", "!=", "<", "<=", ">", ">=") for end in (")", "|"))),
    "compare with a single '=' (y = 1), or with '!=' for 'not equal'": _in_event("a == 1", "a >= = 1"),
    "expected 'do(...)' after '@': a node in a world reads y@do(shape=square)": _in_event("a@)", "a@b", "a@(")
    + _at_query("E[a@]", "E[a@b]"),
    "P(...) starts with a node or a statistic: P(y > 0.5 | ...), P(y), P(area(img) > 100)": _at_query(
        "P()", "P(3 > a)", "P(|"
    ),
    "E[...] needs a node, a statistic or arithmetic over them: E[y], E[area(img)], E[y@do(x=1) - y]": (
        _at_query("E[]", "E[|")
    ),
    "expected evidence (shape=heart), do(...) or a unit (u, data[3]) after '|'": _at_query(
        "P(a | )", "P(a | 3)", "E[a | ]", "E[a | 3]", "P(a | b=1, )", "E[a | b=1, ]"
    ),
    "expected '[' after 'E': an expectation reads E[y | ...]": _at_query("E(a)", "E a"),
    "expected '(' after 'P': a probability reads P(y > 0.5 | ...)": _at_query("P[a]", "P a"),
    "PN, PS and PNS read PNS(outcome, do(cause), do(alternative)), "
    "e.g. PNS(y > 0.5, do(shape=heart), do(shape=square))": _at_query(
        "PNS(a > 1)", "PNS(a > 1, b=1)", "PNS(a > 1, do(b=1))", "PNS(a > 1, do(b=1) | u)", "PNS(a)", "PNS()"
    ),
    "expected a unit: world[index] (data[3]), world[name=value, ...] (data[shape=heart]), "
    "world[start:stop] (data[0:100]) or png(\"path\", name=value, ...)": [
        "img =",
        "img = 3",
        "img = (",
        "img = square",
    ],
    "expected '[' after '{word}': a unit reads {word}[index], {word}[name=value, ...] or {word}[start:stop]": [
        "img = data(3)",
        "img = data 3",
    ],
    "expected an index ({word}[3]), a slice ({word}[0:100]) or conditions ({word}[shape=heart]) "
    "inside {word}[...]": ["img = data[]", "img = data[,", "given data[], do(x=1)"],
    "a condition compares a label with a value: data[shape=heart, scale>=0.5]": [
        "img = data[x]",
        "img = data[x,",
        "img = data[0:10, x]",
        "img = data[0:10, 3]",
        "given data[x], do(shape=heart)",
        "img = data[a=1, x]",
        "img = data[a=1, 3]",
    ],
    "expected '(' after 'do': do(name=value, ...)": ["do", "do x=1)", "given img, do", "given img, do x=1)"]
    + _in_event("a@do x", "a@do)"),
    "expected '(' after 'png': png(\"path\", name=value, ...)": [
        "img = png",
        'img = png "a.png")',
        "given png",
        'given png "a.png")',
    ],
    "expected a quoted path after 'png(': png(\"path\", name=value, ...)": [
        "img = png(",
        "img = png(x)",
        "img = png()",
        "given png(x",
    ],
    _STATEMENT_START: [
        "img, do(shape=square)",
        "data[3]",
        "giv img, do(shape=square)",
        "giv shape=heart",
        "dp(shape=heart)",
        "img",
        "samples 3",
    ],
    # A bad first token stops the parser before it reduces what came before, hence three contexts.
    "a statement starts with 'given', 'do(', 'name =' or a query (P(...), E[...]), not with {token}": [
        before + token for before in ("", "\n", "do(x=1)\n") for token in (")", "=", ",", '"a"', "|")
    ],
    "unexpected {token} after a complete statement; expected {expected} "
    "(put the next statement on a new line or after ';')": _variants(
        "do({pre}shape=heart) x",
        "do({pre}shape=heart,) x",
        "do({pre}shape=heart) samples 3 x",
        "do({pre}shape=heart) do(x=0.5)",
        "do({pre}shape=heart) )",
        "given img, do({pre}shape=heart) x",
        "given img, do({pre}shape=heart,) x",
        "given img, do({pre}shape=heart) samples 3 x",
        "given {pre}shape={v} samples 3 x",
        "img = data[3] x",
        "img = data[shape=heart] x",
        'img = png("a.png", {pre}shape={v}) x',
    )
    + _at_query("P(a) x", "P(a > 1) x", "E[a] x", "PNS(a > 1, do(b=1), do(b=2)) x")
    + ["P(a) draws 3 x", "E[a] draws 3 x"],
}


def syntax_error(e: UnexpectedInput, text: str, path: str, parse: Parse) -> QueryError:
    """Say in words what went wrong: a labelled example mistake, else what the parser expected."""
    line_text = source_line(text, e.line)
    before, after = line_text[: e.column - 1], line_text[e.column - 1 :]
    if isinstance(e, UnexpectedCharacters):
        message, column = _bad_characters(e, after), e.column
    else:
        message, column = _bad_token(e, before, after, parse)
    return error_at(path, text, e.line, column, f"syntax error: {message}")


def _bad_characters(e: UnexpectedCharacters, after: str) -> str:
    if e.char in "\"'":
        return f"unterminated string: add the closing {e.char} before the end of the line"
    if unicodedata.category(e.char) == "Nd" and e.char not in "0123456789":  # a digit, but not 0-9: ٣, ３
        return f"'{e.char}' is not one of the digits 0-9; numbers are written with ASCII digits (3, -0.5, 1e-3)"
    if re.match(r"[+-]?[0-9.]", after):
        word = re.match(r"[\w.+-]+", after).group()
        return f"'{word}' is not a number; numbers read 3, -0.5, 1e-3, 90deg, 1.5rad or 0.5pi"
    if not e.char.isprintable() or e.char.isspace():
        name = unicodedata.name(e.char, "a control character")
        return (
            f"unexpected character '{e.char}' ({name}); "
            "words are separated by spaces or tabs, statements by a new line or ';'"
        )
    if e.char == "!":
        return "'!' on its own is no operator; 'not equal' is written '!='"
    return f"unexpected character '{e.char}'; expected {_expected(e.allowed or ())}"


def _bad_token(e: UnexpectedToken, before: str, after: str, parse: Parse) -> tuple[str, int]:
    """The message, and the column to point at: the token, or the first word of a malformed statement."""
    expected = e.accepts or e.expected
    word = (re.findall(r"\w+", before) or [""])[-1]  # the word before the offending token
    construct, opener = _open_construct(before)
    misplaced = _misplaced_keyword(e.token, expected)
    if misplaced:
        return misplaced, e.column
    label = e.match_examples(_example_parser(e, parse), _MISTAKES, use_accepts=True)
    closer = {"(": "RPAR", "[": "RSQB"}.get(opener)
    punctuation = e.token.type not in ("NAME", "NUMBER", "STRING") or e.token in ("samples", "draws")
    if label is None and punctuation and closer in expected:
        label = f"missing '{_CLOSERS[opener]}': {{construct}} is not closed"
    op = re.search(r"(!=|<=|>=|<|>|=)\s*$", before)
    message = (label or "unexpected {token}; expected {expected}").format(
        token=_describe(e.token),
        expected=_expected(expected),
        word=word,
        construct=construct or "the bracket",
        item="an intervention" if construct == "do(...)" else "a label",
        op=op.group(1) if op else "=",
    )
    if label == _MIXED:
        return message, len(before.rstrip()) - len(word) + 1  # at 'do', read as a name here
    if label == _STATEMENT_START:
        column = len(before.rstrip()) - len(word) + 1  # at the first word, not at what follows it
        if after.lstrip().startswith("[") or word == "png":
            message = (
                f"a unit on its own is not a statement: "
                f"bind it (img = {word}...) or ask about it (given {word}..., do(...))"
            )
        return message + _did_you_mean(word, ["given", "do"]), column
    if e.token.type == "LPAR" and "LSQB" in expected:  # img = pgn("a.png")
        message += _did_you_mean(word, ["png"])
    if e.token.type == "NAME" and not re.match(r"\w+\s*=", after):
        message += _did_you_mean(e.token, _keywords(expected))
    return message, e.column


def _keywords(expected) -> list[str]:
    """The keywords among the expected terminals, spelt as written: {'SAMPLES', 'NAME'} -> ['samples']."""
    by_terminal = {k.upper(): k for k in KEYWORDS}
    return [by_terminal[n] for n in expected if n in by_terminal]


def _misplaced_keyword(token: Token, expected) -> str | None:
    """Words for a keyword in the wrong place, whatever the state: ``samples2``, ``samples`` after P(...)."""
    if token.type != "NAME":
        return None
    if token == "samples" and "DRAWS" in expected:
        return "'samples' is for image statements: a numeric statement takes 'draws N'"
    if token == "draws" and "SAMPLES" in expected:
        return "'draws' is for numeric statements (P, E): an image statement takes 'samples N'"
    for keyword in ("samples", "draws"):
        rest = token[len(keyword) :]
        if keyword.upper() in expected and token.startswith(keyword) and rest[:1].isdigit():
            return f"'{token}' is one name; put a space between '{keyword}' and its number: '{keyword} {rest}'"
    return None


def _open_construct(before: str) -> tuple[str | None, str | None]:
    """The innermost bracket left open in the statement before the error, named: ("P(...)", "(")."""
    stack = []
    for match in re.finditer(r"""(\w*)\s*([(\[])|[)\]]|;|"[^"]*"?|'[^']*'?""", before):
        if match.group(2):
            stack.append((match.group(1), match.group(2)))
        elif match.group() in (")", "]") and stack:
            stack.pop()
        elif match.group() == ";":
            stack.clear()
    if not stack:
        return None, None
    name, opener = stack[-1]
    if not name:
        return f"the '{opener}'", opener
    return f"{name}{opener}...{_CLOSERS[opener]}", opener


def _example_parser(e: UnexpectedToken, parse: Parse) -> Parse:
    """A parse function for ``match_examples``, which re-raises each example's (cached) error.

    An example that stops in e's state with other accepts is passed over: it does not match
    anyway, and lark 1.3.1 would crash while logging that it does not.
    """

    def parse_example(example: str) -> None:
        ut = _example_error(parse, example)
        if ut is None:
            return
        if isinstance(ut, UnexpectedToken) and ut.state == e.state and ut.accepts != e.accepts:
            return
        raise ut.with_traceback(None)

    return parse_example


@functools.cache
def _example_error(parse: Parse, example: str) -> UnexpectedInput | None:
    try:
        parse(example)
    except UnexpectedInput as ut:
        return ut
    return None


def _describe(token: Token) -> str:
    """How the offending token reads in a message: "name 'x'", "';'", "end of line"."""
    if token.type in ("_SEP", "$END"):
        return "';'" if token == ";" else "end of line"
    if token.type in ("NAME", "NUMBER"):
        return f"{token.type.lower()} '{token}'"
    if token.type == "STRING":
        return f"path {token}"
    return f"'{token}'"


def _expected(names) -> str:
    """Terminal names in words: {'COMMA', 'RPAR'} -> "',' or ')'"; several comparisons -> "a comparison (...)"."""
    order = list(_WORDS)
    names = sorted((n for n in names if n in _WORDS), key=order.index)
    grouped = {n: phrase for phrase, group in _GROUPS.items() if len(group & set(names)) > 1 for n in group}
    words = list(dict.fromkeys(grouped.get(n, _WORDS[n]) for n in names))
    return " or ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " or " + words[-1]


def _did_you_mean(word: str, keywords: list[str]) -> str:
    """A hint when a word looks like a misspelt keyword that would have been accepted."""
    close = difflib.get_close_matches(word, keywords, n=1, cutoff=0.5) if word not in KEYWORDS else []
    return f" (did you mean '{close[0]}' instead of '{word}'?)" if close else ""
