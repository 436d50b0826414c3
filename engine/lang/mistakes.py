"""Syntax errors in plain words: what the parser expected, said the way a user would say it.

A syntax error is matched against the labelled example mistakes in ``_MISTAKES`` with lark's
``match_examples``, which compares the parser's state where the error and each example stop;
an error that matches none lists the tokens the parser would have accepted, in words. The
message names the file, line and column, and shows the line with a caret under the column.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Callable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from engine.errors import QueryError
from engine.lang.nodes import error_at

Parse = Callable[[str], object]

KEYWORDS = ("given", "do", "samples", "dsprites", "png")  # the grammar's keywords, for hints

# How a terminal reads in a message; the order is the order in which expected tokens are listed.
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a quoted path ("...")',
    "EQUAL": "'='",
    "COMMA": "','",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "GIVEN": "'given'",
    "DO": "'do'",
    "SAMPLES": "'samples'",
    "DSPRITES": "'dsprites'",
    "PNG": "'png'",
    "_SEP": "the end of the statement",
    "$END": "the end of the statement",
}


def _variants(*mistakes: str) -> list[str]:
    """Each mistake at the first, second and a later place in its list, after a name and after a number.

    The parser stops in one state after a name and in another after a number, and lark's
    ``match_examples`` also compares the depth of the parser's stack, which grows over a list's
    first two items.
    """
    places, values = ("", "a=1, ", "a=1, b=2, "), ("heart", "0.5")
    return list(dict.fromkeys(m.format(pre=pre, v=v) for m in mistakes for pre in places for v in values))


_STATEMENT_START = "a statement starts with 'given', 'do(' or 'name ='"
_MIXED = (
    "evidence and do(...) cannot be mixed: use 'given img, do(...)' for a counterfactual, "
    "'do(...)' for an intervention, 'given name=value' for evidence"
)

# Labelled example mistakes; a syntax error that stops where one of these stops gets its words.
# {expected} lists what would have been accepted, {construct} names the enclosing do(...) or png(...),
# {item} what it holds; in the examples, {pre} and {v} are filled in by _variants.
_MISTAKES = {
    "expected ',' or ')' after {item} (name=value)": _variants(
        "do({pre}shape={v} x=0.5)",
        "given img, do({pre}shape={v} x=0.5)",
        "given dsprites[1], do({pre}shape={v} x=0.5)",
        'img = png("a.png", {pre}shape={v} scale=1.0)',
        'given png("a.png", {pre}shape={v} scale=1.0), do(x=0.5)',
    ),
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
    "missing ']' after the dsprites index": ["img = dsprites[3", "given dsprites[3, do(shape=heart)"],
    "expected 'do(...)' after the unit: a counterfactual reads 'given img, do(name=value)'": _variants(
        "given img,",
        "given img, shape=square",
        "given img, samples 3",
        "given dsprites[3]",
        "given dsprites[3] samples 2",
        "given dsprites[3],",
        "given dsprites[3], shape=square",
        'given png("a.png", {pre}shape={v})',
        'given png("a.png", {pre}shape={v}) samples 2',
        'given png("a.png", {pre}shape={v}),',
        'given png("a.png", {pre}shape={v}), shape=square',
    ),
    "expected ',' between the unit and do(...): 'given img, do(name=value)'": _variants(
        "given img do(shape=heart)",
        "given dsprites[3] do(shape=heart)",
        'given png("a.png", {pre}shape={v}) do(shape=heart)',
    ),
    "after 'given {word}' expected '=' for evidence (given shape=heart) "
    "or ', do(...)' for a counterfactual (given img, do(shape=square))": [
        "given img",
        "given img samples 3",
        "given img x",
    ],
    "'samples' needs a whole number of draws, e.g. 'samples 8'": _variants(
        "do(shape=heart) samples",
        "do(shape=heart) samples x",
        "given img, do(shape=heart) samples",
        "given img, do(shape=heart) samples x",
        "given {pre}shape={v} samples",
        "given {pre}shape={v} samples x",
    ),
    "'=' needs a value: a name (shape=square) or a number (x=0.5, orientation=90deg)": _variants(
        "do({pre}shape=)",
        "given img, do({pre}shape=)",
        "given {pre}shape=",
        'img = png("a.png", {pre}shape=)',
    ),
    "expected a name=value item, e.g. shape=heart": _variants(
        "do({pre}3)",
        "do({pre}shape)",
        "given img, do({pre}3)",
        "given img, do({pre}shape)",
        "given {pre}3",
        "given {pre}shape=heart, scale",
        'img = png("a.png", {pre}3)',
        'img = png("a.png", {pre}shape)',
    ),
    "expected ',' between evidence items (given shape=heart, scale=1.0), 'samples' or the end of the statement": (
        _variants("given {pre}shape={v} x=0.5", "given {pre}shape={v} 3")
    ),
    _MIXED: _variants("given {pre}shape={v}, do(scale=0.5)"),
    "expected a unit after '=': dsprites[index] or png(\"path\", name=value, ...)": [
        "img =",
        "img = 3",
        "img = square",
        "img = (",
    ],
    "expected a whole-number index inside dsprites[...]": [
        "img = dsprites[]",
        "img = dsprites[x]",
        "given dsprites[x], do(shape=heart)",
    ],
    "expected '[' after 'dsprites': dsprites[index]": [
        "img = dsprites",
        "img = dsprites(3)",
        "given dsprites",
        "given dsprites 3",
    ],
    "expected '(' after 'do': do(name=value, ...)": ["do", "do x=1)", "given img, do", "given img, do x=1)"],
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
        "dsprites[3]",
        "giv img, do(shape=square)",
        "giv shape=heart",
        "dp(shape=heart)",
        "img",
        "samples 3",
    ],
    # A bad first token stops the parser before it reduces what came before, hence three contexts.
    "a statement starts with 'given', 'do(' or 'name =', not with {token}": [
        before + token for before in ("", "\n", "do(x=1)\n") for token in ("3", "(", ")", "=", ",", '"a"')
    ],
    "unexpected {token} after a complete statement; expected {expected} "
    "(put the next statement on a new line or after ';')": _variants(
        "do({pre}shape=heart) x",
        "do({pre}shape=heart,) x",
        "do({pre}shape=heart) samples 3 x",
        "do({pre}shape=heart) do(x=0.5)",
        "given img, do({pre}shape=heart) x",
        "given img, do({pre}shape=heart,) x",
        "given img, do({pre}shape=heart) samples 3 x",
        "given {pre}shape={v} samples 3 x",
        "img = dsprites[3] x",
        'img = png("a.png", {pre}shape={v}) x',
    ),
}


def syntax_error(e: UnexpectedInput, text: str, path: str, parse: Parse) -> QueryError:
    """Say in words what went wrong: a labelled example mistake, else what the parser expected."""
    lines = text.splitlines()
    line_text = lines[e.line - 1] if 0 < e.line <= len(lines) else ""
    before, after = line_text[: e.column - 1], line_text[e.column - 1 :]
    if isinstance(e, UnexpectedCharacters):
        message, column = _bad_characters(e, after), e.column
    else:
        message, column = _bad_token(e, before, after, parse)
    return error_at(path, text, e.line, column, f"syntax error: {message}")


def _bad_characters(e: UnexpectedCharacters, after: str) -> str:
    if e.char in "\"'":
        return f"unterminated string: add the closing {e.char} before the end of the line"
    if re.match(r"[+-]?[\d.]", after):
        word = re.match(r"[\w.+-]+", after).group()
        return f"'{word}' is not a number; numbers read 3, -0.5, 1e-3, 90deg, 1.5rad or 0.5pi"
    return f"unexpected character '{e.char}'; expected {_expected(e.allowed or ())}"


def _bad_token(e: UnexpectedToken, before: str, after: str, parse: Parse) -> tuple[str, int]:
    """The message, and the column to point at: the token, or the first word of a malformed statement."""
    expected = e.accepts or e.expected
    label = e.match_examples(_example_parser(e, parse), _MISTAKES, use_accepts=True)
    word = (re.findall(r"\w+", before) or [""])[-1]  # the word before the offending token
    in_do = re.search(r"\bdo\s*$", before[: before.rfind("(")]) is not None
    message = (label or "unexpected {token}; expected {expected}").format(
        token=_describe(e.token),
        expected=_expected(expected),
        word=word,
        construct="do(...)" if in_do else "png(...)",
        item="an intervention" if in_do else "a label",
    )
    if label == _MIXED:
        return message, len(before.rstrip()) - len(word) + 1  # at 'do', read as a name here
    if label == _STATEMENT_START:
        column = len(before.rstrip()) - len(word) + 1  # at the first word, not at what follows it
        if word in ("dsprites", "png"):
            message = (
                f"a unit on its own is not a statement: "
                f"bind it (img = {word}...) or ask about it (given {word}..., do(...))"
            )
        return message + _did_you_mean(word, ["given", "do"]), column
    if e.token.type == "NAME" and not re.match(r"\w+\s*=", after):
        message += _did_you_mean(e.token, [n.lower() for n in expected if n.lower() in KEYWORDS])
    return message, e.column


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
    """Terminal names in words: {'COMMA', 'RPAR'} -> "',' or ')'"."""
    order = list(_WORDS)
    words = list(dict.fromkeys(_WORDS[n] for n in sorted((n for n in names if n in _WORDS), key=order.index)))
    return " or ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " or " + words[-1]


def _did_you_mean(word: str, keywords: list[str]) -> str:
    """A hint when a word looks like a misspelt keyword that would have been accepted."""
    close = difflib.get_close_matches(word, keywords, n=1, cutoff=0.5) if word not in KEYWORDS else []
    return f" (did you mean '{close[0]}' instead of '{word}'?)" if close else ""
